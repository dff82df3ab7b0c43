"""Build API Gateway HTTP API (payload format 2.0) events, as API Gateway sends them.

One builder for everyone who has to hand a Lambda an HTTP request without API Gateway:
the local HTTP API of the embedded local mode, the smoke test, the classify function's
direct-invoke path and the tests. Shape per the API Gateway developer guide
("Working with AWS Lambda proxy integrations for HTTP APIs"): header names lower-cased,
repeated headers and query parameters comma-joined, and the body base64-encoded
(``isBase64Encoded: true``) unless its content type is text/*, application/json,
application/xml or application/javascript (a missing content type is base64-encoded too).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

_TEXT_TYPES = frozenset({"application/json", "application/xml", "application/javascript"})

LOCAL_ACCOUNT_ID = "123456789012"
LOCAL_API_ID = "local"


def build_http_api_event(
    method: str,
    path: str,
    body: bytes | str | None = None,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    *,
    query: str = "",
    route_key: str | None = None,
    source_ip: str = "127.0.0.1",
    request_id: str | None = None,
    stage: str = "$default",
    domain_name: str | None = None,
    account_id: str = LOCAL_ACCOUNT_ID,
    api_id: str = LOCAL_API_ID,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A payload-2.0 event for one request.

    Parameters
    ----------
    method, path
        The request line, e.g. ``"POST"``, ``"/classify"`` (no query string in ``path``).
    body
        The raw request body; ``str`` is encoded as UTF-8. ``None`` or empty: no body.
    headers
        A mapping or (name, value) pairs; names are lower-cased and repeats comma-joined.
    query
        The raw query string without ``?``, e.g. ``"top_k=3"``.
    route_key
        The matched route; defaults to ``"<METHOD> <path>"`` (pass ``"$default"`` for a
        catch-all route).
    request_id
        ``requestContext.requestId`` (the correlation id); a fresh one by default.
    now
        The request time (``time``/``timeEpoch``); the current time by default.
    """
    method = method.upper()
    header_map = _join_headers(headers)
    header_map.setdefault("host", domain_name or f"{api_id}.execute-api.localhost")
    header_map.setdefault("x-forwarded-for", source_ip)
    header_map.setdefault("x-forwarded-port", "443")
    header_map.setdefault("x-forwarded-proto", "https")
    domain = domain_name or header_map["host"].split(":", 1)[0]
    when = now or datetime.now(UTC)
    route = route_key or f"{method} {path}"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route,
        "rawPath": path,
        "rawQueryString": query,
        "headers": header_map,
        "requestContext": {
            "accountId": account_id,
            "apiId": api_id,
            "domainName": domain,
            "domainPrefix": domain.split(".", 1)[0],
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": header_map.get("user-agent", ""),
            },
            "requestId": request_id or _request_id(),
            "routeKey": route,
            "stage": stage,
            "time": when.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(when.timestamp() * 1000),
        },
        "isBase64Encoded": False,
    }
    if "cookie" in header_map:  # API Gateway moves cookies out of the headers
        cookies = header_map.pop("cookie")
        event["cookies"] = [c.strip() for c in cookies.replace(";", ",").split(",") if c.strip()]
    if query:
        event["queryStringParameters"] = _join_query(query)
    if body:
        raw = body.encode("utf-8") if isinstance(body, str) else body
        header_map.setdefault("content-length", str(len(raw)))
        if _is_text(header_map.get("content-type")):
            event["body"] = raw.decode("utf-8", errors="replace")
        else:
            event["body"] = base64.b64encode(raw).decode("ascii")
            event["isBase64Encoded"] = True
    return event


def _join_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    joined: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    return joined


def _join_query(query: str) -> dict[str, str]:
    joined: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        joined[name] = f"{joined[name]},{value}" if name in joined else value
    return joined


def _is_text(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media.startswith("text/") or media in _TEXT_TYPES


def _request_id() -> str:
    # API Gateway's ids look like "JKJaXmPLvHcESHA="; any unique token will do locally.
    return base64.b64encode(uuid.uuid4().bytes[:10]).decode("ascii")
