"""AWS API requests on the wire: which operation and parameters a signed HTTP request is,
and what AWS answers when it is denied (per protocol: status, error code, body shape).

Parsing uses botocore's own service models, so the operation a request names is the one
the SDK meant: JSON (``X-Amz-Target``), query (``Action``), REST (the operation's method
and request URI, with labels, query-string and header members) and Smithy RPC v2 CBOR
(the operation from the path). The parameters are decoded into the model's values
(``wire_params``: nested query members, CBOR bodies, typed REST members), for IAM's
request context and for the validation of every request (``localcloud.validation``).
"""

from __future__ import annotations

import io
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import parse_qs, unquote

import botocore.session
from botocore.model import OperationModel, ServiceModel

from localcloud.services.iam.protocol_params import cbor_params, query_params, rest_value

# Services a local cloud's callers reach, by the name they sign requests with.
_SERVICES = (
    "s3",
    "sagemaker",
    "sagemaker-runtime",
    "application-autoscaling",
    "dynamodb",
    "stepfunctions",
    "lambda",
    "logs",
    "cloudwatch",
    "events",
    "sts",
    "iam",
    "ecr",
    "sqs",
    "sns",
    "xray",
)
# JSON services that answer with their query protocol's error codes (awsQueryCompatible).
_QUERY_COMPATIBLE = {"cloudwatch", "sqs"}
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")


# The WSGI environ key of the call a middleware read from the request (read once).
CALL_KEY = "localcloud.api_call"


@dataclass(frozen=True)
class Signature:
    access_key: str
    region: str
    signing_name: str


@dataclass(frozen=True)
class ApiCall:
    service: str  # botocore's service name
    operation: str
    params: dict[str, Any]
    protocol: str
    decoded: bool = True  # False: the body is not what the protocol sends (params partial)


class UnreadableRequest(Exception):
    """The request names no operation of a known service model."""


def signature(headers: Mapping[str, str], query: str) -> Signature | None:
    """Who signed the request (Authorization header or a presigned URL's query)."""
    text = headers.get("authorization", "")
    if not text:
        credential = parse_qs(query).get("X-Amz-Credential", [""])[0]
        text = f"Credential={credential}" if credential else ""
    match = _CREDENTIAL.search(text)
    if not match:
        return None
    return Signature(match.group(1), match.group(2), match.group(3))


@cache
def _models() -> dict[str, list[ServiceModel]]:
    session = botocore.session.get_session()
    by_signing: dict[str, list[ServiceModel]] = {}
    for name in _SERVICES:
        model = session.get_service_model(name)
        by_signing.setdefault(model.signing_name, []).append(model)
    return by_signing


@cache
def served_models() -> dict[str, ServiceModel]:
    """The models of the services a local cloud serves, by botocore service name."""
    return {m.service_name: m for models in _models().values() for m in models}


def unsigned_signature(headers: Mapping[str, str]) -> Signature | None:
    """The service an unsigned JSON-protocol request is for, from its ``X-Amz-Target``
    (other unsigned requests do not say)."""
    prefix = headers.get("x-amz-target", "").rpartition(".")[0]
    for model in served_models().values():
        if prefix and model.metadata.get("targetPrefix") == prefix:
            return Signature("", "", model.signing_name)
    return None


def _json_object(body: bytes) -> dict[str, Any] | None:
    """A JSON request's members; None when the body is no JSON object."""
    try:
        decoded = json.loads(body) if body else {}
    except ValueError:
        return None
    return decoded if isinstance(decoded, dict) else None


def _member_params(op: OperationModel, values: Mapping[str, Any]) -> dict[str, Any]:
    shape = op.input_shape
    if shape is None:
        return {}
    return {k: v for k, v in values.items() if k in shape.members}


def _uri_pattern(request_uri: str) -> tuple[re.Pattern[str], list[str], list[str]]:
    path, _, query = request_uri.partition("?")
    labels: list[str] = []
    regex = ""
    for part in re.split(r"(\{[^}]+\})", path):
        if part.startswith("{"):
            name = part[1:-1]
            greedy = name.endswith("+")
            labels.append(name.rstrip("+"))
            regex += "(.+)" if greedy else "([^/]+)"
        else:
            regex += re.escape(part)
    required = [q.split("=")[0] for q in query.split("&") if q and not q.startswith("x-id")]
    return re.compile(regex.rstrip("/") + "/?$"), labels, required


