"""The local HTTP API: payload-2.0 events, reply mapping, API Gateway's own answers."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcloud.cloudformation.stack import Stack
from localcloud.cloudformation.template import resolve_stack
from localcloud.runtime import processes
from localcloud.services.apigateway.http_api import HttpApi, map_reply
from localcloud.services.lambda_.worker_pool import InvokeResult, LambdaRuntime

FIXTURE = Path(__file__).parents[2] / "fixtures" / "stack"


@pytest.fixture(scope="module")
def stack() -> Stack:
    return resolve_stack(FIXTURE / "template.yaml", region="eu-west-1", stack_name="fx")


@pytest.fixture(scope="module")
def runtime(stack: Stack) -> Iterator[LambdaRuntime]:
    rt = LambdaRuntime(
        stack.functions, region="eu-west-1", endpoint_url="http://127.0.0.1:9", sink=lambda *_: None
    )
    try:
        yield rt
    finally:
        rt.close()


@pytest.fixture(scope="module")
def api(stack: Stack, runtime: LambdaRuntime) -> Iterator[HttpApi]:
    server = HttpApi(stack.functions, runtime.invoke, account_id=stack.account_id)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def request(
    api: HttpApi, method: str, path: str, body: bytes = b"", headers: dict | None = None
) -> tuple[int, dict[str, str], bytes]:
    host, port = api.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_request_becomes_a_payload_2_event(api: HttpApi, stack: Stack) -> None:
    status, headers, body = request(
        api,
        "POST",
        "/hello?a=1&a=2&b=x",
        b'{"k": "v"}',
        {"Content-Type": "application/json", "X-Custom": "c", "Cookie": "s=1; t=2"},
    )
    assert status == 200 and headers["x-role"] == "hello"
    event = json.loads(body)
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /hello"
    assert event["rawPath"] == "/hello" and event["rawQueryString"] == "a=1&a=2&b=x"
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x"}
    assert event["headers"]["x-custom"] == "c"
    assert event["cookies"] == ["s=1", "t=2"]
    assert event["body"] == '{"k": "v"}' and event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["http"]["method"] == "POST" and context["http"]["sourceIp"] == "127.0.0.1"
    assert context["apiId"] == stack.function("HelloFunction").routes[0].api_id
    assert context["accountId"] == stack.account_id


def test_binary_body_is_base64_and_path_parameters_are_set(api: HttpApi) -> None:
    status, _, body = request(api, "GET", "/items/42")
    event = json.loads(body)
    assert status == 200
    assert event["routeKey"] == "GET /items/{id}" and event["pathParameters"] == {"id": "42"}
    status, _, body = request(api, "POST", "/hello", b"\xff\xd8raw", {"Content-Type": "image/jpeg"})
    event = json.loads(body)
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\xff\xd8raw"


def test_unknown_routes_and_methods_are_404(api: HttpApi) -> None:
    for method, path in (("GET", "/nope"), ("GET", "/hello"), ("POST", "/items/1/x")):
        status, _, body = request(api, method, path)
        assert (status, json.loads(body)) == (404, {"message": "Not Found"})


def test_reply_mapping(api: HttpApi) -> None:
    status, headers, body = request(api, "POST", "/hello?reply=plain")
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"plain": True}
    status, headers, body = request(api, "POST", "/hello?reply=binary")
    assert status == 201 and body == b"\x00\x01binary"
    assert headers["content-type"] == "application/octet-stream"
    for broken in ("broken", "raise"):
        status, _, body = request(api, "POST", f"/hello?reply={broken}")
        assert (status, json.loads(body)) == (500, {"message": "Internal Server Error"})


def test_map_reply_handles_cookies_and_bad_base64() -> None:
    ok = InvokeResult(json.dumps({"statusCode": 204, "cookies": ["a=1"], "body": ""}).encode())
    status, headers, body = map_reply(ok)
    assert status == 204 and ("set-cookie", "a=1") in headers and body == b""
    bad = InvokeResult(
        json.dumps({"statusCode": 200, "body": "%%%", "isBase64Encoded": True}).encode()
    )
    assert map_reply(bad)[0] == 500


def test_body_over_10_mb_is_413(api: HttpApi) -> None:
    status, _, body = request(
        api, "POST", "/hello", b"x" * (10 * 1024 * 1024 + 1), {"Content-Type": "text/plain"}
    )
    assert (status, json.loads(body)) == (413, {"message": "Request Entity Too Large"})


def test_requests_beyond_reserved_concurrency_are_429(
    api: HttpApi, runtime: LambdaRuntime, stack: Stack
) -> None:
    pool = runtime.pool(stack.function("HelloFunction").name)  # ReservedConcurrentExecutions: 1
    results: list[int] = []
    slow = threading.Thread(
        target=lambda: results.append(request(api, "POST", "/hello?sleep=3")[0])
    )
    slow.start()
    try:
        assert processes.wait_until(lambda: pool.in_use == 1, timeout=10)
        status, _, body = request(api, "POST", "/hello")
    finally:
        slow.join(timeout=30)
    assert (status, json.loads(body)) == (429, {"message": "Too Many Requests"})
    assert results == [200]
    assert request(api, "POST", "/hello")[0] == 200


def exchange(api: HttpApi, data: bytes) -> bytes:
    """Everything the API answers to ``data`` on one connection, until it ends it (with a
    FIN, or a reset when it closes on bytes it never read: its answer still comes first)."""
    host, port = api.url.removeprefix("http://").split(":")
    chunks = []
    with socket.create_connection((host, int(port)), timeout=30) as client:
        client.sendall(data)
        with contextlib.suppress(ConnectionResetError):
            while chunk := client.recv(65536):
                chunks.append(chunk)
    return b"".join(chunks)


SMUGGLED = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"  # a second request after the body


@pytest.mark.parametrize(
    ("framing", "status"),
    [
        (b"Content-Length: -5\r\n", 400),
        (b"Content-Length: +5\r\n", 400),
        (b"Content-Length: 0_5\r\n", 400),
        (b"Content-Length: \xc2\xb2\r\n", 400),
        (b"Content-Length: 5, 6\r\n", 400),
        (b"Content-Length: 5\r\nContent-Length: 6\r\n", 400),
        (b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", 400),
        (b"Transfer-Encoding: chunked\r\n", 411),
    ],
)
def test_bad_framing_is_refused_and_the_connection_closed(
    api: HttpApi, framing: bytes, status: int
) -> None:
    head = b"POST /hello HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n" + framing
    answer = exchange(api, head + b"\r\nhello" + SMUGGLED)
    assert answer.startswith(f"HTTP/1.1 {status} ".encode())
    assert answer.count(b"HTTP/1.1 ") == 1  # nothing after the body was taken as a request


def test_identical_content_lengths_are_one(api: HttpApi) -> None:
    head = b"POST /hello HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    answer = exchange(api, head + b"Content-Length: 5, 5\r\n\r\nhello")
    assert answer.startswith(b"HTTP/1.1 200 ")
