"""CheckEndpoint: InService is success only on the new config (SageMaker's silent rollback)."""

from __future__ import annotations

import pytest

from tests.conftest import AwsRecorder, load_event, load_handler
from tests.functions.pipeline_helpers import describe_endpoint_response, stubbed

FUNCTION = "CheckEndpointFunction"
EVENT = load_event("check_endpoint/updated.json")
NEW = EVENT["deployment"]["endpoint_config_name"]
OLD = EVENT["deployment"]["previous_endpoint_config_name"]
NAME = EVENT["deployment"]["endpoint_name"]


@pytest.mark.parametrize(
    ("status", "config", "failure", "state", "reason"),
    [
        ("InService", NEW, None, "in_service", None),
        ("Updating", OLD, None, "pending", None),
        ("Creating", None, None, "pending", None),
        (
            "InService",
            OLD,
            "The primary container did not pass the ping health check.",
            "failed",
            f"endpoint {NAME} is serving {OLD} instead of {NEW}: The primary container did not",
        ),
        (
            "Failed",
            NEW,
            "Image not found.",
            "failed",
            f"endpoint {NAME} is Failed: Image not found.",
        ),
        ("UpdateRollbackFailed", NEW, None, "failed", f"endpoint {NAME} is UpdateRollbackFailed"),
    ],
)
def test_state(aws: AwsRecorder, status, config, failure, state, reason) -> None:
    extra = {"FailureReason": failure} if failure else {}
    with stubbed("sagemaker") as sagemaker:
        sagemaker.add_response(
            "describe_endpoint",
            describe_endpoint_response(NAME, status, config, **extra),
            {"EndpointName": NAME},
        )
        result = aws.invoke(load_handler("check_endpoint"), EVENT)
    assert (result["state"], result["status"]) == (state, status)
    if reason is None:
        assert state == "pending" or result["reason"] is None
    else:
        assert result["reason"].startswith(reason)


def test_a_vanished_endpoint_has_failed(aws: AwsRecorder) -> None:
    result = aws.invoke(load_handler("check_endpoint"), load_event("check_endpoint/created.json"))
    assert result == {
        "state": "failed",
        "status": None,
        "endpoint_config_name": None,
        "reason": f"endpoint {NAME} no longer exists",
    }


def test_aws_throttling_surfaces_as_the_retried_error_name(aws: AwsRecorder) -> None:
    with stubbed("sagemaker") as sagemaker:
        sagemaker.add_client_error("describe_endpoint", "ThrottlingException", "Rate exceeded")
        with pytest.raises(Exception, match="AWS throttled the call") as raised:
            aws.invoke(load_handler("check_endpoint"), EVENT)
    assert type(raised.value).__name__ == "AwsThrottlingError"