def _request_uri(op: OperationModel) -> str:
    """The operation's URI as its model wrote it. botocore strips the leading ``/{Bucket}``
    from S3's operation models in place once a client of the process has used them
    (virtual-hosted addressing; the path stays in ``authPath``), and the process's
    sessions share one loader (localcloud.runtime.botocore_loader), so the models seen here may be
    stripped."""
    uri = str(op.http.get("requestUri", "/"))
    if "authPath" in op.http and not uri.startswith("/{Bucket}"):
        uri = "/{Bucket}" + uri
    return uri


def _required(op: OperationModel, location: str) -> list[str]:
    """The wire names of the operation's required members sent in ``location``."""
    shape = op.input_shape
    if shape is None:
        return []
    return [
        member.serialization.get("name", name)
        for name, member in shape.members.items()
        if name in shape.required_members and member.serialization.get("location") == location
    ]


@dataclass(frozen=True)
class _Route:
    """What a REST request must look like to be this operation."""

    op: OperationModel
    pattern: re.Pattern[str]
    labels: list[str]
    required_query: list[str]  # ListParts: uploadId, on GetObject's path
    required_headers: list[str]  # CopyObject: x-amz-copy-source, on PutObject's
    score: int  # the most specific route wins


@cache
def _routes(service: str, method: str) -> list[_Route]:
    model = served_models()[service]
    routes = []
    for name in model.operation_names:
        op = model.operation_model(name)
        if op.http.get("method", "POST") != method:
            continue
        uri = _request_uri(op)
        pattern, labels, required = _uri_pattern(uri)
        required += _required(op, "querystring")
        headers = [h.lower() for h in _required(op, "header")]
        score = (len(required) + len(headers)) * 1000 + len(uri)
        routes.append(_Route(op, pattern, labels, required, headers, score))
    return routes


def _rest_call(
    model: ServiceModel, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
) -> ApiCall | None:
    args = parse_qs(query, keep_blank_values=True)
    best: tuple[int, OperationModel, re.Match[str], list[str]] | None = None
    for route in _routes(model.service_name, method):
        match = route.pattern.match(path)
        if (
            not match
            or any(q not in args for q in route.required_query)
            or any(h not in headers for h in route.required_headers)
        ):
            continue
        if best is None or route.score > best[0]:
            best = (route.score, route.op, match, route.labels)
    if best is None:
        return None
    _, op, match, labels = best
    params: dict[str, Any] = {}
    shape = op.input_shape
    members = shape.members if shape is not None else {}
    for member_name, member in members.items():
        where = member.serialization.get("location")
        wire_name = member.serialization.get("name", member_name)
        if where == "uri" and wire_name in labels:
            text = unquote(match.group(labels.index(wire_name) + 1))
            params[member_name] = rest_value(member, [text])
        elif where == "querystring" and wire_name in args:
            params[member_name] = rest_value(member, args[wire_name])
        elif where == "header" and wire_name.lower() in headers:
            params[member_name] = rest_value(member, [headers[wire_name.lower()]])
    payload = shape.serialization.get("payload") if shape is not None else None
    if (
        model.protocol == "rest-json"
        and body
        and (not payload or members[payload].type_name == "structure")
    ):
        try:
            decoded = json.loads(body)
        except ValueError:
            decoded = {}
        if isinstance(decoded, dict) and payload:
            params[payload] = decoded
        elif isinstance(decoded, dict):
            params.update({k: v for k, v in decoded.items() if k in members and k not in params})
    elif payload and body:  # a blob or streaming payload (Lambda's Payload, an S3 object)
        params[payload] = body
    return ApiCall(model.service_name, op.name, params, model.protocol)


