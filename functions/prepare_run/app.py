"""PrepareRun: turn the trigger into the run's plan, or reject it with a readable reason."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mlops import schemas
from mlops.aws import client, create_at_init
from mlops.observability import logger, metrics, pipeline_handler
from mlops.run_plan import PlanSettings, prepare_run

create_at_init("s3", "sagemaker")


@pipeline_handler("prepare_run", schemas.PREPARE_RUN)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = prepare_run(
        event["trigger"], client("s3"), PlanSettings.from_env(), client("sagemaker")
    )
    if result["accepted"]:
        run = result["run"]
        logger.append_keys(run_id=run["run_id"])
        logger.info(
            "run planned", extra={"dataset": run["dataset"], "job": run["training"]["job_name"]}
        )
    elif result.get("skipped"):
        logger.info("nothing to do", extra={"reason": result["reason"]})
    else:
        metrics.add_metric(name="RunsRejected", unit="Count", value=1)
        logger.warning("trigger rejected", extra={"reason": result["reason"]})
    return result
