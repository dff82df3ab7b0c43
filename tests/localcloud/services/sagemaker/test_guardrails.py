"""Deployment guardrails in the local SageMaker: canary and linear updates on real traffic,
per-variant CloudWatch metrics, alarms that evaluate, and automatic rollback.

Small stand-in model servers (a model.json says which version they are, how often they fail
and how slowly they answer) keep each case to seconds; time_scale 0.02 makes a 60 s alarm
period 1.2 s and a 300 s canary wait 6 s.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.sagemaker.exceptions import ValidationError

from localcloud.services.sagemaker import guardrails
from tests.localcloud.guardrails_support import (
    ACCOUNT,
    VARIANT,
    Local,
    StatusWatch,
    Traffic,
    add_model,
    alarm_topic,
    canary,
    local_guardrails,
    pending_status,
    put_alarm,
    start,
    start_endpoint,
    wait_settled,
)
from tests.localcloud.sagemaker_support import (
    REGION,
    assert_no_new_children,
    children,
    pid_alive,
    wait_for,
)


@pytest.fixture
def aws(tmp_path: Path) -> Iterator[Local]:
    before = children()
    with local_guardrails(tmp_path) as local:
        yield local
    assert_no_new_children(before)


@pytest.fixture
def watchers(aws: Local) -> Iterator[tuple[Traffic, StatusWatch]]:
    traffic, watch = Traffic(boto3.client("sagemaker-runtime", region_name=REGION)), StatusWatch()
    threads = [threading.Thread(target=w.run, daemon=True) for w in (traffic, watch)]
    yield traffic, watch
    traffic.stop.set()
    watch.stop.set()
    for thread in threads:
        if thread.is_alive():
            thread.join(10)


# --- a good update --------------------------------------------------------------------


def test_a_good_canary_serves_its_share_then_takes_all_traffic(
    aws: Local, watchers: tuple[Traffic, StatusWatch]
) -> None:
    start_endpoint(aws)
    put_alarm(aws, "ep-5xx", "Invocation5XXErrors", 1)
    traffic, watch = watchers
    start(traffic, watch)
    old_pids = {
        json.loads(aws.runtime.invoke_endpoint(EndpointName="ep", Body=b"x")["Body"].read())["pid"]
        for _ in range(4)
    }
    config = canary(percent=25, alarms=("ep-5xx",))

    aws.sagemaker.update_endpoint(
        EndpointName="ep", EndpointConfigName=add_model(aws, "v2"), DeploymentConfig=config
    )

    during = aws.sagemaker.describe_endpoint(EndpointName="ep")
    assert (during["EndpointStatus"], during["EndpointConfigName"]) == ("Updating", "config-v1")
    assert during["PendingDeploymentSummary"]["EndpointConfigName"] == "config-v2"
    baking = wait_for(lambda: pending_status(aws), lambda s: s[0] == "Baking", 30)
    assert baking[1].startswith("Canary: 25%")
    canary_start = time.monotonic()
    split = traffic.answers_since(canary_start, 40)
    # still the canary (its 6 s wait), so every one of those replies came during it
    assert pending_status(aws)[1].startswith("Canary: 25%"), pending_status(aws)
    assert set(split) == {"v1", "v2"}, split
    share = split.count("v2") / len(split)
    assert 0.08 <= share <= 0.45, (share, len(split))

    final = wait_for(
        lambda: pending_status(aws), lambda s: "final baking" in s[1] or s[0] == "InService", 30
    )
    assert final[0] == "Baking"
    after = wait_settled(aws)
    assert (after["EndpointStatus"], after["EndpointConfigName"]) == ("InService", "config-v2")
    assert "PendingDeploymentSummary" not in after and "FailureReason" not in after
    assert after["LastDeploymentConfig"] == config
    assert set(traffic.answers_since(time.monotonic(), 10)) == {"v2"}
    assert watch.seen == ["InService", "Updating", "InService"]
    wait_for(lambda: [pid_alive(p) for p in old_pids], lambda alive: not any(alive), 20)
    assert "ModelError" not in {what for _, what in traffic.replies}
    metrics = aws.cloudwatch.list_metrics(Namespace="AWS/SageMaker")["Metrics"]
    assert {m["MetricName"] for m in metrics} >= {
        "Invocations",
        "Invocation4XXErrors",
        "Invocation5XXErrors",
        "ModelLatency",
    }
    alarm = aws.cloudwatch.describe_alarms(AlarmNames=["ep-5xx"])["MetricAlarms"][0]
    assert alarm["StateValue"] == "OK"


# --- bad updates roll back ------------------------------------------------------------


def test_a_canary_that_fails_requests_trips_the_alarm_and_rolls_back(
    aws: Local, watchers: tuple[Traffic, StatusWatch]
) -> None:
    start_endpoint(aws)
    topic, queue = alarm_topic(aws)
    put_alarm(aws, "ep-5xx", "Invocation5XXErrors", 1, topic)
    traffic, watch = watchers
    start(traffic, watch)
    config = canary(percent=25, wait=600, termination=0, alarms=("ep-5xx",))

    aws.sagemaker.update_endpoint(
        EndpointName="ep",
        EndpointConfigName=add_model(aws, "v2", fail_every=2),
        DeploymentConfig=config,
    )

    after = wait_settled(aws)
    assert watch.seen == ["InService", "Updating", "RollingBack", "InService"]
    assert (after["EndpointStatus"], after["EndpointConfigName"]) == ("InService", "config-v1")
    assert "CloudWatch alarm ep-5xx went into ALARM" in after["FailureReason"]
    assert "canary" in after["FailureReason"]
    assert after["LastDeploymentConfig"] == config
    assert set(traffic.answers_since(time.monotonic(), 10)) == {"v1"}
    # the old model answered throughout; only the canary's own failures were errors
    answers = [what for _, what in traffic.replies]
    assert set(answers) <= {"v1", "v2", "ModelError"} and "ModelError" in answers
    first, last = traffic.replies[0][0], traffic.replies[-1][0]
    buckets: dict[int, set[str]] = {}
    for t, what in traffic.replies:
        buckets.setdefault(int((t - first) / 0.5), set()).add(what)
    assert all("v1" in buckets.get(i, set()) for i in range(int((last - first) / 0.5)))

    alarm = aws.cloudwatch.describe_alarms(AlarmNames=["ep-5xx"])["MetricAlarms"][0]
    assert alarm["StateValue"] == "ALARM"
    assert "Threshold Crossed" in alarm["StateReason"]
    history = aws.cloudwatch.describe_alarm_history(AlarmName="ep-5xx")["AlarmHistoryItems"]
    assert history[0]["HistorySummary"].endswith("to ALARM")
    message = wait_for(
        lambda: aws.sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0).get("Messages"),
        bool,
        10,
    )
    notice = json.loads(json.loads(message[0]["Body"])["Message"])
    assert (notice["AlarmName"], notice["NewStateValue"]) == ("ep-5xx", "ALARM")
    assert notice["Trigger"]["MetricName"] == "Invocation5XXErrors"
    log = aws.state / "cloudwatch" / "alarm-notifications.jsonl"
    assert json.loads(log.read_text().splitlines()[0])["topic"] == topic


def test_a_slow_linear_update_trips_the_latency_alarm_and_rolls_back(
    aws: Local, watchers: tuple[Traffic, StatusWatch]
) -> None:
    start_endpoint(aws, instances=2)
    put_alarm(
        aws,
        "ep-latency",
        "ModelLatency",
        150_000,
        statistic="Maximum",
        comparison="GreaterThanThreshold",
    )
    traffic, watch = watchers
    start(traffic, watch)
    config = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "LINEAR",
                "WaitIntervalInSeconds": 600,
                "LinearStepSize": {"Type": "INSTANCE_COUNT", "Value": 1},
            },
            "MaximumExecutionTimeoutInSeconds": 3600,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "ep-latency"}]},
    }

    aws.sagemaker.update_endpoint(
        EndpointName="ep",
        EndpointConfigName=add_model(aws, "v2", delay_ms=300),
        DeploymentConfig=config,
    )

    step = wait_for(lambda: pending_status(aws), lambda s: s[0] != "Creating", 30)
    assert step[1].startswith("Linear step 1 of 2: 50%"), step
    after = wait_settled(aws)
    assert "RollingBack" in watch.seen
    assert (after["EndpointStatus"], after["EndpointConfigName"]) == ("InService", "config-v1")
    assert "CloudWatch alarm ep-latency went into ALARM" in after["FailureReason"]
    assert "linear step 1 of 2" in after["FailureReason"]
    answers = {what for _, what in traffic.replies}
    assert answers == {"v1", "v2"}  # slow, never failed: every request was answered


def test_a_retained_config_runs_again_and_the_execution_timeout_rolls_back(aws: Local) -> None:
    # 12 s here; the new fleet's start of 2 real seconds counts as 2 s, and leaves less of
    # the timeout than the canary's wait
    config = canary(percent=50, wait=599, termination=0)
    config["BlueGreenUpdatePolicy"]["MaximumExecutionTimeoutInSeconds"] = 600
    aws.sagemaker.create_endpoint(
        EndpointName="ep", EndpointConfigName=add_model(aws, "v1"), DeploymentConfig=config
    )
    assert wait_settled(aws)["LastDeploymentConfig"] == config
    began = time.monotonic()

    aws.sagemaker.update_endpoint(
        EndpointName="ep",
        EndpointConfigName=add_model(aws, "v2", start_s=2),
        RetainDeploymentConfig=True,
    )

    assert wait_for(lambda: pending_status(aws), lambda s: s[0] == "Baking", 30)[1].startswith(
        "Canary: 50%"
    )
    after = wait_settled(aws)
    assert (
        time.monotonic() - began > 11
    )  # not before the deadline (how soon after: bench.guardrails)
    assert (after["EndpointStatus"], after["EndpointConfigName"]) == ("InService", "config-v1")
    assert "within MaximumExecutionTimeoutInSeconds (600 s)" in after["FailureReason"]


def test_a_slow_fleet_start_does_not_use_up_the_scaled_execution_timeout(tmp_path: Path) -> None:
    """The green fleet's start-up counts in real seconds: here it takes longer than the whole
    MaximumExecutionTimeoutInSeconds on the scaled clock (600 s x 0.002 = 1.2 s), as a slow
    machine's start of a real model server can, and the deployment still completes (it
    rolled back, 'did not finish within MaximumExecutionTimeoutInSeconds', before)."""
    before = children()
    with local_guardrails(tmp_path, scale=0.002) as aws:
        start_endpoint(aws)
        config = canary(percent=50, wait=60, termination=0)
        config["BlueGreenUpdatePolicy"]["MaximumExecutionTimeoutInSeconds"] = 600
        slow = add_model(aws, "v2", start_s=2)
        aws.sagemaker.update_endpoint(
            EndpointName="ep", EndpointConfigName=slow, DeploymentConfig=config
        )
        after = wait_settled(aws)
        assert (after["EndpointStatus"], after["EndpointConfigName"]) == (
            "InService",
            "config-v2",
        ), after.get("FailureReason")
    assert_no_new_children(before)


# --- validation -------------------------------------------------------------------------


def test_deployment_configs_sagemaker_refuses(aws: Local) -> None:
    start_endpoint(aws, instances=2)
    put_alarm(aws, "ep-5xx", "Invocation5XXErrors", 1)
    new = add_model(aws, "v2")

    def refused(config: dict[str, Any], endpoint_config: str = new) -> str:
        with pytest.raises(ClientError) as error:
            aws.sagemaker.update_endpoint(
                EndpointName="ep", EndpointConfigName=endpoint_config, DeploymentConfig=config
            )
        assert error.value.response["Error"]["Code"] == "ValidationException"
        return error.value.response["Error"]["Message"]

    by_count = canary()
    by_count["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["CanarySize"] = {
        "Type": "INSTANCE_COUNT",
        "Value": 2,
    }
    assert "more than 50% of the 2 instance(s)" in refused(by_count)
    assert "at most 50%" in refused(canary(percent=60))
    no_size = canary()
    del no_size["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["CanarySize"]
    assert "needs CanarySize" in refused(no_size)
    slow = canary(wait=1500, termination=400)
    slow["BlueGreenUpdatePolicy"]["MaximumExecutionTimeoutInSeconds"] = 1800
    assert "must be larger than the total waiting time" in refused(slow)
    assert "do not exist" in refused(canary(alarms=("no-such-alarm",)))
    linear = canary()
    linear["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"] = {
        "Type": "LINEAR",
        "WaitIntervalInSeconds": 60,
        "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 60},
    }
    assert "10-50%" in refused(linear)
    rolling = {
        "MaximumBatchSize": {"Type": "INSTANCE_COUNT", "Value": 1},
        "WaitIntervalInSeconds": 0,
    }
    assert "not both" in refused({**canary(), "RollingUpdatePolicy": rolling})
    assert "RollingUpdatePolicy is not supported" in refused({"RollingUpdatePolicy": rolling})
    aws.sagemaker.create_endpoint_config(
        EndpointConfigName="renamed",
        ProductionVariants=[
            {
                "VariantName": "Other",
                "ModelName": "model-v2",
                "InitialInstanceCount": 2,
                "InstanceType": "ml.m5.large",
            }
        ],
    )
    assert "keep the variant names" in refused(canary(), "renamed")
    # nothing was started: the endpoint still serves its config
    endpoint = aws.sagemaker.describe_endpoint(EndpointName="ep")
    assert (endpoint["EndpointStatus"], endpoint["EndpointConfigName"]) == (
        "InService",
        "config-v1",
    )


def test_linear_and_canary_plans() -> None:
    counts = {VARIANT: 4}
    linear = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "LINEAR",
                "WaitIntervalInSeconds": 60,
                "LinearStepSize": {"Type": "INSTANCE_COUNT", "Value": 1},
            },
            "TerminationWaitInSeconds": 120,
        }
    }
    with mock_aws():
        plan = guardrails.plan(linear, counts, account_id=ACCOUNT, region=REGION)
        assert [s.shares[VARIANT] for s in plan.steps] == [0.25, 0.5, 0.75, 1.0]
        assert [s.bake_s for s in plan.steps] == [60, 60, 60, 0]
        assert plan.total_wait_s == 300
        by_count = canary()
        by_count["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["CanarySize"] = {
            "Type": "INSTANCE_COUNT",
            "Value": 1,
        }
        plan = guardrails.plan(by_count, counts, account_id=ACCOUNT, region=REGION)
        assert [s.shares[VARIANT] for s in plan.steps] == [0.25, 1.0]
        short = canary()  # botocore refuses it before sending; other clients may not
        short["BlueGreenUpdatePolicy"]["MaximumExecutionTimeoutInSeconds"] = 300
        with pytest.raises(ValidationError, match="between 600 and 28800"):
            guardrails.plan(short, counts, account_id=ACCOUNT, region=REGION)
        default = guardrails.plan(None, counts, account_id=ACCOUNT, region=REGION)
        assert (default.kind, len(default.steps), default.alarms) == ("ALL_AT_ONCE", 1, ())
