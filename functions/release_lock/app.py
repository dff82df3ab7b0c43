"""ReleaseLock: give the endpoint's deployment lock back (a no-op if this run lost it)."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mlops import schemas
from mlops.aws import client, create_at_init
from mlops.config import env_str
from mlops.lock import LockTable, release
from mlops.observability import logger, pipeline_handler

create_at_init("dynamodb")


@pipeline_handler("release_lock", schemas.RELEASE_LOCK)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    table = LockTable(client("dynamodb"), env_str("LOCK_TABLE_NAME"), 0, time.time)
    released = release(table, event["endpoint_name"], event["execution_arn"])
    logger.info("deployment lock released" if released else "deployment lock was not held")
    return {"released": released}
