"""CheckTraining: status, final metrics, artifact and a readable failure reason."""

from __future__ import annotations

import datetime
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import AwsRecorder, load_event, load_handler
from tests.functions.pipeline_helpers import stubbed

FUNCTION = "CheckTrainingFunction"
EVENT = load_event("check_training/training_job.json")
JOB = EVENT["training_job_name"]
ARTIFACT = f"s3://pipeline-data/models/{JOB}/output/model.tar.gz"


@pytest.fixture
def app(aws: AwsRecorder) -> ModuleType:
    return load_handler("check_training")


def job(status: str, secondary: str, **extra: Any) -> dict[str, Any]:
    return {
        "TrainingJobName": JOB,
        "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{JOB}",
        "TrainingJobStatus": status,
        "SecondaryStatus": secondary,
        "AlgorithmSpecification": {"TrainingInputMode": "File"},
        "ModelArtifacts": {"S3ModelArtifacts": ARTIFACT},
        "ResourceConfig": {"VolumeSizeInGB": 30},
        "StoppingCondition": {},
        "CreationTime": datetime.datetime.now(datetime.UTC),
        **extra,
    }


def check(app: ModuleType, aws: AwsRecorder, response: dict[str, Any]) -> dict[str, Any]:
    with stubbed("sagemaker") as sagemaker:
        sagemaker.add_response("describe_training_job", response, {"TrainingJobName": JOB})
        return aws.invoke(app, EVENT)


def test_in_progress(app, aws) -> None:
    result = check(app, aws, job("InProgress", "Training"))
    assert (result["status"], result["secondary_status"], result["failure_reason"]) == (
        "InProgress",
        "Training",
        None,
    )


def test_an_older_job_is_checked_less_often(app, aws) -> None:
    # Bounded polling: a job 30 h old is checked hourly, not every poll interval.
    created = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=30)
    fresh = check(app, aws, job("InProgress", "Training"))
    old = check(app, aws, job("InProgress", "Training", CreationTime=created))
    assert fresh["next_poll_seconds"] == EVENT["poll_seconds"]
    assert 3600 <= old["next_poll_seconds"] <= 3601


def test_completed_reports_final_metrics_and_the_artifact(app, aws) -> None:
    final = [
        {"MetricName": "valid_acc", "Value": 0.842, "Timestamp": "2026-11-24T11:00:00Z"},
        {"MetricName": "test_acc", "Value": 0.851, "Timestamp": "2026-11-24T11:00:00Z"},
    ]
    response = job(
        "Completed",
        "Completed",
        FinalMetricDataList=final,
        TrainingTimeInSeconds=5400,
        BillableTimeInSeconds=10800,
    )
    assert check(app, aws, response) == {
        "training_job_name": JOB,
        "status": "Completed",
        "secondary_status": "Completed",
        "failure_reason": None,
        "metrics": {"valid_acc": 0.842, "test_acc": 0.851},
        "model_artifact": ARTIFACT,
        "training_seconds": 5400,
        "billable_seconds": 10800,
        "champion": None,
        "next_poll_seconds": 60,
        "tuning_job_name": None,
    }


def test_the_champion_channel_is_reported_for_the_gate(app, aws) -> None:
    live = "s3://pipeline-data/models/old/output/model.tar.gz"
    channels = [
        {
            "ChannelName": name,
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri}},
        }
        for name, uri in (
            ("training", "s3://pipeline-data/training-input/x.zip"),
            ("champion", live),
        )
    ]
    result = check(app, aws, job("Completed", "Completed", InputDataConfig=channels))
    assert result["champion"] == live


@pytest.mark.parametrize(
    ("status", "secondary", "reason", "expected"),
    [
        (
            "Failed",
            "Failed",
            "AlgorithmError: data set has no train/ folder",
            "failed: AlgorithmError",
        ),
        ("Stopped", "MaxRuntimeExceeded", None, "was stopped: MaxRuntimeExceeded"),
    ],
)
def test_failures_carry_the_reason(app, aws, status, secondary, reason, expected) -> None:
    extra = {"FailureReason": reason} if reason else {}
    result = check(app, aws, job(status, secondary, **extra))
    assert result["status"] == status
    assert result["failure_reason"].startswith(f"training job {JOB} ")
    assert expected in result["failure_reason"]
