"""AcquireDeploymentLock: one holder at a time; stale locks are taken over, waits are counted."""

from __future__ import annotations

import json
import time
from types import ModuleType
from typing import Any

import boto3
import pytest

from tests.conftest import AwsRecorder, load_event, load_handler
from tests.functions.pipeline_helpers import create_lock_table, hold_lock
from tests.template_support import LOCK_TABLE, set_function_environment

FUNCTION = "AcquireLockFunction"
ENDPOINT = "image-classifier"


@pytest.fixture
def dynamodb(aws: AwsRecorder) -> Any:
    return create_lock_table(LOCK_TABLE)


@pytest.fixture
def app(aws: AwsRecorder, dynamodb: Any, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    set_function_environment(monkeypatch, FUNCTION)
    return load_handler("acquire_lock")


def running_execution() -> str:
    sfn = boto3.client("stepfunctions")
    machine = sfn.create_state_machine(
        name="mlops-train-deploy",
        definition=json.dumps(
            {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 60, "End": True}}}
        ),
        roleArn="arn:aws:iam::123456789012:role/sfn",
    )["stateMachineArn"]
    return sfn.start_execution(stateMachineArn=machine, name="other-run")["executionArn"]


def hold(dynamodb: Any, holder: str, expires_at: float) -> None:
    hold_lock(dynamodb, LOCK_TABLE, ENDPOINT, holder, expires_at)


def holder(dynamodb: Any) -> str:
    item = dynamodb.get_item(TableName=LOCK_TABLE, Key={"lock_id": {"S": ENDPOINT}})["Item"]
    return item["holder"]["S"]


def test_a_free_lock_is_taken_and_is_reentrant(app, aws, dynamodb) -> None:
    event = load_event("acquire_lock/first_attempt.json")
    first = aws.invoke(app, event)
    deadlines = first.pop("deadlines")
    assert 0 < deadlines["deploy"] - time.time() <= 400 * event["poll_seconds"]
    assert deadlines["rollback"] > deadlines["deploy"]
    assert first == {
        "acquired": True,
        "holder": event["execution_arn"],
        "taken_over_from": None,
        "attempts": 1,
        "exhausted": False,
        "reason": None,
    }
    assert aws.invoke(app, {**event, "attempts": 1})["acquired"] is True
    assert holder(dynamodb) == event["execution_arn"]


def test_a_lock_held_by_a_running_execution_waits_then_gives_up(app, aws, dynamodb) -> None:
    other = running_execution()
    hold(dynamodb, other, time.time() + 3600)
    event = load_event("acquire_lock/first_attempt.json")
    waiting = aws.invoke(app, event)
    assert (waiting["acquired"], waiting["exhausted"], waiting["attempts"]) == (False, False, 1)
    assert waiting["holder"] == other

    last = aws.invoke(app, {**event, "attempts": event["max_attempts"] - 1})
    assert (last["acquired"], last["exhausted"]) == (False, True)
    assert last["reason"] == (
        f"the deployment lock of endpoint {ENDPOINT} is still held by execution {other} "
        f"after {event['max_attempts']} attempts"
    )
    assert holder(dynamodb) == other


@pytest.mark.parametrize("why", ["holder not running", "lease expired"])
def test_a_stale_lock_is_taken_over(app, aws, dynamodb, why: str) -> None:
    if why == "lease expired":
        other, expires = running_execution(), time.time() - 1
    else:
        other = "arn:aws:states:us-east-1:123456789012:execution:mlops-train-deploy:gone"
        expires = time.time() + 3600
    hold(dynamodb, other, expires)
    event = load_event("acquire_lock/first_attempt.json")
    result = aws.invoke(app, event)
    assert (result["acquired"], result["taken_over_from"]) == (True, other)
    assert holder(dynamodb) == event["execution_arn"]
