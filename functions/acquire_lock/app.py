"""AcquireDeploymentLock: one attempt at the endpoint's deployment lock, counted."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mlops import schemas
from mlops.aws import client, create_at_init
from mlops.config import env_int, env_str
from mlops.lock import LockTable, acquire
from mlops.observability import logger, pipeline_handler
from mlops.polling import deployment_deadlines

create_at_init("dynamodb", "stepfunctions")


@pipeline_handler("acquire_lock", schemas.ACQUIRE_LOCK)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    lease = env_int("LOCK_LEASE_SECONDS", default=21600, minimum=60)
    table = LockTable(client("dynamodb"), env_str("LOCK_TABLE_NAME"), lease, time.time)
    endpoint = event["endpoint_name"]
    outcome = acquire(
        table, client("stepfunctions"), endpoint, event["execution_arn"], event["run_id"]
    )
    attempts = event["attempts"] + 1
    exhausted = not outcome["acquired"] and attempts >= event["max_attempts"]
    reason = None
    if exhausted:
        reason = (
            f"the deployment lock of endpoint {endpoint} is still held by execution "
            f"{outcome['holder']} after {attempts} attempts"
        )
    # The deployment and its rollback must end within the lease, so the lock cannot lapse
    # while this execution still deploys.
    deadlines = deployment_deadlines(time.time(), event["poll_seconds"], lease)
    logger.info("deployment lock", extra={"lock": {**outcome, "attempts": attempts}})
    return {
        **outcome,
        "attempts": attempts,
        "exhausted": exhausted,
        "reason": reason,
        "deadlines": deadlines,
    }
