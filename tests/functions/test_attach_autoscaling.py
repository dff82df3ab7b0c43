"""AttachAutoscaling: target tracking on invocations per instance, the same after a re-run."""

from __future__ import annotations

import boto3

from tests.conftest import AwsRecorder, load_event, load_handler

FUNCTION = "AttachAutoscalingFunction"
EVENT = load_event("attach_autoscaling/deployment.json")
TARGET = f"endpoint/{EVENT['deployment']['endpoint_name']}/variant/AllTraffic"


def test_attach_is_idempotent(aws: AwsRecorder) -> None:
    app = load_handler("attach_autoscaling")
    first = aws.invoke(app, EVENT)
    second = aws.invoke(app, EVENT)
    # moto mints a new policy ARN on every put; AWS updates the policy in place.
    assert {**first, "policy_arn": None} == {**second, "policy_arn": None}
    assert first["resource_id"] == TARGET
    assert (first["min_capacity"], first["max_capacity"]) == (1, 3)

    scaling = boto3.client("application-autoscaling")
    targets = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert [(t["ResourceId"], t["MinCapacity"], t["MaxCapacity"]) for t in targets] == [
        (TARGET, 1, 3)
    ]
    assert targets[0]["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    policies = scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    assert len(policies) == 1
    config = policies[0]["TargetTrackingScalingPolicyConfiguration"]
    assert config["TargetValue"] == 70.0
    assert config["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
    }
    assert (config["ScaleInCooldown"], config["ScaleOutCooldown"]) == (300, 300)
    assert policies[0]["PolicyType"] == "TargetTrackingScaling"
