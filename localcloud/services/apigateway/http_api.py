"""The template's HTTP API (API Gateway v2, payload format 2.0) served on 127.0.0.1.

Routes come from the functions' ``HttpApi`` events. A request becomes the event API
Gateway would send (``mlops.http_events.build_http_api_event``), the function runs in its
worker pool, and its reply is mapped back the way API Gateway maps it: a dict with
``statusCode`` is an HTTP response (``headers``, ``cookies``, ``body``,
``isBase64Encoded``); anything else is a 200 ``application/json`` body. API Gateway's
own answers keep its shape ``{"message": ...}``: 400 a Content-Length that is not digits
(or lists different values) or comes with a Transfer-Encoding, 411 a Transfer-Encoding
alone, 403 a route with AWS_IAM authorization called without a valid SigV4 signature
(``localcloud.services.apigateway.sigv4_auth``), 404 unknown route, 413 over 10 MB, 429 beyond the
function's reserved concurrency, 500 function error or malformed reply, 503 past the integration
timeout. A refused framing closes the connection: no byte after it is read as a request.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from localcloud.cloudformation.stack import Function, Route
from localcloud.services.apigateway import sigv4_auth
from localcloud.services.lambda_.worker_pool import InvokeResult, Throttled
from mlops.http_events import build_http_api_event
from mlops.http_fields import InvalidLength, content_length

MAX_BODY = 10 * 1024 * 1024  # HTTP API payload quota
# (function name, event bytes) -> result; raises Throttled at the concurrency limit
Invoke = Callable[[str, bytes], InvokeResult]


@dataclass(frozen=True)
class _Target:
    route: Route
    function: str
    pattern: re.Pattern[str] | None  # None for $default
    rank: tuple[int, int]  # more specific first


def _compile(path: str) -> tuple[re.Pattern[str], tuple[int, int]]:
    regex = ""
    greedy = 0
    params = 0
    for part in path.strip("/").split("/"):
        if m := re.fullmatch(r"\{(\w+)\+\}", part):
            regex += f"/(?P<{m.group(1)}>.+)"
            greedy = 1
        elif m := re.fullmatch(r"\{(\w+)\}", part):
            regex += f"/(?P<{m.group(1)}>[^/]+)"
            params += 1
        elif part:
            regex += "/" + re.escape(part)
    return re.compile((regex or "/") + "/?"), (greedy, params)


class Router:
    def __init__(self, functions: Iterable[Function]) -> None:
        self._targets: list[_Target] = []
        for fn in functions:
            for route in fn.routes:
                if route.path == "$default":
                    self._targets.append(_Target(route, fn.name, None, (9, 9)))
                else:
                    pattern, rank = _compile(route.path)
                    self._targets.append(_Target(route, fn.name, pattern, rank))
        self._targets.sort(key=lambda t: (t.rank, t.route.method == "ANY"))

    @property
    def routes(self) -> list[Route]:
        return [t.route for t in self._targets]

    def match(self, method: str, path: str) -> tuple[_Target, dict[str, str]] | None:
        for target in self._targets:
            if target.route.method not in ("ANY", method):
                continue
            if target.pattern is None:
                return target, {}
            if m := target.pattern.fullmatch(path):
                return target, m.groupdict()
        return None


def _gateway(status: int, message: str) -> tuple[int, dict[str, str], bytes]:
    return status, {"content-type": "application/json"}, json.dumps({"message": message}).encode()


def map_reply(result: InvokeResult) -> tuple[int, dict[str, str] | list[tuple[str, str]], bytes]:
    """An API Gateway response from a function's result (payload format 2.0 rules)."""
    if result.failed:
        return _gateway(500, "Internal Server Error")
    try:
        reply: Any = result.json()
    except ValueError:
        return _gateway(500, "Internal Server Error")
    if not isinstance(reply, dict) or "statusCode" not in reply:
        return 200, {"content-type": "application/json"}, result.payload
    status = reply["statusCode"]
    headers = reply.get("headers") or {}
    body = reply.get("body") or ""
    if not isinstance(status, int) or not isinstance(headers, dict) or not isinstance(body, str):
        return _gateway(500, "Internal Server Error")
    try:
        raw = (
            base64.b64decode(body, validate=True) if reply.get("isBase64Encoded") else body.encode()
        )
    except ValueError:
        return _gateway(500, "Internal Server Error")
    pairs = [(str(k), str(v)) for k, v in headers.items()]
    pairs += [("set-cookie", str(c)) for c in reply.get("cookies") or []]
    return status, pairs, raw


