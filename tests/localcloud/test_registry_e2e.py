"""The registry end to end in the local cloud, with ApprovalMode=manual: a model waits for a
person, `python -m localcloud approve` deploys it from its package, and a candidate worse than
the live model is registered Rejected and never deployed."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localcloud.cli import commands
from localcloud.runner.progress import wait_for_execution
from localcloud.runtime.connection import Connection
from localcloud.runtime.launcher import LocalCloudProcess
from tests.localcloud.pipeline_support import (
    CLASSES,
    archive_of,
    classify,
    data_set,
    endpoint,
    finish,
    local_cloud,
    lock_holders,
    run_upload,
)

GROUP = "e2e-models"


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloudProcess]:
    yield from local_cloud(tmp_path_factory.mktemp("registry-cloud"), ApprovalMode="manual")


@pytest.fixture(scope="module")
def conn(cloud: LocalCloudProcess) -> Connection:
    assert cloud.connection is not None
    return cloud.connection


def versions(conn: Connection) -> list[dict[str, Any]]:
    sagemaker = conn.client("sagemaker")
    listed = sagemaker.list_model_packages(ModelPackageGroupName=GROUP, SortBy="CreationTime")
    return [
        sagemaker.describe_model_package(ModelPackageName=v["ModelPackageArn"])
        for v in listed["ModelPackageSummaryList"]
    ]


@pytest.fixture(scope="module")
def approved(
    conn: Connection, cloud: LocalCloudProcess, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The first model: pending, then approved from the command line, then deployed."""
    root = data_set(tmp_path_factory.mktemp("first") / "colours")
    trained = run_upload(conn, archive_of(root), "datasets/colours.tar.gz")
    after = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
    state_dir = cloud.settings.state_dir
    assert commands.main(["approve", "--state-dir", str(state_dir)]) == 0
    deployed = finish(conn, wait_for_execution(conn, conn.the_state_machine(), after, 30))
    return {"trained": trained, "deployed": deployed, "image": next((root / "test/dog").iterdir())}


def test_a_manual_model_waits_then_its_approval_deploys_it(conn, approved) -> None:
    trained, deployed = approved["trained"], approved["deployed"]
    assert trained["status"] == "SUCCEEDED"
    output = json.loads(trained["output"])
    assert output["status"] == "PendingManualApproval"
    assert "python -m localcloud approve" in output["message"]
    assert deployed["status"] == "SUCCEEDED", deployed.get("cause")
    (version,) = versions(conn)
    assert version["ModelApprovalStatus"] == "Approved"
    assert version["ModelPackageArn"] == output["model_package_arn"]
    # the endpoint's model is the registered version, and it answers
    config = conn.client("sagemaker").describe_endpoint_config(
        EndpointConfigName=endpoint(conn)["EndpointConfigName"]
    )
    model = conn.client("sagemaker").describe_model(
        ModelName=config["ProductionVariants"][0]["ModelName"]
    )
    assert model["Containers"][0]["ModelPackageName"] == version["ModelPackageArn"]
    assert classify(conn, approved["image"])["predictions"][0]["label"] in CLASSES
    assert lock_holders(conn) == []


def test_a_candidate_worse_than_the_live_model_is_rejected_and_not_deployed(
    conn, approved, tmp_path: Path
) -> None:
    live = endpoint(conn)["EndpointConfigName"]
    # Trained and validated on swapped labels: its validation accuracy passes the absolute
    # gate, but on the untouched test split it is far worse than the live model.
    root = data_set(tmp_path / "swapped", swap="train", seed=1)
    valid = root / "valid"
    (valid / CLASSES[0]).rename(valid / "tmp")
    (valid / CLASSES[1]).rename(valid / CLASSES[0])
    (valid / "tmp").rename(valid / CLASSES[1])
    description = run_upload(conn, archive_of(root), "datasets/swapped.tar.gz")
    assert (description["status"], description["error"]) == ("FAILED", "QualityGateFailed")
    assert "worse than the live model: test accuracy" in description["cause"]
    newest = versions(conn)[-1]
    assert newest["ModelApprovalStatus"] == "Rejected"
    assert endpoint(conn)["EndpointConfigName"] == live
    assert classify(conn, approved["image"])["predictions"][0]["label"] in CLASSES
