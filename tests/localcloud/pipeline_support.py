"""Running the real pipeline in a local cloud from a test: a started local cloud (the e2e
modules' shared one, conftest.py, or a module's own), a tiny two-colour data set, and what a
user checks afterwards (the endpoint, the API's answer, the execution's states, the
deployment lock).

Swapping the class folders of one split steers a scenario: swapped valid/ fails the
quality gate (valid_acc ~ 0), swapped test/ (the smoke images come from it) fails the
smoke test after deploying.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from localcloud.runner.pipeline_run import classify_file
from localcloud.runner.report import execution_events
from localcloud.runtime import processes
from localcloud.runtime.connection import Connection
from localcloud.runtime.launcher import LocalCloudProcess
from localcloud.runtime.settings import DEFAULT_PARAMETERS, Settings
from tests.acceptance import promise
from tests.data_helpers import make_archive, write_image_folder

REPO = Path(__file__).resolve().parents[2]
CLASSES = ("cat", "dog")
ENDPOINT = "image-classifier"
STACK = "e2e"
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
EXECUTION_TIMEOUT_S = 400
# The modules on the session's shared local cloud (conftest.py), in the order they must run:
# test_pipeline_e2e checks the first run itself (its endpoint config still live, its event
# delivered again deploying nothing) before test_faults' runs deploy other models.
SHARED_CLOUD_MODULES = ("test_pipeline_e2e.py", "test_faults.py")
# What a failed execution's cause must never contain: it is read by people.
NOT_IN_A_CAUSE = ("Traceback", "stackTrace", 'File "', "errorType")


def local_cloud(state_dir: Path, **overrides: str) -> Iterator[LocalCloudProcess]:
    """A started local cloud for the pipeline tests; on exit, stopped with nothing left."""
    values = {
        "TrainingHyperparameters": json.dumps(HYPERPARAMETERS),
        "MinValidationAccuracy": "0.5",
        "SmokeTestMinAccuracy": "0.5",
        "PollIntervalSeconds": "3",  # the least that fits a canary (mlops/run_plan.py)
        **overrides,
    }
    settings = Settings(
        template=REPO / "template.yaml",
        parameters_file=DEFAULT_PARAMETERS,
        parameter_overrides=tuple(f"{k}={v}" for k, v in values.items()),
        state_dir=state_dir,
        stack_name=STACK,
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
        leaked = {pid: _cmdline(pid) for pid in started if _running(pid)}
        assert leaked == {}, f"processes left after the local cloud stopped: {leaked}"


def _running(pid: int) -> bool:
    """Alive and not a zombie (an exited orphan that init has yet to reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    except OSError:
        return "?"


def data_set(root: Path, swap: str | None = None, seed: int = 0) -> Path:
    """The colour data set; ``swap`` names a split whose two class folders are exchanged."""
    write_image_folder(
        root, classes=CLASSES, counts={"train": 48, "valid": 8, "test": 8}, seed=seed
    )
    if swap:
        a, b = (root / swap / name for name in CLASSES)
        a.rename(root / swap / "tmp")
        b.rename(a)
        (root / swap / "tmp").rename(b)
    return root


def archive_of(root: Path) -> Path:
    return make_archive(root, root.parent / f"{root.name}.tar.gz")


def target_of(conn: Connection) -> promise.Target:
    """The local cloud's stack as the acceptance test sees a deployed stack (its outputs,
    clients, HTTP API): the uploads and runs below go through the same code on AWS. A local
    cloud deploys one stack (the e2e modules' STACK, or `up`'s default)."""
    (stack,) = conn.client("cloudformation").describe_stacks()["Stacks"]
    return promise.local_target(conn, stack["StackName"])


def start_upload(conn: Connection, archive: Path, key: str) -> str:
    """Upload a data set; the ARN of the execution the upload started."""
    return promise.start_run(target_of(conn), archive, key, timeout=30)


def run_upload(conn: Connection, archive: Path, key: str) -> dict[str, Any]:
    return finish(conn, start_upload(conn, archive, key))


def finish(conn: Connection, arn: str, timeout: float = EXECUTION_TIMEOUT_S) -> dict[str, Any]:
    """The execution's description once it has ended (bounded by ``timeout``)."""
    return promise.follow(target_of(conn), arn, timeout)


def entered(conn: Connection, arn: str) -> list[str]:
    return [
        e["stateEnteredEventDetails"]["name"]
        for e in execution_events(conn, arn)
        if "stateEnteredEventDetails" in e
    ]


def wait_for_state(conn: Connection, arn: str, state: str, timeout: float = 300) -> None:
    reached = processes.wait_until(lambda: state in entered(conn, arn), timeout, interval=0.2)
    assert reached, f"{arn} did not reach {state} within {timeout} s"


def endpoint(conn: Connection) -> dict[str, Any]:
    return conn.client("sagemaker").describe_endpoint(EndpointName=ENDPOINT)


def classify(conn: Connection, image: Path) -> dict[str, Any]:
    status, reply = classify_file(conn, image)
    assert status == 200, reply
    return reply


def lock_holders(conn: Connection) -> list[dict[str, Any]]:
    """The deployment lock's items: empty once every execution released it."""
    dynamodb = conn.client("dynamodb")
    (table,) = [t for t in dynamodb.list_tables()["TableNames"] if "lock" in t.lower()]
    return dynamodb.scan(TableName=table, ConsistentRead=True)["Items"]


def deploy_first_model(conn: Connection, workdir: Path) -> dict[str, Any]:
    """The first, successful run: its execution, the live config and a test image."""
    root = data_set(workdir / "colours")
    description = run_upload(conn, archive_of(root), "datasets/colours.tar.gz")
    assert description["status"] == "SUCCEEDED", description.get("cause")
    return {
        "description": description,
        "config": endpoint(conn)["EndpointConfigName"],
        "image": next((root / "test" / "dog").iterdir()),
    }
