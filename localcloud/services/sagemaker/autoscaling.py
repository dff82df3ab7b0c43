"""Application Auto Scaling for local endpoint variants, applied by one background thread.

For each in-service variant with a scalable target (``endpoint/<e>/variant/<v>``,
``sagemaker:variant:DesiredInstanceCount``) the scaler keeps the instance count within
[MinCapacity, MaxCapacity] and follows target-tracking policies on
``SageMakerVariantInvocationsPerInstance``: invocations per instance per real minute, as
AWS publishes it, against the policy's TargetValue, with the policy's cooldowns, AWS's 3
high datapoints before a scale-out and 15 low ones before a scale-in. Datapoints (one a
minute on AWS) and cooldowns run on the accelerated clock of ``install(time_scale=...)``;
the rate does not. The
same pass replaces instances whose process died and publishes the endpoints' CloudWatch
metrics (``metrics.py``). Every change of
the count is recorded as a scaling activity (``DescribeScalingActivities``, which moto lacks).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from moto.applicationautoscaling.models import applicationautoscaling_backends
from moto.sagemaker.models import sagemaker_backends

from . import install_options, instance_quotas, metrics
from .fleet import VariantFleet
from .hosting import ENDPOINTS, EndpointRuntime

logger = logging.getLogger(__name__)
MAX_ACTIVITIES = 100  # per scalable target, newest first (AWS keeps six weeks of them)
# (account, region, resource id) -> DescribeScalingActivities rows, newest first
ACTIVITIES: dict[tuple[str, str, str], deque[dict[str, Any]]] = {}
_activities_lock = threading.Lock()

DIMENSION = "sagemaker:variant:DesiredInstanceCount"
METRIC = "SageMakerVariantInvocationsPerInstance"
DEFAULT_COOLDOWN_S = 300.0
MINUTE_S = 60.0
# AWS's target tracking scales in after 15 consecutive one-minute datapoints below the target
LOW_DATAPOINTS = 15
# and out once 3 consecutive datapoints are above it (its high alarm: 3 of 3), so a burst
# within one datapoint (a smoke test's images) scales nothing, as on AWS
HIGH_DATAPOINTS = 3


@dataclass(frozen=True)
class Policy:
    target: float
    scale_in_cooldown: float
    scale_out_cooldown: float
    disable_scale_in: bool


@dataclass(frozen=True)
class Limits:
    minimum: int
    maximum: int
    scale_out_suspended: bool = False
    scale_in_suspended: bool = False


def per_instance_minute(calls: int, seconds: float, instances: int) -> float:
    """SageMakerVariantInvocationsPerInstance as AWS publishes it: calls per real second
    times 60, per instance (the time scale shortens the datapoint, not the minute)."""
    return calls / seconds * MINUTE_S / max(instances, 1)


def datapoints(
    calls_since: Callable[[float], int], now: float, period: float, count: int, instances: int
) -> list[float]:
    """The metric's last ``count`` datapoints, newest first, each over one ``period``."""
    edges = [calls_since(now - k * period) for k in range(count + 1)]
    return [per_instance_minute(edges[k + 1] - edges[k], period, instances) for k in range(count)]


def desired_count(
    current: int,
    points: Sequence[float],
    policies: Sequence[Policy],
    limits: Limits,
    since_scale_out: float,
    since_activity: float,
) -> int:
    """The instance count target tracking asks for now (times are in real seconds).

    ``points`` are the metric's datapoints since the last change, newest first. Scale out
    when a policy wants more instances for each of the last HIGH_DATAPOINTS datapoints (the
    newest sets the count) and its scale-out cooldown has passed; scale in only when every
    policy wants fewer for each of the last LOW_DATAPOINTS datapoints (the busiest of them
    sets the count), none disables scale-in and the scale-in cooldowns have passed.
    """
    wanted = current
    if policies and current > 0 and points:

        def proposal(value: float) -> int:
            return max(math.ceil(current * value / p.target) for p in policies)

        newest = proposal(points[0])
        may_scale_out = not limits.scale_out_suspended and any(
            since_scale_out >= p.scale_out_cooldown for p in policies
        )
        high = len(points) >= HIGH_DATAPOINTS and all(
            proposal(value) > current for value in points[:HIGH_DATAPOINTS]
        )
        if high and may_scale_out:
            wanted = newest
        elif newest < current and len(points) >= LOW_DATAPOINTS:
            busiest = max(proposal(value) for value in points[:LOW_DATAPOINTS])
            may_scale_in = not limits.scale_in_suspended and all(
                not p.disable_scale_in and since_activity >= p.scale_in_cooldown for p in policies
            )
            if busiest < current and may_scale_in:
                wanted = busiest
    return min(max(wanted, limits.minimum), limits.maximum)


