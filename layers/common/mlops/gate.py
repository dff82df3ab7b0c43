"""The quality gate: a model is deployed only if its validation accuracy is high enough."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def evaluate_gate(
    metrics: Mapping[str, float], gate: Mapping[str, Any], job_name: str
) -> dict[str, Any]:
    """``passed`` and a ``reason`` that names both numbers (the execution's cause on failure)."""
    metric, threshold = gate["metric"], float(gate["min_value"])
    value = metrics.get(metric)
    result: dict[str, Any] = {
        "passed": False,
        "metric": metric,
        "value": value,
        "threshold": threshold,
    }
    if value is None or not math.isfinite(float(value)):
        reported = ", ".join(sorted(metrics)) or "none"
        result["reason"] = (
            f"training job {job_name} reported no {metric} metric (reported: {reported}); "
            "check train.py's [final] line against metric_definitions.json"
        )
        result["value"] = None
        return result
    name = metric.replace("valid_acc", "validation accuracy")
    if float(value) >= threshold:
        result.update(
            passed=True, reason=f"{name} {value:.4g} reaches the required {threshold:.4g}"
        )
    else:
        result["reason"] = f"{name} {value:.4g} is below the required {threshold:.4g}"
    return result
