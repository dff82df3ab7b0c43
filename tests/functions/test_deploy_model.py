"""DeployModel: create the endpoint once, update it in place later, never deploy twice."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.stub import ANY

from mlops.deployment import REPLACES_TAG, VERIFIED_TAG, capture_changes
from mlops.naming import resource_tags
from tests.conftest import AwsRecorder, load_event, load_handler
from tests.functions.pipeline_helpers import (
    describe_endpoint_response,
    endpoint_config_response,
    stubbed,
)
from tests.template_support import SAGEMAKER_ROLE_ARN, set_function_environment

FUNCTION = "DeployModelFunction"
EVENT = load_event("deploy_model/run.json")
RUN = EVENT["run"]
ARN = "arn:aws:sagemaker:us-east-1:123456789012"
ENDPOINT = RUN["endpoint"]["endpoint_name"]
CONFIG = RUN["endpoint"]["endpoint_config_name"]
MODEL = RUN["model"]["model_name"]
TAGS = resource_tags(RUN, EVENT["execution_arn"])
PREVIOUS = f"{ENDPOINT}-0123456789abcdef"
TARGET = f"endpoint/{ENDPOINT}/variant/AllTraffic"


@pytest.fixture
def app(aws: AwsRecorder, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    set_function_environment(monkeypatch, FUNCTION)
    return load_handler("deploy_model")


def model_request() -> dict[str, Any]:
    return {
        "ModelName": MODEL,
        "PrimaryContainer": {
            "Image": RUN["model"]["image"],
            "ModelDataUrl": EVENT["model_artifact"],
            "Environment": {
                "SAGEMAKER_PROGRAM": "inference.py",
                "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
                "SAGEMAKER_REGION": "us-east-1",
                "SAGEMAKER_MODEL_SERVER_TIMEOUT": "60",
            },
        },
        "ExecutionRoleArn": SAGEMAKER_ROLE_ARN,
        "Tags": ANY,
    }


def config_request() -> dict[str, Any]:
    variant = {
        "VariantName": "AllTraffic",
        "ModelName": MODEL,
        "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large",
        "InitialVariantWeight": 1.0,
    }
    return {"EndpointConfigName": CONFIG, "ProductionVariants": [variant], "Tags": ANY}


ALARMS = [
    "image-classifier-endpoint-5xx",
    "image-classifier-model-latency",
    "image-classifier-classify-errors",
]
# The plan's CANARY rollout as UpdateEndpoint's DeploymentConfig (validated by the Stubber
# against botocore's model).
CANARY = {
    "BlueGreenUpdatePolicy": {
        "TrafficRoutingConfiguration": {
            "Type": "CANARY",
            "WaitIntervalInSeconds": 300,
            "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 1},
        },
        "TerminationWaitInSeconds": 300,
        "MaximumExecutionTimeoutInSeconds": 1500,
    },
    "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": name} for name in ALARMS]},
}


def test_first_deployment_creates_the_endpoint_and_a_duplicate_does_nothing(app, aws) -> None:
    result = aws.invoke(app, EVENT)
    assert result == {
        "action": "create",
        "endpoint_name": ENDPOINT,
        "endpoint_config_name": CONFIG,
        "model_name": MODEL,
        "variant_name": "AllTraffic",
        "previous_endpoint_config_name": None,
        "created_endpoint": True,
        "reason": None,
        "rollout": "CANARY",
        "alarms": ALARMS,
    }
    sagemaker = boto3.client("sagemaker")
    assert sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == CONFIG
    container = sagemaker.describe_model(ModelName=MODEL)["PrimaryContainer"]
    assert container["ModelDataUrl"] == EVENT["model_artifact"]
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    tags = sagemaker.list_tags(ResourceArn=sagemaker.describe_model(ModelName=MODEL)["ModelArn"])
    assert {"Key": "mlops:run-id", "Value": RUN["run_id"]} in tags["Tags"]

    again = aws.invoke(app, EVENT)
    assert again["action"] == "already_deployed"
    assert again["reason"] == f"endpoint {ENDPOINT} already serves {CONFIG}"
    # What a rollback of this re-run must do: delete the endpoint the first attempt created.
    assert (again["previous_endpoint_config_name"], again["created_endpoint"]) == (None, True)
    assert aws.operations().count("CreateEndpoint") == 1


def test_a_new_model_updates_the_endpoint_keeping_the_autoscaled_count(app, aws) -> None:
    with stubbed("sagemaker") as sagemaker:
        sagemaker.add_response(
            "describe_endpoint",
            describe_endpoint_response(ENDPOINT, "InService", PREVIOUS),
            {"EndpointName": ENDPOINT},
        )
        sagemaker.add_response(
            "list_tags",
            {"Tags": [{"Key": VERIFIED_TAG, "Value": PREVIOUS}]},  # it passed its smoke test
            {"ResourceArn": f"{ARN}:endpoint/{ENDPOINT}"},
        )
        sagemaker.add_response(
            "create_model",
            {"ModelArn": f"{ARN}:model/{MODEL}"},
            model_request(),
        )
        sagemaker.add_response(
            "create_endpoint_config",
            {"EndpointConfigArn": f"{ARN}:endpoint-config/{CONFIG}"},
            config_request(),
        )
        sagemaker.add_response(
            "describe_endpoint_config",
            endpoint_config_response(PREVIOUS, "ml.m5.large"),
            {"EndpointConfigName": PREVIOUS},
        )
        sagemaker.add_response(
            "update_endpoint",
            {"EndpointArn": f"{ARN}:endpoint/{ENDPOINT}"},
            {
                "EndpointName": ENDPOINT,
                "EndpointConfigName": CONFIG,
                "RetainAllVariantProperties": True,
                "DeploymentConfig": CANARY,
            },
        )
        result = aws.invoke(app, EVENT)
    assert (result["action"], result["previous_endpoint_config_name"]) == ("update", PREVIOUS)
    assert result["created_endpoint"] is False


CAPTURING = {  # DescribeEndpoint's capture in effect; the plan captures nothing
    "DataCaptureConfig": {
        "EnableCapture": True,
        "CaptureStatus": "Started",
        "CurrentSamplingPercentage": 10,
        "DestinationS3Uri": "s3://pipeline-data/data-capture/",
        "KmsKeyId": "",
    }
}


@pytest.mark.parametrize(
    ("instance_type", "live"),
    [
        ("ml.c5.xlarge", {}),  # an autoscaled variant's instance type cannot change
        # RetainAllVariantProperties would keep the endpoint's data capture (SageMaker
        # retains DataCaptureConfig as a variant property), so the change would be lost
        ("ml.m5.large", CAPTURING),
    ],
    ids=["instance-type", "data-capture"],
)
def test_an_instance_type_or_capture_change_deregisters_autoscaling_first(
    app, aws, instance_type: str, live: dict[str, Any]
) -> None:
    with stubbed("sagemaker") as sagemaker, stubbed("application-autoscaling") as scaling:
        sagemaker.add_response(
            "describe_endpoint",
            describe_endpoint_response(ENDPOINT, "InService", PREVIOUS, **live),
        )
        sagemaker.add_response("list_tags", {"Tags": [{"Key": VERIFIED_TAG, "Value": PREVIOUS}]})
        sagemaker.add_client_error(
            "create_model",
            "ValidationException",
            f'Cannot create already existing model "arn:{MODEL}".',
        )
        sagemaker.add_client_error(
            "create_endpoint_config",
            "ValidationException",
            f'Cannot create already existing endpoint configuration "arn:{CONFIG}".',
        )
        sagemaker.add_response(
            "describe_endpoint_config", endpoint_config_response(PREVIOUS, instance_type)
        )
        scaling.add_response(
            "describe_scalable_targets",
            {
                "ScalableTargets": [
                    {
                        "ServiceNamespace": "sagemaker",
                        "ResourceId": TARGET,
                        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
                        "MinCapacity": 1,
                        "MaxCapacity": 3,
                        "RoleARN": "arn:aws:iam::123456789012:role/aas",
                        "CreationTime": "2026-11-24T10:00:00Z",
                    }
                ]
            },
            {
                "ServiceNamespace": "sagemaker",
                "ResourceIds": [TARGET],
                "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
            },
        )
        scaling.add_response("describe_scaling_policies", {"ScalingPolicies": []})
        scaling.add_response(
            "deregister_scalable_target",
            {},
            {
                "ServiceNamespace": "sagemaker",
                "ResourceId": TARGET,
                "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
            },
        )
        sagemaker.add_response(
            "update_endpoint",
            {"EndpointArn": f"{ARN}:endpoint/{ENDPOINT}"},
            {
                "EndpointName": ENDPOINT,
                "EndpointConfigName": CONFIG,
                "RetainAllVariantProperties": False,
                "DeploymentConfig": CANARY,
            },
        )
        assert aws.invoke(app, EVENT)["action"] == "update"


@pytest.mark.parametrize(
    "status", ["Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting", "OutOfService"]
)
def test_a_busy_endpoint_is_waited_for(app, aws, status: str) -> None:
    with stubbed("sagemaker") as sagemaker:
        sagemaker.add_response(
            "describe_endpoint", describe_endpoint_response(ENDPOINT, status, PREVIOUS)
        )
        result = aws.invoke(app, EVENT)
    assert (result["action"], result["reason"]) == ("wait", f"endpoint {ENDPOINT} is {status}")


def test_a_failed_endpoint_is_deleted_before_it_is_recreated(app, aws) -> None:
    failed = describe_endpoint_response(
        ENDPOINT, "Failed", PREVIOUS, FailureReason="image pull failed"
    )
    with stubbed("sagemaker") as sagemaker, stubbed("application-autoscaling") as scaling:
        sagemaker.add_response("describe_endpoint", failed)
        scaling.add_response("describe_scalable_targets", {"ScalableTargets": []})
        sagemaker.add_response("delete_endpoint", {}, {"EndpointName": ENDPOINT})
        result = aws.invoke(app, EVENT)
    assert result["action"] == "wait"
    assert result["reason"] == f"deleting Failed endpoint {ENDPOINT} (image pull failed)"


def test_a_busy_endpoint_past_the_deployment_window_fails_the_deploy(app, aws) -> None:
    late = {**EVENT, "deadlines": {"deploy": 0, "rollback": 1}}
    with stubbed("sagemaker") as sagemaker:
        sagemaker.add_response(
            "describe_endpoint", describe_endpoint_response(ENDPOINT, "Updating", PREVIOUS)
        )
        with pytest.raises(Exception, match="deployment window closed") as raised:
            aws.invoke(app, late)
    assert type(raised.value).__name__ == "DeploymentError"


def test_a_refused_update_puts_the_removed_scaling_back(app, aws) -> None:
    # An instance-type change must deregister the target first; if SageMaker then refuses
    # the update, production keeps serving and must keep its scaling exactly as it was.
    policy = {
        "PolicyName": f"{ENDPOINT}-invocations-per-instance",
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": 50.0,
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
            },
        },
    }
    dimension = {"ScalableDimension": "sagemaker:variant:DesiredInstanceCount"}
    target = {"ServiceNamespace": "sagemaker", "ResourceId": TARGET, **dimension}
    with stubbed("sagemaker") as sagemaker, stubbed("application-autoscaling") as scaling:
        sagemaker.add_response(
            "describe_endpoint", describe_endpoint_response(ENDPOINT, "InService", PREVIOUS)
        )
        sagemaker.add_response("list_tags", {"Tags": [{"Key": VERIFIED_TAG, "Value": PREVIOUS}]})
        sagemaker.add_response("create_model", {"ModelArn": f"{ARN}:model/{MODEL}"})
        sagemaker.add_response(
            "create_endpoint_config", {"EndpointConfigArn": f"{ARN}:endpoint-config/{CONFIG}"}
        )
        sagemaker.add_response(
            "describe_endpoint_config", endpoint_config_response(PREVIOUS, "ml.c5.xlarge")
        )
        scaling.add_response(
            "describe_scalable_targets",
            {
                "ScalableTargets": [
                    {
                        **target,
                        "MinCapacity": 1,
                        "MaxCapacity": 3,
                        "RoleARN": "arn:aws:iam::123456789012:role/aas",
                        "CreationTime": "2026-11-24T10:00:00Z",
                    }
                ]
            },
        )
        scaling.add_response(
            "describe_scaling_policies",
            {
                "ScalingPolicies": [
                    {
                        **policy,
                        **target,
                        "PolicyARN": "arn:aws:autoscaling:x",
                        "CreationTime": "2026-11-24T10:00:00Z",
                    }
                ]
            },
        )
        scaling.add_response("deregister_scalable_target", {}, target)
        sagemaker.add_client_error(
            "update_endpoint", "ValidationException", "The instance type is not supported."
        )
        scaling.add_response(
            "register_scalable_target", {}, {**target, "MinCapacity": 1, "MaxCapacity": 3}
        )
        scaling.add_response(
            "put_scaling_policy", {"PolicyARN": "arn:aws:autoscaling:x"}, {**target, **policy}
        )
        with pytest.raises(Exception, match="instance type is not supported"):
            aws.invoke(app, EVENT)


def approved_version(
    sagemaker: Any, artifact: str = EVENT["model_artifact"], **metadata: str
) -> str:
    return sagemaker.create_model_package(
        ModelPackageGroupName="mlops-models",
        ModelApprovalStatus="Approved",
        InferenceSpecification={
            "Containers": [{"Image": "inference:1", "ModelDataUrl": artifact}],
            "SupportedContentTypes": ["image/jpeg"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        **({"CustomerMetadataProperties": metadata} if metadata else {}),
    )["ModelPackageArn"]


def test_a_version_gated_before_a_better_model_went_live_is_refused(app, aws) -> None:
    """Issue 18 (never-worse): the champion gate compared the version with the model live
    when it trained (none here); another went live since, so DeployModel, under the
    deployment lock, compares it with that one before touching the endpoint (the rules:
    test_quality_gate's against_live tests)."""
    sagemaker = boto3.client("sagemaker")
    sagemaker.create_model_package_group(ModelPackageGroupName="mlops-models")
    live_artifact = "s3://pipeline-data/models/live.tar.gz"
    live = approved_version(sagemaker, live_artifact, metric_test_acc="0.9")
    aws.invoke(app, {**EVENT, "model_package_arn": live})
    live_config = sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
    candidate = approved_version(sagemaker, metric_test_acc="0.6", champion_model="none")
    result = aws.invoke(app, {**EVENT, "model_package_arn": candidate})
    assert result["action"] == "refused"
    assert result["reason"].startswith(
        f"the live model {live_artifact} is better: test accuracy 0.9 against this model's 0.6"
    )
    assert sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == live_config


@pytest.mark.parametrize("status", ["Pending", "InProgress"])
def test_a_version_sagemaker_still_validates_is_waited_for(app, aws, status: str) -> None:
    # CreateModelPackage returns before the package is Completed; CreateModel waits for it.
    package = f"{ARN}:model-package/mlops-models/3"
    with stubbed("sagemaker") as sagemaker:
        sagemaker.add_response(
            "describe_model_package",
            {
                "ModelPackageName": "mlops-models",
                "ModelPackageArn": package,
                "CreationTime": "2026-12-08T00:00:00Z",
                "ModelPackageStatus": status,
                "ModelPackageStatusDetails": {"ValidationStatuses": []},
            },
            {"ModelPackageName": package},
        )
        result = aws.invoke(app, {**EVENT, "model_package_arn": package})
    assert (result["action"], result["reason"]) == ("wait", f"model package {package} is {status}")
    assert aws.operations() == ["DescribeModelPackage"]


def test_a_version_that_failed_validation_fails_the_deploy(app, aws) -> None:
    package = f"{ARN}:model-package/mlops-models/3"
    with stubbed("sagemaker") as sagemaker:
        sagemaker.add_response(
            "describe_model_package",
            {
                "ModelPackageName": "mlops-models",
                "ModelPackageArn": package,
                "CreationTime": "2026-12-08T00:00:00Z",
                "ModelPackageStatus": "Failed",
                "ModelPackageStatusDetails": {"ValidationStatuses": []},
            },
        )
        with pytest.raises(Exception, match="is Failed, so it cannot be deployed") as raised:
            aws.invoke(app, {**EVENT, "model_package_arn": package})
    assert type(raised.value).__name__ == "DeploymentError"


def test_a_failed_update_restores_the_last_verified_config_not_the_live_one(app, aws) -> None:
    # A run stopped mid-canary left UNVERIFIED serving; VERIFIED passed its smoke test.
    unverified = f"{ENDPOINT}-fedcba9876543210"
    with stubbed("sagemaker") as sagemaker:
        sagemaker.add_response(
            "describe_endpoint", describe_endpoint_response(ENDPOINT, "InService", unverified)
        )
        sagemaker.add_response(
            "list_tags",
            {"Tags": [{"Key": VERIFIED_TAG, "Value": PREVIOUS}]},
            {"ResourceArn": f"{ARN}:endpoint/{ENDPOINT}"},
        )
        sagemaker.add_response("create_model", {"ModelArn": f"{ARN}:model/{MODEL}"})
        sagemaker.add_response(
            "create_endpoint_config",
            {"EndpointConfigArn": f"{ARN}:endpoint-config/{CONFIG}"},
            {**config_request(), "Tags": [*TAGS, {"Key": REPLACES_TAG, "Value": PREVIOUS}]},
        )
        # the update replaces what serves: its variants decide RetainAllVariantProperties
        sagemaker.add_response(
            "describe_endpoint_config",
            endpoint_config_response(unverified, "ml.m5.large"),
            {"EndpointConfigName": unverified},
        )
        sagemaker.add_response("update_endpoint", {"EndpointArn": f"{ARN}:endpoint/{ENDPOINT}"})
        result = aws.invoke(app, EVENT)
    assert (result["action"], result["previous_endpoint_config_name"]) == ("update", PREVIOUS)


def test_an_update_with_no_verified_config_restores_nothing_if_the_pipeline_made_it(
    app, aws
) -> None:
    # A first run stopped before its smoke test left UNVERIFIED serving, made by the
    # pipeline (it has the REPLACES_TAG) and never verified: nothing to restore on failure.
    unverified = f"{ENDPOINT}-fedcba9876543210"
    with stubbed("sagemaker") as sagemaker:
        sagemaker.add_response(
            "describe_endpoint", describe_endpoint_response(ENDPOINT, "InService", unverified)
        )
        sagemaker.add_response(
            "list_tags", {"Tags": []}, {"ResourceArn": f"{ARN}:endpoint/{ENDPOINT}"}
        )
        sagemaker.add_response(
            "describe_endpoint_config",
            endpoint_config_response(unverified, "ml.m5.large"),
            {"EndpointConfigName": unverified},
        )
        sagemaker.add_response(
            "list_tags",
            {"Tags": [{"Key": REPLACES_TAG, "Value": ""}]},
            {"ResourceArn": f"{ARN}:endpoint-config/{unverified}"},
        )
        sagemaker.add_response("create_model", {"ModelArn": f"{ARN}:model/{MODEL}"})
        sagemaker.add_response(
            "create_endpoint_config",
            {"EndpointConfigArn": f"{ARN}:endpoint-config/{CONFIG}"},
            {**config_request(), "Tags": [*TAGS, {"Key": REPLACES_TAG, "Value": ""}]},
        )
        sagemaker.add_response(
            "describe_endpoint_config",
            endpoint_config_response(unverified, "ml.m5.large"),
            {"EndpointConfigName": unverified},
        )
        sagemaker.add_response("update_endpoint", {"EndpointArn": f"{ARN}:endpoint/{ENDPOINT}"})
        result = aws.invoke(app, EVENT)
    # the rollback reads no previous config as "delete what this pipeline made"
    assert (result["action"], result["previous_endpoint_config_name"]) == ("update", None)


URI = "s3://pipeline-data/data-capture/"


@pytest.mark.parametrize(
    ("live", "planned", "changes"),
    [
        (None, None, False),
        ({"EnableCapture": False, "CurrentSamplingPercentage": 10}, None, False),
        (CAPTURING["DataCaptureConfig"], {"percent": 10, "uri": URI}, False),
        (CAPTURING["DataCaptureConfig"], {"percent": 50, "uri": URI}, True),
        (CAPTURING["DataCaptureConfig"], None, True),
        (None, {"percent": 10, "uri": URI}, True),
    ],
)
def test_a_capture_change_is_the_plans_against_the_endpoints_in_effect(
    live: dict[str, Any] | None, planned: dict[str, Any] | None, changes: bool
) -> None:
    assert capture_changes(live, planned) is changes