def _policies(backend: Any, resource_id: str, scale: float) -> list[Policy]:
    found = []
    for policy in backend.policies.values():
        config = policy.target_tracking_scaling_policy_configuration
        if (
            policy.resource_id != resource_id
            or policy.scalable_dimension != DIMENSION
            or not config
        ):
            continue
        metric = (config.get("PredefinedMetricSpecification") or {}).get("PredefinedMetricType")
        if metric != METRIC or not config.get("TargetValue"):
            continue
        found.append(
            Policy(
                target=float(config["TargetValue"]),
                scale_in_cooldown=float(config.get("ScaleInCooldown", DEFAULT_COOLDOWN_S)) * scale,
                scale_out_cooldown=float(config.get("ScaleOutCooldown", DEFAULT_COOLDOWN_S))
                * scale,
                disable_scale_in=bool(config.get("DisableScaleIn")),
            )
        )
    return found


def _limits(target: Any) -> Limits:
    suspended = target.suspended_state or {}
    return Limits(
        minimum=int(target.min_capacity),
        maximum=int(target.max_capacity),
        scale_out_suspended=bool(suspended.get("DynamicScalingOutSuspended")),
        scale_in_suspended=bool(suspended.get("DynamicScalingInSuspended")),
    )


def decide(
    current: int,
    calls_since: Callable[[float], int],
    policies: Sequence[Policy],
    limits: Limits,
    *,
    last_scale_out: float,
    last_activity: float,
    now: float,
    period: float,
) -> int:
    """The count for a variant of ``current`` instances whose calls ``calls_since`` counts,
    at time ``now`` (real seconds); ``period`` is one datapoint (a minute on the scaled
    clock). Only datapoints wholly after the last change count towards scale-in."""
    settled = int((now - last_activity) // period)
    points = datapoints(calls_since, now, period, max(1, min(LOW_DATAPOINTS, settled)), current)
    return desired_count(
        current,
        points,
        policies,
        limits,
        since_scale_out=now - last_scale_out,
        since_activity=now - last_activity,
    )


def _decide(runtime: EndpointRuntime, fleet: VariantFleet, backend: Any, now: float) -> int:
    resource_id = f"endpoint/{runtime.name}/variant/{fleet.name}"
    target = backend.targets.get(DIMENSION, {}).get(resource_id)
    if target is None:
        return fleet.desired
    scale = install_options.current().time_scale
    return decide(
        fleet.desired,
        fleet.calls_since,
        _policies(backend, resource_id, scale),
        _limits(target),
        last_scale_out=fleet.last_scale_out,
        last_activity=fleet.last_activity,
        now=now,
        period=MINUTE_S * scale,
    )


def record_activity(
    account_id: str,
    region: str,
    resource_id: str,
    old: int,
    new: int,
    target: Any,
    failure: str | None = None,
) -> None:
    """A scaling activity, shaped like DescribeScalingActivities' rows (Failed with
    ``failure`` as the reason SageMaker gave)."""
    now = datetime.now(UTC)
    if new > old and target is not None and old < int(target.min_capacity):
        cause = f"the scalable target's MinCapacity {target.min_capacity} is above {old}"
    elif new < old and target is not None and old > int(target.max_capacity):
        cause = f"the scalable target's MaxCapacity {target.max_capacity} is below {old}"
    else:
        direction = "above" if new > old else "below"
        cause = f"{METRIC} {direction} the target value of a target-tracking policy"
    row = {
        "ActivityId": str(uuid.uuid4()),
        "ServiceNamespace": "sagemaker",
        "ResourceId": resource_id,
        "ScalableDimension": DIMENSION,
        "Description": f"Setting desired instance count to {new}.",
        "Cause": f"{cause}: changing the desired instance count from {old} to {new}",
        "StartTime": now.timestamp(),
        "EndTime": now.timestamp(),
        "StatusCode": "Successful",
        "StatusMessage": f"Successfully set desired instance count to {new}. "
        "Change successfully fulfilled by sagemaker.",
    }
    if failure is not None:
        row["StatusCode"] = "Failed"
        row["StatusMessage"] = (
            f"Failed to set desired instance count to {new}. Reason: {failure} (Service: "
            "AmazonSageMaker; Status Code: 400; Error Code: ResourceLimitExceeded)"
        )
    with _activities_lock:
        rows = ACTIVITIES.setdefault(
            (account_id, region, resource_id), deque(maxlen=MAX_ACTIVITIES)
        )
        rows.appendleft(row)


def forget_activities(account_id: str, region: str) -> None:
    """An account reset forgets its scaling activities, like the rest of its state."""
    with _activities_lock:
        for key in [k for k in ACTIVITIES if k[:2] == (account_id, region)]:
            del ACTIVITIES[key]


def describe_scaling_activities(self: Any) -> str:
    """``DescribeScalingActivities`` (moto has none): the activities of this account and
    region, newest first, filtered by ``ResourceId``/``ScalableDimension`` when given."""
    namespace = self._get_param("ServiceNamespace")
    resource_id = self._get_param("ResourceId")
    dimension = self._get_param("ScalableDimension")
    with _activities_lock:
        rows = [
            row
            for (account_id, region, rid), items in ACTIVITIES.items()
            if (account_id, region) == (self.current_account, self.region)
            and (resource_id is None or rid == resource_id)
            for row in items
        ]
    rows = [
        r
        for r in rows
        if r["ServiceNamespace"] == namespace
        and (dimension is None or r["ScalableDimension"] == dimension)
    ]
    rows.sort(key=lambda r: r["StartTime"], reverse=True)
    limit = self._get_int_param("MaxResults") or 50
    return json.dumps({"ScalingActivities": rows[:limit]})


def reconcile() -> None:
    """One pass over every endpoint: metrics, scaling decisions, replacement of dead instances."""
    now = time.monotonic()
    for (account_id, region, _), runtime in ENDPOINTS.items():
        metrics.publish(account_id, region, runtime.name, runtime.all_fleets())
        if runtime.busy or runtime.endpoint.endpoint_status != "InService":
            continue
        backend = applicationautoscaling_backends[account_id][region]
        counts = {}
        for fleet in runtime.fleets.values():
            wanted = _decide(runtime, fleet, backend, now)
            refusal = _quota_refusal(account_id, region, runtime, fleet, wanted)
            if refusal is not None:  # SageMaker refuses the scale-out: the fleet stays
                fleet.last_scale_out = fleet.last_activity = now  # retried after the cooldown
                resource_id = f"endpoint/{runtime.name}/variant/{fleet.name}"
                target = backend.targets.get(DIMENSION, {}).get(resource_id)
                record_activity(
                    account_id, region, resource_id, fleet.desired, wanted, target, refusal
                )
                logger.warning("endpoint %s variant %s: %s", runtime.name, fleet.name, refusal)
            elif wanted != fleet.desired:
                logger.info(
                    "endpoint %s variant %s: %d -> %d instances",
                    runtime.name,
                    fleet.name,
                    fleet.desired,
                    wanted,
                )
                if wanted > fleet.desired:
                    fleet.last_scale_out = now
                fleet.last_activity = now
                counts[fleet.name] = wanted
                resource_id = f"endpoint/{runtime.name}/variant/{fleet.name}"
                target = backend.targets.get(DIMENSION, {}).get(resource_id)
                record_activity(account_id, region, resource_id, fleet.desired, wanted, target)
            elif (live := fleet.live_count()) < fleet.desired:  # an instance died: replace it
                logger.info(
                    "endpoint %s variant %s: %d of %d instances live, replacing the rest",
                    runtime.name,
                    fleet.name,
                    live,
                    fleet.desired,
                )
                counts[fleet.name] = fleet.desired
        if counts:
            runtime.scale(counts, {})


def _quota_refusal(
    account_id: str, region: str, runtime: EndpointRuntime, fleet: VariantFleet, wanted: int
) -> str | None:
    """SageMaker's ResourceLimitExceeded message if scaling out to ``wanted`` is over quota."""
    if wanted <= fleet.desired:
        return None
    backend = sagemaker_backends[account_id][region]
    try:
        instance_quotas.check_scaling(
            backend, account_id, region, runtime.endpoint, {fleet.name: wanted}
        )
    except instance_quotas.ResourceLimitExceeded as exc:
        return str(exc.message)
    return None


class Scaler:
    """Runs ``reconcile`` every tick on a daemon thread until stopped."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="sagemaker-scaler")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            tick = min(1.0, max(0.1, install_options.current().scaled(10.0)))
            try:
                reconcile()
            except Exception:  # keep scaling the other endpoints; the cause is logged
                logger.exception("autoscaling pass failed")
            self._stop.wait(tick)


SCALER = Scaler()


def deregister_endpoint(account_id: str, region: str, endpoint_name: str) -> None:
    """Drop the endpoint's scalable targets and policies (DeleteEndpoint does it silently)."""
    backend = applicationautoscaling_backends[account_id][region]
    prefix = f"endpoint/{endpoint_name}/variant/"
    targets = backend.targets.get(DIMENSION, {})
    for resource_id in [r for r in targets if r.startswith(prefix)]:
        del targets[resource_id]
    for policy in [p for p in backend.policies.values() if p.resource_id.startswith(prefix)]:
        backend.delete_scaling_policy(
            policy.policy_name,
            policy.service_namespace,
            policy.resource_id,
            policy.scalable_dimension,
        )
