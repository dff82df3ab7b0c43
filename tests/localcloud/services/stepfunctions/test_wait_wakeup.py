"""localcloud.services.stepfunctions.wait_wakeup: a Wait state whose input names a training job or
an endpoint ends when the job ends or the endpoint's deployment settles; every other Wait lasts its
full time, and a stopped execution stops waiting."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from localcloud.services.stepfunctions import wait_wakeup

ROLE = "arn:aws:iam::123456789012:role/sfn"


def _until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def sfn() -> Iterator[Any]:
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        wait_wakeup.install()
        try:
            yield boto3.client("stepfunctions", region_name="us-east-1")
        finally:
            wait_wakeup.uninstall()


def _start(sfn: Any, seconds: int, execution_input: dict[str, Any]) -> str:
    definition = {
        "StartAt": "WaitForTraining",
        "States": {
            "WaitForTraining": {"Type": "Wait", "Seconds": seconds, "Next": "Check"},
            "Check": {"Type": "Pass", "End": True},
        },
    }
    arn = sfn.create_state_machine(
        name=f"wake-{time.monotonic_ns()}", definition=json.dumps(definition), roleArn=ROLE
    )["stateMachineArn"]
    return sfn.start_execution(stateMachineArn=arn, input=json.dumps(execution_input))[
        "executionArn"
    ]


def _status(sfn: Any, arn: str) -> str:
    return str(sfn.describe_execution(executionArn=arn)["status"])


def test_a_wait_whose_input_names_the_job_ends_when_the_job_ends(sfn: Any) -> None:
    arn = _start(sfn, 60, {"training": {"training_job_name": "job-1"}})
    assert _until(lambda: wait_wakeup.waiting() == 1, 10)
    assert wait_wakeup.settled("job-10") == 0  # another job (a name that contains this one)
    assert wait_wakeup.settled("job") == 0
    assert _status(sfn, arn) == "RUNNING"
    assert wait_wakeup.settled("job-1") == 1
    assert _until(lambda: _status(sfn, arn) == "SUCCEEDED", 10)  # not the Wait's 60 s
    events = sfn.get_execution_history(executionArn=arn)["events"]
    kinds = [e["type"] for e in events]
    assert "WaitStateExited" in kinds and kinds[-1] == "ExecutionSucceeded"  # same history
    assert wait_wakeup.waiting() == 0


def test_a_wait_that_does_not_name_the_job_lasts_its_full_time(sfn: Any) -> None:
    arn = _start(sfn, 2, {"endpoint": "image-classifier"})
    assert _until(lambda: wait_wakeup.waiting() == 1, 10)
    began = time.monotonic()
    assert wait_wakeup.settled("job-1") == 0
    assert _until(lambda: _status(sfn, arn) == "SUCCEEDED", 10)
    assert time.monotonic() - began >= 1.5  # the 2 s wait went on after the job ended


def test_a_stopped_execution_stops_waiting(sfn: Any) -> None:
    arn = _start(sfn, 60, {"training": {"training_job_name": "job-2"}})
    assert _until(lambda: wait_wakeup.waiting() == 1, 10)
    sfn.stop_execution(executionArn=arn)
    assert _until(lambda: wait_wakeup.waiting() == 0, 5)
    assert _status(sfn, arn) == "ABORTED"
