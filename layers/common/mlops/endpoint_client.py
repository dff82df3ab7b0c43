"""Call the SageMaker endpoint and turn its failures into API errors.

The HTTP API gives the whole request 30 s, the Lambda less; a botocore retry or its 60 s
default read timeout would outlive both, and the caller would get API Gateway's bare
"Service Unavailable" instead of our JSON. So the runtime client makes one attempt with
a read timeout no longer than the time left (``runtime_client``), and the caller decides
about retrying. The endpoint's own error bodies and SageMaker's messages may hold ARNs or
the account id: they are logged, and callers get a message of ours (the model's message
for a rejected input, which the model server writes for callers). The SageMaker PyTorch
inference toolkit's error body is that message followed by a Python traceback; only the
message is passed on (``model_message``).

A model that is busy or does not answer in time (the container's 429/503/504, or
SageMaker's ``ModelError`` with no status when the container timed out) is a 503 with
``Retry-After``, like throttling: the caller should retry later, nothing is wrong with
the request. So is a connection that cannot be made (refused, timed out, TLS, a proxy) or
that breaks while the answer streams: a 503 (retry), never a 500.
"""

from __future__ import annotations

import json
import math
import re
from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as EndpointConnectionFailed

from mlops.api_errors import (
    ApiError,
    BadRequest,
    EndpointTimeout,
    EndpointUnavailable,
    ImageTooLarge,
    ModelFailed,
    UnsupportedMediaType,
)
from mlops.http_fields import decimal

CONNECT_TIMEOUT_SECONDS = 2
_MODEL_MESSAGE_CHARS = 300
# The model's 4xx answers the caller can act on, as ours (the model server's InputError).
_REJECTIONS: dict[int, type[ApiError]] = {
    400: BadRequest,
    413: ImageTooLarge,
    415: UnsupportedMediaType,
}
_BUSY = frozenset(
    {"ThrottlingException", "ModelNotReadyException", "ServiceUnavailable", "TooManyRequests"}
)
# The container's own "busy" and "too slow" answers: retry later (seconds).
_MODEL_BUSY_RETRY_AFTER = {429: 1, 503: 1, 504: 5}
# SageMaker reports a container that gave no answer in time as status 0 (or none).
_NO_ANSWER_RETRY_AFTER = 5
# Where the toolkit's traceback starts (``"{message}\n{traceback}"``), or any frame line.
_TRACE_START = re.compile(r"Traceback \(most recent call last\)|^\s*File \"", re.MULTILINE)


@lru_cache(maxsize=32)
def runtime_client(read_timeout: int) -> Any:
    """A sagemaker-runtime client that makes one attempt and waits ``read_timeout`` s."""
    config = Config(
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=read_timeout,
        retries={"mode": "standard", "max_attempts": 1},
    )
    return boto3.client("sagemaker-runtime", config=config)


def read_timeout_for(limit_seconds: float, remaining_seconds: float, margin: float = 1.5) -> int:
    """The read timeout to use: the limit, or less when the Lambda has less time left.

    Whole seconds (so few clients are cached), at least 1.
    """
    return max(1, math.floor(min(limit_seconds, remaining_seconds - margin)))


def invoke(client: Any, endpoint_name: str, body: bytes, content_type: str) -> dict[str, Any]:
    """The endpoint's JSON reply for one image; raises an ApiError on any failure."""
    try:
        response = client.invoke_endpoint(
            EndpointName=endpoint_name,
            Body=body,
            ContentType=content_type,
            Accept="application/json",
        )
        raw = response["Body"].read()
    except ClientError as exc:
        raise _client_error(exc) from exc
    except ReadTimeoutError as exc:
        raise EndpointTimeout("the model did not answer in time; try again") from exc
    except EndpointConnectionFailed as exc:  # refused, connect timeout, TLS, proxy
        raise EndpointUnavailable("the model endpoint cannot be reached", retry_after=5) from exc
    except (HTTPClientError, IncompleteReadError) as exc:  # closed, cut short while streaming
        raise EndpointUnavailable(
            "the connection to the model endpoint broke; try again", retry_after=1
        ) from exc
    return _parse_reply(raw)


def _client_error(exc: ClientError) -> ApiError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    message = str(error.get("Message", ""))
    if code == "ModelError":
        return _model_error(exc.response)
    if code in _BUSY:
        return EndpointUnavailable("the model endpoint is busy; try again", retry_after=1)
    if code in ("ValidationError", "ValidationException") and "not found" in message.lower():
        # "Endpoint <name> of account <id> not found.": the message stays in the logs.
        return EndpointUnavailable("the model endpoint is not deployed", retry_after=60)
    return ModelFailed("the model endpoint refused the request")


def _model_error(response: dict[str, Any]) -> ApiError:
    """The container answered an error: its 4xx for a bad image are the caller's to fix,
    its busy and timeout answers are worth a retry, anything else is the model's fault."""
    status = str(response.get("OriginalStatusCode", ""))
    code = decimal(status) or 0
    rejection = _REJECTIONS.get(code)
    if rejection is not None:
        detail = model_message(str(response.get("OriginalMessage", "")))
        return rejection(f"the model could not use the image: {detail}")
    if code in _MODEL_BUSY_RETRY_AFTER:
        return EndpointUnavailable(
            "the model is busy or too slow right now; try again",
            retry_after=_MODEL_BUSY_RETRY_AFTER[code],
        )
    if code == 0:  # "Your invocation timed out while waiting for a response from container"
        return EndpointUnavailable(
            "the model did not answer in time; try again", retry_after=_NO_ANSWER_RETRY_AFTER
        )
    return ModelFailed("the model failed to classify the image")


def model_message(original: str) -> str:
    """The model server's message for the caller, without anything meant for its logs.

    serve.py answers JSON with a ``message``; the SageMaker inference toolkit answers
    the message followed by a Python traceback (``"{message}\\n{traceback}"``), and
    TorchServe itself answers JSON with a ``message``. Only the message is kept: cut at
    the traceback, on one line, at most 300 characters.
    """
    try:
        doc = json.loads(original)
    except ValueError:
        doc = None
    text = doc.get("message") if isinstance(doc, dict) else None
    text = str(text or original)
    trace = _TRACE_START.search(text)
    if trace is not None:
        text = text[: trace.start()]
    text = " ".join(text.split()) or "no reason given"
    if len(text) > _MODEL_MESSAGE_CHARS:
        text = text[: _MODEL_MESSAGE_CHARS - 3].rstrip() + "..."
    return text


def _parse_reply(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if not (isinstance(doc, dict) and isinstance(doc.get("predictions"), list)):
        raise ModelFailed("the model returned a reply that is not a classification")
    return doc
