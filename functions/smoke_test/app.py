"""SmokeTest: the model's held-out images through the inference function, as users call it."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlops import schemas
from mlops.aws import client, create_at_init
from mlops.config import env_str
from mlops.observability import logger, metrics, pipeline_handler
from mlops.smoke import run_smoke_test

create_at_init("s3", "lambda")


@pipeline_handler("smoke_test", schemas.SMOKE_TEST)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = run_smoke_test(
        client("s3"),
        client("lambda"),
        env_str("CLASSIFY_FUNCTION_NAME"),
        event["model_artifact"],
        float(event["smoke_test"]["min_accuracy"]),
        request_prefix=f"smoke-{event['run_id']}",
    )
    if result["accuracy"] is not None:
        metrics.add_metric(
            name="SmokeTestAccuracy", unit=MetricUnit.NoUnit, value=result["accuracy"]
        )
    metrics.add_metric(name="SmokeTestPassed", unit=MetricUnit.Count, value=int(result["passed"]))
    logger.info("smoke test", extra={"smoke_test": result})
    return result
