"""RollBack: delete an endpoint this run created, or update back to the previous config."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from mlops.deployment import for_package
from tests.conftest import AwsRecorder, load_event, load_handler
from tests.functions.pipeline_helpers import (
    describe_endpoint_response,
    endpoint_config_response,
    stubbed,
)

FUNCTION = "RollbackFunction"
UPDATED = load_event("rollback/updated.json")
CREATED = load_event("rollback/created.json")
NAME = UPDATED["deployment"]["endpoint_name"]
NEW = UPDATED["deployment"]["endpoint_config_name"]
OLD = UPDATED["deployment"]["previous_endpoint_config_name"]
TARGET = f"endpoint/{NAME}/variant/AllTraffic"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"


@pytest.fixture
def app(aws: AwsRecorder) -> ModuleType:
    return load_handler("rollback")


def step(
    app: ModuleType,
    aws: AwsRecorder,
    event: dict[str, Any],
    status: str | None,
    config: str | None,
    script: Any = None,
    **described: Any,
) -> dict[str, Any]:
    with stubbed("sagemaker") as sagemaker, stubbed("application-autoscaling") as scaling:
        if status is None:
            sagemaker.add_client_error(
                "describe_endpoint", "ValidationException", f"Could not find endpoint {NAME}."
            )
        else:
            sagemaker.add_response(
                "describe_endpoint", describe_endpoint_response(NAME, status, config, **described)
            )
        if script:
            script(sagemaker, scaling)
        return aws.invoke(app, event)


def test_a_created_endpoint_is_deleted_with_its_scalable_target(app, aws) -> None:
    def delete(sagemaker: Any, scaling: Any) -> None:
        target = {
            "ServiceNamespace": "sagemaker",
            "ResourceId": TARGET,
            "ScalableDimension": DIMENSION,
            "MinCapacity": 1,
            "MaxCapacity": 3,
            "RoleARN": "arn:aws:iam::123456789012:role/aas",
            "CreationTime": "2026-11-24T10:00:00Z",
        }
        scaling.add_response("describe_scalable_targets", {"ScalableTargets": [target]})
        scaling.add_response("describe_scaling_policies", {"ScalingPolicies": []})
        scaling.add_response(
            "deregister_scalable_target",
            {},
            {"ServiceNamespace": "sagemaker", "ResourceId": TARGET, "ScalableDimension": DIMENSION},
        )
        sagemaker.add_response("delete_endpoint", {}, {"EndpointName": NAME})

    first = step(app, aws, CREATED, "InService", NEW, delete)
    assert (first["done"], first["action"]) == (False, "deleting")
    assert step(app, aws, CREATED, "Deleting", NEW)["done"] is False
    last = step(app, aws, CREATED, None, None)
    assert (last["done"], last["action"]) == (True, "deleted")


def test_an_updated_endpoint_goes_back_to_the_previous_config(app, aws) -> None:
    def update_back(sagemaker: Any, scaling: Any) -> None:
        sagemaker.add_response(
            "describe_endpoint_config",
            endpoint_config_response(OLD, "ml.m5.large"),
            {"EndpointConfigName": OLD},
        )
        sagemaker.add_response(
            "describe_endpoint_config",
            endpoint_config_response(NEW, "ml.m5.large"),
            {"EndpointConfigName": NEW},
        )
        sagemaker.add_response(
            "update_endpoint",
            {"EndpointArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{NAME}"},
            {"EndpointName": NAME, "EndpointConfigName": OLD, "RetainAllVariantProperties": True},
        )

    def reattach(sagemaker: Any, scaling: Any) -> None:
        scaling.add_response("register_scalable_target", {})
        scaling.add_response(
            "put_scaling_policy",
            {"PolicyARN": "arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:x:resource/y"},
        )

    restoring = step(app, aws, UPDATED, "InService", NEW, update_back)
    assert (restoring["done"], restoring["action"]) == (False, "restoring")
    waiting = step(app, aws, UPDATED, "Updating", NEW)
    assert (waiting["done"], waiting["action"]) == (False, "waiting")
    restored = step(app, aws, UPDATED, "InService", OLD, reattach)
    assert (restored["done"], restored["action"]) == (True, "restored")


def test_the_previous_config_comes_back_with_its_data_capture(app, aws) -> None:
    # The failed config's capture took effect (the update to it did not retain the variant
    # properties); retaining them now would keep it, so the rollback does not.
    capturing = {
        "EnableCapture": True,
        "CaptureStatus": "Started",
        "CurrentSamplingPercentage": 20,
        "DestinationS3Uri": "s3://pipeline-data/data-capture/",
        "KmsKeyId": "",
    }

    def update_back(sagemaker: Any, scaling: Any) -> None:
        for config in (OLD, NEW):
            sagemaker.add_response(
                "describe_endpoint_config", endpoint_config_response(config, "ml.m5.large")
            )
        scaling.add_response("describe_scalable_targets", {"ScalableTargets": []})
        sagemaker.add_response(
            "update_endpoint",
            {"EndpointArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{NAME}"},
            {"EndpointName": NAME, "EndpointConfigName": OLD, "RetainAllVariantProperties": False},
        )

    restoring = step(app, aws, UPDATED, "InService", NEW, update_back, DataCaptureConfig=capturing)
    assert (restoring["done"], restoring["action"]) == (False, "restoring")


def test_sagemakers_own_rollback_needs_only_scaling_back(app, aws) -> None:
    def reattach(sagemaker: Any, scaling: Any) -> None:
        scaling.add_response("register_scalable_target", {})
        scaling.add_response(
            "put_scaling_policy", {"PolicyARN": "arn:aws:autoscaling:x:y:z:policy"}
        )

    result = step(app, aws, UPDATED, "InService", OLD, reattach)
    assert result["done"] is True
    assert "UpdateEndpoint" not in aws.operations()


def test_an_endpoint_that_turns_busy_before_the_update_is_waited_for(app, aws) -> None:
    # Autoscaling started resizing between DescribeEndpoint and UpdateEndpoint (the race
    # that left a failed model live): wait, then restore, never fail the rollback.
    def busy(sagemaker: Any, scaling: Any) -> None:
        for config in (OLD, NEW):
            sagemaker.add_response(
                "describe_endpoint_config", endpoint_config_response(config, "ml.m5.large")
            )
        sagemaker.add_client_error(
            "update_endpoint",
            "ValidationException",
            f'Cannot update in-progress endpoint "arn:aws:sagemaker:us-east-1:1:endpoint/{NAME}".',
        )

    result = step(app, aws, UPDATED, "InService", NEW, busy)
    assert (result["done"], result["action"]) == (False, "waiting")


@pytest.mark.parametrize(
    ("status", "config", "message"),
    [
        (None, None, "no longer exists"),
        ("Failed", NEW, "is Failed"),
    ],
)
def test_an_endpoint_gone_or_failed_fails_the_rollback(app, aws, status, config, message) -> None:
    with pytest.raises(Exception, match=message) as raised:
        step(app, aws, UPDATED, status, config)
    assert type(raised.value).__name__ == "RollbackError"


def test_a_rollback_past_its_window_fails_instead_of_waiting_forever(app, aws) -> None:
    late = {**UPDATED, "deadlines": {"deploy": 0, "rollback": 1}}
    with pytest.raises(Exception, match="rollback window closed") as raised:
        step(app, aws, late, "Updating", NEW)
    assert type(raised.value).__name__ == "RollbackError"


def test_a_late_step_that_finds_the_previous_config_restored_reattaches_scaling(app, aws) -> None:
    # SageMaker (or our earlier step) restored the previous config while the run waited:
    # past the window, the rollback is still done, and production gets its scaling back.
    def reattach(sagemaker: Any, scaling: Any) -> None:
        scaling.add_response("register_scalable_target", {})
        scaling.add_response(
            "put_scaling_policy", {"PolicyARN": "arn:aws:autoscaling:x:y:z:policy"}
        )

    late = {**UPDATED, "deadlines": {"deploy": 0, "rollback": 1}}
    result = step(app, aws, late, "InService", OLD, reattach)
    assert (result["done"], result["action"]) == (True, "restored")
    assert "RegisterScalableTarget" in aws.operations()


# DeployModel failed (timeout, lost response, an error after SageMaker took the request):
# the state machine hands RollBack this, and the endpoint says what happened.
UNCERTAIN = {
    **UPDATED,
    "deployment": {
        **UPDATED["deployment"],
        "action": "uncertain",
        "previous_endpoint_config_name": None,
        "created_endpoint": False,
    },
}
ARN = "arn:aws:sagemaker:us-east-1:123456789012"


def _config_tags(sagemaker: Any, replaces: str) -> None:
    sagemaker.add_response(
        "describe_endpoint_config",
        endpoint_config_response(NEW, "ml.m5.large"),
        {"EndpointConfigName": NEW},
    )
    sagemaker.add_response(
        "list_tags",
        {"Tags": [{"Key": "mlops:replaces-endpoint-config", "Value": replaces}]},
        {"ResourceArn": f"{ARN}:endpoint-config/{NEW}"},
    )


def test_an_update_sagemaker_took_before_deploy_failed_is_waited_for(app, aws) -> None:
    pending = {"PendingDeploymentSummary": {"EndpointConfigName": NEW}}

    def found(sagemaker: Any, scaling: Any) -> None:
        _config_tags(sagemaker, OLD)

    with stubbed("sagemaker") as sagemaker, stubbed("application-autoscaling") as scaling:
        sagemaker.add_response(
            "describe_endpoint", describe_endpoint_response(NAME, "Updating", OLD, **pending)
        )
        found(sagemaker, scaling)
        result = aws.invoke(app, UNCERTAIN)
    assert (result["done"], result["action"]) == (False, "waiting")


def test_an_unchecked_model_live_after_deploy_failed_is_rolled_back(app, aws) -> None:
    def restore(sagemaker: Any, scaling: Any) -> None:
        sagemaker.add_response("list_tags", {"Tags": []})  # the endpoint: nothing verified yet
        _config_tags(sagemaker, OLD)
        for config in (OLD, NEW):
            sagemaker.add_response(
                "describe_endpoint_config", endpoint_config_response(config, "ml.m5.large")
            )
        sagemaker.add_response(
            "update_endpoint",
            {"EndpointArn": f"{ARN}:endpoint/{NAME}"},
            {"EndpointName": NAME, "EndpointConfigName": OLD, "RetainAllVariantProperties": True},
        )

    result = step(app, aws, UNCERTAIN, "InService", NEW, restore)
    assert (result["done"], result["action"]) == (False, "restoring")


def test_a_deploy_that_failed_before_sagemaker_took_it_leaves_the_endpoint_alone(app, aws) -> None:
    def reattach(sagemaker: Any, scaling: Any) -> None:
        scaling.add_response("register_scalable_target", {})
        scaling.add_response("put_scaling_policy", {"PolicyARN": "arn:aws:autoscaling:x:y:z:p"})

    result = step(app, aws, UNCERTAIN, "InService", OLD, reattach)
    assert (result["done"], result["action"]) == (True, "untouched")
    assert "UpdateEndpoint" not in aws.operations()
    gone = step(app, aws, UNCERTAIN, None, None)
    assert (gone["done"], gone["action"]) == (True, "untouched")


def test_a_created_endpoint_still_creating_after_deploy_failed_is_deleted_once_up(app, aws) -> None:
    def created(sagemaker: Any, scaling: Any) -> None:
        sagemaker.add_response("list_tags", {"Tags": []})  # the endpoint: nothing verified
        _config_tags(sagemaker, "")

    first = step(app, aws, UNCERTAIN, "Creating", NEW, created)
    assert (first["done"], first["action"]) == (False, "waiting")


def test_an_uncertain_deploy_of_a_version_looks_for_that_versions_config(app, aws) -> None:
    package = f"{ARN}:model-package/mlops-models/2"
    ours = for_package(UPDATED["run"], package)["endpoint"]["endpoint_config_name"]
    event = {**UNCERTAIN, "deployment": {**UNCERTAIN["deployment"], "model_package_arn": package}}
    pending = {"PendingDeploymentSummary": {"EndpointConfigName": ours}}
    with stubbed("sagemaker") as sagemaker:
        sagemaker.add_response(
            "describe_endpoint", describe_endpoint_response(NAME, "Updating", OLD, **pending)
        )
        sagemaker.add_response(
            "describe_endpoint_config",
            endpoint_config_response(ours, "ml.m5.large"),
            {"EndpointConfigName": ours},
        )
        sagemaker.add_response(
            "list_tags", {"Tags": [{"Key": "mlops:replaces-endpoint-config", "Value": OLD}]}
        )
        result = aws.invoke(app, event)
    assert (result["done"], result["action"]) == (False, "waiting")
