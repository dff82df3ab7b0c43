"""RegisterModel: every trained model becomes a version of the group, with its verdict."""

from __future__ import annotations

import copy
import json
from types import ModuleType
from typing import Any

import boto3
import pytest

from mlops import registry
from tests.conftest import AwsRecorder, load_event, load_handler
from tests.functions.pipeline_helpers import registry_as_on_aws
from tests.template_support import BUCKET, SAGEMAKER_ROLE_ARN, set_function_environment

FUNCTION = "RegisterModelFunction"
RUN = load_event("start_training/run.json")["run"]
JOB = RUN["training"]["job_name"]
GROUP = "mlops-models"
EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:mlops-train-deploy:run-1"
PASSED = {
    "passed": True,
    "reason": "validation accuracy 0.84 reaches the required 0.7; no live model to compare with",
    "metric": "valid_acc",
    "value": 0.84,
    "threshold": 0.7,
    "champion": {"model_artifact": None, "test_acc": None, "compared": False},
}


@pytest.fixture
def app(aws: AwsRecorder, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    set_function_environment(monkeypatch, FUNCTION)
    registry_as_on_aws(monkeypatch)
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    sagemaker = boto3.client("sagemaker")
    sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
    sagemaker.create_training_job(
        TrainingJobName=JOB,
        RoleArn=SAGEMAKER_ROLE_ARN,
        AlgorithmSpecification={"TrainingImage": "training:1", "TrainingInputMode": "File"},
        HyperParameters={
            "sagemaker_submit_directory": json.dumps(
                f"s3://{BUCKET}/training-code/abc123/sourcedir.tar.gz"
            )
        },
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/models/"},
        ResourceConfig={"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
    )
    return load_handler("register_model")


def event(mode: str = "auto", gate: dict[str, Any] | None = None) -> dict[str, Any]:
    sample = copy.deepcopy(load_event("register_model/passed.json"))
    sample["run"]["registry"] = {"group": GROUP, "approval_mode": mode}
    return {**sample, "gate": gate or PASSED, "training_job_name": JOB, "execution_arn": EXECUTION}


@pytest.mark.parametrize(
    ("mode", "passed", "status"),
    [
        ("auto", True, "Approved"),
        ("manual", True, "PendingManualApproval"),
        ("auto", False, "Rejected"),
        ("manual", False, "Rejected"),
    ],
)
def test_the_version_records_the_verdict(app, aws, mode: str, passed: bool, status: str) -> None:
    result = aws.invoke(app, event(mode, {**PASSED, "passed": passed}))
    assert result["approval_status"] == status
    package = boto3.client("sagemaker").describe_model_package(
        ModelPackageName=result["model_package_arn"]
    )
    assert package["ModelApprovalStatus"] == status
    assert package["ModelPackageGroupName"] == GROUP
    if status == "PendingManualApproval":
        assert "update-model-package" in result["message"]
        assert "python -m localcloud approve" in result["message"]


def test_the_version_is_traceable_and_names_what_serves(app, aws) -> None:
    result = aws.invoke(app, event())
    sagemaker = boto3.client("sagemaker")
    package = sagemaker.describe_model_package(ModelPackageName=result["model_package_arn"])
    meta = package["CustomerMetadataProperties"]
    assert meta["run_id"] == RUN["run_id"]
    assert meta["dataset_uri"] == RUN["dataset"]["uri"]
    assert meta["dataset_version"] == RUN["dataset"]["version"]
    assert meta["training_job"] == JOB
    assert meta["execution"] == EXECUTION
    assert meta["code_hash"] == "abc123"
    assert meta["approval_mode"] == "auto"
    assert all(len(v) <= 256 for v in meta.values())
    container = package["InferenceSpecification"]["Containers"][0]
    assert container["Image"] == RUN["model"]["image"]
    assert container["ModelDataUrl"] == f"s3://{BUCKET}/models/{JOB}/output/model.tar.gz"
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    statistics = package["ModelMetrics"]["ModelQuality"]["Statistics"]
    key = statistics["S3Uri"].split("/", 3)[3]
    document = json.loads(boto3.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert document["gate"]["passed"] is True and document["training_job"] == JOB


def test_a_retried_registration_finds_its_version(app, aws) -> None:
    first = aws.invoke(app, event())
    second = aws.invoke(app, event())
    assert (first["created"], second["created"]) == (True, False)
    assert second["model_package_arn"] == first["model_package_arn"]
    listed = boto3.client("sagemaker").list_model_packages(ModelPackageGroupName=GROUP)
    assert len(listed["ModelPackageSummaryList"]) == 1


def test_without_a_group_the_error_says_so(app, aws) -> None:
    bad = event()
    bad["run"]["registry"]["group"] = ""
    with pytest.raises(Exception, match="MODEL_PACKAGE_GROUP is not set") as raised:
        aws.invoke(app, bad)
    assert type(raised.value).__name__ == "ConfigurationError"


RERUN = "arn:aws:states:us-east-1:123456789012:execution:mlops-train-deploy:run-2"


def rerun(mode: str = "auto", gate: dict[str, Any] | None = None) -> dict[str, Any]:
    """The same trigger again (a manual StartExecution, or EventBridge delivering twice)."""
    return {**event(mode, gate), "execution_arn": RERUN}


def versions() -> list[dict[str, Any]]:
    sagemaker = boto3.client("sagemaker")
    listed = sagemaker.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"]
    return [sagemaker.describe_model_package(ModelPackageName=v["ModelPackageArn"]) for v in listed]


def test_a_rerun_after_a_failed_deployment_registers_a_new_version(app, aws) -> None:
    first = aws.invoke(app, event())
    # The deployment failed: RejectModel recorded it.
    registry.reject(boto3.client("sagemaker"), first["model_package_arn"], "SmokeTestFailed")
    second = aws.invoke(app, rerun())
    assert second["created"] is True
    assert second["approval_status"] == "Approved"
    assert second["model_package_arn"] != first["model_package_arn"]
    statuses = {v["ModelPackageArn"]: v["ModelApprovalStatus"] for v in versions()}
    assert statuses == {
        first["model_package_arn"]: "Rejected",
        second["model_package_arn"]: "Approved",
    }


def test_a_rerun_in_manual_mode_never_reuses_the_pipelines_own_approval(app, aws) -> None:
    first = aws.invoke(app, event("auto"))
    second = aws.invoke(app, rerun("manual"))
    assert second["created"] is True
    assert second["approval_status"] == "PendingManualApproval"
    assert second["model_package_arn"] != first["model_package_arn"]


def test_a_rerun_in_manual_mode_keeps_a_persons_approval(app, aws) -> None:
    first = aws.invoke(app, event("manual"))
    boto3.client("sagemaker").update_model_package(
        ModelPackageArn=first["model_package_arn"], ModelApprovalStatus="Approved"
    )
    second = aws.invoke(app, rerun("manual"))
    assert (second["created"], second["approval_status"]) == (False, "Approved")
    assert second["model_package_arn"] == first["model_package_arn"]


def test_a_rerun_whose_gate_fails_never_returns_an_approved_version(app, aws) -> None:
    first = aws.invoke(app, event("auto"))
    second = aws.invoke(app, rerun("auto", {**PASSED, "passed": False}))
    assert second["approval_status"] == "Rejected"
    assert second["model_package_arn"] != first["model_package_arn"]
    statuses = {v["ModelPackageArn"]: v["ModelApprovalStatus"] for v in versions()}
    assert statuses[first["model_package_arn"]] == "Approved"  # untouched: it may be serving
