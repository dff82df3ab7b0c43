"""AttachAutoscaling: target-tracking autoscaling on the endpoint's variant (idempotent), and
the deployment recorded as verified (it passed its smoke test with all the traffic): the
config later deployments roll back to."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mlops import schemas
from mlops.autoscaling import attach
from mlops.aws import client, create_at_init
from mlops.deployment import mark_verified
from mlops.observability import logger, pipeline_handler

create_at_init("application-autoscaling", "sagemaker")


@pipeline_handler("attach_autoscaling", schemas.ATTACH_AUTOSCALING)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deployment = event["deployment"]
    result = attach(
        client("application-autoscaling"),
        deployment["endpoint_name"],
        deployment["variant_name"],
        event["autoscaling"],
    )
    mark_verified(
        client("sagemaker"), deployment["endpoint_name"], deployment["endpoint_config_name"]
    )
    logger.info("autoscaling attached", extra={"autoscaling": result})
    return result
