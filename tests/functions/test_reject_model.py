"""RejectModel: a version whose deployment failed is recorded as Rejected, with the cause."""

from __future__ import annotations

import boto3
import pytest

from tests.conftest import AwsRecorder, load_event, load_handler
from tests.functions.pipeline_helpers import registry_as_on_aws
from tests.template_support import set_function_environment

FUNCTION = "RejectModelFunction"


def test_the_failed_version_is_rejected_with_the_cause(
    aws: AwsRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_function_environment(monkeypatch, FUNCTION)
    registry_as_on_aws(monkeypatch)
    sagemaker = boto3.client("sagemaker")
    sagemaker.create_model_package_group(ModelPackageGroupName="mlops-models")
    arn = sagemaker.create_model_package(
        ModelPackageGroupName="mlops-models",
        ModelApprovalStatus="Approved",
        InferenceSpecification={
            "Containers": [{"Image": "inference:1", "ModelDataUrl": "s3://b/m.tar.gz"}],
            "SupportedContentTypes": ["image/jpeg"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
    )["ModelPackageArn"]
    event = {**load_event("reject_model/failed.json"), "model_package_arn": arn}
    cause = event["failure"]["cause"]
    result = aws.invoke(load_handler("reject_model"), event)
    assert result == {"model_package_arn": arn, "approval_status": "Rejected"}
    package = sagemaker.describe_model_package(ModelPackageName=arn)
    assert package["ModelApprovalStatus"] == "Rejected"
    assert package["ApprovalDescription"] == f"EndpointDeploymentFailed: {cause}"
