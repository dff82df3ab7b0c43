"""Start a SageMaker training job for a run (or adopt the one already started) and read it back.

The job runs train.py in SageMaker script mode on the PyTorch training container, the
way the SageMaker Python SDK would start it: hyperparameters JSON-encoded, the code as
``sourcedir.tar.gz`` in S3, torchrun across hosts when there is more than one.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from mlops.errors import DatasetChangedError, TrainingRetriesExhausted
from mlops.naming import content_id, resource_name, resource_tags
from mlops.polling import training_wait
from mlops.s3 import copy_object, head_object, put_if_absent, s3_uri
from mlops.sourcedir import ENTRY_POINT, build_sourcedir

CHANNEL = "training"
CHAMPION_CHANNEL = "champion"
CODE_PREFIX = "training-code"
MODELS_PREFIX = "models"
CHECKPOINTS_PREFIX = "checkpoints"
# Each run trains from its own copy of the exact data-set version that triggered it.
INPUT_PREFIX = "training-input"
TERMINAL_FAILURES = frozenset({"Failed", "Stopped"})
# A run whose job failed or was stopped trains again under a new name (SageMaker never
# reuses a job name), at most this many times in all.
MAX_TRAINING_ATTEMPTS = 5


def upload_training_code(s3: Any, bucket: str, code_dir: Path) -> str:
    """Upload sourcedir.tar.gz under its content hash (once); its S3 URI."""
    source = build_sourcedir(code_dir)
    key = f"{CODE_PREFIX}/{source.sha256}/sourcedir.tar.gz"
    put_if_absent(s3, bucket, key, source.archive)
    return s3_uri(bucket, key)


def pin_dataset(s3: Any, run: Mapping[str, Any], bucket: str) -> str:
    """Copy the run's data-set version to a key of the run's own; its S3 URI.

    SageMaker reads whatever object is at the key when the job starts, so a second upload
    to the same key would otherwise be trained by the first run too. The copy is of the
    recorded version (or, in an unversioned bucket, only if the ETag still matches).
    """
    dataset = run["dataset"]
    source: dict[str, str] = {"Bucket": dataset["bucket"], "Key": dataset["key"]}
    extra: dict[str, str] = {}
    if dataset.get("version_id"):
        source["VersionId"] = dataset["version_id"]
    elif dataset.get("etag"):
        # Checked here for a clear error, and by S3 during the copy for atomicity.
        head = head_object(s3, dataset["bucket"], dataset["key"]) or {}
        if str(head.get("ETag", "")).strip('"') != dataset["etag"]:
            raise _changed(dataset)
        extra["CopySourceIfMatch"] = dataset["etag"]
    key = f"{INPUT_PREFIX}/{run['run_id']}/{dataset['key'].rsplit('/', 1)[-1]}"
    try:
        copy_object(s3, source, dataset["size"], bucket, key, **extra)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"PreconditionFailed", "412"}:
            raise _changed(dataset) from None
        raise
    return s3_uri(bucket, key)


def _changed(dataset: Mapping[str, Any]) -> DatasetChangedError:
    return DatasetChangedError(
        f"data set {dataset['uri']} was replaced after this run was planned; the new upload "
        "starts its own run"
    )


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
    dataset_uri: str,
    champion_uri: str | None = None,
) -> dict[str, Any]:
    """CreateTrainingJob; ``champion_uri`` (the live model's model.tar.gz) becomes the
    ``champion`` channel, which train.py evaluates on the same test split as the candidate."""
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
                        "S3Uri": dataset_uri,
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
    if champion_uri:
        request["InputDataConfig"].append(
            {
                "ChannelName": CHAMPION_CHANNEL,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": champion_uri,
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
        )
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


def job_names(run: Mapping[str, Any]) -> list[str]:
    """The names the run's training job may have: the planned one, then one per retry."""
    endpoint = run["endpoint"]["endpoint_name"]
    retries = [
        resource_name(endpoint, content_id({"run_id": run["run_id"], "attempt": attempt}))
        for attempt in range(2, MAX_TRAINING_ATTEMPTS + 1)
    ]
    return [run["training"]["job_name"], *retries]


def start_or_adopt(
    create: Callable[[str], str],
    describe: Callable[[str], tuple[str, str]],
    names: list[str],
    what: str,
) -> tuple[str, str, bool]:
    """(name, ARN, adopted) of the first of ``names`` that ``create`` starts, or of one
    already started and running or done (``describe``: its status and ARN).

    A job of this run that Failed or was Stopped (capacity, a spot interruption, a bad
    host) is not adopted: the next name is tried, so re-running the execution trains
    again. A spot job's retry resumes from the same checkpoints.
    """
    for name in names:
        try:
            return name, create(name), False
        except ClientError as exc:
            if not _already_exists(exc):
                raise
            status, arn = describe(name)
            if status not in TERMINAL_FAILURES:
                return name, arn, True
    raise TrainingRetriesExhausted(
        f"the {what} of this run failed or was stopped {len(names)} times "
        f"(last: {names[-1]}); change the data set or its configuration to train again"
    )


def start_training_job(
    sagemaker: Any, request: Mapping[str, Any], names: list[str], poll_seconds: int
) -> dict[str, Any]:
    """Create the run's job, or adopt it if it is running or done (``start_or_adopt``)."""

    def create(name: str) -> str:
        return sagemaker.create_training_job(**{**request, "TrainingJobName": name})[
            "TrainingJobArn"
        ]

    def describe(name: str) -> tuple[str, str]:
        job = sagemaker.describe_training_job(TrainingJobName=name)
        return job["TrainingJobStatus"], job["TrainingJobArn"]

    name, arn, adopted = start_or_adopt(create, describe, names, "training job")
    return {
        "training_job_name": name,
        "training_job_arn": arn,
        "tuning_job_name": None,
        "adopted": adopted,
        "status": "InProgress",
        "next_poll_seconds": poll_seconds,
    }


def training_status(
    sagemaker: Any, job_name: str, poll_seconds: int, now: datetime.datetime
) -> dict[str, Any]:
    """Status, final metrics and artifact of a training job, shaped for the state machine."""
    job = sagemaker.describe_training_job(TrainingJobName=job_name)
    age = (now - job["CreationTime"]).total_seconds() if job.get("CreationTime") else 0
    status = job["TrainingJobStatus"]
    reason = job.get("FailureReason")
    if status in TERMINAL_FAILURES:
        verb = "failed" if status == "Failed" else "was stopped"
        reason = f"training job {job_name} {verb}: {reason or job.get('SecondaryStatus', status)}"
    champion = [
        c["DataSource"]["S3DataSource"]["S3Uri"]
        for c in job.get("InputDataConfig", [])
        if c.get("ChannelName") == CHAMPION_CHANNEL
    ]
    return {
        "training_job_name": job_name,
        "status": status,
        "champion": champion[0] if champion else None,
        "secondary_status": job.get("SecondaryStatus"),
        "failure_reason": reason,
        "metrics": {m["MetricName"]: m["Value"] for m in job.get("FinalMetricDataList", [])},
        "model_artifact": job.get("ModelArtifacts", {}).get("S3ModelArtifacts"),
        "training_seconds": job.get("TrainingTimeInSeconds"),
        "billable_seconds": job.get("BillableTimeInSeconds"),
        "next_poll_seconds": training_wait(age, poll_seconds),
    }
