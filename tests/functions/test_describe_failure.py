"""DescribeFailure: one readable sentence per failure, whatever shape the error came in, naming
the state that failed."""

from __future__ import annotations

import json

import pytest

from mlops.failure import CAUSE_MAX, caught_states, describe_failure
from tests.conftest import load_event, load_handler

FUNCTION = "DescribeFailureFunction"  # its calls are checked against the template's role
TRACEBACK = 'Traceback (most recent call last):\n  File "/var/task/app.py", line 3, in f\nKeyError'


def test_a_lambda_error_becomes_its_message_and_type(aws) -> None:
    """The execution's history cannot be read here (moto has no such execution): the cause
    is still the message, without the state's name."""
    failure = aws.invoke(
        load_handler("describe_failure"), load_event("describe_failure/lambda_error.json")
    )
    assert failure == {
        "error": "ConfigurationError",
        "cause": "start_training: environment variable DATA_BUCKET is not set",
    }
    assert aws.operations() == ["GetExecutionHistory"]


def history(*steps: tuple[str, str]) -> list[dict[str, object]]:
    """History events, newest first (as reverseOrder gives them): (state, attempt outcome)
    for a Task's attempt, ("", name) for a non-Task state entered."""
    events: list[dict[str, object]] = []
    state = None
    for name, outcome in steps:
        if name and name != state:
            state = name
            events.append({"type": "TaskStateEntered", "stateEnteredEventDetails": {"name": name}})
        if not name:
            events.append(
                {"type": "PassStateEntered", "stateEnteredEventDetails": {"name": outcome}}
            )
            continue
        events += [{"type": "LambdaFunctionScheduled"}, {"type": f"LambdaFunction{outcome}"}]
    for number, event in enumerate(events, start=1):
        event["id"] = number
    return events[::-1]


def test_the_caught_failures_are_named_not_the_retried_ones() -> None:
    events = history(
        ("CheckTraining", "Failed"),  # throttled, then retried: not a failure of the run
        ("CheckTraining", "Succeeded"),
        ("DeployModel", "TimedOut"),
        ("", "DeployModelFailed"),
        ("RollBack", "Failed"),
        ("ReleaseLockAfterFailure", "Succeeded"),
    )
    assert caught_states(events) == ["DeployModel", "RollBack"]


def test_the_cause_names_each_state_that_failed() -> None:
    state = {
        "error": {"Error": "Sandbox.Timedout", "Cause": "Task timed out after 60.00 seconds"},
        "rollback_error": {"Error": "RollbackError", "Cause": "endpoint x no longer exists"},
        "release_error": {"Error": "ThrottlingException", "Cause": "Rate exceeded"},
    }
    failure = describe_failure(state, ["DeployModel", "RollBack", "ReleaseLockAfterFailure"])
    assert failure == {
        "error": "RollbackFailed",
        "cause": "DeployModel failed: Task timed out after 60.00 seconds; then RollBack failed: "
        "endpoint x no longer exists; then ReleaseLockAfterFailure failed: Rate exceeded",
    }


@pytest.mark.parametrize(
    ("caught", "expected"),
    [
        # Step Functions' own and Lambda-service errors carry plain text.
        (
            {"Error": "States.Timeout", "Cause": ""},
            ("States.Timeout", "States.Timeout (no message)"),
        ),
        (
            {"Error": "Lambda.TooManyRequestsException", "Cause": "Rate exceeded"},
            ("Lambda.TooManyRequestsException", "Rate exceeded"),
        ),
        # A message that itself carries a traceback (e.g. a container's error body).
        (
            {"Error": "ModelError", "Cause": f"the image is truncated\n{TRACEBACK}"},
            ("ModelError", "the image is truncated"),
        ),
        # A task failure whose JSON names the real type.
        (
            {
                "Error": "States.TaskFailed",
                "Cause": json.dumps({"errorType": "KeyError", "errorMessage": "'run'"}),
            },
            ("KeyError", "'run'"),
        ),
    ],
)
def test_every_shape_of_error_reads_as_one_sentence(caught, expected) -> None:
    failure = describe_failure({"error": caught})
    assert (failure["error"], failure["cause"]) == expected


def test_a_failed_rollback_names_both_failures() -> None:
    failure = describe_failure(
        {
            "smoke": {"passed": False, "reason": "smoke-test accuracy 0.1 is below 0.7"},
            "rollback_error": {
                "Error": "RollbackError",
                "Cause": json.dumps(
                    {"errorMessage": "endpoint x no longer exists", "stackTrace": []}
                ),
            },
        }
    )
    assert failure == {
        "error": "RollbackFailed",
        "cause": "smoke-test accuracy 0.1 is below 0.7; then the rollback failed: "
        "endpoint x no longer exists",
    }


@pytest.mark.parametrize(
    ("action", "suffix"), [("restored", " (rolled back)"), ("untouched", " (nothing was deployed)")]
)
def test_a_failed_deploy_says_whether_anything_was_rolled_back(action: str, suffix: str) -> None:
    failure = describe_failure(
        {
            "error": {"Error": "QuotaExceededError", "Cause": "no ml.m5.large left"},
            "rollback": {"done": True, "action": action, "status": "InService"},
        }
    )
    assert failure == {"error": "QuotaExceededError", "cause": f"no ml.m5.large left{suffix}"}


def test_a_cause_is_bounded_and_single_line() -> None:
    failure = describe_failure({"error": {"Error": "E", "Cause": "word\n" * 1000}})
    assert len(failure["cause"]) <= CAUSE_MAX and "\n" not in failure["cause"]


def test_nothing_recorded_still_says_where_to_look() -> None:
    assert describe_failure({})["error"] == "PipelineFailed"
