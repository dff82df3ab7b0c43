"""Deployment guardrails: UpdateEndpoint's ``DeploymentConfig``, checked and turned into a plan.

``plan()`` validates a ``DeploymentConfig`` the way SageMaker does (field bounds from
botocore's model, the exclusions of the deployment-guardrails docs) and returns the traffic
steps of a blue/green update: ALL_AT_ONCE (one step), CANARY (the canary, then the rest) or
LINEAR (equal steps), each followed by a baking period of ``WaitIntervalInSeconds`` except the
last, then ``TerminationWaitInSeconds`` before the old fleet stops. Alarms of
``AutoRollbackConfiguration`` are watched from the first shift of traffic to the end.

SageMaker reads those alarms as the endpoint's execution role (the role of the models the
endpoint config names: an endpoint has no role of its own). Its guide asks that the role may
``cloudwatch:DescribeAlarms`` on them; the request is checked here, where SageMaker checks
that the alarms exist, so a role that may not read them gets the same ValidationException
as an alarm that does not exist (the request is refused and nothing changes), not an update
that starts and fails later.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from moto.cloudwatch.models import cloudwatch_backends
from moto.sagemaker.exceptions import ValidationError
from moto.utilities.utils import get_partition

from . import execution_role

TYPES = ("ALL_AT_ONCE", "CANARY", "LINEAR")
SIZE_TYPES = ("INSTANCE_COUNT", "CAPACITY_PERCENT")
MAX_WAIT_S = 3600
TIMEOUT_RANGE_S = (600, 28800)
DEFAULT_TIMEOUT_S = 28800  # the largest allowed: an update without one is bounded by it
MAX_ALARMS = 10


@dataclass(frozen=True)
class Step:
    """The new fleet's share of each variant's traffic, and the baking time after it (s)."""

    shares: Mapping[str, float]
    bake_s: float


@dataclass(frozen=True)
class Plan:
    kind: str
    steps: tuple[Step, ...]
    termination_wait_s: float
    timeout_s: float
    alarms: tuple[str, ...]
    config: Mapping[str, Any] | None  # as given: DescribeEndpoint's LastDeploymentConfig

    @property
    def total_wait_s(self) -> float:
        return sum(step.bake_s for step in self.steps) + self.termination_wait_s


def _int(value: Any, where: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise ValidationError(f"{where} must be an integer, got {value!r}.")
    number = int(value)
    if number < low or (high is not None and number > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ValidationError(f"{where} must be {bound}, got {number}.")
    return number


def _size(size: Any, where: str) -> tuple[str, int]:
    if not isinstance(size, Mapping) or "Type" not in size or "Value" not in size:
        raise ValidationError(f"{where} needs Type ({' | '.join(SIZE_TYPES)}) and Value.")
    if size["Type"] not in SIZE_TYPES:
        raise ValidationError(
            f"{where}.Type must be one of {', '.join(SIZE_TYPES)}, got {size['Type']!r}."
        )
    return str(size["Type"]), _int(size["Value"], f"{where}.Value", 1)


def _share(size: tuple[str, int], count: int) -> float:
    kind, value = size
    return value / count if kind == "INSTANCE_COUNT" else value / 100


def _canary_shares(size: tuple[str, int], counts: Mapping[str, int]) -> dict[str, float]:
    kind, value = size
    shares = {}
    for variant, count in counts.items():
        if kind == "INSTANCE_COUNT" and value * 2 > count:
            raise ValidationError(
                f"CanarySize {value} (INSTANCE_COUNT) is more than 50% of the {count} "
                f"instance(s) of variant {variant}: a canary by instance count needs at "
                f"least {value * 2} instances; use fewer canary instances, CAPACITY_PERCENT or "
                "more instances."
            )
        if kind == "CAPACITY_PERCENT" and value > 50:
            raise ValidationError(
                f"CanarySize {value}% (CAPACITY_PERCENT) must be at most 50% of the fleet."
            )
        shares[variant] = _share(size, count)
    return shares


def _linear_shares(size: tuple[str, int], counts: Mapping[str, int]) -> dict[str, float]:
    kind, value = size
    shares = {}
    for variant, count in counts.items():
        share = _share(size, count)
        if not 0.1 <= share <= 0.5:
            what = f"{value} of {count} instance(s)" if kind == "INSTANCE_COUNT" else f"{value}%"
            raise ValidationError(
                f"LinearStepSize {what} of variant {variant} must be 10-50% of the fleet's "
                "capacity."
            )
        shares[variant] = share
    return shares


def plan(
    config: Mapping[str, Any] | None,
    counts: Mapping[str, int],
    *,
    account_id: str,
    region: str,
    roles: Sequence[str] = (),
) -> Plan:
    """The update's plan; ValidationError for a config SageMaker refuses.

    ``counts``: each variant's instance count in the new endpoint config (after retaining);
    ``roles``: the execution roles of its models, which must be allowed to read the alarms.
    """
    config = dict(config or {})
    unknown = set(config) - {
        "BlueGreenUpdatePolicy",
        "RollingUpdatePolicy",
        "AutoRollbackConfiguration",
    }
    if unknown:
        raise ValidationError(f"Unknown DeploymentConfig field(s): {', '.join(sorted(unknown))}.")
    if "BlueGreenUpdatePolicy" in config and "RollingUpdatePolicy" in config:
        raise ValidationError(
            "DeploymentConfig takes one update policy: BlueGreenUpdatePolicy or "
            "RollingUpdatePolicy, not both."
        )
    if "RollingUpdatePolicy" in config:
        raise ValidationError(
            "RollingUpdatePolicy is not supported by the local SageMaker; use "
            "BlueGreenUpdatePolicy."
        )
    alarms = _alarms(config.get("AutoRollbackConfiguration"), account_id, region, roles)
    policy = config.get("BlueGreenUpdatePolicy")
    if policy is None:  # no policy: blue/green, all at once (SageMaker's default)
        return Plan(
            "ALL_AT_ONCE",
            (Step(dict.fromkeys(counts, 1.0), 0.0),),
            0.0,
            float(DEFAULT_TIMEOUT_S),
            alarms,
            config or None,
        )
    routing = policy.get("TrafficRoutingConfiguration")
    if not isinstance(routing, Mapping):
        raise ValidationError(
            "BlueGreenUpdatePolicy.TrafficRoutingConfiguration is required (Type and "
            "WaitIntervalInSeconds)."
        )
    kind = routing.get("Type")
    if kind not in TYPES:
        raise ValidationError(
            f"TrafficRoutingConfiguration.Type must be one of {', '.join(TYPES)}, got {kind!r}."
        )
    if "WaitIntervalInSeconds" not in routing:
        raise ValidationError("TrafficRoutingConfiguration.WaitIntervalInSeconds is required.")
    wait = float(_int(routing["WaitIntervalInSeconds"], "WaitIntervalInSeconds", 0, MAX_WAIT_S))
    termination = float(
        _int(policy.get("TerminationWaitInSeconds", 0), "TerminationWaitInSeconds", 0, MAX_WAIT_S)
    )
    full = dict.fromkeys(counts, 1.0)
    if kind == "CANARY":
        if "CanarySize" not in routing:
            raise ValidationError("A CANARY TrafficRoutingConfiguration needs CanarySize.")
        canary = _canary_shares(_size(routing["CanarySize"], "CanarySize"), counts)
        steps: tuple[Step, ...] = (Step(canary, wait), Step(full, 0.0))
    elif kind == "LINEAR":
        if "LinearStepSize" not in routing:
            raise ValidationError("A LINEAR TrafficRoutingConfiguration needs LinearStepSize.")
        step = _linear_shares(_size(routing["LinearStepSize"], "LinearStepSize"), counts)
        count = max(math.ceil(1 / share - 1e-9) for share in step.values())
        steps = tuple(
            Step({v: min(1.0, share * i) for v, share in step.items()}, wait if i < count else 0.0)
            for i in range(1, count + 1)
        )
    else:
        steps = (Step(full, 0.0),)
    timeout = policy.get("MaximumExecutionTimeoutInSeconds")
    timeout_s = float(
        DEFAULT_TIMEOUT_S
        if timeout is None
        else _int(timeout, "MaximumExecutionTimeoutInSeconds", *TIMEOUT_RANGE_S)
    )
    result = Plan(kind, steps, termination, timeout_s, alarms, config)
    if timeout is not None and timeout_s <= result.total_wait_s:
        raise ValidationError(
            f"MaximumExecutionTimeoutInSeconds ({timeout_s:.0f}) must be larger than the total "
            f"waiting time of the deployment ({result.total_wait_s:.0f} s: "
            f"WaitIntervalInSeconds for each of {len(steps) - 1} step(s) plus "
            f"TerminationWaitInSeconds)."
        )
    return result


def _alarms(rollback: Any, account_id: str, region: str, roles: Sequence[str]) -> tuple[str, ...]:
    if rollback is None:
        return ()
    items = rollback.get("Alarms") if isinstance(rollback, Mapping) else None
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_ALARMS:
        raise ValidationError(
            f"AutoRollbackConfiguration.Alarms must list 1 to {MAX_ALARMS} alarms "
            "({'AlarmName': ...})."
        )
    names = tuple(str(item.get("AlarmName") or "") for item in items)
    if not all(names):
        raise ValidationError("Each AutoRollbackConfiguration alarm needs an AlarmName.")
    check_alarm_access(roles, names, account_id, region)
    existing = cloudwatch_backends[account_id][region].alarms
    missing = [name for name in names if name not in existing]
    if missing:
        raise ValidationError(
            f"AutoRollbackConfiguration names CloudWatch alarm(s) that do not exist in "
            f"{region}: {', '.join(missing)}."
        )
    return names


def check_alarm_access(
    roles: Sequence[str], names: Sequence[str], account_id: str, region: str
) -> None:
    """ValidationError unless each execution role may ``cloudwatch:DescribeAlarms`` on each
    alarm (checked only when IAM is enforced)."""
    arn = f"arn:{get_partition(region)}:cloudwatch:{region}:{account_id}:alarm:{{}}"
    for role in dict.fromkeys(roles):
        for name in names:
            denied = execution_role.denied(role, "cloudwatch:DescribeAlarms", arn.format(name))
            if denied:
                raise ValidationError(
                    f"SageMaker cannot read the AutoRollbackConfiguration alarm {name} with "
                    f"the execution role {role}: {denied}. Ensure that your IAM execution "
                    "role has permission to perform the cloudwatch:DescribeAlarms action on "
                    "the auto-rollback alarms you specify."
                )


def check_variants(current: set[str], new: set[str], endpoint: str) -> None:
    """Guardrail updates keep the variant names (the exclusions of deployment guardrails)."""
    if current != new:
        raise ValidationError(
            f"Deployment guardrails need the new endpoint config to keep the variant names of "
            f"endpoint {endpoint}: it has {', '.join(sorted(current))}, the new config "
            f"{', '.join(sorted(new))}."
        )


def tripped(account_id: str, region: str, names: tuple[str, ...]) -> tuple[str, str] | None:
    """The first of ``names`` in ALARM, with its StateReason; None when none is."""
    alarms = cloudwatch_backends[account_id][region].alarms
    for name in names:
        alarm = alarms.get(name)
        if alarm is not None and alarm.state_value == "ALARM":
            return name, str(alarm.state_reason)
    return None
