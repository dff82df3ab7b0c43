"""The tuning stage's plan and StartTraining with TuningMaxJobs: the run's tuning job, its
request (checked against botocore's model by the stubber, and against the function's IAM
statements), its name within SageMaker's 32 characters, and a rerun that finds it."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest

from mlops.errors import ConfigurationError
from mlops.run_plan import PlanSettings, RunRequest, build_plan
from tests.conftest import AwsRecorder, load_handler
from tests.functions.pipeline_helpers import (
    TUNING_ARN,
    stubbed,
    tuning_job,
    write_training_code,
)
from tests.functions.test_start_training import no_champion, uploaded
from tests.template_support import BUCKET, function_environment, set_function_environment

FUNCTION = "StartTrainingFunction"
# SageMaker's pattern for tuning job names (HyperParameterTuningJobName).
TUNING_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,31}$")
DATASET = {"bucket": BUCKET, "key": "datasets/d.zip", "uri": "s3://b/d", "version": "v1"}


def settings(**env: str) -> PlanSettings:
    """PrepareRun's settings: the template's defaults with ``env`` on top."""
    return PlanSettings.from_env({**function_environment("PrepareRunFunction"), **env})


def plan(**env: str) -> dict[str, Any]:
    request = RunRequest(BUCKET, DATASET["key"], None, {}, "manual")
    return build_plan(request, DATASET, settings(**env))


def test_tuning_is_off_by_default_and_a_plain_run_keeps_its_id() -> None:
    plain = plan()
    assert "tuning" not in plain["training"]
    assert plan(TUNING_MAX_JOBS="0")["run_id"] == plain["run_id"]


def test_the_template_defaults_tune_learning_rate_and_batch_size() -> None:
    tuned = plan(TUNING_MAX_JOBS="4")
    assert tuned["training"]["tuning"] == {
        "strategy": "Bayesian",
        "max_jobs": 4,
        "max_parallel_jobs": 2,
        "objective": "valid_acc",
        "ranges": [
            {
                "name": "learning-rate",
                "type": "Continuous",
                "min": 0.0001,
                "max": 0.01,
                "scaling": "Logarithmic",
            },
            {"name": "batch-size", "type": "Categorical", "values": ["16", "32", "64"]},
        ],
    }
    # the tuning settings are part of the run's identity: a rerun finds its own tuning job
    assert tuned["run_id"] != plan()["run_id"]
    assert plan(TUNING_MAX_JOBS="4", TUNING_STRATEGY="Random")["run_id"] != tuned["run_id"]
    assert plan(TUNING_MAX_JOBS="4")["run_id"] == tuned["run_id"]


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"TUNING_STRATEGY": "Grid"}, "the Grid strategy searches categorical ranges"),
        ({"TUNING_STRATEGY": "Sobol"}, "TUNING_STRATEGY='Sobol' must be one of Bayesian"),
        ({"TUNING_MAX_PARALLEL_JOBS": "11"}, "TUNING_MAX_PARALLEL_JOBS 1-10"),
        ({"ENDPOINT_NAME": "a-very-long-endpoint-name-x"}, "ENDPOINT_NAME of at most 23"),
        ({"TUNING_RANGES": "{}"}, "TUNING_RANGES must name 1-30 hyperparameters"),
        ({"TUNING_RANGES": '{"sagemaker_x": [1]}'}, "'sagemaker_x' is reserved for SageMaker"),
        ({"TUNING_RANGES": '{"lr": {"min": 1}}'}, "TUNING_RANGES: lr needs numbers min and max"),
        ({"TUNING_RANGES": '{"lr": {"min": 0, "max": 1, "scaling": "Logarithmic"}}'}, "above 0"),
        ({"TUNING_RANGES": '{"depth": {"min": 1, "max": 9, "scaling": "Cubic"}}'}, "scaling one"),
        ({"TUNING_RANGES": '{"arch": []}'}, "TUNING_RANGES: arch must list 1-30"),
    ],
)
def test_tuning_settings_sagemaker_would_refuse_are_named(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(words)):
        settings(TUNING_MAX_JOBS="4", **env)


def test_grid_takes_every_combination_of_categorical_ranges() -> None:
    grid = settings(
        TUNING_MAX_JOBS="1",
        TUNING_STRATEGY="Grid",
        TUNING_RANGES='{"batch_size": [16, 32], "arch": ["resnet18", "resnet34"]}',
    ).tuning
    assert grid is not None
    assert [r["name"] for r in grid["ranges"]] == ["batch-size", "arch"]  # one spelling
    assert grid["ranges"][1]["values"] == ['"resnet18"', '"resnet34"']  # JSON, as script mode


@pytest.fixture
def app(aws: AwsRecorder, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    set_function_environment(monkeypatch, FUNCTION)
    monkeypatch.setenv("TRAINING_CODE_DIR", str(write_training_code(tmp_path / "opt")))
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return load_handler("start_training")


def tuned_event(spot: bool = False) -> dict[str, Any]:
    event = uploaded()
    training = event["run"]["training"]
    training["spot"] = spot
    training["tuning"] = plan(TUNING_MAX_JOBS="4")["training"]["tuning"]
    return event


def sent(aws: AwsRecorder, operation: str) -> list[dict[str, Any]]:
    return [call.params for call in aws.calls if call.operation == operation]


def test_start_training_creates_the_runs_tuning_job_from_its_training_job(app, aws) -> None:
    event = tuned_event(spot=True)
    with stubbed("sagemaker") as sagemaker:
        no_champion(sagemaker)
        sagemaker.add_response(
            "create_hyper_parameter_tuning_job", {"HyperParameterTuningJobArn": TUNING_ARN}
        )
        result = aws.invoke(app, event)
    (request,) = sent(aws, "CreateHyperParameterTuningJob")
    name = request["HyperParameterTuningJobName"]
    assert TUNING_NAME.match(name) and name.startswith("image-classifier-")
    assert result["tuning_job_name"] == name and result["training_job_name"] is None
    assert (result["status"], result["adopted"]) == ("InProgress", False)
    config = request["HyperParameterTuningJobConfig"]
    assert config["HyperParameterTuningJobObjective"] == {
        "Type": "Maximize",
        "MetricName": "valid_acc",
    }
    assert config["ResourceLimits"] == {"MaxParallelTrainingJobs": 2, "MaxNumberOfTrainingJobs": 4}
    assert config["ParameterRanges"] == {
        "ContinuousParameterRanges": [
            {
                "Name": "learning-rate",
                "MinValue": "0.0001",
                "MaxValue": "0.01",
                "ScalingType": "Logarithmic",
            }
        ],
        "CategoricalParameterRanges": [{"Name": "batch-size", "Values": ["16", "32", "64"]}],
    }
    definition = request["TrainingJobDefinition"]
    static = definition["StaticHyperParameters"]
    # the tuned flags come from the trials; the rest as the plain training job has them
    assert "learning-rate" not in static and "batch-size" not in static
    assert static["epochs"] == "10" and static["sagemaker_program"] == '"train.py"'
    assert definition["InputDataConfig"][0]["ChannelName"] == "training"
    assert definition["ResourceConfig"]["InstanceCount"] == 2
    assert definition["EnableManagedSpotTraining"] is True
    assert definition["StoppingCondition"] == {
        "MaxRuntimeInSeconds": 21600,
        "MaxWaitTimeInSeconds": 43200,
    }
    assert "CheckpointConfig" not in definition  # trials would share one prefix
    assert {t["Key"] for t in request["Tags"]} >= {"mlops:run-id", "mlops:execution"}
    assert "CreateTrainingJob" not in aws.operations()


@pytest.mark.parametrize(("status", "adopted"), [("InProgress", True), ("Failed", False)])
def test_a_rerun_adopts_its_tuning_job_unless_it_failed(app, aws, status, adopted) -> None:
    event = tuned_event()
    with stubbed("sagemaker") as sagemaker:
        no_champion(sagemaker)
        sagemaker.add_client_error(
            "create_hyper_parameter_tuning_job", "ResourceInUse", "Tuning job exists."
        )
        sagemaker.add_response(
            "describe_hyper_parameter_tuning_job", tuning_job(status, "image-classifier-x")
        )
        if not adopted:
            sagemaker.add_response(
                "create_hyper_parameter_tuning_job", {"HyperParameterTuningJobArn": TUNING_ARN}
            )
        result = aws.invoke(app, event)
    first, *again = [
        r["HyperParameterTuningJobName"] for r in sent(aws, "CreateHyperParameterTuningJob")
    ]
    assert result["adopted"] is adopted
    assert result["tuning_job_name"] == (first if adopted else again[0])
    assert all(TUNING_NAME.match(n) for n in (first, *again)) and first not in again
