"""The real pipeline end to end in the local cloud (template.yaml, the ASL, the functions,
train.py on two hosts, serve.py endpoints), on a tiny two-colour data set.

One local cloud for the whole group. Swapping the class folders of one split steers a
scenario: swapped valid/ fails the quality gate (valid_acc ~ 0), swapped test/ (the
smoke images come from it) fails the smoke test after deploying.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localcloud import processes
from localcloud.client import Connection
from localcloud.config import DEFAULT_PARAMETERS, Settings
from localcloud.launcher import LocalCloudProcess
from localcloud.progress import wait_for_execution
from localcloud.report import execution_events, training_job_of
from localcloud.runner import classify_file, upload
from tests.data_helpers import make_archive, write_image_folder

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CLASSES = ("cat", "dog")
HYPERPARAMETERS = {
    "arch": "resnet18",
    "weights": "none",
    "fine-tune": "all",
    "image-size": 32,
    "epochs": 2,
    "batch-size": 8,
    "learning-rate": 0.001,
    "num-workers": 0,
    "log-interval": 0,
    "smoke-images": 8,
}
SUCCESS_PATH = [
    "PrepareRun",
    "StartTraining",
    "WaitForTraining",
    "CheckTraining",
    "QualityGate",
    "AcquireDeploymentLock",
    "DeployModel",
    "WaitForEndpoint",
    "CheckEndpoint",
    "AttachAutoscaling",
    "SmokeTest",
    "ReleaseLock",
    "Summarize",
]
EXECUTION_TIMEOUT_S = 400


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloudProcess]:
    overrides = {
        "TrainingHyperparameters": json.dumps(HYPERPARAMETERS),
        "MinValidationAccuracy": "0.5",
        "SmokeTestMinAccuracy": "0.5",
        "PollIntervalSeconds": "1",
    }
    settings = Settings(
        template=REPO / "template.yaml",
        parameters_file=DEFAULT_PARAMETERS,
        parameter_overrides=tuple(f"{k}={v}" for k, v in overrides.items()),
        state_dir=tmp_path_factory.mktemp("e2e-cloud"),
        stack_name="e2e",
    )
    process = LocalCloudProcess(settings)
    try:
        process.start()
        yield process
    finally:
        started = (
            [process.proc.pid, *processes.descendants(process.proc.pid)] if process.proc else []
        )
        process.stop()
        leaked = [pid for pid in started if Path(f"/proc/{pid}").exists()]
        assert leaked == [], f"processes left after the local cloud stopped: {leaked}"


@pytest.fixture(scope="module")
def conn(cloud: LocalCloudProcess) -> Connection:
    assert cloud.connection is not None
    return cloud.connection


def data_set(root: Path, swap: str | None = None) -> Path:
    """The colour data set; ``swap`` names a split whose two class folders are exchanged."""
    write_image_folder(root, classes=CLASSES, counts={"train": 48, "valid": 8, "test": 8})
    if swap:
        a, b = (root / swap / name for name in CLASSES)
        a.rename(root / swap / "tmp")
        b.rename(a)
        (root / swap / "tmp").rename(b)
    return root


def run_upload(conn: Connection, archive: Path, key: str) -> dict[str, Any]:
    after = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
    upload(conn, archive, key)
    arn = wait_for_execution(conn, conn.the_state_machine(), after, timeout=30)
    return finish(conn, arn)


def finish(conn: Connection, arn: str) -> dict[str, Any]:
    sfn = conn.client("stepfunctions")
    done = processes.wait_until(
        lambda: sfn.describe_execution(executionArn=arn)["status"] != "RUNNING",
        EXECUTION_TIMEOUT_S,
        interval=1,
    )
    assert done, f"{arn} still running after {EXECUTION_TIMEOUT_S} s"
    return sfn.describe_execution(executionArn=arn)


def entered(conn: Connection, arn: str) -> list[str]:
    return [
        e["stateEnteredEventDetails"]["name"]
        for e in execution_events(conn, arn)
        if "stateEnteredEventDetails" in e
    ]


def endpoint(conn: Connection) -> dict[str, Any]:
    return conn.client("sagemaker").describe_endpoint(EndpointName="image-classifier")


def classify(conn: Connection, image: Path) -> dict[str, Any]:
    status, reply = classify_file(conn, image)
    assert status == 200, reply
    return reply


@pytest.fixture(scope="module")
def deployed(conn: Connection, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The first, successful run: its execution and what it deployed."""
    root = data_set(tmp_path_factory.mktemp("good") / "colours")
    archive = make_archive(root, root.parent / "colours.tar.gz")
    description = run_upload(conn, archive, "datasets/colours.tar.gz")
    return {
        "description": description,
        "config": endpoint(conn)["EndpointConfigName"],
        "image": next((root / "test" / "dog").iterdir()),
    }


