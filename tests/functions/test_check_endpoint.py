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


def _with_alarms(alarms: list[str]) -> dict:
    return {**EVENT, "deployment": {**EVENT["deployment"], "alarms": alarms}}


def test_a_canary_taking_its_share_of_traffic_is_reported(aws: AwsRecorder) -> None:
    pending = {
        "EndpointConfigName": NEW,
        "StartTime": "2026-11-24T10:06:00Z",
        "ProductionVariants": [
            {
                "VariantName": "AllTraffic",
                "CurrentWeight": 0.5,
                "VariantStatus": [{"Status": "Baking", "StartTime": "2026-11-24T10:07:00Z"}],
            }
        ],
    }
    with stubbed("sagemaker") as sagemaker:
        sagemaker.add_response(
            "describe_endpoint",
            describe_endpoint_response(NAME, "Updating", OLD, PendingDeploymentSummary=pending),
        )
        result = aws.invoke(load_handler("check_endpoint"), EVENT)
    assert result["state"] == "canary"
    assert result["canary"] == {"variant_name": "AllTraffic", "stage": "Baking"}


def test_an_update_still_starting_its_new_fleet_is_pending(aws: AwsRecorder) -> None:
    pending = {
        "EndpointConfigName": NEW,
        "ProductionVariants": [
            {"VariantName": "AllTraffic", "CurrentWeight": 1.0, "VariantStatus": [
                {"Status": "Creating", "StartTime": "2026-11-24T10:07:00Z"}
            ]}
        ],
    }  # fmt: skip
    with stubbed("sagemaker") as sagemaker:
        sagemaker.add_response(
            "describe_endpoint",
            describe_endpoint_response(NAME, "Updating", OLD, PendingDeploymentSummary=pending),
        )
        result = aws.invoke(load_handler("check_endpoint"), EVENT)
    assert result["state"] == "pending"


def test_a_rollback_by_an_alarm_names_the_alarm(aws: AwsRecorder) -> None:
    import boto3

    cloudwatch = boto3.client("cloudwatch")
    for name in ("mlops-endpoint-5xx", "mlops-model-latency"):
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            Namespace="AWS/SageMaker",
            MetricName="Invocation5XXErrors",
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
        )
    cloudwatch.set_alarm_state(
        AlarmName="mlops-endpoint-5xx", StateValue="ALARM", StateReason="1 datapoint >= 1"
    )
    failure = "Deployment failed: alarm(s) in ALARM state; rolled back"
    with stubbed("sagemaker") as sagemaker:
        sagemaker.add_response(
            "describe_endpoint",
            describe_endpoint_response(NAME, "InService", OLD, FailureReason=failure),
        )
        result = aws.invoke(
            load_handler("check_endpoint"),
            _with_alarms(["mlops-endpoint-5xx", "mlops-model-latency"]),
        )
    assert result["state"] == "failed"
    assert result["alarms"] == ["mlops-endpoint-5xx"]
    assert result["reason"] == (
        f"endpoint {NAME} is serving {OLD} instead of {NEW}: rolled back by alarm "
        f"mlops-endpoint-5xx ({failure})"
    )
