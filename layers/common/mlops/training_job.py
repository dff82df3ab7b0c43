"""Start a SageMaker training job for a run (or adopt the one already started) and read it back.

The job runs train.py in SageMaker script mode on the PyTorch training container, the
way the SageMaker Python SDK would start it: hyperparameters JSON-encoded, the code as
``sourcedir.tar.gz`` in S3, torchrun across hosts when there is more than one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from mlops.naming import resource_tags
from mlops.s3 import put_if_absent, s3_uri
from mlops.sourcedir import ENTRY_POINT, build_sourcedir

CHANNEL = "training"
CODE_PREFIX = "training-code"
MODELS_PREFIX = "models"
CHECKPOINTS_PREFIX = "checkpoints"
TERMINAL_FAILURES = frozenset({"Failed", "Stopped"})


def upload_training_code(s3: Any, bucket: str, code_dir: Path) -> str:
    """Upload sourcedir.tar.gz under its content hash (once); its S3 URI."""
    source = build_sourcedir(code_dir)
    key = f"{CODE_PREFIX}/{source.sha256}/sourcedir.tar.gz"
    put_if_absent(s3, bucket, key, source.archive)
    return s3_uri(bucket, key)


def script_mode_hyperparameters(
    training: Mapping[str, Any], *, job_name: str, submit_dir: str, region: str, log_level: int
) -> dict[str, str]:
    """User hyperparameters plus the ``sagemaker_*`` ones the training toolkit reads.

    Every value is JSON-encoded as the SDK does; the toolkit ``json.loads`` each one, so
    booleans must be ``true``/``false`` (a bare ``False`` would stay a truthy string).
    """
    values: dict[str, Any] = dict(training["hyperparameters"])
    values.update(
        sagemaker_program=ENTRY_POINT,
        sagemaker_submit_directory=submit_dir,
        sagemaker_region=region,
        sagemaker_job_name=job_name,
        sagemaker_container_log_level=log_level,
    )
    if training["instance_count"] > 1:
        values["sagemaker_torch_distributed_enabled"] = True
    return {key: json.dumps(value) for key, value in values.items()}


def training_job_request(
    run: Mapping[str, Any],
    *,
    role_arn: str,
    bucket: str,
    submit_dir: str,
    region: str,
    metric_definitions: list[dict[str, str]],
    execution_arn: str,
    log_level: int,
) -> dict[str, Any]:
    training = run["training"]
    job_name = training["job_name"]
    stopping: dict[str, int] = {"MaxRuntimeInSeconds": training["max_runtime_seconds"]}
    request: dict[str, Any] = {
        "TrainingJobName": job_name,
        "RoleArn": role_arn,
        "AlgorithmSpecification": {
            "TrainingImage": training["image"],
            "TrainingInputMode": "File",
            "MetricDefinitions": metric_definitions,
            "EnableSageMakerMetricsTimeSeries": True,
        },
        "HyperParameters": script_mode_hyperparameters(
            training, job_name=job_name, submit_dir=submit_dir, region=region, log_level=log_level
        ),
        # The whole archive goes to every host; train.py shards it with a DistributedSampler.
        "InputDataConfig": [
            {
                "ChannelName": CHANNEL,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": run["dataset"]["uri"],
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
        ],
        "OutputDataConfig": {"S3OutputPath": s3_uri(bucket, f"{MODELS_PREFIX}/")},
        "ResourceConfig": {
            "InstanceType": training["instance_type"],
            "InstanceCount": training["instance_count"],
            "VolumeSizeInGB": training["volume_size_gb"],
        },
        "StoppingCondition": stopping,
        "Environment": {"PYTHONUNBUFFERED": "1"},  # metric lines reach the log as printed
        "Tags": resource_tags(run, execution_arn),
    }
    if training["spot"]:
        # Spot: waiting for capacity counts against MaxWait; checkpoints survive interruptions.
        stopping["MaxWaitTimeInSeconds"] = 2 * training["max_runtime_seconds"]
        request["EnableManagedSpotTraining"] = True
        request["CheckpointConfig"] = {"S3Uri": s3_uri(bucket, f"{CHECKPOINTS_PREFIX}/{job_name}/")}
    return request


def _already_exists(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    return error.get("Code") == "ResourceInUse" or (
        error.get("Code") == "ValidationException" and "already exists" in error.get("Message", "")
    )


def start_training_job(sagemaker: Any, request: Mapping[str, Any]) -> dict[str, Any]:
    """Create the job; a job with the same name is this run's job and is adopted."""
    name = request["TrainingJobName"]
    try:
        arn = sagemaker.create_training_job(**request)["TrainingJobArn"]
        adopted = False
    except ClientError as exc:
        if not _already_exists(exc):
            raise
        arn = sagemaker.describe_training_job(TrainingJobName=name)["TrainingJobArn"]
        adopted = True
    return {
        "training_job_name": name,
        "training_job_arn": arn,
        "adopted": adopted,
        "status": "InProgress",
    }


def training_status(sagemaker: Any, job_name: str) -> dict[str, Any]:
    """Status, final metrics and artifact of a training job, shaped for the state machine."""
    job = sagemaker.describe_training_job(TrainingJobName=job_name)
    status = job["TrainingJobStatus"]
    reason = job.get("FailureReason")
    if status in TERMINAL_FAILURES:
        verb = "failed" if status == "Failed" else "was stopped"
        reason = f"training job {job_name} {verb}: {reason or job.get('SecondaryStatus', status)}"
    return {
        "training_job_name": job_name,
        "status": status,
        "secondary_status": job.get("SecondaryStatus"),
        "failure_reason": reason,
        "metrics": {m["MetricName"]: m["Value"] for m in job.get("FinalMetricDataList", [])},
        "model_artifact": job.get("ModelArtifacts", {}).get("S3ModelArtifacts"),
        "training_seconds": job.get("TrainingTimeInSeconds"),
        "billable_seconds": job.get("BillableTimeInSeconds"),
    }
