"""SageMaker's instance quotas: ResourceLimitExceeded beyond the account profile's limits.

SageMaker counts, per instance type, the instances of running training jobs (on-demand and
spot separately) and of endpoints, and refuses a request that would go past the quota with
HTTP 400 ``ResourceLimitExceeded`` naming the quota. An UpdateEndpoint is blue/green: the
new fleet starts while the old one still runs, so both count until the update ends.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from moto.sagemaker.exceptions import SagemakerClientError

from localcloud.runtime.account_profiles import InstanceQuotas, QuotaExceeded

from . import install_options
from .hosting import ENDPOINTS

RUNNING_JOB = frozenset({"InProgress", "Stopping"})


class ResourceLimitExceeded(SagemakerClientError):
    code = "ResourceLimitExceeded"

    def __init__(self, message: str) -> None:
        super().__init__(message)


def _check(quotas: InstanceQuotas, in_use: Mapping[str, int], delta: Mapping[str, int]) -> None:
    for instance_type, count in delta.items():
        try:
            quotas.check(instance_type, in_use.get(instance_type, 0), count)
        except QuotaExceeded as exc:
            raise ResourceLimitExceeded(str(exc)) from None


def check_training_job(backend: Any, request: Mapping[str, Any]) -> None:
    profile = install_options.current().quotas
    if profile is None:
        return
    spot = bool(request.get("EnableManagedSpotTraining"))
    resources = request.get("ResourceConfig") or {}
    groups = resources.get("InstanceGroups") or [resources]
    delta: Counter[str] = Counter()
    for group in groups:
        if group.get("InstanceType"):
            delta[group["InstanceType"]] += int(group.get("InstanceCount") or 1)
    in_use: Counter[str] = Counter()
    for job in backend.training_jobs.values():
        if job.training_job_status not in RUNNING_JOB:
            continue
        if bool(getattr(job, "enable_managed_spot_training", False)) != spot:
            continue
        config = job.resource_config or {}
        for group in config.get("InstanceGroups") or [config]:
            if group.get("InstanceType"):
                in_use[group["InstanceType"]] += int(group.get("InstanceCount") or 1)
    _check(profile.spot_training if spot else profile.training, in_use, delta)


def _variant_types(backend: Any, config_name: str) -> dict[str, str]:
    config = backend.endpoint_configs.get(config_name)
    if config is None:
        return {}
    return {
        v["VariantName"]: v["InstanceType"]
        for v in config.production_variants
        if v.get("InstanceType")
    }


def endpoints_in_use(backend: Any, account_id: str, region: str) -> Counter[str]:
    """Instances per type of every endpoint of the account and region (not Failed ones)."""
    in_use: Counter[str] = Counter()
    for name, endpoint in backend.endpoints.items():
        if endpoint.endpoint_status == "Failed":
            continue
        runtime = ENDPOINTS.get((account_id, region, name))
        config = backend.endpoint_configs.get(endpoint.endpoint_config_name)
        if config is None:
            continue
        for variant in config.production_variants:
            if not variant.get("InstanceType"):
                continue
            fleet = runtime.fleets.get(variant["VariantName"]) if runtime else None
            count = fleet.desired if fleet else int(variant.get("InitialInstanceCount") or 0)
            in_use[variant["InstanceType"]] += count
    return in_use


def _counts(variants: Iterable[Mapping[str, Any]], current: Mapping[str, int]) -> Counter[str]:
    delta: Counter[str] = Counter()
    for variant in variants:
        if variant.get("InstanceType"):
            name = variant["VariantName"]
            count = current.get(name, int(variant.get("InitialInstanceCount") or 0))
            delta[variant["InstanceType"]] += count
    return delta


def check_endpoint(
    backend: Any,
    account_id: str,
    region: str,
    config: Mapping[str, Any],
    retained: Mapping[str, int] | None = None,
) -> None:
    """CreateEndpoint / UpdateEndpoint: the new fleet's instances on top of what runs now.

    ``retained``: variant -> instance count an update keeps from the current fleet.
    """
    profile = install_options.current().quotas
    if profile is None:
        return
    delta = _counts(config["ProductionVariants"], retained or {})
    _check(profile.endpoints, endpoints_in_use(backend, account_id, region), delta)


def check_scaling(
    backend: Any, account_id: str, region: str, endpoint: Any, counts: Mapping[str, int]
) -> None:
    """UpdateEndpointWeightsAndCapacities: only the added instances count."""
    profile = install_options.current().quotas
    if profile is None:
        return
    runtime = ENDPOINTS.get((account_id, region, endpoint.endpoint_name))
    types = _variant_types(backend, endpoint.endpoint_config_name)
    delta: Counter[str] = Counter()
    for name, count in counts.items():
        fleet = runtime.fleets.get(name) if runtime else None
        added = count - (fleet.desired if fleet else 0)
        if name in types and added > 0:
            delta[types[name]] += added
    _check(profile.endpoints, endpoints_in_use(backend, account_id, region), delta)
