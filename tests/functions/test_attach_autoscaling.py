"""AttachAutoscaling: target tracking on invocations per instance, the same after a re-run;
the deployment recorded as the endpoint's last verified config."""

from __future__ import annotations

from typing import Any

import boto3

from mlops.deployment import VERIFIED_TAG
from tests.conftest import AwsRecorder, load_event, load_handler
from tests.template_support import SAGEMAKER_ROLE_ARN

FUNCTION = "AttachAutoscalingFunction"
EVENT = load_event("attach_autoscaling/deployment.json")
ENDPOINT = EVENT["deployment"]["endpoint_name"]
CONFIG = EVENT["deployment"]["endpoint_config_name"]
TARGET = f"endpoint/{ENDPOINT}/variant/AllTraffic"


def serving() -> Any:
    """The endpoint InService on the deployment's config (as CheckEndpoint found it)."""
    sagemaker = boto3.client("sagemaker")
    sagemaker.create_model(
        ModelName=CONFIG,
        ExecutionRoleArn=SAGEMAKER_ROLE_ARN,
        PrimaryContainer={"Image": "inference:1", "ModelDataUrl": "s3://b/model.tar.gz"},
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=CONFIG,
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": CONFIG, "InitialInstanceCount": 1,
             "InstanceType": "ml.m5.large"}
        ],
    )  # fmt: skip
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=CONFIG)
    return sagemaker


def test_attach_is_idempotent(aws: AwsRecorder) -> None:
    serving()
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


def test_the_verified_deployment_is_recorded_on_the_endpoint(aws: AwsRecorder) -> None:
    sagemaker = serving()
    aws.invoke(load_handler("attach_autoscaling"), EVENT)
    arn = sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointArn"]
    tags = {t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=arn)["Tags"]}
    assert tags[VERIFIED_TAG] == CONFIG
