"""DeployModel: create the model and endpoint config, then create or update the endpoint."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mlops import schemas
from mlops.aws import client, create_at_init
from mlops.config import env_int, env_str
from mlops.deployment import deploy
from mlops.naming import resource_tags
from mlops.observability import logger, pipeline_handler

create_at_init("sagemaker", "application-autoscaling")


@pipeline_handler("deploy_model", schemas.DEPLOY_MODEL)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    run = event["run"]
    result = deploy(
        client("sagemaker"),
        client("application-autoscaling"),
        run,
        event["model_artifact"],
        role_arn=env_str("SAGEMAKER_ROLE_ARN"),
        log_level=env_int("CONTAINER_LOG_LEVEL", default=20),
        tags=resource_tags(run, event["execution_arn"]),
        deadlines=event["deadlines"],
        now=time.time(),
        model_package_arn=event.get("model_package_arn"),
    )
    logger.info("deployment step", extra={"deployment": result})
    return result