def test_upload_trains_on_two_hosts_deploys_and_serves(
    conn: Connection, cloud: LocalCloudProcess, deployed: dict[str, Any]
) -> None:
    description = deployed["description"]
    assert description["status"] == "SUCCEEDED", description.get("cause")
    arn = description["executionArn"]
    names = entered(conn, arn)
    assert [name for name in SUCCESS_PATH if name not in names] == []
    job = training_job_of(conn, description)
    assert job is not None and job["TrainingJobStatus"] == "Completed"
    assert job["ResourceConfig"]["InstanceCount"] == 2
    streams = conn.client("logs").describe_log_streams(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=f"{job['TrainingJobName']}/"
    )["logStreams"]
    hosts = {s["logStreamName"].split("/", 1)[1].rsplit("-", 1)[0] for s in streams}
    assert hosts == {"algo-1", "algo-2"}  # two training processes really ran
    live = endpoint(conn)
    assert live["EndpointStatus"] == "InService"
    targets = conn.client("application-autoscaling").describe_scalable_targets(
        ServiceNamespace="sagemaker"
    )["ScalableTargets"]
    assert [t["ResourceId"] for t in targets] == ["endpoint/image-classifier/variant/AllTraffic"]
    reply = classify(conn, deployed["image"])
    assert reply["predictions"][0]["label"] == "dog"
    archived = (
        cloud.settings.state_dir / "executions" / "e2e-train-deploy" / f"{description['name']}.json"
    )
    assert json.loads(archived.read_text())["execution"]["status"] == "SUCCEEDED"


def test_duplicate_event_trains_once(conn: Connection, deployed: dict[str, Any]) -> None:
    sm = conn.client("sagemaker")
    jobs_before = sm.list_training_jobs()["TrainingJobSummaries"]
    sfn = conn.client("stepfunctions")
    arn = sfn.start_execution(  # EventBridge delivers at least once: the same event again
        stateMachineArn=conn.the_state_machine(), input=deployed["description"]["input"]
    )["executionArn"]
    description = finish(conn, arn)
    assert description["status"] == "SUCCEEDED", description.get("cause")
    assert sm.list_training_jobs()["TrainingJobSummaries"] == jobs_before
    assert endpoint(conn)["EndpointConfigName"] == deployed["config"]


def test_corrupt_data_set_fails_readably_and_the_endpoint_keeps_serving(
    conn: Connection, deployed: dict[str, Any], tmp_path: Path
) -> None:
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(b"this is not a gzip archive")
    description = run_upload(conn, archive, "datasets/broken.tar.gz")
    assert description["status"] == "FAILED"
    cause = description.get("cause") or ""
    assert cause and "Traceback" not in cause
    assert endpoint(conn)["EndpointConfigName"] == deployed["config"]
    assert classify(conn, deployed["image"])["predictions"]


def test_model_failing_the_quality_gate_is_not_deployed(
    conn: Connection, deployed: dict[str, Any], tmp_path: Path
) -> None:
    root = data_set(tmp_path / "swapped-valid", swap="valid")
    archive = make_archive(root, tmp_path / "swapped-valid.tar.gz")
    description = run_upload(conn, archive, "datasets/swapped-valid.tar.gz")
    assert description["status"] == "FAILED"
    assert description["error"] == "QualityGateFailed"
    assert "DeployModel" not in entered(conn, description["executionArn"])
    assert endpoint(conn)["EndpointConfigName"] == deployed["config"]


def test_failing_smoke_test_rolls_back_to_the_previous_config(
    conn: Connection, deployed: dict[str, Any], tmp_path: Path
) -> None:
    root = data_set(tmp_path / "swapped-test", swap="test")
    archive = make_archive(root, tmp_path / "swapped-test.tar.gz")
    description = run_upload(conn, archive, "datasets/swapped-test.tar.gz")
    assert description["status"] == "FAILED"
    assert description["error"] == "SmokeTestFailed"
    names = entered(conn, description["executionArn"])
    assert "DeployModel" in names and "RollBack" in names
    live = endpoint(conn)
    assert live["EndpointStatus"] == "InService"
    assert live["EndpointConfigName"] == deployed["config"]
    assert classify(conn, deployed["image"])["predictions"][0]["label"] == "dog"


def test_state_dir_keeps_logs_models_and_histories(
    cloud: LocalCloudProcess, deployed: dict[str, Any]
) -> None:
    state = cloud.settings.state_dir
    assert list((state / "logs" / "lambda").glob("*PrepareRun*.log"))
    assert len(list((state / "executions").rglob("*.json"))) >= 2
    assert any(p.name == "model.tar.gz" for p in (state / "sagemaker").rglob("*"))
