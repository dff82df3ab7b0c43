"""The HTTP inference API's logic: parse a request, get the image, ask the endpoint.

Request forms (docs/api.md):
- raw image bytes with an image Content-Type (``?top_k=`` in the query string);
- ``application/json`` ``{"image": "<base64>", "top_k": k}``;
- ``application/json`` ``{"url": "https://...", "top_k": k}``: fetched by ``url_fetch``.
The reply is the endpoint's own (``{"predictions": [...], "logits": [[...]]}``).

Without ``top_k`` the image goes to the endpoint as raw bytes, and the endpoint's default k
(its ``TOP_K``) applies; with ``top_k`` it goes as the endpoint's JSON form, which carries
k. Every outside effect (fetching, invoking, the clock, metrics) is passed in, so this
module is plain functions over data.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from aws_lambda_powertools.utilities.validation import SchemaValidationError, validate

from mlops import endpoint_client
from mlops.api_errors import BadRequest, ImageTooLarge, UnsupportedMediaType, UrlTimeout
from mlops.config import env_float, env_int, env_str
from mlops.http_events import build_http_api_event
from mlops.http_fields import decimal
from mlops.images import endpoint_content_type, sniff
from mlops.url_fetch import FetchedImage, FetchPolicy, fetch_image

ROUTE = "/classify"
MAX_TOP_K = 1000
MAX_URL_CHARS = 2048
INVOKE_BODY_LIMIT = 6 * 1024 * 1024  # InvokeEndpoint's Body maximum
# Time kept back from the Lambda's remaining time to answer before it is killed.
RESPONSE_MARGIN_SECONDS = 1.5

RAW_IMAGE_TYPES = frozenset({"application/x-image", "application/octet-stream"})
HOW_TO_SEND = (
    'send image bytes with an image Content-Type, or JSON {"image": "<base64>"} '
    'or {"url": "https://..."} with Content-Type application/json'
)
JSON_BODY_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {
        "url": {"type": "string", "minLength": 1, "maxLength": MAX_URL_CHARS},
        "image": {"type": "string", "minLength": 1},
        "top_k": {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K},
    },
    "additionalProperties": False,
}

Fetch = Callable[[str, float], FetchedImage]
"""(url, timeout seconds) -> the image."""
Invoke = Callable[[bytes, str, int], dict[str, Any]]
"""(body, content type, read timeout seconds) -> the endpoint's reply."""
Record = Callable[[str, float], None]
"""(stage, milliseconds): a stage's latency, for metrics."""


@dataclass(frozen=True)
class Settings:
    endpoint_name: str
    endpoint_timeout: float = 25.0
    url_fetch_timeout: float = 5.0
    max_image_bytes: int = 5 * 1024 * 1024

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        """Read once at cold start; a missing or malformed variable fails it by name."""
        return cls(
            endpoint_name=env_str("ENDPOINT_NAME", env),
            endpoint_timeout=env_float(
                "ENDPOINT_TIMEOUT_SECONDS", env, default=cls.endpoint_timeout, minimum=0.1
            ),
            url_fetch_timeout=env_float(
                "URL_FETCH_TIMEOUT_SECONDS", env, default=cls.url_fetch_timeout, minimum=0.1
            ),
            max_image_bytes=env_int("MAX_IMAGE_BYTES", env, default=cls.max_image_bytes, minimum=1),
        )


@dataclass(frozen=True)
class Services:
    fetch: Fetch
    invoke: Invoke


def live_services(settings: Settings, policy: FetchPolicy | None = None) -> Services:
    """The real fetcher and endpoint; ``policy`` overrides the fetch guard's defaults."""
    base = policy or FetchPolicy(
        max_bytes=settings.max_image_bytes, timeout=settings.url_fetch_timeout
    )

    def fetch(url: str, timeout: float) -> FetchedImage:
        return fetch_image(url, replace(base, timeout=timeout))

    def invoke(body: bytes, content_type: str, read_timeout: int) -> dict[str, Any]:
        client = endpoint_client.runtime_client(read_timeout)
        return endpoint_client.invoke(client, settings.endpoint_name, body, content_type)

    return Services(fetch=fetch, invoke=invoke)


@dataclass(frozen=True)
class ClassifyRequest:
    form: str  # "binary", "image" or "url": how the image was sent
    top_k: int | None
    image: bytes = b""  # binary and image forms
    media_type: str = ""  # sniffed, with ``image``
    url: str = ""  # url form


@dataclass(frozen=True)
class Outcome:
    reply: dict[str, Any]  # the endpoint's JSON, returned to the caller as is
    form: str
    media_type: str
    image_bytes: int

    def log_fields(self) -> dict[str, Any]:
        top = self.reply["predictions"][:1]
        return {
            "form": self.form,
            "media_type": self.media_type,
            "image_bytes": self.image_bytes,
            "top_label": top[0].get("label") if top and isinstance(top[0], dict) else None,
        }


def run(
    content_type: str | None,
    body: bytes,
    query: Mapping[str, str],
    *,
    settings: Settings,
    services: Services,
    time_left: Callable[[], float],
    record: Record,
) -> Outcome:
    """Classify one HTTP request; raises an ApiError for anything the caller must change."""
    with stage("decode", record):
        request = parse_request(content_type, body, query, settings.max_image_bytes)
    image, media_type = request.image, request.media_type
    if request.form == "url":
        timeout = min(settings.url_fetch_timeout, time_left() - RESPONSE_MARGIN_SECONDS - 1)
        if timeout <= 0:
            raise UrlTimeout("no time is left to fetch the URL")
        with stage("fetch", record):
            fetched = services.fetch(request.url, timeout)
        image, media_type = fetched.data, fetched.media_type
    payload, payload_type = endpoint_payload(image, media_type, request.top_k)
    read_timeout = endpoint_client.read_timeout_for(
        settings.endpoint_timeout, time_left(), RESPONSE_MARGIN_SECONDS
    )
    with stage("endpoint", record):
        reply = services.invoke(payload, payload_type, read_timeout)
    return Outcome(reply, request.form, media_type, len(image))


