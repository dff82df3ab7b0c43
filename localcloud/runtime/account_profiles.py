"""Account profiles: the service quotas the local cloud enforces, and AWS's answers beyond them.

A profile (``localcloud/account.yaml``) sets the account's Lambda concurrency limit and its
SageMaker instance quotas per instance type. Nothing here talks to moto: the checks are
plain functions that the Lambda and SageMaker patches call with what they count.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from localcloud.cloudformation.intrinsics import TemplateError

DEFAULT_ACCOUNT_FILE = Path(__file__).resolve().parents[1] / "account.yaml"
# Lambda keeps this much of the account's concurrency unreserved (less on accounts whose
# whole limit is lower: then nothing can be reserved at all).
UNRESERVED_FLOOR = 100
USAGES = {
    "training_job_instances": "training job usage",
    "spot_training_job_instances": "spot training job usage",
    "endpoint_instances": "endpoint usage",
}


class QuotaExceeded(Exception):
    """A request beyond a quota; ``str()`` is AWS's message for it."""


@dataclass(frozen=True)
class InstanceQuotas:
    """Instances per instance type for one usage (training jobs, spot training, endpoints)."""

    usage: str
    limits: Mapping[str, int] = field(default_factory=dict)
    default: int = 0

    def limit(self, instance_type: str) -> int:
        return int(self.limits.get(instance_type, self.default))

    def check(self, instance_type: str, in_use: int, delta: int) -> None:
        """Raise QuotaExceeded with SageMaker's ResourceLimitExceeded message."""
        limit = self.limit(instance_type)
        if delta > 0 and in_use + delta > limit:
            raise QuotaExceeded(
                f"The account-level service limit '{instance_type} for {self.usage}' is "
                f"{limit} Instances, with current utilization of {in_use} Instances and a "
                f"request delta of {delta} Instances. Please use AWS Service Quotas to "
                "request an increase for this quota."
            )


@dataclass(frozen=True)
class AccountProfile:
    name: str
    lambda_concurrent_executions: int = 1000
    training: InstanceQuotas = InstanceQuotas(USAGES["training_job_instances"])
    spot_training: InstanceQuotas = InstanceQuotas(USAGES["spot_training_job_instances"])
    endpoints: InstanceQuotas = InstanceQuotas(USAGES["endpoint_instances"])

    @property
    def unreserved_floor(self) -> int:
        return min(UNRESERVED_FLOOR, self.lambda_concurrent_executions)

    def check_reserved_concurrency(self, reserved_elsewhere: int, requested: int) -> None:
        """Lambda's PutFunctionConcurrency check: unreserved must stay at the floor."""
        unreserved = self.lambda_concurrent_executions - reserved_elsewhere - requested
        if requested > 0 and unreserved < self.unreserved_floor:
            raise QuotaExceeded(
                "Specified ReservedConcurrentExecutions for function decreases account's "
                f"UnreservedConcurrentExecution below its minimum value of "
                f"[{self.unreserved_floor}]."
            )

    def check_provisioned_concurrency(self, reserved: int, provisioned: int) -> None:
        """PutProvisionedConcurrencyConfig of a function without a reservation: it takes the
        instances from the unreserved pool, which must stay at the floor."""
        unreserved = self.lambda_concurrent_executions - reserved - provisioned
        if provisioned > 0 and unreserved < self.unreserved_floor:
            raise QuotaExceeded(
                "Specified ConcurrentExecutions for function decreases account's "
                f"UnreservedConcurrentExecution below its minimum value of "
                f"[{self.unreserved_floor}]."
            )


def _instance_quotas(usage_key: str, raw: Any, where: str) -> InstanceQuotas:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise TemplateError(f"{where}.{usage_key}: expected a mapping of instance type to count")
    limits: dict[str, int] = {}
    for key, value in raw.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise TemplateError(f"{where}.{usage_key}.{key}: expected a count >= 0, got {value!r}")
        limits[str(key)] = value
    default = limits.pop("default", 0)
    return InstanceQuotas(USAGES[usage_key], limits, default)


def _profile(name: str, raw: Any, where: str) -> AccountProfile:
    if not isinstance(raw, dict):
        raise TemplateError(f"{where}: profile {name!r} must be a mapping")
    unknown = sorted(set(raw) - {"lambda_concurrent_executions", *USAGES})
    if unknown:
        raise TemplateError(f"{where}: profile {name!r} has unknown keys {unknown}")
    concurrency = raw.get("lambda_concurrent_executions", 1000)
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise TemplateError(f"{where}: {name}.lambda_concurrent_executions must be >= 1")
    at = f"{where}: {name}"
    return AccountProfile(
        name=name,
        lambda_concurrent_executions=concurrency,
        training=_instance_quotas("training_job_instances", raw.get("training_job_instances"), at),
        spot_training=_instance_quotas(
            "spot_training_job_instances", raw.get("spot_training_job_instances"), at
        ),
        endpoints=_instance_quotas("endpoint_instances", raw.get("endpoint_instances"), at),
    )


def load_profiles(path: Path = DEFAULT_ACCOUNT_FILE) -> tuple[str, dict[str, AccountProfile]]:
    """(the file's chosen profile, every profile by name)."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise TemplateError(f"account file {path}: {exc}") from None
    profiles_raw = data.get("profiles") if isinstance(data, dict) else None
    if not isinstance(profiles_raw, dict) or not profiles_raw:
        raise TemplateError(f"account file {path}: needs a 'profiles' mapping")
    profiles = {str(n): _profile(str(n), p, str(path)) for n, p in profiles_raw.items()}
    chosen = str(data.get("profile") or next(iter(profiles)))
    if chosen not in profiles:
        raise TemplateError(f"account file {path}: profile {chosen!r} is not under 'profiles'")
    return chosen, profiles


def load_profile(name: str | None = None, path: Path = DEFAULT_ACCOUNT_FILE) -> AccountProfile:
    """The named profile (default: the one the file chooses)."""
    chosen, profiles = load_profiles(path)
    name = name or chosen
    if name not in profiles:
        raise TemplateError(
            f"unknown account profile {name!r}; {path.name} has {', '.join(sorted(profiles))}"
        )
    return profiles[name]
