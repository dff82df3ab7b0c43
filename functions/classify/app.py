"""POST /classify: the HTTP API's inference function (docs/api.md).

Takes raw image bytes, base64 JSON or a URL (fetched behind the SSRF guard), asks the
SageMaker endpoint and returns its JSON. Errors are ``{"error", "message"}`` with a 4xx/5xx
status, never a stack trace. A direct invoke with ``{"url": ...}`` or ``{"image": ...}``
(no HTTP wrapper) goes through the same route and returns the same
``{"statusCode", "headers", "body"}`` response, as the original course Lambda did.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlops.api_errors import ApiError, MethodNotAllowed, NotFound
from mlops.classify import ROUTE, Settings, as_http_event, live_services, request_body, run

settings = Settings.from_env()
services = live_services(settings)
app = APIGatewayHttpResolver(debug=False)  # never a traceback in a response
logger = Logger()
tracer = Tracer()
metrics = Metrics()


@app.post(ROUTE)
@tracer.capture_method
def classify() -> Response:
    event = app.current_event
    outcome = run(
        event.headers.get("content-type"),
        request_body(event.body, bool(event.is_base64_encoded)),
        event.query_string_parameters or {},
        settings=settings,
        services=services,
        time_left=lambda: app.lambda_context.get_remaining_time_in_millis() / 1000,
        record=_record_stage,
    )
    metrics.add_metric(name="ImageBytes", unit=MetricUnit.Bytes, value=outcome.image_bytes)
    logger.info("classified", extra=outcome.log_fields())
    return _json(200, outcome.reply)


@app.route(ROUTE, method=["GET", "PUT", "PATCH", "DELETE", "HEAD"])
def wrong_method() -> Response:
    raise MethodNotAllowed(f"use POST {ROUTE}")


@app.not_found
def not_found(_: NotFoundError) -> Response:
    return _error(NotFound(f"no such route; the API has POST {ROUTE}"))


@app.exception_handler(ApiError)
def api_error(exc: ApiError) -> Response:
    fields = {"status": exc.status, "error": exc.code}
    if exc.status >= 500:  # ours or the endpoint's: keep the cause (it may name ARNs) in the logs
        logger.warning("request failed", extra=fields, exc_info=exc)
    else:
        logger.info("request refused", extra={**fields, "reason": exc.message})
    return _error(exc)


@app.exception_handler(Exception)
def unexpected_error(exc: Exception) -> Response:
    logger.exception("unexpected error")
    return _error(ApiError("internal error; the request id is in the logs"))


def _record_stage(stage: str, milliseconds: float) -> None:
    metrics.add_metric(
        name=f"{stage.capitalize()}Latency", unit=MetricUnit.Milliseconds, value=milliseconds
    )


def _error(exc: ApiError) -> Response:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else {}
    if isinstance(exc, MethodNotAllowed):
        headers["Allow"] = "POST"
    return _json(exc.status, exc.body(), headers)


def _json(status: int, doc: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(status, content_types.APPLICATION_JSON, json.dumps(doc), headers)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    http_event = as_http_event(event, context.aws_request_id)
    logger.set_correlation_id(http_event["requestContext"]["requestId"])
    response = app.resolve(http_event, context)
    # Responses2xx / 4xx / 5xx (the exact status is in the request's log line)
    status_class = f"Responses{response['statusCode'] // 100}xx"
    metrics.add_metric(name=status_class, unit=MetricUnit.Count, value=1)
    return response
