"""A blue/green endpoint update, step by step, with alarm rollback (UpdateEndpoint).

The new (green) fleet starts in full and passes its health checks while the old (blue)
fleet serves. Then the plan's steps move each variant's traffic share to it (all at once,
a canary then the rest, or linear steps), each followed by its baking period, then the
final baking period (TerminationWaitInSeconds), and the blue fleet stops. From the first
shift on, any alarm of AutoRollbackConfiguration in ALARM, or the deployment running past
MaximumExecutionTimeoutInSeconds, rolls back: the traffic returns to the blue fleet
(``RollingBack``), the green fleet stops, and the endpoint is InService on its old config
with a FailureReason naming the alarm (``UpdateRollbackFailed`` when the blue fleet cannot
be made whole again). Waits run on the ``time_scale`` clock of ``install()``; the green
fleet's start-up is counted in real seconds (it starts at this machine's speed, which the
scaled clock does not speed up), the rest of the timeout on the scaled clock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from . import capture, guardrails, metrics
from .fleet import DeployError, VariantFleet
from .guardrails import Plan
from .install_options import Settings

logger = logging.getLogger(__name__)
_POLL_S = 0.05


class Endpoint(Protocol):
    """What a rollout reads and changes of the endpoint it updates (hosting's
    ``EndpointRuntime``); a protocol, so that hosting imports this module and not the reverse."""

    endpoint: Any
    name: str
    fleets: dict[str, VariantFleet]
    green: dict[str, VariantFleet]
    green_shares: dict[str, float]
    _account_id: str
    _region: str
    _closed: bool
    _lock: threading.Lock

    def _build(
        self,
        config: Mapping[str, Any],
        counts: Mapping[str, int],
        weights: Mapping[str, float],
        cancelled: Callable[[], bool] | None = None,
    ) -> dict[str, VariantFleet]: ...

    def _finish(self, status: str, failure: str | None = None) -> None: ...


class Rollout:
    def __init__(
        self,
        runtime: Endpoint,
        config: Mapping[str, Any],
        counts: Mapping[str, int],
        weights: Mapping[str, float],
        plan: Plan,
        settings: Settings,
    ) -> None:
        self.runtime = runtime
        self.config = config
        self.counts = dict(counts)
        self.weights = dict(weights)
        self.plan = plan
        self.settings = settings
        self.started = _now()
        self._began = time.monotonic()
        # while the green fleet starts: the whole timeout in real seconds (see _start_clock)
        self.deadline = self._began + plan.timeout_s
        self.green: dict[str, VariantFleet] = {}
        self._status = ("Creating", "Launching the instances of the new fleet.")
        self._status_since = self.started

    # --- what DescribeEndpoint shows ------------------------------------------------

    def show_pending(self) -> None:
        """PendingDeploymentSummary: the new config, each variant's green fleet and stage."""
        status, message = self._status
        variants = []
        for name, count in self.counts.items():
            fleet = self.green.get(name)
            variants.append(
                {
                    "VariantName": name,
                    "CurrentInstanceCount": fleet.live_count() if fleet else 0,
                    "DesiredInstanceCount": count,
                    "CurrentWeight": self.weights[name],
                    "DesiredWeight": self.weights[name],
                    "VariantStatus": [
                        {
                            "Status": status,
                            "StatusMessage": message,
                            "StartTime": self._status_since,
                        }
                    ],
                }
            )
        self.runtime.endpoint.pending_deployment_summary = {
            "EndpointConfigName": self.config["EndpointConfigName"],
            "ProductionVariants": variants,
            "StartTime": self.started,
        }

    def _show(self, status: str, message: str) -> None:
        self._status = (status, message)
        self._status_since = _now()
        self.show_pending()

    # --- the work ---------------------------------------------------------------------

    def _timed_out(self) -> bool:
        return time.monotonic() > self.deadline

    def _start_clock(self) -> None:
        """The green fleet is up: what its start-up left of the timeout (counted in real
        seconds) runs on the scaled clock. Scaling the start-up too made a slow machine's
        start of a few real seconds use up a scaled timeout of 600 s."""
        provisioning = time.monotonic() - self._began
        left = max(self.plan.timeout_s - provisioning, 0.0)
        self.deadline = time.monotonic() + self.settings.scaled(left)

    def run(self) -> None:
        runtime = self.runtime
        try:
            self.green = runtime._build(
                self.config,
                self.counts,
                self.weights,
                lambda: runtime._closed or self._timed_out(),
            )
        except DeployError as exc:
            reason = self._timeout_reason() if self._timed_out() else str(exc)
            runtime.endpoint.pending_deployment_summary = None
            self._remember_config()
            runtime._finish("InService", failure=f"Failed to update endpoint: {reason}")
            return
        self._start_clock()
        runtime.green = self.green
        failure = None
        for number, step in enumerate(self.plan.steps, start=1):
            runtime.green_shares = dict(step.shares)
            stage = self._stage(number)
            self._show("ActivatingTraffic", f"{stage}: {_percent(step.shares)} of the traffic.")
            if step.bake_s:
                self._show("Baking", f"{stage}: {_percent(step.shares)} of the traffic, baking.")
            failure = self._bake(step.bake_s, stage)
            if failure:
                break
        if failure is None and self.plan.termination_wait_s:
            self._show("Baking", "All traffic on the new fleet: the final baking period.")
        if failure is None:
            failure = self._bake(self.plan.termination_wait_s, "final baking period")
        if runtime._closed:
            self._stop_green()
        elif failure:
            self._roll_back(failure)
        else:
            self._complete()

    def _stage(self, number: int) -> str:
        if self.plan.kind == "CANARY":
            return "Canary" if number == 1 else "Shifting the rest"
        if self.plan.kind == "LINEAR":
            return f"Linear step {number} of {len(self.plan.steps)}"
        return "All at once"

    def _bake(self, seconds: float, stage: str) -> str | None:
        """Wait ``seconds`` (scaled) watching the alarms; the reason to roll back, if any."""
        end = time.monotonic() + self.settings.scaled(seconds)
        runtime = self.runtime
        while True:
            if runtime._closed:
                return "The endpoint was deleted"
            hit = guardrails.tripped(runtime._account_id, runtime._region, self.plan.alarms)
            if hit is not None:
                name, reason = hit
                logger.info("endpoint %s: alarm %s tripped; rolling back", runtime.name, name)
                return (
                    f"Deployment rolled back: CloudWatch alarm {name} went into ALARM during "
                    f"the deployment ({stage.lower()}): {reason}"
                )
            if self._timed_out():
                return f"Deployment rolled back: {self._timeout_reason()}"
            left = end - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(_POLL_S, left))

    def _timeout_reason(self) -> str:
        return (
            f"the deployment did not finish within MaximumExecutionTimeoutInSeconds "
            f"({self.plan.timeout_s:.0f} s)"
        )

    def _complete(self) -> None:
        runtime = self.runtime
        old, runtime.fleets = runtime.fleets, self.green  # all traffic on the new fleet
        runtime.green, runtime.green_shares = {}, {}
        runtime.endpoint.endpoint_config_name = self.config["EndpointConfigName"]
        runtime.endpoint.pending_deployment_summary = None
        capture.apply(runtime.endpoint, self.config.get("DataCaptureConfig"))
        self._remember_config()
        runtime._finish("InService")
        self._publish(old.values())
        for fleet in old.values():
            fleet.stop()

    def _roll_back(self, reason: str) -> None:
        runtime = self.runtime
        with runtime._lock:
            runtime.green_shares = {}  # every request goes to the old fleet again
            runtime.endpoint.endpoint_status = "RollingBack"
            runtime.endpoint.last_modified_time = _now()
        self._show("Deleting", "Rolling back: all traffic returns to the old fleet.")
        failed = None
        for fleet in runtime.fleets.values():
            try:  # the old fleet takes all traffic again: replace instances that died
                fleet.resize(fleet.desired, lambda: runtime._closed)
            except DeployError as exc:
                failed = f"{reason}. The rollback failed: variant {fleet.name}: {exc}"
        self._stop_green()
        runtime.endpoint.pending_deployment_summary = None
        self._remember_config()
        if failed:
            runtime._finish("UpdateRollbackFailed", failure=failed)
        else:
            runtime._finish("InService", failure=reason)

    def _stop_green(self) -> None:
        self.runtime.green, self.runtime.green_shares = {}, {}
        self._publish(self.green.values())
        for fleet in self.green.values():
            fleet.stop()

    def _publish(self, fleets: Any) -> None:
        """The last metrics of fleets that leave (the scaler publishes only current ones)."""
        runtime = self.runtime
        try:
            metrics.publish(runtime._account_id, runtime._region, runtime.name, list(fleets))
        except Exception:  # a reset account: nothing to publish to
            logger.exception("endpoint %s: publishing the last metrics failed", runtime.name)

    def _remember_config(self) -> None:
        if self.plan.config is not None:
            self.runtime.endpoint.last_deployment_config = dict(self.plan.config)


def _percent(shares: Mapping[str, float]) -> str:
    values = sorted({round(share * 100) for share in shares.values()})
    return "/".join(f"{value}%" for value in values)


def _now() -> datetime:
    return datetime.now(UTC)
