"""Logging, tracing and metrics for every function, configured once from the environment.

``POWERTOOLS_SERVICE_NAME``, ``POWERTOOLS_METRICS_NAMESPACE`` and ``POWERTOOLS_LOG_LEVEL``
come from the template's Globals. ``pipeline_handler`` wraps a handler with all of it:
structured logs correlated by execution and run id, an X-Ray segment, a duration metric
per stage, input validation against a JSON schema, and AWS throttling turned into the one
error name the state machine retries, and a quota refusal (SageMaker's
``ResourceLimitExceeded``) into ``QuotaExceededError`` naming the quota to raise.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from aws_lambda_powertools.utilities.validation import SchemaValidationError, validate
from botocore.exceptions import ClientError

from mlops.errors import AwsThrottlingError, InvalidStateInputError, QuotaExceededError

logger = Logger()
tracer = Tracer()
metrics = Metrics()

# Error codes AWS services use for throttling (botocore's own retry list uses these too).
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "ProvisionedThroughputExceededException",
        "SlowDown",
    }
)

Handler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


# Error codes of a request beyond an account quota.
QUOTA_CODES = frozenset({"ResourceLimitExceeded"})


def is_throttling(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in THROTTLING_CODES


def quota_error(stage: str, exc: ClientError) -> QuotaExceededError | None:
    """The pipeline's error for a call refused by a service quota, or None."""
    error = exc.response.get("Error", {})
    if error.get("Code") not in QUOTA_CODES:
        return None
    operation = getattr(exc, "operation_name", "the call")
    return QuotaExceededError(
        f"{stage}: {operation} refused by a service quota: {error.get('Message', '')} "
        "(or choose an instance type the account has quota for)"
    )


def pipeline_handler(
    stage: str, schema: Mapping[str, Any] | None = None
) -> Callable[[Handler], Handler]:
    """Decorate a state's Lambda handler; ``stage`` names it in logs and metrics."""

    def decorate(func: Handler) -> Handler:
        @functools.wraps(func)
        def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
            started = time.monotonic()
            _correlate(stage, event)
            metrics.add_dimension(name="stage", value=stage)
            try:
                if schema is not None:
                    _validate(event, schema, stage)
                return func(event, context)
            except ClientError as exc:
                if is_throttling(exc):
                    raise AwsThrottlingError(f"{stage}: AWS throttled the call: {exc}") from exc
                quota = quota_error(stage, exc)
                if quota is not None:
                    raise quota from exc
                raise
            finally:
                elapsed_ms = (time.monotonic() - started) * 1000
                metrics.add_metric(
                    name="StageDuration", unit=MetricUnit.Milliseconds, value=elapsed_ms
                )

        wrapped = metrics.log_metrics(handler)
        wrapped = tracer.capture_lambda_handler(wrapped)
        return logger.inject_lambda_context(wrapped, clear_state=True)

    return decorate


def _correlate(stage: str, event: Mapping[str, Any]) -> None:
    execution_arn = event.get("execution_arn")
    run = event.get("run")
    run_id = event.get("run_id") or (run.get("run_id") if isinstance(run, Mapping) else None)
    if execution_arn:
        logger.set_correlation_id(execution_arn)
    logger.append_keys(stage=stage, run_id=run_id)
    tracer.put_annotation(key="stage", value=stage)
    if run_id:
        tracer.put_annotation(key="run_id", value=run_id)


def _validate(event: Mapping[str, Any], schema: Mapping[str, Any], stage: str) -> None:
    try:
        validate(event=event, schema=schema)
    except SchemaValidationError as exc:
        raise InvalidStateInputError(f"{stage}: invalid input: {exc.message}") from None
