"""StartTraining: a reproducible sourcedir in S3 and the exact CreateTrainingJob request."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest

from mlops.sourcedir import build_sourcedir
from tests.conftest import AwsRecorder, load_event, load_handler
from tests.functions.pipeline_helpers import (
    METRIC_DEFINITIONS,
    describe_endpoint_response,
    endpoint_config_response,
    stubbed,
    write_training_code,
)
from tests.template_support import BUCKET, SAGEMAKER_ROLE_ARN, set_function_environment

FUNCTION = "StartTrainingFunction"
JOB_ARN = "arn:aws:sagemaker:us-east-1:123456789012:training-job/{}"
ENDPOINT = "image-classifier"
OLD = "image-classifier-0123456789abcdef"
PACKAGE = "arn:aws:sagemaker:us-east-1:123456789012:model-package/mlops-models/2"


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    return write_training_code(tmp_path / "opt")


@pytest.fixture
def app(aws: AwsRecorder, monkeypatch: pytest.MonkeyPatch, code_dir: Path) -> ModuleType:
    set_function_environment(monkeypatch, FUNCTION)
    monkeypatch.setenv("TRAINING_CODE_DIR", str(code_dir))
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return load_handler("start_training")


def uploaded(body: bytes = b"data set v1") -> dict[str, Any]:
    """The start_training event, its run's data set uploaded to the (versioned) bucket."""
    event = load_event("start_training/run.json")
    dataset = event["run"]["dataset"]
    put = boto3.client("s3").put_object(Bucket=BUCKET, Key=dataset["key"], Body=body)
    dataset.update(
        version_id=put["VersionId"], version=put["VersionId"], etag=put["ETag"].strip('"')
    )
    dataset["size"] = len(body)
    return event


def no_champion(sagemaker: Any) -> None:
    """The endpoint does not exist yet: the first model has no champion."""
    sagemaker.add_client_error(
        "describe_endpoint", "ValidationException", 'Could not find endpoint "image-classifier".'
    )


def pinned(run: dict[str, Any]) -> str:
    return f"training-input/{run['run_id']}/dogImages.zip"


def expected_request(run: dict[str, Any], submit_dir: str, **changes: Any) -> dict[str, Any]:
    job = run["training"]["job_name"]
    hyper = {
        "arch": '"resnet50"',
        "weights": '"imagenet"',
        "fine-tune": '"head"',
        "image-size": "224",
        "epochs": "10",
        "batch-size": "32",
        "learning-rate": "0.001",
        "early-stopping-patience": "3",
        "sagemaker_program": '"train.py"',
        "sagemaker_submit_directory": json.dumps(submit_dir),
        "sagemaker_region": '"us-east-1"',
        "sagemaker_job_name": json.dumps(job),
        "sagemaker_container_log_level": "20",
        "sagemaker_torch_distributed_enabled": "true",
    }
    request = {
        "TrainingJobName": job,
        "RoleArn": SAGEMAKER_ROLE_ARN,
        "AlgorithmSpecification": {
            "TrainingImage": run["training"]["image"],
            "TrainingInputMode": "File",
            "MetricDefinitions": METRIC_DEFINITIONS,
            "EnableSageMakerMetricsTimeSeries": True,
        },
        "HyperParameters": hyper,
        "InputDataConfig": [
            {
                "ChannelName": "training",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": f"s3://{BUCKET}/{pinned(run)}",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/models/"},
        "ResourceConfig": {
            "InstanceType": "ml.m5.xlarge",
            "InstanceCount": 2,
            "VolumeSizeInGB": 30,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 21600},
        "Environment": {"PYTHONUNBUFFERED": "1"},
        "Tags": [
            {"Key": "mlops:run-id", "Value": run["run_id"]},
            {
                "Key": "mlops:execution",
                "Value": load_event("start_training/run.json")["execution_arn"],
            },
            {"Key": "mlops:dataset", "Value": f"s3://{BUCKET}/datasets/dogImages.zip"},
            {"Key": "mlops:dataset-version", "Value": run["dataset"]["version"]},
        ],
    }
    request.update(changes)
    return request


def test_sourcedir_is_reproducible_and_holds_only_the_training_code(code_dir: Path) -> None:
    first, second = build_sourcedir(code_dir), build_sourcedir(code_dir)
    assert first.archive == second.archive and first.sha256 == second.sha256
    with tarfile.open(fileobj=io.BytesIO(first.archive), mode="r:gz") as archive:
        members = archive.getmembers()
    assert [m.name for m in members] == [
        "imgcls/__init__.py",
        "imgcls/model.py",
        "inference.py",
        "metric_definitions.json",
        "train.py",
    ]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.mode) for m in members} == {(0, 0, 0, "", 0o644)}
    (code_dir / "train.py").write_text("print('changed')\n")
    assert build_sourcedir(code_dir).sha256 != first.sha256


