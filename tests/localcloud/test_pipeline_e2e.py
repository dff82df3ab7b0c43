"""The real pipeline end to end in the local cloud (template.yaml, the ASL, the functions,
train.py on two hosts, serve.py endpoints), on a tiny two-colour data set (see
pipeline_support.py), and a retrained model through the canary under traffic through the
HTTP API. The faults a run can meet, a model failing under traffic among them, are in
test_faults.py.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from localcloud.cli import demo, probe_traffic
from localcloud.runner.report import execution_events, training_job_of
from localcloud.runtime import processes
from localcloud.runtime.connection import Connection
from localcloud.runtime.launcher import LocalCloudProcess
from tests.acceptance import promise
from tests.localcloud.pipeline_support import (
    endpoint,
    entered,
    finish,
    lock_holders,
    target_of,
    wait_for_state,
)

pytestmark = pytest.mark.e2e

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


def test_upload_trains_on_two_hosts_deploys_and_serves(
    conn: Connection, cloud: LocalCloudProcess, deployed: dict[str, Any]
) -> None:
    """The acceptance test, which `make verify-aws` runs on AWS (tests/acceptance/: the first
    run's upload and follow-up go through it too), then what only the local cloud shows."""
    description = deployed["description"]
    promise.assert_promise(
        target_of(conn), description, [deployed["image"]], min_accuracy=1, settle_s=120
    )
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


def test_state_dir_keeps_logs_models_and_histories(
    cloud: LocalCloudProcess, deployed: dict[str, Any]
) -> None:
    state = cloud.settings.state_dir
    assert list((state / "logs" / "lambda").glob("*PrepareRun*.log"))
    assert len(list((state / "executions").rglob("*.json"))) >= 2
    assert any(p.name == "model.tar.gz" for p in (state / "sagemaker").rglob("*"))


ROLLBACK_ALARMS = ["e2e-endpoint-5xx", "e2e-model-latency", "e2e-classify-errors"]


def _check_endpoint_states(conn: Connection, arn: str) -> list[str]:
    """The ``endpoint.state`` each CheckEndpoint returned, and the smoke tests' entries, in
    order."""
    seen = []
    for event in execution_events(conn, arn):
        details = event.get("stateEnteredEventDetails")
        if details and details["name"] in ("CanarySmokeTest", "SmokeTest"):
            seen.append(details["name"])
        exited = event.get("stateExitedEventDetails")
        if exited and exited["name"] == "CheckEndpoint":
            seen.append(json.loads(exited["output"])["endpoint"]["state"])
    return seen


def test_a_retrained_model_goes_through_the_canary_and_takes_all_traffic(
    conn: Connection, deployed: dict[str, Any], probes: list[probe_traffic.Probe]
) -> None:
    prints = probe_traffic.Fingerprints()
    demo.learn(conn, prints, "A", probes)
    dataset = f"s3://{conn.the_bucket()}/datasets/colours.tar.gz"
    arn = demo.start_retraining(conn, dataset, seed=1)
    wait_for_state(conn, arn, "DeployModel")  # training done: traffic from here on
    with probe_traffic.Traffic(conn, probes) as flow:
        description = finish(conn, arn)
        done = time.monotonic()
        # answers sent once the run ended (0.5 s on: none in flight from before)
        assert processes.wait_until(lambda: len(flow.answers(since=done + 0.5)) >= 5, 60)
    assert description["status"] == "SUCCEEDED", description.get("cause")
    output = json.loads(description["output"])
    # the run's traffic may have autoscaling resize the endpoint as the run ends: let it settle
    assert processes.wait_until(lambda: endpoint(conn)["EndpointStatus"] == "InService", 120)
    live = endpoint(conn)
    assert live["EndpointConfigName"] == output["endpoint_config_name"] != deployed["config"]
    # SageMaker's blue/green canary with the template's three rollback alarms ...
    config = live["LastDeploymentConfig"]
    routing = config["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing["Type"] == "CANARY"
    assert routing["CanarySize"] == {"Type": "INSTANCE_COUNT", "Value": 1}
    alarms = [a["AlarmName"] for a in config["AutoRollbackConfiguration"]["Alarms"]]
    assert sorted(alarms) == sorted(ROLLBACK_ALARMS)
    # ... the smoke images went out while the endpoint was in the canary stage, the rest
    # shifted, then the smoke test judged the new model alone
    states = _check_endpoint_states(conn, arn)
    assert states.index("canary") < states.index("CanarySmokeTest") < states.index("in_service")
    assert states[-2:] == ["in_service", "SmokeTest"]
    # Under traffic: nothing failed; while the canary baked A and B both answered (B's
    # answers are the ones A would not give); once the run ended only B answered.
    answers = flow.answers()
    assert answers and all(a.ok for a in answers), [a.message for a in answers if not a.ok]
    during = [prints.identify(a) for a in answers if a.at < done]
    after = [prints.identify(a) for a in flow.answers(since=done + 0.5)]
    assert "A" in during and probe_traffic.UNKNOWN in during
    first_b = min(a.at for a in answers if prints.identify(a) == probe_traffic.UNKNOWN)
    assert any(a.at > first_b for a in answers if prints.identify(a) == "A")  # side by side
    assert after and set(after) == {probe_traffic.UNKNOWN}
    assert lock_holders(conn) == []
