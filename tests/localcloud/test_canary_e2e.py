"""The canary end to end in the local cloud, under traffic through the HTTP API: a retrained
model goes through the pipeline's canary and takes all traffic; a model version whose new
``code/inference.py`` fails the requests it cannot decode (PNG) is rolled back by the
endpoint's 5XX alarm while the live model answers (localcloud.candidates says how that
version is built: an ordinary handlers file in its model.tar.gz, nothing in the product).

One local cloud for the module with model A deployed (conftest.py); the tests run in order.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from localcloud import candidates, demo, traffic
from localcloud.client import Connection
from localcloud.launcher import LocalCloudProcess
from localcloud.report import execution_events
from tests.localcloud.pipeline_support import (
    ENDPOINT,
    NOT_IN_A_CAUSE,
    endpoint,
    finish,
    lock_holders,
    wait_for_state,
)

pytestmark = pytest.mark.e2e

ROLLBACK_ALARMS = ["e2e-endpoint-5xx", "e2e-model-latency", "e2e-classify-errors"]
SERVER_FAILURE = "POST /invocations failed"  # serve.py's log line for a 500


@pytest.fixture(scope="module")
def probes(deployed: dict[str, Any]) -> list[traffic.Probe]:
    test_dir = Path(deployed["image"]).parents[1]
    return traffic.probes([max((test_dir / label).iterdir()) for label in ("cat", "dog")])


def _check_endpoint_states(conn: Connection, arn: str) -> list[str]:
    """The ``endpoint.state`` each CheckEndpoint returned, and SmokeTest entries, in order."""
    seen = []
    for event in execution_events(conn, arn):
        details = event.get("stateEnteredEventDetails")
        if details and details["name"] == "SmokeTest":
            seen.append("SmokeTest")
        exited = event.get("stateExitedEventDetails")
        if exited and exited["name"] == "CheckEndpoint":
            seen.append(json.loads(exited["output"])["endpoint"]["state"])
    return seen


def test_a_retrained_model_goes_through_the_canary_and_takes_all_traffic(
    conn: Connection, deployed: dict[str, Any], probes: list[traffic.Probe]
) -> None:
    prints = traffic.Fingerprints()
    demo.learn(conn, prints, "A", probes)
    dataset = f"s3://{conn.the_bucket()}/datasets/colours.tar.gz"
    arn = demo.start_retraining(conn, dataset, seed=1)
    wait_for_state(conn, arn, "DeployModel")  # training done: traffic from here on
    with traffic.Traffic(conn, probes) as flow:
        description = finish(conn, arn)
        done = time.monotonic()
        time.sleep(1.5)
    assert description["status"] == "SUCCEEDED", description.get("cause")
    output = json.loads(description["output"])
    live = endpoint(conn)
    assert live["EndpointStatus"] == "InService"
    assert live["EndpointConfigName"] == output["endpoint_config_name"] != deployed["config"]
    # SageMaker's blue/green canary with the template's three rollback alarms ...
    config = live["LastDeploymentConfig"]
    routing = config["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing["Type"] == "CANARY"
    assert routing["CanarySize"] == {"Type": "INSTANCE_COUNT", "Value": 1}
    alarms = [a["AlarmName"] for a in config["AutoRollbackConfiguration"]["Alarms"]]
    assert sorted(alarms) == sorted(ROLLBACK_ALARMS)
    # ... the smoke test ran while the endpoint was in the canary stage, then the rest shifted
    states = _check_endpoint_states(conn, arn)
    assert "canary" in states and "SmokeTest" in states
    assert states.index("canary") < states.index("SmokeTest")
    assert states[-1] == "in_service"
    # Under traffic: nothing failed; while the canary baked A and B both answered (B's
    # answers are the ones A would not give); once the run ended only B answered.
    answers = flow.answers()
    assert answers and all(a.ok for a in answers), [a.message for a in answers if not a.ok]
    during = [prints.identify(a) for a in answers if a.at < done]
    after = [prints.identify(a) for a in flow.answers(since=done + 0.5)]
    assert "A" in during and traffic.UNKNOWN in during
    first_b = min(a.at for a in answers if prints.identify(a) == traffic.UNKNOWN)
    assert any(a.at > first_b for a in answers if prints.identify(a) == "A")  # side by side
    assert after and set(after) == {traffic.UNKNOWN}
    assert lock_holders(conn) == []


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
    source = candidates.live_package(conn, ENDPOINT)
    lines: list[str] = []
    with traffic.Traffic(conn, probes) as flow:
        package, arn = demo.deploy_repackaged(
            conn, source, candidates.JPEG_ONLY_HANDLERS, "jpeg-only", "JPEG-only decoding"
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
        time.sleep(1.0)
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
    # SageMaker rolled back by itself: InService on the old config, the alarm named.
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
    # What the demo prints as it happens: the alarm and the rollback (the canary stage may
    # last less than a poll: the first PNG routed to it trips the alarm).
    text = "\n".join(lines)
    assert re.search(r"alarm e2e-endpoint-5xx: \w+ -> ALARM", text), text
    assert re.search(r"deployment: \w+: Rolling back|: RollingBack \(", text), text
    assert "rolled back by alarm e2e-endpoint-5xx" in text, text
    assert lock_holders(conn) == []
