"""CheckTraining: the training job's status; on completion its final metrics and artifact."""

from __future__ import annotations

import datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlops import schemas
from mlops.aws import client, create_at_init
from mlops.observability import logger, metrics, pipeline_handler
from mlops.training_job import training_status
from mlops.tuning import tuning_status

create_at_init("sagemaker")


@pipeline_handler("check_training", schemas.CHECK_TRAINING)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC)
    if event.get("tuning_job_name"):  # the best training job once the tuning job completes
        status = tuning_status(
            client("sagemaker"), event["tuning_job_name"], event["poll_seconds"], now
        )
    else:
        job = training_status(
            client("sagemaker"), event["training_job_name"], event["poll_seconds"], now
        )
        status = {**job, "tuning_job_name": None}
    logger.info("training job status", extra={"training_job": status})
    if status["status"] == "Completed":
        if status["training_seconds"] is not None:
            metrics.add_metric(
                name="TrainingDuration", unit=MetricUnit.Seconds, value=status["training_seconds"]
            )
        for name, value in status["metrics"].items():
            metrics.add_metric(name=f"Final_{name}", unit=MetricUnit.NoUnit, value=value)
    elif status["failure_reason"]:
        metrics.add_metric(name="TrainingJobsFailed", unit=MetricUnit.Count, value=1)
    return status
