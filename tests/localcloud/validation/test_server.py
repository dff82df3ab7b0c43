"""A local cloud's server refuses what AWS's servers refuse, with each service's error code
and message as botocore reads them (boto3 clients against the server the local cloud runs:
``localcloud.runtime.server.MotoServer``); finding 1 of issue 17 (the registry's metadata) among
them."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError

from localcloud.runtime.server import MotoServer
from mlops import registry
from tests.conftest import load_event
from tests.localcloud.iam_support import enforced_cloud
from tests.template_support import BUCKET

Client = Callable[..., BaseClient]
GROUP = "mlops-models"
# The gate's reason as RegisterModel wrote it before the fix: refused by AWS.
REASON = (
    "validation accuracy 0.84 reaches the required 0.7; test accuracy 0.9 against the live "
    "model's 0.88 on the same test split (margin 0.01)"
)
METADATA_PATTERN = r"([\p{L}\p{Z}\p{N}_.:\/=+\-@]*)${1,256}"


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    server = MotoServer(0)
    url = f"http://127.0.0.1:{server.port}"

    def make(service: str, **config: Any) -> BaseClient:
        return boto3.session.Session().client(
            service,
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"total_max_attempts": 1}, **config),
        )

    try:
        yield make
    finally:
        server.stop()


def _refused(call: Callable[..., Any], **params: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        call(**params)
    response = caught.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return response["Error"]


def _package(group: str) -> dict[str, Any]:
    run = copy.deepcopy(load_event("start_training/run.json")["run"])
    job = {
        "TrainingJobName": run["training"]["job_name"],
        "ModelArtifacts": {"S3ModelArtifacts": f"s3://{BUCKET}/models/job/output/model.tar.gz"},
        "HyperParameters": {
            "sagemaker_submit_directory": f'"s3://{BUCKET}/training-code/ab12/sourcedir.tar.gz"'
        },
        "metrics": {"valid_acc": 0.84, "test_acc": 0.9},
    }
    gate = {"passed": True, "reason": REASON, "champion": {"model_artifact": "s3://b/m.tar.gz"}}
    return registry.package_request(
        run,
        job,
        gate,
        group=group,
        status=registry.APPROVED,
        environment={"SAGEMAKER_PROGRAM": "inference.py"},
        metrics_uri=f"s3://{BUCKET}/models/registry/metrics.json",
        execution_arn="arn:aws:states:us-east-1:123456789012:execution:mlops-train-deploy:run-1",
        approval_mode="auto",
    )


def test_the_registry_metadata_is_accepted(client: Client) -> None:
    """Finding 1: every model that passed the gate failed RegisterModel on AWS."""
    sagemaker = client("sagemaker")
    sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
    request = _package(GROUP)
    arn = sagemaker.create_model_package(**request)["ModelPackageArn"]
    meta = sagemaker.describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"]
    assert meta["gate"] == (
        "validation accuracy 0.84 reaches the required 0.7 - test accuracy 0.9 against the "
        "live models 0.88 on the same test split - margin 0.01"
    )


def test_the_old_metadata_value_gets_aws_validation_exception(client: Client) -> None:
    sagemaker = client("sagemaker")
    request = _package(GROUP)
    request["CustomerMetadataProperties"]["gate"] = REASON
    request["ClientToken"] = "old-value"
    error = _refused(sagemaker.create_model_package, **request)
    assert error["Code"] == "ValidationException"
    assert error["Message"].startswith("1 validation error detected: Value '{")
    assert error["Message"].endswith(
        "' at 'customerMetadataProperties' failed to satisfy constraint: Map value must "
        f"satisfy constraint: [Member must satisfy regular expression pattern: {METADATA_PATTERN}]"
    )
    assert f"gate={REASON}" in error["Message"]


@pytest.mark.parametrize(
    ("service", "operation", "params", "code", "path"),
    [
        (
            "sagemaker",
            "describe_endpoint",
            {"EndpointName": "my_endpoint"},
            "ValidationException",
            "endpointName",
        ),
        (
            "stepfunctions",
            "list_executions",
            {
                "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:m",
                "maxResults": 1001,
            },
            "ValidationException",
            "maxResults",
        ),
        (
            "logs",
            "create_log_group",
            {"logGroupName": "my logs"},
            "ValidationException",
            "logGroupName",
        ),
        (
            "events",
            "put_rule",
            {"Name": "my rule", "ScheduleExpression": "rate(1 hour)"},
            "ValidationException",
            "name",
        ),
        (
            "application-autoscaling",
            "describe_scalable_targets",
            {"ServiceNamespace": "sagemakerx"},
            "ValidationException",
            "serviceNamespace",
        ),
        (
            "lambda",
            "get_function",
            {"FunctionName": "my function"},
            "ValidationException",
            "functionName",
        ),
        (
            "sagemaker-runtime",
            "invoke_endpoint",
            {"EndpointName": "my_endpoint", "Body": b"{}"},
            "ValidationError",
            "endpointName",
        ),
        ("iam", "get_role", {"RoleName": "my role"}, "ValidationError", "roleName"),
        (
            "iam",
            "tag_role",
            {"RoleName": "r", "Tags": [{"Key": "k" * 129, "Value": "v"}]},
            "ValidationError",
            "tags.1.member.key",
        ),
        (
            "sts",
            "assume_role",
            {"RoleArn": "arn:aws:iam::123456789012:role/r", "RoleSessionName": "my session"},
            "ValidationError",
            "roleSessionName",
        ),
        (
            "cloudwatch",
            "describe_alarms",
            {"AlarmNames": ["x" * 256]},
            "ValidationError",
            "alarmNames",
        ),
        (
            "cloudwatch",
            "put_metric_alarm",
            {
                "AlarmName": "a",
                "MetricName": "m",
                "Namespace": "n",
                "Statistic": "Median",
                "Period": 60,
                "EvaluationPeriods": 1,
                "Threshold": 1.0,
                "ComparisonOperator": "GreaterThanThreshold",
            },
            "ValidationError",
            "statistic",
        ),
        (
            "sns",
            "create_topic",
            {"Name": "t", "Tags": [{"Key": "k" * 129, "Value": "v"}]},
            "ValidationError",
            "tags.1.member.key",
        ),
        (
            "sqs",
            "create_queue",
            {"QueueName": "q", "Attributes": {"Retention": "60"}},
            "InvalidAttributeName",
            "attributes",
        ),
    ],
)
def test_each_service_answers_its_validation_error(
    client: Client, service: str, operation: str, params: dict[str, Any], code: str, path: str
) -> None:
    error = _refused(getattr(client(service), operation), **params)
    assert error["Code"] == code
    assert error["Message"].startswith("1 validation error detected: Value ")
    assert f" at '{path}' failed to satisfy constraint: Member must" in error["Message"] or (
        f" at '{path}' failed to satisfy constraint: Map keys must" in error["Message"]
    )


def test_s3_answers_invalid_argument(client: Client) -> None:
    s3 = client("s3")
    s3.create_bucket(Bucket="validated")
    s3.put_object(Bucket="validated", Key="k", Body=b"x")
    error = _refused(s3.get_object, Bucket="validated", Key="k", ChecksumMode="DISABLED")
    assert error["Code"] == "InvalidArgument"
    assert "Member must satisfy enum value set: [ENABLED]" in error["Message"]
    assert s3.get_object(Bucket="validated", Key="k", ChecksumMode="ENABLED")["Body"].read() == b"x"


def test_an_unsigned_request_is_validated_too(client: Client) -> None:
    sagemaker = client("sagemaker", signature_version=UNSIGNED)
    error = _refused(sagemaker.describe_endpoint, EndpointName="my_endpoint")
    assert error["Code"] == "ValidationException"


def test_validation_comes_after_the_iam_check() -> None:
    """As on AWS: a caller not allowed the call gets AccessDenied whatever its parameters;
    an allowed one gets the validation error."""
    with enforced_cloud() as cloud:
        request = {"ModelPackageGroupName": f"{cloud.stack.name}-models", "MaxResults": 1000}
        allowed = cloud.client("RegisterModelFunction", "sagemaker")
        error = _refused(allowed.list_model_packages, **request)
        assert error["Code"] == "ValidationException"
        assert "Value '1000' at 'maxResults' failed to satisfy constraint" in error["Message"]
        denied = cloud.client("QualityGateFunction", "sagemaker")
        error = _refused(denied.list_model_packages, **request)
        assert error["Code"] == "AccessDeniedException"
