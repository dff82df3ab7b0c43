"""CheckTraining with a tuning job: its progress while it runs, then its best training
job's status, metrics and artifact for the gate; a failed one with a one-sentence cause."""

from __future__ import annotations

import datetime
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import AwsRecorder, load_event, load_handler
from tests.functions.pipeline_helpers import stubbed, tuning_job

FUNCTION = "CheckTrainingFunction"
TUNING = "image-classifier-a9ffe2205ad15d1"
BEST = f"{TUNING}-003-0e830ada"
CREATED = datetime.datetime(2026, 12, 8, 3, tzinfo=datetime.UTC)
ARTIFACT = f"s3://pipeline-data/models/{BEST}/output/model.tar.gz"


@pytest.fixture
def app(aws: AwsRecorder) -> ModuleType:
    return load_handler("check_training")


def event() -> dict[str, Any]:
    return {**load_event("check_training/training_job.json"), "training_job_name": None} | {
        "tuning_job_name": TUNING
    }


def best(value: float) -> dict[str, Any]:
    return {
        "TrainingJobName": BEST,
        "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{BEST}",
        "CreationTime": CREATED,
        "TrainingJobStatus": "Completed",
        "TunedHyperParameters": {"learning-rate": "0.0031", "batch-size": "32"},
        "FinalHyperParameterTuningJobObjectiveMetric": {"MetricName": "valid_acc", "Value": value},
    }


def best_job() -> dict[str, Any]:
    """DescribeTrainingJob of the best trial."""
    return {
        "TrainingJobName": BEST,
        "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{BEST}",
        "TrainingJobStatus": "Completed",
        "SecondaryStatus": "Completed",
        "AlgorithmSpecification": {"TrainingInputMode": "File"},
        "ModelArtifacts": {"S3ModelArtifacts": ARTIFACT},
        "ResourceConfig": {"VolumeSizeInGB": 30},
        "StoppingCondition": {},
        "CreationTime": CREATED,
        "FinalMetricDataList": [{"MetricName": "valid_acc", "Value": 0.91}],
        "TrainingTimeInSeconds": 120,
        "BillableTimeInSeconds": 120,
    }


def test_a_running_tuning_job_is_polled(app, aws) -> None:
    with stubbed("sagemaker") as sagemaker:
        sagemaker.add_response(
            "describe_hyper_parameter_tuning_job",
            tuning_job("InProgress", TUNING, BestTrainingJob=best(0.8)),
            {"HyperParameterTuningJobName": TUNING},
        )
        result = aws.invoke(app, event())
    assert result["status"] == "InProgress"
    assert result["training_job_name"] is None and result["tuning_job_name"] == TUNING
    assert result["tuning"]["best_objective"] == 0.8
    assert result["next_poll_seconds"] == 60


def test_a_completed_tuning_job_hands_on_its_best_training_job(app, aws) -> None:
    counters = {"Completed": 4, "InProgress": 0, "Stopped": 0}
    with stubbed("sagemaker") as sagemaker:
        sagemaker.add_response(
            "describe_hyper_parameter_tuning_job",
            tuning_job(
                "Completed", TUNING, BestTrainingJob=best(0.91), TrainingJobStatusCounters=counters
            ),
        )
        sagemaker.add_response("describe_training_job", best_job(), {"TrainingJobName": BEST})
        result = aws.invoke(app, event())
    assert (result["status"], result["training_job_name"]) == ("Completed", BEST)
    assert result["metrics"] == {"valid_acc": 0.91}
    assert result["model_artifact"] == ARTIFACT
    assert result["tuning_job_name"] == TUNING
    assert result["tuning"]["best_training_job"] == BEST
    assert result["tuning"]["trials"] == counters
    assert result["tuning"]["objective_metric"] == "valid_acc"


@pytest.mark.parametrize(
    ("status", "reason", "cause"),
    [
        (
            "Failed",
            None,
            f"tuning job {TUNING} failed: no training job completed with the objective metric",
        ),
        (
            "Failed",
            "No training job completed with the objective metric valid_acc.",
            f"tuning job {TUNING} failed: No training job completed with the objective "
            "metric valid_acc",
        ),
        ("Stopped", None, f"tuning job {TUNING} was stopped: no training job completed"),
    ],
)
def test_a_failed_tuning_job_fails_the_run_with_one_sentence(
    app, aws, status: str, reason: str | None, cause: str
) -> None:
    extra = {"FailureReason": reason} if reason else {}
    with stubbed("sagemaker") as sagemaker:
        sagemaker.add_response(
            "describe_hyper_parameter_tuning_job", tuning_job(status, TUNING, **extra)
        )
        result = aws.invoke(app, event())
    assert result["status"] == status
    assert result["failure_reason"].startswith(cause)
    assert result["failure_reason"].count(".") == 0 and "\n" not in result["failure_reason"]
