"""RollBack: one step of undoing a failed deployment; ``done`` once nothing of it is live."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mlops import schemas
from mlops.aws import client, create_at_init
from mlops.observability import logger, metrics, pipeline_handler
from mlops.rollback import rollback_step

create_at_init("sagemaker", "application-autoscaling")


@pipeline_handler("rollback", schemas.ROLLBACK)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = rollback_step(
        client("sagemaker"),
        client("application-autoscaling"),
        event["run"],
        event["deployment"],
        event["deadlines"],
        time.time(),
    )
    if result["done"] and result["action"] != "untouched":
        metrics.add_metric(name="DeploymentsRolledBack", unit="Count", value=1)
    logger.warning("rollback step", extra={"rollback": result})
    return result
