"""RejectModel: a registered version whose deployment failed is recorded as Rejected."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mlops import registry, schemas
from mlops.aws import client, create_at_init
from mlops.observability import logger, pipeline_handler

create_at_init("sagemaker")


@pipeline_handler("reject_model", schemas.REJECT_MODEL)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    failure = event["failure"]
    reason = f"{failure.get('error', 'PipelineFailed')}: {failure.get('cause', '')}"
    result = registry.reject(client("sagemaker"), event["model_package_arn"], reason)
    logger.info("model rejected", extra={"registry": result})
    return result