def parse_request(
    sig: Signature, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
) -> ApiCall:
    """The API call a signed request makes; UnreadableRequest if no model explains it."""
    candidates = _models().get(sig.signing_name, [])
    target = headers.get("x-amz-target", "")
    content_type = headers.get("content-type", "")
    for model in candidates:
        # a model may list several protocols (CloudWatch: CBOR, JSON, query): read what was sent
        protocols = model.metadata.get("protocols") or [model.protocol]
        if target and "json" in protocols:
            prefix, _, operation = target.rpartition(".")
            if prefix == model.metadata.get("targetPrefix") and operation in model.operation_names:
                op = model.operation_model(operation)
                values = _json_object(body)
                params = _member_params(op, values or {})
                return ApiCall(model.service_name, operation, params, "json", values is not None)
        if "query" in protocols and "x-www-form-urlencoded" in content_type:
            form = parse_qs(body.decode(errors="replace")) if body else {}
            form.update(parse_qs(query))
            action = form.get("Action", [""])[0]
            if action in model.operation_names:
                flat = {k: v[0] for k, v in form.items()}
                op = model.operation_model(action)
                return ApiCall(
                    model.service_name, action, query_params(op.input_shape, flat), "query"
                )
        found = re.match(r"/service/[^/]+/operation/([^/]+)$", path)
        if "smithy-rpc-v2-cbor" in protocols and found and found.group(1) in model.operation_names:
            op = model.operation_model(found.group(1))
            params = cbor_params(op.input_shape, body)
            return ApiCall(
                model.service_name, op.name, params or {}, "smithy-rpc-v2-cbor", params is not None
            )
        if model.protocol in ("rest-json", "rest-xml"):
            call = _rest_call(model, method, path, query, headers, body)
            if call is not None:
                return call
    raise UnreadableRequest(
        f"the local cloud cannot tell which {sig.signing_name} operation {method} {path} is"
    )


@dataclass(frozen=True)
class ErrorReply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def access_denied(call: ApiCall, message: str, *, head: bool = False) -> ErrorReply:
    """What AWS answers a denied call of this service (code, status and body shape)."""
    status = 400 if call.protocol in ("json", "smithy-rpc-v2-cbor") else 403
    return error_reply(
        call, status, "AccessDeniedException", message, query_code="AccessDenied", head=head
    )


def error_reply(
    call: ApiCall,
    status: int,
    code: str,
    message: str,
    *,
    query_code: str | None = None,
    head: bool = False,
) -> ErrorReply:
    """An error answered in the call's protocol: ``code`` for the JSON protocols,
    ``query_code`` (default ``code``) for S3, the query protocol and the JSON services
    that are query-compatible (botocore reads that code from ``x-amzn-query-error``)."""
    request_id = str(uuid.uuid4())
    query_code = query_code or code
    if call.protocol == "rest-xml":  # S3
        host_id = uuid.uuid4().hex
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{query_code}</Code>'
            f"<Message>{_xml(message)}</Message><RequestId>{request_id}</RequestId>"
            f"<HostId>{host_id}</HostId></Error>"
        ).encode()
        headers = [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)]
        return ErrorReply(status, headers, b"" if head else body)
    if call.protocol == "query":
        body = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{query_code}</Code>"
            f"<Message>{_xml(message)}</Message></Error><RequestId>{request_id}</RequestId>"
            "</ErrorResponse>"
        ).encode()
        return ErrorReply(status, [("Content-Type", "text/xml")], body)
    common = [("x-amzn-RequestId", request_id), ("x-amzn-ErrorType", code)]
    if call.protocol == "rest-json":  # Lambda's shape
        body = json.dumps({"Type": "User", "message": message}).encode()
        return ErrorReply(status, [("Content-Type", "application/json"), *common], body)
    if call.service in _QUERY_COMPATIBLE:  # botocore reads the query-style code from here
        common.append(("x-amzn-query-error", f"{query_code};Sender"))
    if call.service == "dynamodb":
        error = {"__type": f"com.amazon.coral.service#{code}", "Message": message}
    else:
        error = {"__type": code, "message": message}
    content_type = "application/x-amz-json-1.1"
    if call.service in ("dynamodb", "stepfunctions"):
        content_type = "application/x-amz-json-1.0"
    elif call.protocol == "smithy-rpc-v2-cbor":
        content_type = "application/json"  # botocore reads a JSON error body here too
    headers = [("Content-Type", content_type), *common]
    return ErrorReply(status, headers, json.dumps(error).encode())


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def read_request(environ: dict[str, Any]) -> tuple[dict[str, str], str, str, str, bytes]:
    """Headers (lower-case names), query string, method, path and body of a WSGI request;
    the body is put back for the app that serves it."""
    headers = {
        k[5:].replace("_", "-").lower(): str(v) for k, v in environ.items() if k.startswith("HTTP_")
    }
    if "CONTENT_TYPE" in environ:
        headers.setdefault("content-type", str(environ["CONTENT_TYPE"]))
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    method = str(environ.get("REQUEST_METHOD", "GET"))
    raw = str(environ.get("RAW_URI") or environ.get("REQUEST_URI") or "")
    path = raw.split("?", 1)[0] or str(environ.get("PATH_INFO", "/"))
    return headers, str(environ.get("QUERY_STRING", "")), method, path, body
