"""Automatic model tuning in the local SageMaker: real trials (training jobs of the local
SageMaker), chosen by Optuna, with AWS's statuses, counters and best job."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.localcloud.sagemaker_support import REGION, local_sagemaker_in, wait_for
from tests.localcloud.tuning_support import (
    ACT,
    LR,
    trials,
    tuning_request,
    upload_script,
    wait_tuning,
)


@pytest.fixture
def sagemaker(tmp_path: Path) -> Iterator[Any]:
    with local_sagemaker_in(tmp_path / "state", time_scale=0.02):
        upload_script(boto3.client("s3", region_name=REGION))
        yield boto3.client("sagemaker", region_name=REGION)


def test_random_trials_are_real_training_jobs_and_the_best_is_reported(sagemaker: Any) -> None:
    ranges = {"ContinuousParameterRanges": [LR], "CategoricalParameterRanges": [ACT]}
    sagemaker.create_hyper_parameter_tuning_job(
        **tuning_request("tune-random", "Random", 4, 2, ranges)
    )
    described = wait_tuning(sagemaker, "tune-random")
    assert described["HyperParameterTuningJobStatus"] == "Completed"
    assert described["TrainingJobStatusCounters"]["Completed"] == 4
    assert described["ObjectiveStatusCounters"] == {"Succeeded": 4, "Pending": 0, "Failed": 0}
    found = trials(sagemaker, "tune-random")
    assert len(found) == 4
    assert all(
        re.fullmatch(r"tune-random-00[1-4]-[0-9a-f]{8}", t["TrainingJobName"]) for t in found
    )
    values = {
        t["TrainingJobName"]: t["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
        for t in found
    }
    best = described["BestTrainingJob"]
    assert values[best["TrainingJobName"]] == max(values.values())
    assert set(best["TunedHyperParameters"]) == {"lr", "act"}
    # a trial is a training job of its own, named by the tuning job, with its objective
    job = sagemaker.describe_training_job(TrainingJobName=best["TrainingJobName"])
    assert job["TuningJobArn"] == described["HyperParameterTuningJobArn"]
    assert job["HyperParameters"]["_tuning_objective_metric"] == "valid_acc"
    assert job["HyperParameters"]["lr"] == best["TunedHyperParameters"]["lr"]
    by_value = sagemaker.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName="tune-random",
        SortBy="FinalObjectiveMetricValue",
        SortOrder="Descending",
        MaxResults=1,
    )
    assert by_value["TrainingJobSummaries"][0]["TrainingJobName"] == best["TrainingJobName"]
    assert "NextToken" in by_value


def test_grid_runs_every_combination_once(sagemaker: Any) -> None:
    ranges = {
        "CategoricalParameterRanges": [ACT, {"Name": "lr", "Values": ["0.1", "0.3"]}],
    }
    sagemaker.create_hyper_parameter_tuning_job(
        **tuning_request("tune-grid", "Grid", None, 2, ranges)
    )
    described = wait_tuning(sagemaker, "tune-grid")
    assert described["HyperParameterTuningJobStatus"] == "Completed"
    tried = sorted(
        (t["TunedHyperParameters"]["act"], t["TunedHyperParameters"]["lr"])
        for t in trials(sagemaker, "tune-grid")
    )
    assert tried == [("relu", "0.1"), ("relu", "0.3"), ("tanh", "0.1"), ("tanh", "0.3")]
    assert described["BestTrainingJob"]["TunedHyperParameters"] == {"act": "relu", "lr": "0.3"}


def test_early_stopping_stops_trials_worse_than_the_median(sagemaker: Any) -> None:
    ranges = {"CategoricalParameterRanges": [ACT]}
    request = tuning_request(
        "tune-early",
        "Random",
        6,
        1,
        ranges,
        TrainingJobEarlyStoppingType="Auto",
        static={"epochs": "6", "pace": "0.3", "lr": "0.3"},
    )
    sagemaker.create_hyper_parameter_tuning_job(**request)
    described = wait_tuning(sagemaker, "tune-early", timeout=180)
    assert described["HyperParameterTuningJobStatus"] == "Completed"
    found = trials(sagemaker, "tune-early")
    stopped = [t for t in found if t["TrainingJobStatus"] == "Stopped"]
    assert stopped, found  # tanh is 0.2 worse than relu at every epoch: pruned
    assert all(t["TunedHyperParameters"]["act"] == "tanh" for t in stopped)
    assert described["TrainingJobStatusCounters"]["Stopped"] == len(stopped)
    assert described["BestTrainingJob"]["TunedHyperParameters"]["act"] == "relu"
    assert described["BestTrainingJob"]["TrainingJobStatus"] == "Completed"


def test_stop_ends_the_trials_and_the_tuning_job(sagemaker: Any) -> None:
    ranges = {"ContinuousParameterRanges": [LR]}
    request = tuning_request(
        "tune-stop", "Bayesian", 5, 2, ranges, static={"epochs": "50", "pace": "1"}
    )
    sagemaker.create_hyper_parameter_tuning_job(**request)
    wait_for(
        lambda: trials(sagemaker, "tune-stop"),
        lambda found: (
            len(found) == 2 and all(t["TrainingJobStatus"] == "InProgress" for t in found)
        ),
        60,
    )
    sagemaker.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName="tune-stop")
    described = wait_tuning(sagemaker, "tune-stop")
    assert described["HyperParameterTuningJobStatus"] == "Stopped"
    assert {t["TrainingJobStatus"] for t in trials(sagemaker, "tune-stop")} == {"Stopped"}
    with pytest.raises(ClientError, match="in status Stopped"):
        sagemaker.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName="tune-stop")


@pytest.mark.parametrize(
    ("strategy", "jobs", "ranges", "config", "message"),
    [
        ("Grid", 3, {"CategoricalParameterRanges": [ACT]}, {}, "number of grid combinations (2)"),
        ("Grid", None, {"ContinuousParameterRanges": [LR]}, {}, "categorical ranges only"),
        ("Random", None, {"ContinuousParameterRanges": [LR]}, {}, "needs MaxNumberOfTrainingJobs"),
        (
            "Hyperband",
            4,
            {"ContinuousParameterRanges": [LR]},
            {"TrainingJobEarlyStoppingType": "Auto"},
            "must be Off with the Hyperband strategy",
        ),
    ],
)
def test_requests_sagemaker_refuses_are_refused(
    sagemaker: Any,
    strategy: str,
    jobs: int | None,
    ranges: dict[str, Any],
    config: dict[str, Any],
    message: str,
) -> None:
    request = tuning_request("refused", strategy, jobs, 1, ranges, **config)
    with pytest.raises(ClientError, match=re.escape(message)):
        sagemaker.create_hyper_parameter_tuning_job(**request)


def test_the_objective_must_be_a_metric_the_job_prints(sagemaker: Any) -> None:
    request = tuning_request("no-metric", "Random", 2, 1, {"ContinuousParameterRanges": [LR]})
    request["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]["MetricName"] = (
        "test_acc"
    )
    with pytest.raises(ClientError, match="'test_acc' is not one of"):
        sagemaker.create_hyper_parameter_tuning_job(**request)
