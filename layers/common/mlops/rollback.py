"""Roll a failed deployment back: delete an endpoint the run created, or update it back to
the last verified config; also when DeployModel itself failed and only the endpoint can say
whether SageMaker took its request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlops import autoscaling
from mlops.deployment import (
    TRANSITIONAL,
    capture_changes,
    config_capture,
    describe_endpoint,
    for_package,
    replaced_config,
    update_to,
    variant_types,
    verified,
)
from mlops.errors import RollbackError

# The deployment a rollback gets when DeployModel itself failed: whether SageMaker took its
# request is unknown, so the endpoint is asked.
UNCERTAIN = "uncertain"


def rollback_step(
    sagemaker: Any,
    scaling: Any,
    run: Mapping[str, Any],
    deployment: Mapping[str, Any],
    deadlines: Mapping[str, int],
    now: float,
) -> dict[str, Any]:
    """One rollback step; ``done`` once nothing of the failed deployment is live.

    A brand-new endpoint is deleted; an updated one is updated back to the previous
    config. Until the endpoint settles the step only waits, because SageMaker refuses
    both operations mid-transition. RollbackError when the previous config cannot be
    restored (the endpoint is gone or Failed): the execution then ends RollbackFailed.
    """
    name = deployment["endpoint_name"]
    current = describe_endpoint(sagemaker, name)
    if deployment.get("action") == UNCERTAIN:
        found = _uncertain(sagemaker, scaling, run, deployment, current)
        if "done" in found:
            return found
        deployment = found
    previous = deployment.get("previous_endpoint_config_name")
    created = previous is None or bool(deployment.get("created_endpoint"))
    if current is None:
        if created:
            return {"done": True, "action": "deleted", "status": None}
        raise RollbackError(
            f"endpoint {name} no longer exists, so {previous} could not be restored; "
            "redeploy the last good model"
        )
    status = current["EndpointStatus"]
    if not created and status == "InService" and current.get("EndpointConfigName") == previous:
        # Restored (by us, or by SageMaker's own rollback), however late this step runs:
        # scaling as the run configured it.
        autoscaling.attach(scaling, name, deployment["variant_name"], run["autoscaling"])
        return {"done": True, "action": "restored", "status": status}
    if now > deadlines["rollback"]:
        raise RollbackError(
            f"endpoint {name} was still {status} when the rollback window closed; "
            "check that it serves the model you expect"
        )
    if status in TRANSITIONAL:
        return {"done": False, "action": "waiting", "status": status}
    variants = [v["VariantName"] for v in current.get("ProductionVariants", [])]
    if created:
        autoscaling.detach(scaling, name, variants)
        sagemaker.delete_endpoint(EndpointName=name)
        return {"done": False, "action": "deleting", "status": status}
    if status == "Failed":
        raise RollbackError(
            f"endpoint {name} is Failed ({current.get('FailureReason') or 'no reason given'}), "
            f"so {previous} could not be restored; delete the endpoint and redeploy"
        )
    # InService on the failed config, or UpdateRollbackFailed (a mix of both): update back,
    # with the previous config's data capture too (an update that retains the variant
    # properties would keep the failed config's).
    config = sagemaker.describe_endpoint_config(EndpointConfigName=previous)
    restoring = update_to(
        sagemaker,
        scaling,
        name,
        current["EndpointConfigName"],
        previous,
        _previous_variant(config, deployment),
        keep_capture=not capture_changes(current.get("DataCaptureConfig"), config_capture(config)),
    )
    return {"done": False, "action": "restoring" if restoring else "waiting", "status": status}


def _uncertain(
    sagemaker: Any,
    scaling: Any,
    run: Mapping[str, Any],
    deployment: Mapping[str, Any],
    current: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """DeployModel failed (its timeout, a lost response, an error after SageMaker accepted
    the request): what the endpoint shows decides. The deployment to roll back, as DeployModel
    would have returned it (what it replaced is its config's REPLACES_TAG), if the endpoint
    serves or is moving to this run's config and that config was never verified; else a
    finished step: nothing of it is live, and an InService endpoint gets its scaling back."""
    names = for_package(run, deployment.get("model_package_arn"))
    ours = names["endpoint"]["endpoint_config_name"]
    if current is not None:
        moving = (current.get("PendingDeploymentSummary") or {}).get("EndpointConfigName") == ours
        # live and never verified (a verified one is an earlier run's good deployment)
        serving = current.get("EndpointConfigName") == ours and verified(sagemaker, current) != ours
        if moving or serving:
            replaced = replaced_config(sagemaker, ours)
            return {
                **deployment,
                "endpoint_config_name": ours,
                "model_name": names["model"]["model_name"],
                "action": "update" if replaced else "create",
                "previous_endpoint_config_name": replaced,
                "created_endpoint": replaced is None,
            }
        if current["EndpointStatus"] == "InService":
            autoscaling.attach(
                scaling, current["EndpointName"], deployment["variant_name"], run["autoscaling"]
            )
    status = current["EndpointStatus"] if current is not None else None
    return {"done": True, "action": "untouched", "status": status}


def _previous_variant(config: Mapping[str, Any], deployment: Mapping[str, Any]) -> dict[str, str]:
    variants = variant_types(config)
    variant = deployment["variant_name"]
    return {"variant_name": variant, "instance_type": variants.get(variant, "")}