def test_starts_the_job_as_script_mode_with_torchrun_across_hosts(app, aws, code_dir) -> None:
    event = uploaded()
    run = event["run"]
    sha = build_sourcedir(code_dir).sha256
    submit_dir = f"s3://{BUCKET}/training-code/{sha}/sourcedir.tar.gz"
    with stubbed("sagemaker") as sagemaker:
        no_champion(sagemaker)
        sagemaker.add_response(
            "create_training_job",
            {"TrainingJobArn": JOB_ARN.format(run["training"]["job_name"])},
            expected_request(run, submit_dir),
        )
        result = aws.invoke(app, event)
    assert result == {
        "training_job_name": run["training"]["job_name"],
        "training_job_arn": JOB_ARN.format(run["training"]["job_name"]),
        "tuning_job_name": None,
        "adopted": False,
        "status": "InProgress",
        "next_poll_seconds": event["poll_seconds"],
        "submit_directory": submit_dir,
    }
    body = boto3.client("s3").get_object(Bucket=BUCKET, Key=submit_dir.split("/", 3)[3])["Body"]
    assert body.read() == build_sourcedir(code_dir).archive


def test_an_existing_job_is_adopted_and_the_code_uploaded_once(app, aws) -> None:
    event = uploaded()
    job = event["run"]["training"]["job_name"]
    with stubbed("sagemaker") as sagemaker:
        no_champion(sagemaker)
        sagemaker.add_response("create_training_job", {"TrainingJobArn": JOB_ARN.format(job)})
        no_champion(sagemaker)
        sagemaker.add_client_error(
            "create_training_job",
            "ValidationException",
            "Training job names must be unique within an AWS account and region, and a "
            "training job with this name already exists",
        )
        sagemaker.add_response(
            "describe_training_job",
            {
                "TrainingJobName": job,
                "TrainingJobArn": JOB_ARN.format(job),
                "TrainingJobStatus": "InProgress",
                "SecondaryStatus": "Training",
                "AlgorithmSpecification": {"TrainingInputMode": "File"},
                "ModelArtifacts": {"S3ModelArtifacts": ""},
                "ResourceConfig": {"VolumeSizeInGB": 30},
                "StoppingCondition": {},
                "CreationTime": "2026-11-24T10:00:00Z",
            },
            {"TrainingJobName": job},
        )
        first = aws.invoke(app, event)
        second = aws.invoke(app, event)
    assert (first["adopted"], second["adopted"]) == (False, True)
    assert second["training_job_arn"] == JOB_ARN.format(job)
    assert aws.operations().count("PutObject") == 1  # the code, once
    assert aws.operations().count("CopyObject") == 2  # the data set, for each attempt


def described(job: str, status: str) -> dict[str, Any]:
    return {
        "TrainingJobName": job,
        "TrainingJobArn": JOB_ARN.format(job),
        "TrainingJobStatus": status,
        "SecondaryStatus": status,
        "AlgorithmSpecification": {"TrainingInputMode": "File"},
        "ModelArtifacts": {"S3ModelArtifacts": ""},
        "ResourceConfig": {"VolumeSizeInGB": 30},
        "StoppingCondition": {},
        "CreationTime": "2026-11-24T10:00:00Z",
    }


@pytest.mark.parametrize("status", ["Failed", "Stopped"])
def test_a_failed_or_stopped_job_is_trained_again_under_a_new_name(app, aws, status) -> None:
    event = uploaded()
    job = event["run"]["training"]["job_name"]
    exists = "a training job with this name already exists"
    with stubbed("sagemaker") as sagemaker:
        no_champion(sagemaker)
        sagemaker.add_client_error("create_training_job", "ValidationException", exists)
        sagemaker.add_response("describe_training_job", described(job, status))
        sagemaker.add_response("create_training_job", {"TrainingJobArn": JOB_ARN.format("x")})
        result = aws.invoke(app, event)
    assert result["adopted"] is False
    assert result["training_job_name"] != job
    assert result["training_job_name"].startswith(event["run"]["endpoint"]["endpoint_name"])


def test_a_run_stops_retrying_after_its_last_attempt(app, aws) -> None:
    event = uploaded()
    exists = "a training job with this name already exists"
    with stubbed("sagemaker") as sagemaker:
        no_champion(sagemaker)
        for _ in range(5):
            sagemaker.add_client_error("create_training_job", "ValidationException", exists)
            sagemaker.add_response("describe_training_job", described("x", "Failed"))
        with pytest.raises(Exception, match="failed or was stopped 5 times") as raised:
            aws.invoke(app, event)
    assert type(raised.value).__name__ == "TrainingRetriesExhausted"


def test_each_run_trains_the_exact_version_that_started_it(app, aws) -> None:
    # Two quick uploads to one key: the first run still trains the first upload's bytes.
    first = uploaded(b"first upload")
    second = uploaded(b"second upload")
    s3 = boto3.client("s3")
    for event in (first, second):
        event["run"]["run_id"] = event["run"]["dataset"]["version_id"][:16].lower()
        with stubbed("sagemaker") as sagemaker:
            no_champion(sagemaker)
            sagemaker.add_response("create_training_job", {"TrainingJobArn": JOB_ARN.format("x")})
            aws.invoke(app, event)
    bodies = [
        s3.get_object(Bucket=BUCKET, Key=pinned(e["run"]))["Body"].read() for e in (first, second)
    ]
    assert bodies == [b"first upload", b"second upload"]


