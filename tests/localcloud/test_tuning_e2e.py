"""The pipeline with its tuning stage on (TuningMaxJobs), end to end in the local cloud:
the template's tuning parameters, StartTraining's tuning job, its trials as real training
jobs of the local SageMaker (chosen by Optuna), CheckTraining handing on the best one, and
the gate, registry, deploy and run summary going on with it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from localcloud.runner import report
from localcloud.runtime.connection import Connection
from localcloud.runtime.launcher import LocalCloudProcess
from tests.localcloud.pipeline_support import (
    archive_of,
    data_set,
    endpoint,
    finish,
    local_cloud,
    start_upload,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]  # three trainings, one deploy

TRIALS = 3
# Three trainings instead of one (two at once): a loaded machine needs more than one run's.
TUNED_RUN_TIMEOUT_S = 1500


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloudProcess]:
    """A local cloud whose runs tune: 3 trials, 2 at once, each on one host (small)."""
    yield from local_cloud(
        tmp_path_factory.mktemp("tuning-cloud"),
        TuningMaxJobs=str(TRIALS),
        TuningMaxParallelJobs="2",
        TrainingInstanceCount="1",
    )


@pytest.fixture(scope="module")
def conn(cloud: LocalCloudProcess) -> Connection:
    assert cloud.connection is not None
    return cloud.connection


@pytest.fixture(scope="module")
def tuned(conn: Connection, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = data_set(tmp_path_factory.mktemp("tuned") / "colours")
    arn = start_upload(conn, archive_of(root), "datasets/colours.tar.gz")
    description = finish(conn, arn, timeout=TUNED_RUN_TIMEOUT_S)
    assert description["status"] == "SUCCEEDED", description.get("cause")
    return description


def test_a_tuned_run_deploys_its_best_trial(conn: Connection, tuned: dict[str, Any]) -> None:
    output = json.loads(tuned["output"])
    name = output["tuning"]["tuning_job_name"]
    sm = conn.client("sagemaker")
    job = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    assert job["HyperParameterTuningJobStatus"] == "Completed"
    assert job["TrainingJobStatusCounters"]["Completed"] == TRIALS
    best = job["BestTrainingJob"]
    trials = sm.list_training_jobs_for_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)[
        "TrainingJobSummaries"
    ]
    values = [t["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] for t in trials]
    assert len(values) == TRIALS
    best_value = best["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
    assert best_value == max(values) >= min(values)
    # the gate, the registry and the deploy went on with the best trial
    assert output["training_job_name"] == best["TrainingJobName"]
    assert output["tuning"]["best_objective"] == best_value
    assert output["metrics"]["valid_acc"] == best_value
    trained = sm.describe_training_job(TrainingJobName=best["TrainingJobName"])
    package = sm.describe_model_package(ModelPackageName=output["model_package_arn"])
    served = package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    assert served == trained["ModelArtifacts"]["S3ModelArtifacts"]
    model = sm.describe_model(ModelName=output["model_name"])
    assert model["Containers"][0]["ModelPackageName"] == output["model_package_arn"]
    assert endpoint(conn)["EndpointConfigName"] == output["endpoint_config_name"]
    lineage = package["CustomerMetadataProperties"]
    assert (lineage["training_job"], lineage["tuning_job"]) == (best["TrainingJobName"], name)


def test_the_run_summary_names_the_tuning_job_and_bills_every_trial(
    conn: Connection, tuned: dict[str, Any]
) -> None:
    output = json.loads(tuned["output"])
    events = report.execution_events(conn, tuned["executionArn"])
    text, _ = report.summary(conn, tuned, events, output["endpoint_name"], 60.0)
    best = output["tuning"]["best_objective"]
    line = f"Tuning       {output['tuning']['tuning_job_name']}: best valid_acc={best:.4f}"
    assert line in text
    assert f"of {TRIALS} trials ({TRIALS} Completed)" in text
    assert f"Training     {output['training_job_name']}: Completed" in text
    sm = conn.client("sagemaker")
    best_job = sm.describe_training_job(TrainingJobName=output["training_job_name"])
    all_trials = report.run_cost.tuning_billable_seconds(conn, best_job)
    assert all_trials > float(best_job["BillableTimeInSeconds"])  # the others are billed too


def test_a_rerun_of_the_same_data_finds_its_tuning_job(
    conn: Connection, tuned: dict[str, Any]
) -> None:
    """The same data-set version and settings: the same run, so the same tuning job."""
    sfn = conn.client("stepfunctions")
    machine = sfn.describe_execution(executionArn=tuned["executionArn"])["stateMachineArn"]
    first = json.loads(tuned["output"])
    trigger = {"dataset": first["dataset"]}
    if not first["dataset_version"].startswith("etag-"):
        trigger["version_id"] = first["dataset_version"]
    arn = sfn.start_execution(stateMachineArn=machine, input=json.dumps(trigger))["executionArn"]
    again = finish(conn, arn, timeout=TUNED_RUN_TIMEOUT_S)
    assert again["status"] == "SUCCEEDED", again.get("cause")
    output = json.loads(again["output"])
    assert output["run_id"] == first["run_id"]
    assert output["tuning"]["tuning_job_name"] == first["tuning"]["tuning_job_name"]
    assert output["training_job_name"] == first["training_job_name"]
