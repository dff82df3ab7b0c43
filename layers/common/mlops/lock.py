"""A deployment lock per endpoint, so that at most one execution deploys to it at a time.

One DynamoDB item per endpoint names the execution holding it. Acquiring is a
conditional write; the lock is re-entrant for its holder. A lock whose holder execution
is no longer running (it failed, was stopped or timed out without releasing), or whose
lease has expired, is stale and is taken over with a compare-and-swap on the old holder,
so two waiters can never both take it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

Clock = Callable[[], float]


@dataclass(frozen=True)
class LockTable:
    dynamodb: Any
    table_name: str
    lease_seconds: int
    clock: Clock


def _conditional_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def _put(
    table: LockTable, key: str, holder: str, run_id: str, condition: str, values: dict[str, Any]
) -> bool:
    now = int(table.clock())
    item = {
        "lock_id": {"S": key},
        "holder": {"S": holder},
        "run_id": {"S": run_id},
        "acquired_at": {"N": str(now)},
        "expires_at": {"N": str(now + table.lease_seconds)},
    }
    request: dict[str, Any] = {
        "TableName": table.table_name,
        "Item": item,
        "ConditionExpression": condition,
    }
    if values:  # DynamoDB rejects an empty ExpressionAttributeValues
        request["ExpressionAttributeValues"] = values
    try:
        table.dynamodb.put_item(**request)
    except ClientError as exc:
        if _conditional_failed(exc):
            return False
        raise
    return True


def execution_running(stepfunctions: Any, execution_arn: str) -> bool:
    try:
        status = stepfunctions.describe_execution(executionArn=execution_arn)["status"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"ExecutionDoesNotExist", "InvalidArn"}:
            return False
        raise
    return status == "RUNNING"


def acquire(
    table: LockTable, stepfunctions: Any, key: str, holder: str, run_id: str
) -> dict[str, Any]:
    """Try once; ``{"acquired": bool, "holder": current holder, "taken_over_from": ...}``."""
    me = {":me": {"S": holder}}
    if _put(table, key, holder, run_id, "attribute_not_exists(lock_id) OR holder = :me", me):
        return {"acquired": True, "holder": holder, "taken_over_from": None}
    current = table.dynamodb.get_item(
        TableName=table.table_name, Key={"lock_id": {"S": key}}, ConsistentRead=True
    ).get("Item")
    if current is None:  # released between the two calls: try once more
        acquired = _put(table, key, holder, run_id, "attribute_not_exists(lock_id)", {})
        return {
            "acquired": acquired,
            "holder": holder if acquired else None,
            "taken_over_from": None,
        }
    other = current["holder"]["S"]
    expired = int(current["expires_at"]["N"]) <= table.clock()
    stale = expired or not execution_running(stepfunctions, other)
    if stale and _put(table, key, holder, run_id, "holder = :other", {":other": {"S": other}}):
        return {"acquired": True, "holder": holder, "taken_over_from": other}
    return {"acquired": False, "holder": other, "taken_over_from": None}


def release(table: LockTable, key: str, holder: str) -> bool:
    """Delete the lock if ``holder`` still has it; False if it was not held by it."""
    try:
        table.dynamodb.delete_item(
            TableName=table.table_name,
            Key={"lock_id": {"S": key}},
            ConditionExpression="holder = :me",
            ExpressionAttributeValues={":me": {"S": holder}},
        )
    except ClientError as exc:
        if _conditional_failed(exc):
            return False
        raise
    return True
