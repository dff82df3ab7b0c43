"""The execution's output: what was trained, where it is served, how it did."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def summarize(state: Mapping[str, Any]) -> dict[str, Any]:
    run, training, deployment = state["run"], state["training"], state["deployment"]
    gate = state.get("gate") or {}
    smoke = state.get("smoke")
    scaling = state.get("autoscaling")
    tuning = training.get("tuning")
    already = deployment["action"] == "already_deployed"
    return {
        "run_id": run["run_id"],
        "deployment_id": run["deployment_id"],
        "dataset": run["dataset"]["uri"],
        "dataset_version": run["dataset"]["version"],
        "training_job_name": training["training_job_name"],
        # With tuning: the tuning job, its best objective and its trials' counts.
        "tuning": None
        if not tuning
        else {
            k: tuning.get(k)
            for k in ("tuning_job_name", "objective_metric", "best_objective", "trials")
        },
        "metrics": training.get("metrics", {}),
        "model_artifact": training.get("model_artifact"),
        "quality_gate": {k: gate.get(k) for k in ("metric", "value", "threshold", "reason")},
        "endpoint_name": deployment["endpoint_name"],
        "endpoint_config_name": deployment["endpoint_config_name"],
        "model_name": deployment["model_name"],
        "previous_endpoint_config_name": deployment.get("previous_endpoint_config_name"),
        "deployment_action": deployment["action"],
        "already_deployed": already,
        "smoke_test": None
        if not smoke
        else {k: smoke.get(k) for k in ("accuracy", "images", "correct", "min_accuracy")},
        "autoscaling": None
        if not scaling
        else {k: scaling.get(k) for k in ("resource_id", "min_capacity", "max_capacity")},
        "message": deployment.get("reason") if already else "deployed and smoke-tested",
        "model_package_arn": (state.get("registry") or {}).get("model_package_arn"),
        "rollout": deployment.get("rollout"),
        "champion": gate.get("champion"),
    }
