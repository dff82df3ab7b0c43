"""DescribeFailure: the failed execution's error name and one-sentence cause, naming the
state that failed (read from the execution's history)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from mlops import schemas
from mlops.aws import client
from mlops.failure import caught_states, describe_failure
from mlops.observability import logger, metrics, pipeline_handler


@pipeline_handler("describe_failure", schemas.DESCRIBE_FAILURE)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    failure = describe_failure(event["state"], _caught_states(event.get("execution_arn")))
    metrics.add_metric(name="RunsFailed", unit="Count", value=1)
    logger.warning("run failed", extra={"failure": failure})
    return failure


def _caught_states(execution_arn: str | None) -> list[str]:
    """The states whose failure was caught; none if the history cannot be read (the cause
    then gives the messages without their states rather than no cause at all)."""
    if not execution_arn:
        return []
    pages = (
        client("stepfunctions")
        .get_paginator("get_execution_history")
        .paginate(executionArn=execution_arn, includeExecutionData=False)
    )
    try:
        return caught_states(event for page in pages for event in page["events"])
    except (ClientError, BotoCoreError) as exc:
        logger.warning("execution history not read", extra={"error": str(exc)})
        return []
