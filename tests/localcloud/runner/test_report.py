"""localcloud.runner.report: the run's time split into training, endpoint start, smoke test and
the orchestration's parts, from an execution's events and the job's and endpoint's times."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from localcloud.runner.report import orchestration_parts, timings

T0 = datetime.datetime(2026, 11, 29, 12, 0, 0, tzinfo=datetime.UTC)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def state(name: str, entered: float, exited: float) -> list[dict[str, Any]]:
    return [
        {"type": "TaskStateEntered", "timestamp": at(entered),
         "stateEnteredEventDetails": {"name": name}},
        {"type": "TaskStateExited", "timestamp": at(exited),
         "stateExitedEventDetails": {"name": name}},
    ]  # fmt: skip


EVENTS = [
    *state("PrepareRun", 5.0, 5.4),
    *state("StartTraining", 5.4, 5.8),
    *state("CheckTraining", 7.0, 7.1),
    *state("CheckTraining", 47.5, 47.6),  # the loop: the last entry counts
    *state("QualityGate", 47.7, 47.8),
    *state("DeployModel", 48.5, 49.0),
    *state("SmokeTest", 52.5, 54.0),
]
JOB = {"TrainingStartTime": at(6.0), "TrainingEndTime": at(47.0)}
ENDPOINT = {"EndpointStatus": "InService", "LastModifiedTime": at(52.0)}
DESCRIPTION = {"startDate": at(4.5), "stopDate": at(54.5)}
MARKS = {
    "began": at(0.0),
    "cloud_up": at(3.0),
    "data_ready": at(4.0),
    "followed": at(55.0),
    "classified": at(56.0),
    "summarised": at(56.2),
}


def test_timings_split_the_wall_time() -> None:
    spent = timings(EVENTS, JOB, ENDPOINT, 60.0)
    assert spent.training == pytest.approx(41.0)
    assert spent.endpoint == pytest.approx(3.0)  # DeployModel's exit to InService
    assert spent.smoke_test == pytest.approx(1.5)
    assert spent.orchestration == pytest.approx(60.0 - 41.0 - 3.0 - 1.5)


def test_orchestration_parts_in_the_order_spent() -> None:
    parts = dict(orchestration_parts(MARKS, DESCRIPTION, EVENTS, JOB, ENDPOINT))
    assert list(parts) == [
        "local cloud start",
        "data set (after the start)",
        "upload and trigger",
        "to the job's start (PrepareRun, StartTraining)",
        "job's end noticed",
        "gate, registry, lock, deploy call",
        "endpoint InService noticed",
        "autoscaling, lock release, summary",
        "execution end noticed",
        "classification",
        "summary",
    ]
    assert parts["local cloud start"] == pytest.approx(3.0)
    assert parts["data set (after the start)"] == pytest.approx(1.0)
    assert parts["upload and trigger"] == pytest.approx(0.5)
    assert parts["to the job's start (PrepareRun, StartTraining)"] == pytest.approx(1.5)
    assert parts["job's end noticed"] == pytest.approx(0.7)  # 47.0 -> QualityGate 47.7
    assert parts["gate, registry, lock, deploy call"] == pytest.approx(1.3)
    assert parts["endpoint InService noticed"] == pytest.approx(0.5)
    assert parts["autoscaling, lock release, summary"] == pytest.approx(0.5)
    assert parts["execution end noticed"] == pytest.approx(0.5)
    assert parts["classification"] == pytest.approx(1.0)
    assert parts["summary"] == pytest.approx(0.2)
    # with the three timed parts they cover the whole time to the summary, no overlap
    spent = timings(EVENTS, JOB, ENDPOINT, 56.2)
    covered = sum(parts.values()) + spent.training + spent.endpoint + spent.smoke_test
    assert covered == pytest.approx(56.2)


def test_parts_without_a_job_or_endpoint_are_left_out() -> None:
    failed = {"startDate": at(4.5), "stopDate": at(6.0)}
    marks = {k: v for k, v in MARKS.items() if k != "classified"}
    names = [name for name, _ in orchestration_parts(marks, failed, EVENTS[:4], None, None)]
    assert names == [
        "local cloud start",
        "data set (after the start)",
        "upload and trigger",
        "execution end noticed",
    ]
