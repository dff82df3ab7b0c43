"""How soon the local SageMaker's deployment guardrails act, on the stand-in model servers of
tests/localcloud/services/sagemaker/test_guardrails.py (time scale 0.02: a 60 s alarm period is 1.2
s):

- alarm rollback: a canary whose model fails every other request, an alarm on
  Invocation5XXErrors; seconds from UpdateEndpoint until the old config serves again
  (goal: well within the canary's 600 s wait, 12 s here);
- execution timeout: MaximumExecutionTimeoutInSeconds 600 (12 s here) on a canary that
  waits 599 s, with a new fleet that takes 2 s to start (counted in real seconds, so 598 s
  are left); seconds from UpdateEndpoint until it is rolled back (goal: just over 14 s).

    python -m bench.guardrails [--runs N]

The tests check what happens (the rollback and its cause); the timings are measured here.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.localcloud.guardrails_support import (
    Local,
    Traffic,
    add_model,
    canary,
    local_guardrails,
    put_alarm,
    start_endpoint,
    wait_settled,
)


def alarm_rollback(aws: Local) -> float:
    start_endpoint(aws)
    put_alarm(aws, "ep-5xx", "Invocation5XXErrors", 1)
    traffic = Traffic(aws.runtime)
    threading.Thread(target=traffic.run, daemon=True).start()
    try:
        config = add_model(aws, "v2", fail_every=2)
        began = time.monotonic()
        aws.sagemaker.update_endpoint(
            EndpointName="ep",
            EndpointConfigName=config,
            DeploymentConfig=canary(percent=25, wait=600, termination=0, alarms=("ep-5xx",)),
        )
        after = wait_settled(aws)
        took = time.monotonic() - began
    finally:
        traffic.stop.set()
    assert after["EndpointConfigName"] == "config-v1", after
    return took


def execution_timeout(aws: Local) -> float:
    config = canary(percent=50, wait=599, termination=0)
    config["BlueGreenUpdatePolicy"]["MaximumExecutionTimeoutInSeconds"] = 600
    aws.sagemaker.create_endpoint(
        EndpointName="ep", EndpointConfigName=add_model(aws, "v1"), DeploymentConfig=config
    )
    wait_settled(aws)
    began = time.monotonic()
    aws.sagemaker.update_endpoint(
        EndpointName="ep",
        EndpointConfigName=add_model(aws, "v2", start_s=2),
        RetainDeploymentConfig=True,
    )
    after = wait_settled(aws, timeout=120)
    took = time.monotonic() - began
    assert "MaximumExecutionTimeoutInSeconds" in after.get("FailureReason", ""), after
    return took


def measure(scenario: Callable[[Local], float], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as root, local_guardrails(Path(root)) as aws:
            samples.append(scenario(aws))
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.guardrails", description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    for name, scenario, goal in (
        ("alarm rollback", alarm_rollback, "canary wait 12 s"),
        ("execution timeout", execution_timeout, "start 2 s, then deadline 12 s"),
    ):
        samples = measure(scenario, args.runs)
        shown = ", ".join(f"{s:.1f}" for s in samples)
        print(f"{name}: median {statistics.median(samples):.1f} s ({shown}; {goal})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
