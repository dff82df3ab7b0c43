"""The terminal execution view built from Step Functions history events."""

from __future__ import annotations

import datetime
import json
from typing import Any

from localcloud.runner.execution_history import build_view, is_no_op, render, render_output

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def entered(name: str, kind: str, t: float) -> dict[str, Any]:
    return {"type": f"{kind}StateEntered", "timestamp": at(t),
            "stateEnteredEventDetails": {"name": name}}  # fmt: skip


def exited(name: str, kind: str, t: float) -> dict[str, Any]:
    return {"type": f"{kind}StateExited", "timestamp": at(t),
            "stateExitedEventDetails": {"name": name}}  # fmt: skip


def task_failed(t: float, error: str, message: str) -> dict[str, Any]:
    cause = json.dumps({"errorType": error, "errorMessage": message, "stackTrace": []})
    return {"type": "TaskFailed", "timestamp": at(t),
            "taskFailedEventDetails": {"error": error, "cause": cause}}  # fmt: skip


def event(kind: str, t: float, **details: Any) -> dict[str, Any]:
    return {"type": kind, "timestamp": at(t), **details}


HISTORY = [
    event("ExecutionStarted", 0),
    entered("Train", "Task", 0),
    event("TaskScheduled", 0.1),
    task_failed(1, "Throttled", "slow down"),
    event("TaskScheduled", 2),
    event("TaskSucceeded", 3),
    exited("Train", "Task", 3),
    entered("Wait", "Wait", 3),
    exited("Wait", "Wait", 5),
    entered("Train", "Task", 5),
    event("TaskScheduled", 5),
    event("TaskSucceeded", 6),
    exited("Train", "Task", 6),
    entered("Deploy", "Task", 6),
    event("TaskScheduled", 6),
    task_failed(7, "DeployError", "no capacity"),
    exited("Deploy", "Task", 7),
    entered("DeployFailed", "Fail", 7),
    event(
        "ExecutionFailed",
        7.5,
        executionFailedEventDetails={"error": "DeployError", "cause": "no capacity"},
    ),
]


def test_states_are_grouped_with_runs_retries_durations_and_failures() -> None:
    description = {"name": "run-1", "status": "FAILED", "startDate": at(0), "stopDate": at(7.5)}
    view = build_view(HISTORY, description)
    by_name = {s.name: s for s in view.states}
    assert [s.name for s in view.states] == ["Train", "Wait", "Deploy", "DeployFailed"]
    train = by_name["Train"]
    assert (train.runs, train.attempts, train.status, train.seconds) == (2, 3, "Succeeded", 4.0)
    assert by_name["Wait"].seconds == 2.0
    deploy = by_name["Deploy"]
    assert deploy.status == "Caught" and deploy.error == "DeployError"
    assert deploy.cause == "DeployError: no capacity"  # the Lambda error payload, readable
    assert by_name["DeployFailed"].status == "Failed"
    assert (view.status, view.error, view.seconds) == ("FAILED", "DeployError", 7.5)
    text = render(view)
    assert "Train" in text and "2 (1 retries)" in text
    assert "DeployError: no capacity" in text
    assert "DeployError: DeployError" not in text


def test_a_running_execution_shows_its_current_state() -> None:
    view = build_view(HISTORY[:3], {"name": "r", "status": "RUNNING", "startDate": at(0)})
    assert [(s.name, s.status) for s in view.states] == [("Train", "Running")]
    assert view.seconds is None


def test_a_no_op_run_is_told_apart_by_its_output() -> None:
    skipped = {"output": json.dumps({"accepted": False, "skipped": True, "reason": "approved"})}
    deployed = {"output": json.dumps({"run_id": "r1", "endpoint_name": "image-classifier"})}
    assert is_no_op(skipped)
    assert not is_no_op(deployed)
    assert not is_no_op({})  # running or failed: no output
    assert not is_no_op({"output": "not json"})


def test_the_output_is_shown_one_leaf_a_line() -> None:
    output = json.dumps(
        {
            "model_package_arn": "arn:aws:sagemaker:us-east-1:123456789012:model-package/g/1",
            "metrics": {"valid_acc": 0.98, "test_acc": 0.97},
            "message": "approve it: python -m localcloud approve ARN",
            "smoke_test": None,
        }
    )
    text = render_output(output)
    assert text.splitlines() == [
        "  Output:",
        "    model_package_arn: arn:aws:sagemaker:us-east-1:123456789012:model-package/g/1",
        "    metrics.valid_acc: 0.98",
        "    metrics.test_acc: 0.97",
        "    message: approve it: python -m localcloud approve ARN",
    ]
    assert render_output(None) == ""
