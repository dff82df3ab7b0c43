"""StartTraining: upload the training code and start (or adopt) the run's training job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mlops import schemas
from mlops.aws import client, create_at_init
from mlops.config import env_int, env_str
from mlops.observability import logger, pipeline_handler
from mlops.registry import live_model_artifact
from mlops.sourcedir import load_metric_definitions
from mlops.training_job import (
    MAX_TRAINING_ATTEMPTS,
    job_names,
    pin_dataset,
    start_training_job,
    training_job_request,
    upload_training_code,
)
from mlops.tuning import start_tuning_job, tuning_job_names, tuning_job_request

create_at_init("s3", "sagemaker")


@pipeline_handler("start_training", schemas.START_TRAINING)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    bucket = env_str("DATA_BUCKET")
    code_dir = Path(env_str("TRAINING_CODE_DIR"))
    run, s3, sagemaker = event["run"], client("s3"), client("sagemaker")
    submit_dir = upload_training_code(s3, bucket, code_dir)
    request = training_job_request(
        run,
        role_arn=env_str("SAGEMAKER_ROLE_ARN"),
        bucket=bucket,
        submit_dir=submit_dir,
        region=sagemaker.meta.region_name,
        metric_definitions=load_metric_definitions(code_dir),
        execution_arn=event["execution_arn"],
        log_level=env_int("CONTAINER_LOG_LEVEL", default=20),
        dataset_uri=pin_dataset(s3, run, bucket),
        champion_uri=live_model_artifact(
            sagemaker, run["endpoint"]["endpoint_name"], run["endpoint"]["variant_name"]
        ),
    )
    tuning = run["training"].get("tuning")
    if tuning:
        result = start_tuning_job(
            sagemaker,
            tuning_job_request(request, tuning, tuning["objective"]),
            tuning_job_names(run, MAX_TRAINING_ATTEMPTS),
            event["poll_seconds"],
        )
    else:
        result = start_training_job(sagemaker, request, job_names(run), event["poll_seconds"])
    logger.info(
        "training started", extra={"training_job": {**result, "submit_directory": submit_dir}}
    )
    return {**result, "submit_directory": submit_dir}
