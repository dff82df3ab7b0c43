"""QualityGate: the validation accuracy reaches the minimum and the test accuracy is not
below the live model's on the same test split (minus the margin)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlops import schemas
from mlops.gate import evaluate_gate
from mlops.observability import logger, metrics, pipeline_handler


@pipeline_handler("quality_gate", schemas.QUALITY_GATE)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = evaluate_gate(
        event["metrics"], event["gate"], event["training_job_name"], event.get("champion")
    )
    metrics.add_metric(name="QualityGatePassed", unit=MetricUnit.Count, value=int(result["passed"]))
    logger.info("quality gate", extra={"quality_gate": result})
    return result
