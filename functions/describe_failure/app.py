"""DescribeFailure: the failed execution's error name and one-sentence cause."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mlops import schemas
from mlops.failure import describe_failure
from mlops.observability import logger, metrics, pipeline_handler


@pipeline_handler("describe_failure", schemas.DESCRIBE_FAILURE)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    failure = describe_failure(event["state"])
    metrics.add_metric(name="RunsFailed", unit="Count", value=1)
    logger.warning("run failed", extra={"failure": failure})
    return failure