class HttpApi:
    """A threaded HTTP server for the stack's routes (one server for every HttpApi)."""

    def __init__(
        self,
        functions: Iterable[Function],
        invoke: Invoke,
        *,
        account_id: str,
        region: str = "us-east-1",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.router = Router(functions)
        self._invoke = invoke
        self._account_id = account_id
        self._region = region
        self._calls = ThreadPoolExecutor(max_workers=64, thread_name_prefix="httpapi-invoke")
        handler = type("Handler", (_Handler,), {"api": self})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        # A short poll interval: shutdown() waits for the loop to notice it.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="httpapi", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._calls.shutdown(wait=False, cancel_futures=True)

    def handle(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes, client: str
    ) -> tuple[int, dict[str, str] | list[tuple[str, str]], bytes]:
        url = urlsplit(target)
        found = self.router.match(method, url.path)
        if found is None:
            return _gateway(404, "Not Found")
        route_target, params = found
        route = route_target.route
        if route.authorization == "AWS_IAM":
            try:
                sigv4_auth.authorize(method, target, headers, body, region=self._region)
            except sigv4_auth.Denied as exc:
                return _gateway(403, str(exc))
        host = next((v for k, v in headers if k.lower() == "host"), None)
        event = build_http_api_event(
            method,
            url.path,
            body,
            headers,
            query=url.query,
            route_key=route.route_key,
            source_ip=client,
            domain_name=host.split(":", 1)[0] if host else None,
            account_id=self._account_id,
            api_id=route.api_id,
        )
        if params:
            event["pathParameters"] = params
        call = self._calls.submit(self._invoke, route_target.function, json.dumps(event).encode())
        try:
            result = call.result(timeout=route.timeout_ms / 1000)
        except Throttled:
            return _gateway(429, "Too Many Requests")
        except FutureTimeout:
            return _gateway(503, "Service Unavailable")
        return map_reply(result)


class _Handler(BaseHTTPRequestHandler):
    api: HttpApi
    protocol_version = "HTTP/1.1"
    # headers and body go out as two writes: with Nagle on, the body waited for the
    # client's delayed ACK (up to 40 ms per response on Linux)
    disable_nagle_algorithm = True
    server_version = "localcloud-httpapi"

    def _serve(self) -> None:
        lengths = self.headers.get_all("content-length") or []
        if self.headers.get("transfer-encoding") is not None:
            # with a Content-Length too, which of the two frames the body is ambiguous
            status, message = (400, "Bad Request") if lengths else (411, "Length Required")
            self._reply(*_gateway(status, f"{message}: send a Content-Length"), close=True)
            return
        try:
            size = content_length(lengths) or 0
        except InvalidLength:
            self._reply(*_gateway(400, "Bad Request: invalid Content-Length"), close=True)
            return
        if size > MAX_BODY:
            self._discard(size)
            self._reply(*_gateway(413, "Request Entity Too Large"), close=True)
            return
        body = self.rfile.read(size) if size else b""
        status, headers, payload = self.api.handle(
            self.command, self.path, list(self.headers.items()), body, self.client_address[0]
        )
        self._reply(status, headers, payload)

    def _discard(self, size: int) -> None:
        """Read a refused body (bounded) so the client sees the 413, not a broken pipe."""
        left = min(size, 4 * MAX_BODY)
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                return
            left -= len(chunk)

    def _reply(
        self,
        status: int,
        headers: dict[str, str] | list[tuple[str, str]],
        payload: bytes,
        close: bool = False,
    ) -> None:
        self.send_response(status)
        pairs = headers.items() if isinstance(headers, dict) else headers
        for name, value in pairs:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("content-length", str(len(payload)))
        if close:
            self.send_header("connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format: str, *args: Any) -> None:  # access log: the server's stdout
        print(f"httpapi {self.address_string()} {format % args}", flush=True)
