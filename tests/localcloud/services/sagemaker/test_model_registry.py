"""The local registry: CreateModel from an approved package serves it, approval events reach
EventBridge, and an approval keeps the version's metadata (moto alone does none of this)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.sagemaker.models import SageMakerModelBackend

from localcloud.cli import model_version_builder
from localcloud.services.events import s3_events
from localcloud.services.sagemaker import model_registry
from mlops import registry
from tests.data_helpers import tar_gz
from tests.template_support import resolve, template

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

    monkeypatch.setattr(s3_events, "deliver", deliver)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        model_registry.install()
        yield delivered


def register(
    sagemaker: Any, status: str, metadata: dict[str, str] | None = None, group_exists: bool = False
) -> str:
    if not group_exists:
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
        MetadataProperties={"GeneratedBy": "execution-1"},
        CustomerMetadataProperties={"run_id": "r1", "approval_mode": "manual", **(metadata or {})},
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


def approval_rule_matches(event: dict[str, Any]) -> bool:
    """Whether the template's ModelApproved rule (deploy-only runs) matches the event."""
    events = template()["Resources"]["TrainDeployStateMachine"]["Properties"]["Events"]
    pattern = resolve(events["ModelApproved"]["Properties"]["Pattern"], {"AWS::StackName": "stack"})
    return s3_events.matches(pattern, event)


def test_only_a_persons_approval_matches_the_approval_rule(events) -> None:
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    # ApprovalMode=auto: the pipeline registers the version Approved, marked as its own.
    own = register(sagemaker, "Approved", {"approved_by": "pipeline"})
    assert events[-1]["detail"]["ModelApprovalStatus"] == "Approved"
    assert events[-1]["detail"]["MetadataProperties"] == {"GeneratedBy": "execution-1"}
    assert not approval_rule_matches(events[-1])  # one upload, one run
    # Its deployment failed (RejectModel), then a person approves it again: that deploys.
    registry.reject(sagemaker, own, "SmokeTestFailed: accuracy 0.1")
    assert not approval_rule_matches(events[-1])
    sagemaker.update_model_package(ModelPackageArn=own, ModelApprovalStatus="Approved")
    assert approval_rule_matches(events[-1])
    # ApprovalMode=manual: a person approves the pending version.
    pending = register(sagemaker, "PendingManualApproval", group_exists=True)
    sagemaker.update_model_package(ModelPackageArn=pending, ModelApprovalStatus="Approved")
    assert events[-1]["detail"]["ModelPackageArn"] == pending
    assert approval_rule_matches(events[-1])


class _Conn:
    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION)


def test_a_persons_approval_with_the_approve_command_is_theirs(events) -> None:
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    own = register(sagemaker, "Approved", {"approved_by": "pipeline"})
    # A person rejected the pipeline's approval, then approves the version again.
    sagemaker.update_model_package(ModelPackageArn=own, ModelApprovalStatus="Rejected")
    model_version_builder.approve(_Conn(), own, "approved again by a person")
    assert events[-1]["detail"]["ModelApprovalStatus"] == "Approved"
    assert approval_rule_matches(events[-1])


class HeldTimer:
    """threading.Timer that runs its function only when the test says so."""

    held: list[HeldTimer] = []

    def __init__(self, seconds: float, function: Any) -> None:
        self.seconds, self.function, self.daemon = seconds, function, False
        HeldTimer.held.append(self)

    def start(self) -> None:
        pass


def test_a_new_version_is_in_progress_until_sagemaker_has_validated_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # CreateModelPackage returns before the version is usable: DeployModel must wait.
    for name in ("create_model", "create_model_package", "update_model_package"):
        monkeypatch.setattr(SageMakerModelBackend, name, getattr(SageMakerModelBackend, name))
    monkeypatch.setattr(s3_events, "deliver", lambda event, rules, start: [])
    monkeypatch.setattr(model_registry.threading, "Timer", HeldTimer)
    monkeypatch.setattr(HeldTimer, "held", [])
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        model_registry.install(validation_seconds=0.5)
        sagemaker = boto3.client("sagemaker", region_name=REGION)
        arn = register(sagemaker, "Approved")
        described = sagemaker.describe_model_package(ModelPackageName=arn)
        assert described["ModelPackageStatus"] == "InProgress"
        model = {
            "ModelName": "from-package",
            "ExecutionRoleArn": ROLE,
            "Containers": [{"ModelPackageName": arn}],
        }
        with pytest.raises(ClientError, match="is InProgress: SageMaker is still validating"):
            sagemaker.create_model(**model)
        [timer] = HeldTimer.held
        assert (timer.seconds, timer.daemon) == (0.5, True)
        timer.function()  # validation done
        described = sagemaker.describe_model_package(ModelPackageName=arn)
        assert described["ModelPackageStatus"] == "Completed"
        sagemaker.create_model(**model)


def test_a_repackaged_candidate_of_the_pipelines_version_waits_for_a_person(events) -> None:
    # The demo's candidate copies a version the pipeline approved itself: not that approval.
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="pipeline-data")
    s3.put_object(
        Bucket="pipeline-data",
        Key="models/job/output/model.tar.gz",
        Body=tar_gz({"model.pt": b"w", "code/inference.py": b"old = 1\n"}),
    )
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    own = register(sagemaker, "Approved", {"approved_by": "pipeline"})
    copy = model_version_builder.repackage(
        _Conn(), own, "new = 2\n", "jpeg-only", "decodes only JPEG"
    )
    package = sagemaker.describe_model_package(ModelPackageName=copy)
    assert "approved_by" not in package["CustomerMetadataProperties"]
    sagemaker.update_model_package(ModelPackageArn=copy, ModelApprovalStatus="Approved")
    assert approval_rule_matches(events[-1])
