"""Every request the local cloud serves is validated against its service model, as AWS's
servers do, before moto runs it.

The moto server's per-service apps are wrapped (``install``), so validation runs
inside moto's dispatcher: after the IAM check (``localcloud.services.iam.enforce`` wraps the
dispatcher itself), as AWS authenticates and authorizes a request before it validates it.
It runs for every caller, signed by a role session, by any other key or (JSON protocol)
unsigned, and with ``--no-iam``. The request is read back into its operation and members
with ``localcloud.services.iam.protocol`` (botocore's models); a request no model explains goes on
to moto unchanged (moto answers it).

The answer is the error each service gives (HTTP 400), in its protocol:

- JSON protocol services (SageMaker, Step Functions, CloudWatch Logs, EventBridge,
  Application Auto Scaling, ECR, DynamoDB) and Lambda (REST-JSON): ``ValidationException``
  (the code their APIs list for a request that fails the model's constraints);
- the query protocol (IAM, STS, SNS) and CloudWatch (query-compatible JSON/CBOR):
  ``ValidationError``, as the query APIs name it;
- SQS (query-compatible JSON): ``InvalidAttributeName``; its model's only constraints are
  the enums of attribute names, which SQS refuses with that code;
- SageMaker Runtime: ``ValidationError`` (its only client error for bad input);
- S3 (REST-XML): ``InvalidArgument``; S3 does not answer Coral's messages, and only its
  labels, query strings and headers are read (not XML bodies).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

from botocore.model import Shape

from localcloud.services.iam.protocol import (
    CALL_KEY,
    ApiCall,
    UnreadableRequest,
    error_reply,
    parse_request,
    read_request,
    served_models,
    signature,
    unsigned_signature,
)
from localcloud.validation import constraints, java_patterns

log = logging.getLogger("localcloud.validation")
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
_CODES = {
    "cloudwatch": "ValidationError",
    "sqs": "InvalidAttributeName",  # SQS's model constrains only attribute names (enums)
    "sagemaker-runtime": "ValidationError",
    "s3": "InvalidArgument",
}


def error_code(call: ApiCall) -> str:
    if call.protocol == "query":
        return "ValidationError"
    return _CODES.get(call.service, "ValidationException")


def validate(call: ApiCall) -> list[str]:
    """The call's validation errors against its operation's input shape."""
    model = served_models()[call.service]
    return constraints.check(model.operation_model(call.operation).input_shape, call.params)


def wrap(app: WsgiApp) -> WsgiApp:
    """``app`` answering an invalid request with the service's validation error."""

    def validated(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        try:
            call = environ.get(CALL_KEY) or _parse(environ)
            errors = validate(call) if call is not None and call.decoded else []
        except Exception:  # a request this reading does not foresee: the service answers it
            log.exception(
                "validation: %s %s not checked",
                environ.get("REQUEST_METHOD"),
                environ.get("PATH_INFO"),
            )
            errors, call = [], None
        if not errors or call is None:  # (the service answers what it cannot read)
            return app(environ, start_response)
        text = constraints.message(errors)
        log.warning("%s %s refused: %s", call.service, call.operation, text)
        method = str(environ.get("REQUEST_METHOD", "GET"))
        reply = error_reply(call, 400, error_code(call), text, head=method == "HEAD")
        headers = [*reply.headers, ("Content-Length", str(len(reply.body)))]
        start_response("400 Bad Request", headers)
        return [reply.body]

    return validated


def _parse(environ: dict[str, Any]) -> ApiCall | None:
    headers, query, method, path, body = read_request(environ)
    sig = signature(headers, query) or unsigned_signature(headers)
    if sig is None:
        return None
    try:
        return parse_request(sig, method, path, query, headers, body)
    except (UnreadableRequest, ValueError) as exc:
        log.debug("not validated: %s", exc)
        return None


def install() -> None:
    """Validate every request of the moto servers this process starts from now on
    (``threaded_moto_server``'s dispatcher creates each service's app with the validating
    ``create_backend_app``; moto internals, moto is pinned). Idempotent; it stays on."""
    from moto.moto_server import threaded_moto_server

    original = threaded_moto_server.create_backend_app
    if getattr(original, "_localcloud_validated", False):
        return

    def create_backend_app(service: str) -> WsgiApp:
        return wrap(original(service))

    create_backend_app._localcloud_validated = True  # type: ignore[attr-defined]
    threaded_moto_server.create_backend_app = create_backend_app  # type: ignore[assignment]


@cache
def report_uncompilable() -> dict[str, str]:
    """Log, once per process, each served shape whose pattern cannot be compiled (its
    pattern is then not checked); the same ``{service.shape: why}`` is returned."""
    patterns = {}
    for name, model in served_models().items():
        for shape_name in model.shape_names:
            shape: Shape = model.shape_for(shape_name)
            if "pattern" in shape.metadata:
                patterns[f"{name}.{shape_name}"] = shape.metadata["pattern"]
    failed = java_patterns.uncompilable(patterns)
    for shape_name, why in failed.items():
        log.warning(
            "validation: the pattern of %s does not compile, not checked: %s", shape_name, why
        )
    return failed
