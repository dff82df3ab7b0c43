"""The local registry: CreateModel from an approved package serves it, approval events reach
EventBridge, and an approval keeps the version's metadata (moto alone does none of this)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.sagemaker.models import SageMakerModelBackend

from localcloud import model_registry, trigger

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/sagemaker"
ARTIFACT = "s3://pipeline-data/models/job/output/model.tar.gz"


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    for name in ("create_model", "create_model_package", "update_model_package"):
        monkeypatch.setattr(SageMakerModelBackend, name, getattr(SageMakerModelBackend, name))
    delivered: list[dict[str, Any]] = []

    def deliver(event: dict[str, Any], rules: Any, start: Any) -> list[str]:
        delivered.append(event)
        return []

    monkeypatch.setattr(trigger, "deliver", deliver)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        model_registry.install()
        yield delivered


def register(sagemaker: Any, status: str) -> str:
    sagemaker.create_model_package_group(ModelPackageGroupName="stack-models")
    return sagemaker.create_model_package(
        ModelPackageGroupName="stack-models",
        ModelApprovalStatus=status,
        InferenceSpecification={
            "Containers": [
                {"Image": "inference:1", "ModelDataUrl": ARTIFACT, "Environment": {"A": "1"}}
            ],
            "SupportedContentTypes": ["image/jpeg"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        CustomerMetadataProperties={"run_id": "r1", "approval_mode": "manual"},
    )["ModelPackageArn"]


def test_a_pending_version_cannot_be_deployed_and_an_approved_one_is_served(events) -> None:
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    arn = register(sagemaker, "PendingManualApproval")
    request = {"ExecutionRoleArn": ROLE, "Containers": [{"ModelPackageName": arn}]}
    with pytest.raises(ClientError, match="only an Approved model package can be deployed"):
        sagemaker.create_model(ModelName="m1", **request)

    sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")
    sagemaker.create_model(ModelName="m2", **request)
    container = sagemaker.describe_model(ModelName="m2")["Containers"][0]
    assert container == {
        "ModelPackageName": arn,
        "Image": "inference:1",
        "ModelDataUrl": ARTIFACT,
        "Environment": {"A": "1"},
    }


def test_creating_and_approving_a_version_send_its_state_change_events(events) -> None:
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    arn = register(sagemaker, "PendingManualApproval")
    sagemaker.update_model_package(
        ModelPackageArn=arn, ModelApprovalStatus="Approved", ApprovalDescription="looks good"
    )
    sagemaker.update_model_package(ModelPackageArn=arn, ApprovalDescription="no status change")
    assert [e["detail"]["ModelApprovalStatus"] for e in events] == [
        "PendingManualApproval",
        "Approved",
    ]
    approved = events[-1]
    assert approved["source"] == "aws.sagemaker"
    assert approved["detail-type"] == "SageMaker Model Package State Change"
    assert approved["detail"]["ModelPackageArn"] == arn
    assert approved["detail"]["ModelPackageGroupName"] == "stack-models"
    # SageMaker keeps what an update does not name; moto alone dropped it.
    package = sagemaker.describe_model_package(ModelPackageName=arn)
    assert package["CustomerMetadataProperties"] == {"run_id": "r1", "approval_mode": "manual"}
    assert package["ApprovalDescription"] == "no status change"
