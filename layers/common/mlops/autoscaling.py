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


def snapshot(client: Any, endpoint_name: str, variant_names: Iterable[str]) -> list[dict]:
    """The variants' registered targets with their policies, enough to ``restore`` them."""
    ids = [resource_id(endpoint_name, variant) for variant in variant_names]
    if not ids:
        return []
    targets = client.describe_scalable_targets(
        ServiceNamespace=NAMESPACE, ResourceIds=ids, ScalableDimension=DIMENSION
    )["ScalableTargets"]
    saved = []
    for target in targets:
        policies = client.describe_scaling_policies(
            ServiceNamespace=NAMESPACE, ResourceId=target["ResourceId"], ScalableDimension=DIMENSION
        )["ScalingPolicies"]
        saved.append(
            {
                "resource_id": target["ResourceId"],
                "min_capacity": target["MinCapacity"],
                "max_capacity": target["MaxCapacity"],
                "policies": [
                    {
                        "PolicyName": p["PolicyName"],
                        "PolicyType": p["PolicyType"],
                        "TargetTrackingScalingPolicyConfiguration": p[
                            "TargetTrackingScalingPolicyConfiguration"
                        ],
                    }
                    for p in policies
                    if p.get("PolicyType") == "TargetTrackingScaling"
                ],
            }
        )
    return saved


def restore(client: Any, saved: Iterable[Mapping[str, Any]]) -> None:
    """Register the targets and put the policies of a ``snapshot`` again."""
    for target in saved:
        client.register_scalable_target(
            ServiceNamespace=NAMESPACE,
            ResourceId=target["resource_id"],
            ScalableDimension=DIMENSION,
            MinCapacity=target["min_capacity"],
            MaxCapacity=target["max_capacity"],
        )
        for policy in target["policies"]:
            client.put_scaling_policy(
                ServiceNamespace=NAMESPACE,
                ResourceId=target["resource_id"],
                ScalableDimension=DIMENSION,
                **policy,
            )


def detach(client: Any, endpoint_name: str, variant_names: Iterable[str]) -> list[str]:
    """Deregister the variants' scalable targets that exist; the resource ids removed."""
    return deregister(client, snapshot(client, endpoint_name, variant_names))


def deregister(client: Any, saved: Iterable[Mapping[str, Any]]) -> list[str]:
    """Deregister the targets of a ``snapshot`` (their policies go with them)."""
    removed = []
    for target in saved:
        try:
            client.deregister_scalable_target(
                ServiceNamespace=NAMESPACE,
                ResourceId=target["resource_id"],
                ScalableDimension=DIMENSION,
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ObjectNotFoundException":
                raise
        removed.append(target["resource_id"])
    return removed
