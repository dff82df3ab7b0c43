"""Deploy-only runs: an approved model package starts the state machine without training.

``ApprovalMode=manual`` registers a model ``PendingManualApproval`` and ends the run. A
person approves it (console, ``aws sagemaker update-model-package``, ``python -m localcloud
approve``); SageMaker emits a "SageMaker Model Package State Change" event, and the
template's EventBridge rule starts the state machine with it. This plans that run: the
package's training job, data set and model data, the stack's current endpoint settings.
The pipeline's own approvals (``ApprovalMode=auto``: ``approved_by=pipeline``, see
mlops/registry.py) are not the rule's to act on; any other approval is a person's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlops import registry
from mlops.errors import ModelPackageError
from mlops.naming import content_id, resource_name
from mlops.s3 import parse_s3_uri

SOURCE = "aws.sagemaker"
DETAIL_TYPE = "SageMaker Model Package State Change"


def is_approval_event(trigger: Mapping[str, Any]) -> bool:
    return trigger.get("source") == SOURCE or trigger.get("detail-type") == DETAIL_TYPE


class NotDeployable(ValueError):
    """The event names no package this pipeline should deploy; ``skipped`` if that is normal."""

    def __init__(self, message: str, *, skipped: bool = False) -> None:
        super().__init__(message)
        self.skipped = skipped


def package_arn(event: Mapping[str, Any], group: str) -> str:
    """The approved package's ARN from the event, or NotDeployable."""
    if event.get("detail-type") != DETAIL_TYPE:
        raise NotDeployable(f"unsupported SageMaker event {event.get('detail-type')!r}")
    detail = event.get("detail")
    if not isinstance(detail, Mapping) or not isinstance(detail.get("ModelPackageArn"), str):
        raise NotDeployable("the model package event has no detail.ModelPackageArn")
    if detail.get("ModelPackageGroupName") != group:
        raise NotDeployable(
            f"model package group {detail.get('ModelPackageGroupName')!r} is not this "
            f"pipeline's {group!r}",
            skipped=True,
        )
    status = detail.get("ModelApprovalStatus")
    if status != registry.APPROVED:
        raise NotDeployable(
            f"{detail['ModelPackageArn']} is {status}: nothing to deploy", skipped=True
        )
    return str(detail["ModelPackageArn"])


def deploy_plan(
    sagemaker: Any, event: Mapping[str, Any], trained: Mapping[str, Any], group: str
) -> dict[str, Any]:
    """The plan of a deploy-only run; ``trained`` is a training plan's shape to fill in
    (build_plan's output with this stack's settings)."""
    arn = package_arn(event, group)
    try:
        package = registry.approved_package(sagemaker, arn, group)
    except ModelPackageError as exc:
        raise NotDeployable(str(exc)) from None
    meta = package["metadata"]
    if package["approved_by_pipeline"]:
        # Registered Approved by a run that deploys it itself: that run is the deployment.
        # (The template's rule drops these events; this covers a hand-started run.) A
        # person's approval, even of a version an auto-mode run registered, deploys.
        raise NotDeployable(
            f"{arn} was approved by the pipeline run that registered it, which deploys it",
            skipped=True,
        )
    run_id = meta.get("run_id") or content_id({"package": arn})
    dataset_uri = meta.get("dataset_uri", "")
    try:
        bucket, key = parse_s3_uri(dataset_uri)
    except ValueError:
        bucket, key = "", ""
    endpoint, model = dict(trained["endpoint"]), dict(trained["model"])
    if package.get("image"):
        model["image"] = package["image"]
    deployment_id = content_id({"run_id": run_id, "package": arn, "endpoint": endpoint})
    name = resource_name(endpoint["endpoint_name"], deployment_id)
    job_name = meta.get("training_job") or "-"
    metrics = {
        k.removeprefix("metric_"): float(v) for k, v in meta.items() if k.startswith("metric_")
    }
    return {
        **trained,
        "run_id": run_id,
        "deployment_id": deployment_id,
        "mode": "deploy",
        "source": "model-package-approval",
        "dataset": {
            "bucket": bucket,
            "key": key,
            "uri": dataset_uri or "-",
            "version": meta.get("dataset_version", "-"),
        },
        "training": {**trained["training"], "job_name": job_name},
        "model": {**model, "model_name": name},
        "endpoint": {**endpoint, "endpoint_config_name": name},
        "package": {
            "training": {
                "training_job_name": job_name,
                "status": "Completed",
                "metrics": metrics,
                "model_artifact": package["model_artifact"],
            },
            "registry": {
                "model_package_arn": package["model_package_arn"],
                "model_package_group": group,
                "approval_status": registry.APPROVED,
                "created": False,
                "model_artifact": package["model_artifact"],
            },
        },
    }
