"""DescribeFailure: one readable sentence per failure, whatever shape the error came in."""

from __future__ import annotations

import json

import pytest

from mlops.failure import CAUSE_MAX, describe_failure
from tests.conftest import load_event, load_handler

TRACEBACK = 'Traceback (most recent call last):\n  File "/var/task/app.py", line 3, in f\nKeyError'


def test_a_lambda_error_becomes_its_message_and_type(aws) -> None:
    failure = aws.invoke(
        load_handler("describe_failure"), load_event("describe_failure/lambda_error.json")
    )
    assert failure == {
        "error": "ConfigurationError",
        "cause": "start_training: environment variable DATA_BUCKET is not set",
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