def test_a_data_set_replaced_in_an_unversioned_bucket_is_not_trained(app, aws) -> None:
    event = uploaded(b"planned")
    event["run"]["dataset"]["version_id"] = None
    boto3.client("s3").put_object(Bucket=BUCKET, Key="datasets/dogImages.zip", Body=b"newer")
    with pytest.raises(Exception, match="was replaced after this run was planned") as raised:
        aws.invoke(app, event)
    assert type(raised.value).__name__ == "DatasetChangedError"


def test_one_host_spot_training_checkpoints_and_waits_for_capacity(app, aws, code_dir) -> None:
    event = uploaded()
    run = event["run"]
    run["training"].update(instance_count=1, spot=True)
    sha = build_sourcedir(code_dir).sha256
    expected = expected_request(run, f"s3://{BUCKET}/training-code/{sha}/sourcedir.tar.gz")
    del expected["HyperParameters"]["sagemaker_torch_distributed_enabled"]
    expected["ResourceConfig"]["InstanceCount"] = 1
    expected["StoppingCondition"]["MaxWaitTimeInSeconds"] = 43200
    expected["EnableManagedSpotTraining"] = True
    job = run["training"]["job_name"]
    expected["CheckpointConfig"] = {"S3Uri": f"s3://{BUCKET}/checkpoints/{job}/"}
    with stubbed("sagemaker") as sagemaker:
        no_champion(sagemaker)
        sagemaker.add_response(
            "create_training_job", {"TrainingJobArn": JOB_ARN.format(job)}, expected
        )
        aws.invoke(app, event)


def test_the_live_model_is_given_to_the_job_as_its_champion(app, aws, code_dir) -> None:
    event = uploaded()
    run = event["run"]
    sha = build_sourcedir(code_dir).sha256
    expected = expected_request(run, f"s3://{BUCKET}/training-code/{sha}/sourcedir.tar.gz")
    live = f"s3://{BUCKET}/models/image-classifier-old/output/model.tar.gz"
    expected["InputDataConfig"].append(
        {
            "ChannelName": "champion",
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": live,
                    "S3DataDistributionType": "FullyReplicated",
                }
            },
        }
    )
    with stubbed("sagemaker") as sagemaker:
        sagemaker.add_response(
            "describe_endpoint", describe_endpoint_response(ENDPOINT, "InService", OLD)
        )
        sagemaker.add_response(
            "describe_endpoint_config", endpoint_config_response(OLD, "ml.m5.large")
        )
        sagemaker.add_response(
            "describe_model",
            {
                "ModelName": OLD,
                "ModelArn": f"arn:aws:sagemaker:us-east-1:123456789012:model/{OLD}",
                "CreationTime": "2026-11-24T10:00:00Z",
                "Containers": [{"ModelPackageName": PACKAGE}],
            },
            {"ModelName": OLD},
        )
        sagemaker.add_response(
            "describe_model_package",
            {
                "ModelPackageName": "mlops-models",
                "ModelPackageArn": PACKAGE,
                "CreationTime": "2026-11-24T10:00:00Z",
                "ModelPackageStatus": "Completed",
                "ModelPackageStatusDetails": {"ValidationStatuses": []},
                "InferenceSpecification": {
                    "Containers": [{"Image": "inference:1", "ModelDataUrl": live}],
                    "SupportedContentTypes": ["image/jpeg"],
                    "SupportedResponseMIMETypes": ["application/json"],
                },
            },
            {"ModelPackageName": PACKAGE},
        )
        sagemaker.add_response(
            "create_training_job", {"TrainingJobArn": JOB_ARN.format("x")}, expected
        )
        aws.invoke(app, event)


def test_missing_training_code_is_a_configuration_error(app, aws, code_dir: Path) -> None:
    (code_dir / "metric_definitions.json").unlink()
    with pytest.raises(Exception, match=r"lacks metric_definitions\.json") as raised:
        aws.invoke(app, load_event("start_training/run.json"))
    assert type(raised.value).__name__ == "ConfigurationError"


def test_a_copy_in_parts_that_fails_aborts_its_upload(
    app, aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Over CopyObject's 5 GiB the copy goes in parts; one refused mid-way aborts the upload
    # (the function's role needs s3:AbortMultipartUpload: the teardown checks every call).
    import mlops.s3

    monkeypatch.setattr(mlops.s3, "COPY_LIMIT", 4)
    monkeypatch.setattr(mlops.s3, "COPY_PART", 8)
    event = uploaded(b"a data set of several parts")
    dataset = event["run"]["dataset"]
    s3 = boto3.client("s3")
    s3.delete_object(Bucket=BUCKET, Key=dataset["key"], VersionId=dataset["version_id"])
    with pytest.raises(Exception, match="UploadPartCopy"):
        aws.invoke(app, event)
    assert "AbortMultipartUpload" in aws.operations()
    assert not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")
