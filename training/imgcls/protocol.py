"""The wire format of the inference contract: request bodies in, JSON out.

See docs/architecture.md ("Inference contract"). Everything here is pure parsing; a
request that does not fit raises InputError with the status to answer.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from imgcls.errors import InputError

JSON = "application/json"
IMAGE_TYPES = frozenset(
    {"image/jpeg", "image/png", "image/webp", "application/x-image", "application/octet-stream"}
)
SUPPORTED_TYPES = (*sorted(IMAGE_TYPES), JSON)
HOW_TO_SEND = (
    "send the image bytes with an image content type (e.g. image/jpeg) "
    'or JSON {"image": "<base64>", "top_k": 5}'
)


@dataclass(frozen=True)
class ImageRequest:
    image: bytes
    top_k: int | None  # None: the server's default


def media_type(header: str | None) -> str:
    """``"Application/JSON; charset=utf-8"`` -> ``"application/json"``."""
    return (header or "").split(";", 1)[0].strip().lower()


def parse_request(body: bytes | bytearray | str, content_type: str | None) -> ImageRequest:
    kind = media_type(content_type)
    if kind in IMAGE_TYPES:
        return ImageRequest(_as_bytes(body), None)
    if kind == JSON:
        return _parse_json(body)
    shown = content_type or "none"
    raise InputError(
        f"unsupported content type {shown!r}; use one of {', '.join(SUPPORTED_TYPES)}", 415
    )


def _as_bytes(body: bytes | bytearray | str) -> bytes:
    if isinstance(body, str):
        return body.encode("latin-1", errors="replace")  # not an image either way
    return bytes(body)


def _parse_json(body: bytes | bytearray | str) -> ImageRequest:
    if not body:
        raise InputError(f"the request body is empty; {HOW_TO_SEND}")
    try:
        doc: Any = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"the body is not valid JSON ({exc}); {HOW_TO_SEND}") from exc
    if not isinstance(doc, dict):
        raise InputError(f"the JSON body must be an object; {HOW_TO_SEND}")
    if "url" in doc and "image" not in doc:
        raise InputError(
            "this endpoint does not download URLs; fetch the image yourself (or call the "
            f"HTTP API, which fetches allowed URLs) and {HOW_TO_SEND}"
        )
    if "image" not in doc:
        raise InputError(f'the JSON body has no "image" field; {HOW_TO_SEND}')
    return ImageRequest(_decode_base64(doc["image"]), _parse_top_k(doc.get("top_k")))


def _decode_base64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise InputError('"image" must be a base64 string')
    if value.startswith("data:") and "," in value:  # a data URL: keep the payload
        value = value.split(",", 1)[1]
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(f'"image" is not valid base64: {exc}') from exc
    if not data:
        raise InputError('"image" is empty')
    return data


def _parse_top_k(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f'"top_k" must be a positive integer, got {value!r}')
    return value


def negotiate(accept: str | None) -> str:
    """The response type for an Accept header: JSON, or 406 when the client refuses it."""
    if not accept or not accept.strip():
        return JSON
    for part in accept.split(","):
        kind, _, params = part.partition(";")
        kind = kind.strip().lower()
        if kind in (JSON, "application/*", "*/*") and not _refused(params):
            return JSON
    raise InputError(f"cannot answer with {accept!r}; this endpoint returns {JSON}", 406)


def _refused(params: str) -> bool:
    """True for a ``q=0`` parameter, which means "not acceptable"."""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value) == 0
            except ValueError:
                return False
    return False
