"""Summarize: the execution's output."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mlops import schemas
from mlops.observability import logger, pipeline_handler
from mlops.summary import summarize


@pipeline_handler("summarize_run", schemas.SUMMARIZE_RUN)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    summary = summarize(event["state"])
    logger.info("run finished", extra={"summary": summary})
    return summary