@contextmanager
def stage(name: str, record: Record) -> Iterator[None]:
    """Record the stage's latency, whether it succeeds or fails."""
    start = time.perf_counter()
    try:
        yield
    finally:
        record(name, (time.perf_counter() - start) * 1000)


def request_body(body: str | None, is_base64_encoded: bool) -> bytes:
    """The raw request body of a payload-2.0 event."""
    if not body:
        return b""
    if not is_base64_encoded:
        return body.encode("utf-8")
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("the request body is marked base64-encoded but is not") from None


def parse_request(
    content_type: str | None, body: bytes, query: Mapping[str, str], max_image_bytes: int
) -> ClassifyRequest:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media.startswith("image/") or media in RAW_IMAGE_TYPES:
        image = _checked_image(body, max_image_bytes, "the request body")
        return ClassifyRequest("binary", _query_top_k(query), image, sniff(image) or "")
    if media == "application/json":
        return _parse_json(body, query, max_image_bytes)
    shown = content_type or "none"
    raise UnsupportedMediaType(f"unsupported Content-Type {shown!r}; {HOW_TO_SEND}")


def _parse_json(body: bytes, query: Mapping[str, str], max_image_bytes: int) -> ClassifyRequest:
    if not body.strip():
        raise BadRequest(f"the request body is empty; {HOW_TO_SEND}")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest(f"the request body is not valid JSON; {HOW_TO_SEND}") from None
    try:
        validate(event=doc, schema=JSON_BODY_SCHEMA)
    except SchemaValidationError as exc:
        raise BadRequest(_schema_message(exc)) from None
    if ("url" in doc) == ("image" in doc):
        raise BadRequest(f'send exactly one of "url" or "image"; {HOW_TO_SEND}')
    top_k = int(doc["top_k"]) if "top_k" in doc else _query_top_k(query)
    if "url" in doc:
        return ClassifyRequest("url", top_k, url=doc["url"].strip())
    image = _checked_image(_decode_base64(doc["image"], max_image_bytes), max_image_bytes, "image")
    return ClassifyRequest("image", top_k, image, sniff(image) or "")


def _decode_base64(value: str, max_image_bytes: int) -> bytes:
    if value.startswith("data:") and "," in value:  # a data URL: keep its payload
        value = value.split(",", 1)[1]
    compact = "".join(value.split())  # base64 tools wrap lines
    if len(compact) > 4 * math.ceil(max_image_bytes / 3):
        raise ImageTooLarge(f'"image" decodes to more than {max_image_bytes} bytes')
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest('"image" is not valid base64') from None


def _checked_image(data: bytes, max_image_bytes: int, what: str) -> bytes:
    if not data:
        raise BadRequest(f"{what} is empty; {HOW_TO_SEND}")
    if len(data) > max_image_bytes:
        raise ImageTooLarge(f"{what} is {len(data)} bytes; the limit is {max_image_bytes} bytes")
    if sniff(data) is None:
        raise UnsupportedMediaType(
            f"{what} is not an image in a supported format (JPEG, PNG, GIF, WebP, BMP, TIFF)"
        )
    return data


def _query_top_k(query: Mapping[str, str]) -> int | None:
    raw = query.get("top_k")
    if raw is None:
        return None
    top_k = decimal(raw)
    if top_k is None or not 1 <= top_k <= MAX_TOP_K:
        raise BadRequest(f"top_k must be an integer from 1 to {MAX_TOP_K}, got {raw[:20]!r}")
    return top_k


def _schema_message(exc: SchemaValidationError) -> str:
    """fastjsonschema's message, naming the field rather than ``data``, without the value."""
    message = str(exc.validation_message or "the JSON body is not valid")
    if message.startswith("data."):
        return message.removeprefix("data.")
    return message.replace("data", "the JSON body", 1)


def endpoint_payload(image: bytes, media_type: str, top_k: int | None) -> tuple[bytes, str]:
    """The InvokeEndpoint body and ContentType: raw bytes, or JSON when k is asked for."""
    if top_k is None:
        return image, endpoint_content_type(media_type)
    encoded = base64.b64encode(image).decode("ascii")
    payload = json.dumps({"image": encoded, "top_k": top_k}).encode("utf-8")
    if len(payload) > INVOKE_BODY_LIMIT:
        raise ImageTooLarge(
            f"with top_k the image is sent to the model base64-encoded, which makes it "
            f"{len(payload)} bytes, over the endpoint's {INVOKE_BODY_LIMIT}-byte limit; "
            "leave out top_k or send a smaller image"
        )
    return payload, "application/json"


def as_http_event(event: Any, request_id: str) -> dict[str, Any]:
    """The payload-2.0 event for ``event``: as is from the HTTP API, or built around a
    direct invoke's body (``{"url": ...}`` as in the original course Lambda)."""
    if isinstance(event, dict) and event.get("version") == "2.0" and "requestContext" in event:
        return event
    return build_http_api_event(
        "POST",
        ROUTE,
        json.dumps(event),
        {"content-type": "application/json", "user-agent": "lambda-invoke"},
        request_id=request_id,
    )
