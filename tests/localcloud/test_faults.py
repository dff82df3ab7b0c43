"""Fault injection, end to end: each scenario breaks one thing while the real pipeline runs
in a local cloud, then checks what a user relies on afterwards: the previous model (or the
new one, where the run could still succeed) answers correctly through the HTTP API, a failed
execution's cause is one readable sentence, the deployment lock is released, and (when the
local cloud it shares with test_pipeline_e2e stops, conftest.py) no process is left.
``python -m bench.faults`` prints the table.

The faults are injected the way they happen: through AWS's own APIs (a function's
concurrency set to 0, the endpoint scaled while a rollback needs it, a second upload to the
same key), by damaging what S3 holds, by killing a model server's process, or by approving
a model version whose handlers fail some requests (localcloud.cli.model_version_builder) under
traffic.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from localcloud.cli import demo, model_version_builder
from localcloud.cli import probe_traffic as traffic
from localcloud.runner.pipeline_run import classify_file, upload
from localcloud.runner.report import execution_events
from localcloud.runtime import processes
from localcloud.runtime.connection import Connection
from localcloud.runtime.launcher import LocalCloudProcess
from tests.localcloud.pipeline_support import (
    ENDPOINT,
    EXECUTION_TIMEOUT_S,
    NOT_IN_A_CAUSE,
    archive_of,
    classify,
    data_set,
    endpoint,
    entered,
    finish,
    lock_holders,
    run_upload,
    start_upload,
    wait_for_state,
)

pytestmark = pytest.mark.e2e


def survived(
    conn: Connection,
    deployed: dict[str, Any],
    description: dict[str, Any],
    error: str | None,
    serving: str | None = None,
) -> None:
    """The end state every fault must leave: readable cause, lock free, the model answers.

    ``serving``: the endpoint config live before the fault, which a failed run must leave.
    """
    if error is None:
        assert description["status"] == "SUCCEEDED", description.get("cause")
    else:
        assert (description["status"], description["error"]) == ("FAILED", error)
        cause = description.get("cause") or ""
        assert cause and not [m for m in NOT_IN_A_CAUSE if m in cause], cause
        assert endpoint(conn)["EndpointConfigName"] == serving
    assert lock_holders(conn) == []
    # autoscaling may be resizing the endpoint after the run's traffic (bounded wait)
    assert processes.wait_until(
        lambda: endpoint(conn)["EndpointStatus"] == "InService", EXECUTION_TIMEOUT_S, 0.5
    ), endpoint(conn)
    assert classify(conn, deployed["image"])["predictions"][0]["label"] == "dog"


def live_config(conn: Connection) -> str:
    return endpoint(conn)["EndpointConfigName"]


def test_training_fails(conn: Connection, deployed: dict[str, Any], tmp_path: Path) -> None:
    """Fault: the data set is not a readable archive; training fails."""
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(b"this is not a gzip archive")
    serving = live_config(conn)
    description = run_upload(conn, archive, "datasets/broken.tar.gz")
    survived(conn, deployed, description, "TrainingJobFailed", serving)


def test_quality_gate_fails(conn: Connection, deployed: dict[str, Any], tmp_path: Path) -> None:
    """Fault: the new model is worse than the gate; it is never deployed."""
    root = data_set(tmp_path / "swapped-valid", swap="valid")
    serving = live_config(conn)
    description = run_upload(conn, archive_of(root), "datasets/swapped-valid.tar.gz")
    survived(conn, deployed, description, "QualityGateFailed", serving)
    assert "DeployModel" not in entered(conn, description["executionArn"])


def test_endpoint_fails_to_come_up(
    conn: Connection, deployed: dict[str, Any], tmp_path: Path
) -> None:
    """Fault: the new model's artifact is damaged after training; its servers never start."""
    serving = live_config(conn)
    root = data_set(tmp_path / "damaged", seed=1)
    arn = start_upload(conn, archive_of(root), "datasets/damaged.tar.gz")
    sagemaker = conn.client("sagemaker")
    name = job_name(conn, arn)

    def completed() -> bool:
        status = sagemaker.describe_training_job(TrainingJobName=name)["TrainingJobStatus"]
        return status in {"Completed", "Failed", "Stopped"}

    # The window: the next CheckTraining poll, the gate and the lock come before the deploy.
    assert processes.wait_until(completed, EXECUTION_TIMEOUT_S, interval=0.05)
    job = sagemaker.describe_training_job(TrainingJobName=name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    bucket, key = job["ModelArtifacts"]["S3ModelArtifacts"].removeprefix("s3://").split("/", 1)
    conn.client("s3").put_object(Bucket=bucket, Key=key, Body=b"not a model")
    description = finish(conn, arn)
    survived(conn, deployed, description, "EndpointDeploymentFailed", serving)
    assert "RollBack" in entered(conn, arn)


def test_smoke_test_fails_while_the_endpoint_scales(
    conn: Connection, deployed: dict[str, Any], tmp_path: Path
) -> None:
    """Fault: the smoke test fails, and autoscaling resizes the endpoint as the rollback starts."""
    root = data_set(tmp_path / "swapped-test", swap="test")
    serving = live_config(conn)
    arn = start_upload(conn, archive_of(root), "datasets/swapped-test.tar.gz")
    wait_for_state(conn, arn, "SmokeTest", EXECUTION_TIMEOUT_S)
    sagemaker = conn.client("sagemaker")
    capacity = [{"VariantName": "AllTraffic", "DesiredInstanceCount": 3}]

    def scaled() -> bool:  # the canary may still be moving traffic: scale once it is done
        try:
            sagemaker.update_endpoint_weights_and_capacities(
                EndpointName=ENDPOINT, DesiredWeightsAndCapacities=capacity
            )
        except sagemaker.exceptions.ClientError as exc:
            if "in-progress" not in str(exc):
                raise
            return sfn_status(conn, arn) != "RUNNING"
        return True

    assert processes.wait_until(scaled, EXECUTION_TIMEOUT_S, interval=0.1)
    description = finish(conn, arn)

    # The resize may land after the rollback, as the run ends (a Wait on the endpoint ends
    # as soon as the rollback settles): the endpoint serves meanwhile; let the resize settle.
    def resized() -> bool:
        return endpoint(conn)["EndpointStatus"] != "Updating"

    assert processes.wait_until(resized, EXECUTION_TIMEOUT_S, interval=0.2)
    survived(conn, deployed, description, "SmokeTestFailed", serving)
    assert "(rolled back)" in description["cause"]
    # The rollback met a busy endpoint (the canary's update or the resize) and waited.
    assert "waiting" in [step.get("action") for step in rollback_steps(conn, arn)]


def sfn_status(conn: Connection, arn: str) -> str:
    return conn.client("stepfunctions").describe_execution(executionArn=arn)["status"]


def rollback_steps(conn: Connection, arn: str) -> list[dict[str, Any]]:
    """What each RollBack step returned (its ResultPath is $.rollback), in order."""
    steps = []
    for event in execution_events(conn, arn):
        exited = event.get("stateExitedEventDetails") or {}
        if exited.get("name") == "RollBack":
            steps.append(json.loads(exited.get("output") or "{}").get("rollback") or {})
    return steps


def model_servers(cloud: LocalCloudProcess) -> list[int]:
    assert cloud.proc is not None
    found = []
    for pid in processes.descendants(cloud.proc.pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--model-dir" in argv and not argv[0].endswith(b"bwrap"):
            found.append(pid)
    return found


def fleet_state(conn: Connection, cloud: LocalCloudProcess) -> tuple[str, int, int]:
    """(EndpointStatus, instances wanted, model servers running)."""
    described = endpoint(conn)
    wanted = sum(v["DesiredInstanceCount"] for v in described["ProductionVariants"])
    return described["EndpointStatus"], wanted, len(model_servers(cloud))


def whole(conn: Connection, cloud: LocalCloudProcess) -> bool:
    """InService with one model server per instance wanted (the count autoscaling chose)."""
    status, wanted, running = fleet_state(conn, cloud)
    return status == "InService" and running == wanted


def test_a_model_server_killed_under_traffic(
    conn: Connection, cloud: LocalCloudProcess, deployed: dict[str, Any]
) -> None:
    """Fault: a model server process dies while requests arrive; it is replaced."""
    statuses: list[int] = []
    stop = threading.Event()

    def traffic() -> None:
        deadline = time.monotonic() + 2 * EXECUTION_TIMEOUT_S  # the stop comes first
        while not stop.is_set() and time.monotonic() < deadline:
            statuses.append(classify_file(conn, deployed["image"])[0])

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    try:
        # a steady fleet first (an earlier test may have resized it; autoscaling may too)
        assert processes.wait_until(lambda: whole(conn, cloud), EXECUTION_TIMEOUT_S, 0.5)
        killed = model_servers(cloud)[0]
        os.kill(killed, signal.SIGKILL)

        def healed() -> bool:  # a live server for every instance, the killed one gone
            return whole(conn, cloud) and killed not in model_servers(cloud)

        replaced = processes.wait_until(healed, EXECUTION_TIMEOUT_S, interval=0.5)
        assert replaced, f"the killed model server was not replaced: {fleet_state(conn, cloud)}"
        assert processes.wait_until(
            lambda: classify_file(conn, deployed["image"])[0] == 200, 60, interval=0.5
        )
    finally:
        stop.set()
        sender.join(timeout=70)
    assert statuses and set(statuses) <= {200, 503}, statuses  # never a 500
    survived(conn, deployed, {"status": "SUCCEEDED"}, None)


def test_a_throttled_function_is_retried(
    conn: Connection, deployed: dict[str, Any], tmp_path: Path
) -> None:
    """Fault: the smoke-test function is throttled (concurrency 0) when the run needs it."""
    lam = conn.client("lambda")
    (name,) = [
        f["FunctionName"]
        for f in lam.list_functions()["Functions"]
        if "SmokeTest" in f["FunctionName"]
    ]
    root = data_set(tmp_path / "throttled", seed=4)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    try:
        arn = start_upload(conn, archive_of(root), "datasets/throttled.tar.gz")
        sfn = conn.client("stepfunctions")

        def throttled() -> bool:
            events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
            return any(
                e.get("lambdaFunctionFailedEventDetails", {}).get("error")
                == "Lambda.TooManyRequestsException"
                for e in events
            )

        assert processes.wait_until(throttled, EXECUTION_TIMEOUT_S, interval=0.2), "never throttled"
    finally:
        lam.delete_function_concurrency(FunctionName=name)
    description = finish(conn, arn)
    survived(conn, deployed, description, None)


def test_two_uploads_to_one_key_train_two_models_each_from_its_own_bytes(
    conn: Connection, deployed: dict[str, Any], tmp_path: Path
) -> None:
    """Fault: two different data sets land on the same key moments apart."""
    s3 = conn.client("s3")
    bucket = conn.the_bucket()
    key = "datasets/twice.tar.gz"
    archives = [archive_of(data_set(tmp_path / f"upload-{n}", seed=10 + n)) for n in (1, 2)]
    arns = [start_upload(conn, archives[0], key)]
    upload(conn, archives[1], key)
    arns += [a for a in _executions_since(conn, arns[0]) if a != arns[0]]
    assert len(arns) == 2, arns
    descriptions = [finish(conn, arn) for arn in arns]
    versions = s3.list_object_versions(Bucket=bucket, Prefix=key)["Versions"]
    assert len(versions) == 2
    sm = conn.client("sagemaker")
    trained: dict[str, bytes] = {}
    for description in descriptions:
        job = sm.describe_training_job(TrainingJobName=job_name(conn, description["executionArn"]))
        uri = job["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
        pinned = uri.removeprefix(f"s3://{bucket}/")
        version = {
            t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=job["TrainingJobArn"])["Tags"]
        }["mlops:dataset-version"]
        trained[version] = s3.get_object(Bucket=bucket, Key=pinned)["Body"].read()
    uploaded = {
        v["VersionId"]: s3.get_object(Bucket=bucket, Key=key, VersionId=v["VersionId"])[
            "Body"
        ].read()
        for v in versions
    }
    assert trained == uploaded  # each run trained exactly the version that started it
    assert {archives[0].read_bytes(), archives[1].read_bytes()} == set(uploaded.values())
    for description in descriptions:
        assert description["status"] == "SUCCEEDED", description.get("cause")
    assert lock_holders(conn) == []
    assert classify(conn, deployed["image"])["predictions"][0]["label"] == "dog"


def _executions_since(conn: Connection, first: str, timeout: float = 30) -> list[str]:
    sfn = conn.client("stepfunctions")
    machine = conn.the_state_machine()
    found: list[str] = []

    def two() -> bool:
        started = sfn.describe_execution(executionArn=first)["startDate"]
        found[:] = [
            e["executionArn"]
            for e in sfn.list_executions(stateMachineArn=machine)["executions"]
            if e["startDate"] >= started
        ]
        return len(found) >= 2

    processes.wait_until(two, timeout, interval=0.2)
    return found


def job_name(conn: Connection, arn: str) -> str:
    """The training job the execution started (waits for StartTraining to answer)."""
    sfn = conn.client("stepfunctions")
    found: list[str] = []

    def started() -> bool:
        for event in sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]:
            output = (event.get("lambdaFunctionSucceededEventDetails") or {}).get("output") or ""
            if '"training_job_arn"' in output:
                found.append(json.loads(output)["training_job_name"])
                return True
        return False

    assert processes.wait_until(started, EXECUTION_TIMEOUT_S, interval=0.2), "no training job"
    return found[0]


SERVER_FAILURE = "POST /invocations failed"  # serve.py's log line for a 500


def _server_failures(cloud: LocalCloudProcess, config_name: str) -> int:
    """The 500s the model servers of ``config_name`` logged (every instance it ever had)."""
    folders = list(cloud.settings.state_dir.rglob(f"endpoints/{ENDPOINT}/{config_name}"))
    assert folders, f"no instance logs of {config_name}"
    return sum(
        log.read_text(errors="replace").count(SERVER_FAILURE)
        for folder in folders
        for log in folder.rglob("*.log")
    )


def test_a_candidate_failing_under_traffic_is_rolled_back_by_the_alarm(
    conn: Connection, cloud: LocalCloudProcess, probes: list[traffic.Probe]
) -> None:
    live = endpoint(conn)["EndpointConfigName"]
    source = model_version_builder.live_package(conn, ENDPOINT)
    lines: list[str] = []
    with traffic.Traffic(conn, probes) as flow:
        package, arn = demo.deploy_repackaged(
            conn,
            source,
            model_version_builder.JPEG_ONLY_HANDLERS,
            "jpeg-only",
            "JPEG-only decoding",
        )
        watch = demo.Watch(
            conn,
            arn,
            endpoint_name=ENDPOINT,
            stack_name="e2e",
            flow=flow,
            prints=traffic.Fingerprints(),
            candidate="C",
            out=lines.append,
        )
        watch.prime()
        description = watch.follow(timeout=300)
        ended = time.monotonic()  # traffic goes on after the rollback: a few answers more
        assert processes.wait_until(lambda: len(flow.answers(since=ended)) >= 5, 60)
    candidate_config = json.loads(
        next(
            e["stateExitedEventDetails"]["output"]
            for e in execution_events(conn, arn)
            if e.get("stateExitedEventDetails", {}).get("name") == "DeployModel"
        )
    )["deployment"]["endpoint_config_name"]

    # The run fails with one sentence naming the alarm and the rollback.
    assert (description["status"], description["error"]) == ("FAILED", "EndpointDeploymentFailed")
    cause = description["cause"]
    assert "e2e-endpoint-5xx" in cause and "rolled back" in cause, cause
    assert "\n" not in cause and not any(marker in cause for marker in NOT_IN_A_CAUSE)
    # SageMaker rolled back by itself: InService on the old config, the alarm named. The
    # traffic may have scaled the endpoint out meanwhile (Updating for a capacity change).
    assert processes.wait_until(lambda: endpoint(conn)["EndpointStatus"] != "Updating", 120)
    after = endpoint(conn)
    assert (after["EndpointStatus"], after["EndpointConfigName"]) == ("InService", live)
    assert "CloudWatch alarm e2e-endpoint-5xx went into ALARM" in after["FailureReason"]
    version = conn.client("sagemaker").describe_model_package(ModelPackageName=package)
    assert version["ModelApprovalStatus"] == "Rejected"
    # What the traffic saw. The old fleet's model answers every probe (JPEG and PNG); the
    # candidate answers JPEGs and fails PNGs with a 500. Asserted: (1) every JPEG request
    # was answered, whichever fleet took it; (2) every failed request was a PNG; (3) the
    # failures are exactly the 500s the candidate's servers logged, and the old config's
    # servers logged none: no request failed except those routed to the canary, and every
    # request that reached the old fleet was answered, before, during and after the
    # rollback; (4) some requests did fail (the canary really took traffic).
    answers = flow.answers()
    failed = [a for a in answers if not a.ok]
    assert all(a.ok for a in answers if a.probe.kind == "jpeg")
    assert failed and {a.probe.kind for a in failed} == {"png"}
    assert all(a.status >= 500 for a in failed), {a.status for a in failed}
    assert _server_failures(cloud, candidate_config) == len(failed)
    assert _server_failures(cloud, live) == 0
    # after the run the old model answers PNGs again
    assert all(traffic.ask(conn, p).ok for p in probes)
    # The alarm's SNS notification is recorded (the local stand-in for the topic's e-mail).
    (notifications,) = cloud.settings.state_dir.rglob("alarm-notifications.jsonl")
    sent = [json.loads(line) for line in notifications.read_text().splitlines()]
    assert any(
        n["message"]["AlarmName"] == "e2e-endpoint-5xx"
        and n["message"]["NewStateValue"] == "ALARM"
        and n["topic"].startswith("arn:aws:sns:")
        for n in sent
    ), sent
    # What the demo prints as it happens: the alarm and the rollback's outcome (the canary
    # stage and the rollback may each last less than the watcher's poll: the first PNG
    # routed to the canary trips the alarm, and the old fleet is still up).
    text = "\n".join(lines)
    assert re.search(r"alarm e2e-endpoint-5xx: \w+ -> ALARM", text), text
    # CheckEndpoint names the alarm from its state, or (once it is OK again, as on a slow
    # machine) from SageMaker's FailureReason: either way the rollback names the alarm
    assert re.search(r"rolled back(: CloudWatch| by) alarm e2e-endpoint-5xx", text), text
    assert lock_holders(conn) == []
