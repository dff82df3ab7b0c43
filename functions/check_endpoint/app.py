"""CheckEndpoint: is the endpoint InService on the config this run deployed?"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mlops import schemas
from mlops.aws import client, create_at_init
from mlops.deployment import endpoint_state
from mlops.observability import logger, pipeline_handler

create_at_init("sagemaker", "cloudwatch")


@pipeline_handler("check_endpoint", schemas.CHECK_ENDPOINT)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    state = endpoint_state(
        client("sagemaker"),
        event["deployment"],
        event["deadlines"],
        time.time(),
        client("cloudwatch"),
    )
    logger.info("endpoint state", extra={"endpoint": state})
    return state
