"""RegisterModel: record the trained model as a version of the model package group.

Its approval status is the gates' verdict and the approval mode: Approved (deploy now),
PendingManualApproval (a person approves it; the approval event deploys it) or Rejected.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlops import registry, schemas
from mlops.aws import client, create_at_init
from mlops.config import env_int, env_str
from mlops.deployment import serving_environment
from mlops.errors import ConfigurationError
from mlops.observability import logger, metrics, pipeline_handler

create_at_init("sagemaker", "s3")


@pipeline_handler("register_model", schemas.REGISTER_MODEL)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    run, gate = event["run"], event["gate"]
    group, mode = run["registry"]["group"], run["registry"]["approval_mode"]
    if not group:
        raise ConfigurationError(
            "MODEL_PACKAGE_GROUP is not set, so the model cannot be registered"
        )
    sagemaker = client("sagemaker")
    job = sagemaker.describe_training_job(TrainingJobName=event["training_job_name"])
    job = {
        **job,
        "metrics": {m["MetricName"]: m["Value"] for m in job.get("FinalMetricDataList", [])},
    }
    status = registry.approval_status(bool(gate.get("passed")), mode)
    request = registry.package_request(
        run,
        job,
        gate,
        group=group,
        status=status,
        environment=serving_environment(
            run,
            region=sagemaker.meta.region_name,
            log_level=env_int("CONTAINER_LOG_LEVEL", default=20),
        ),
        metrics_uri=registry.write_metrics(client("s3"), env_str("DATA_BUCKET"), run, job, gate),
        execution_arn=event["execution_arn"],
        approval_mode=mode,
    )
    result = registry.register(sagemaker, request)
    result["approval_mode"] = mode
    result["message"] = registry.outcome_message(result)
    metrics.add_metric(
        name=f"ModelsRegistered{result['approval_status']}", unit=MetricUnit.Count, value=1
    )
    logger.info("model registered", extra={"registry": result})
    return result
