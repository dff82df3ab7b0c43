"""AttachAutoscaling: target-tracking autoscaling on the endpoint's variant (idempotent)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mlops import schemas
from mlops.autoscaling import attach
from mlops.aws import client, create_at_init
from mlops.observability import logger, pipeline_handler

create_at_init("application-autoscaling")


@pipeline_handler("attach_autoscaling", schemas.ATTACH_AUTOSCALING)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deployment = event["deployment"]
    result = attach(
        client("application-autoscaling"),
        deployment["endpoint_name"],
        deployment["variant_name"],
        event["autoscaling"],
    )
    logger.info("autoscaling attached", extra={"autoscaling": result})
    return result
