"""Target-tracking autoscaling of an endpoint variant (Application Auto Scaling).

Registering a target and putting a policy both create or update, so attaching again on a
re-run converges to the same configuration. Instance-type changes and endpoint deletion
need the target deregistered first (deregistering also deletes its policies).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from botocore.exceptions import ClientError

NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
METRIC = "SageMakerVariantInvocationsPerInstance"


def resource_id(endpoint_name: str, variant_name: str) -> str:
    return f"endpoint/{endpoint_name}/variant/{variant_name}"


def policy_name(endpoint_name: str) -> str:
    return f"{endpoint_name}-invocations-per-instance"


def attach(
    client: Any, endpoint_name: str, variant_name: str, settings: Mapping[str, Any]
) -> dict[str, Any]:
    target = resource_id(endpoint_name, variant_name)
    client.register_scalable_target(
        ServiceNamespace=NAMESPACE,
        ResourceId=target,
        ScalableDimension=DIMENSION,
        MinCapacity=settings["min_capacity"],
        MaxCapacity=settings["max_capacity"],
    )
    policy = client.put_scaling_policy(
        PolicyName=policy_name(endpoint_name),
        ServiceNamespace=NAMESPACE,
        ResourceId=target,
        ScalableDimension=DIMENSION,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": float(settings["target_invocations_per_instance"]),
            "PredefinedMetricSpecification": {"PredefinedMetricType": METRIC},
            "ScaleInCooldown": settings["scale_in_cooldown_seconds"],
            "ScaleOutCooldown": settings["scale_out_cooldown_seconds"],
        },
    )
    return {
        "resource_id": target,
        "policy_arn": policy["PolicyARN"],
        "min_capacity": settings["min_capacity"],
        "max_capacity": settings["max_capacity"],
        "target_invocations_per_instance": float(settings["target_invocations_per_instance"]),
    }


def detach(client: Any, endpoint_name: str, variant_names: Iterable[str]) -> list[str]:
    """Deregister the variants' scalable targets that exist; the resource ids removed."""
    ids = [resource_id(endpoint_name, variant) for variant in variant_names]
    if not ids:
        return []
    registered = client.describe_scalable_targets(
        ServiceNamespace=NAMESPACE, ResourceIds=ids, ScalableDimension=DIMENSION
    )["ScalableTargets"]
    removed = []
    for target in registered:
        try:
            client.deregister_scalable_target(
                ServiceNamespace=NAMESPACE,
                ResourceId=target["ResourceId"],
                ScalableDimension=DIMENSION,
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ObjectNotFoundException":
                raise
        removed.append(target["ResourceId"])
    return removed
