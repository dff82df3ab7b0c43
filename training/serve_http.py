"""serve.py's HTTP side: strict framing, admission before the body, JSON errors.

A request's body is framed by one ``Content-Length`` of ASCII digits (or a list of identical
values) and nothing else: a Transfer-Encoding, a signed or underscored number, conflicting
values are refused (400, 411 or 413) and the connection closes after the answer, so no byte
after the body is ever taken for the next request. A request is admitted (``Service.
admitted``: loaded, fewer than ``--max-pending`` in flight) before its body is read, so
refused uploads cost no memory; a refused body is read and dropped (by the request's
deadline) so that its client reads the 503 rather than a reset, and a client that sent
``Expect: 100-continue`` is answered before it sends the body. A client that breaks the
connection is one line in the log.
"""

from __future__ import annotations

import contextlib
import json
import logging
import select
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from training.serve import Service

log = logging.getLogger("serve")

JSON = "application/json"
ERROR_CODES = {
    400: "bad_request",
    404: "not_found",
    406: "not_acceptable",
    408: "request_timeout",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
    500: "internal_error",
    501: "not_implemented",
    503: "unavailable",
    504: "timeout",
}


class HttpError(Exception):
    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after  # seconds, sent as Retry-After when set


class ClientGone(Exception):
    """The client closed its connection while its request waited: nobody to answer."""


def content_length(values: Sequence[str]) -> int | None:
    """The body's length from every Content-Length field (None when there is none): ASCII
    digits only, one value or a comma list of identical values (RFC 9110 8.6); HttpError
    400 for anything else. ``int()`` alone takes "+7", "-5" and "1_0", and "²".isdigit()."""
    seen = {item.strip(" \t") for value in values for item in value.split(",")}
    for item in sorted(seen):
        if not (item.isascii() and item.isdigit()):
            raise HttpError(400, f"Content-Length {item[:20]!r} is not a number of bytes")
    if len(seen) > 1:
        raise HttpError(400, f"conflicting Content-Length values {', '.join(sorted(seen))}")
    if not seen:
        return None
    digits = seen.pop().lstrip("0") or "0"
    return int(digits) if len(digits) <= 18 else sys.maxsize  # int() refuses 4,300 digits


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    # headers and body go out as two writes: with Nagle on, the body waited for the
    # client's delayed ACK (up to 40 ms per response on Linux)
    disable_nagle_algorithm = True
    server_version = "imgcls-serve"
    timeout = 60  # drop idle or stalled connections
    server: Server

    # this request sent "Expect: 100-continue": its body comes once it is admitted
    _expects_continue = False

    def parse_request(self) -> bool:
        self._expects_continue = False
        return super().parse_request()

    def do_GET(self) -> None:
        if self.headers.get_all("Content-Length", []) not in ([], ["0"]) or (
            "Transfer-Encoding" in self.headers
        ):
            self.close_connection = True  # a GET's body is never read: nor taken as a request
        if self.path.split("?", 1)[0] != "/ping":
            self._send_error(HttpError(404, f"no such path {self.path}; use GET /ping"))
        elif self.server.service.ready.is_set():
            self._send(200, b'{"status": "Healthy"}', JSON)
        else:
            self._send_error(HttpError(503, "the model is still loading"))

    def do_POST(self) -> None:
        deadline = time.monotonic() + self.server.service.timeout_s
        unread = 0  # a body refused before any of it was read
        try:
            if self.path.split("?", 1)[0] != "/invocations":
                self.close_connection = True  # its body stays unread
                raise HttpError(404, f"no such path {self.path}; use POST /invocations")
            unread = length = self._content_length()
            with self.server.service.admitted():  # before the body: a refusal costs no memory
                unread = 0
                if self._expects_continue:
                    self.send_response_only(HTTPStatus.CONTINUE)
                    self.end_headers()
                body = self._read_body(length, deadline)
                payload, content_type = self.server.service.invoke(
                    body,
                    self.headers.get("Content-Type"),
                    self.headers.get("Accept"),
                    deadline,
                    self._client_gone,
                )
        except ClientGone:
            log.info("%s %s: the client hung up; its request was dropped", self.command, self.path)
            self.close_connection = True
        except ConnectionError as exc:  # reset or broken pipe: one line, not a traceback
            log.info("%s %s: the connection broke (%s)", self.command, self.path, exc)
            self.close_connection = True
        except Exception as exc:
            if unread:
                self.close_connection = True  # the unread body would be taken as a request
            self._send_error(exc)
            if unread and not self._expects_continue:  # the client is sending it: drop it
                self._discard(unread, deadline)
        else:
            self._send(200, payload, content_type)

    def handle_expect_100(self) -> bool:
        """Refuse a bad or oversized upload before it is sent; "100 Continue" itself waits
        until the request is admitted (``do_POST``), so a busy server is not sent it either."""
        if self.command != "POST":
            return super().handle_expect_100()
        try:
            self._content_length()
        except HttpError as exc:
            self._send_error(exc)
            return False
        self._expects_continue = True
        return True

    def _content_length(self) -> int:
        """The body's length: one Content-Length of digits, within ``--max-body-bytes``.
        Anything else is an HttpError, and the connection closes after the answer: where
        the body ends is unknown (or it stays unread), so no byte after it is a request."""
        try:
            lengths = self.headers.get_all("Content-Length", [])
            if "Transfer-Encoding" in self.headers:
                if lengths:  # a proxy may frame it by one and serve.py by the other
                    raise HttpError(400, "send Content-Length or Transfer-Encoding, not both")
                raise HttpError(411, "Transfer-Encoding is not supported; send Content-Length")
            length = content_length(lengths)
            if length is None:
                raise HttpError(411, "a Content-Length header is required")
            if length > self.server.max_body:
                raise HttpError(
                    413, f"the body is {length} bytes; the limit is {self.server.max_body} bytes"
                )
        except HttpError:
            self.close_connection = True
            raise
        return length

    def _read_body(self, length: int, deadline: float) -> bytes:
        data = bytearray()
        try:
            for chunk in self._body_chunks(length, deadline):
                data += chunk
        except TimeoutError:
            self.close_connection = True
            raise HttpError(
                408,
                f"the request body did not arrive within {self.server.service.timeout_s:g} s "
                f"({len(data)} of {length} bytes)",
            ) from None
        return bytes(data)

    def _discard(self, length: int, deadline: float) -> None:
        """Read and drop a refused body (until ``deadline``), so that the client, still
        sending it, reads the answer rather than a reset connection."""
        with contextlib.suppress(OSError, ClientGone):
            for _ in self._body_chunks(length, deadline):
                pass

    def _body_chunks(self, length: int, deadline: float) -> Iterator[bytes]:
        """The body's ``length`` bytes as they arrive, all by ``deadline`` (TimeoutError
        after it; ClientGone if the client closes its side first)."""
        try:
            while length > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                self.connection.settimeout(left)  # bounds the whole body, not each read
                chunk = self.rfile.read1(min(length, 1 << 16))
                if not chunk:
                    raise ClientGone
                length -= len(chunk)
                yield chunk
        finally:
            self.connection.settimeout(self.timeout)

    def _client_gone(self) -> bool:
        """True once the client has closed its side (a pipelined request is not that)."""
        try:
            poller = select.poll()  # not select(): no limit on the descriptor's number
            poller.register(self.connection, select.POLLIN)
            events = poller.poll(0)
            if not events:
                return False
            if events[0][1] & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                return True
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):  # reset, or closed
            return True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's own errors (malformed request, unknown method) as JSON too."""
        self.close_connection = True
        self._send_error(HttpError(code, message or HTTPStatus(code).phrase))

    def _send_error(self, exc: Exception) -> None:
        status = getattr(exc, "status", None) or getattr(exc, "status_code", None)
        if isinstance(status, int) and 400 <= status < 600:
            message = str(exc)
        else:  # a fault of the server or the handlers: log it, tell the client little
            log.error("%s %s failed", self.command, self.path, exc_info=exc)
            status, message = 500, "internal error while handling the request; see the server log"
        body = json.dumps({"error": ERROR_CODES.get(status, "error"), "message": message})
        retry_after = getattr(exc, "retry_after", None)
        headers = {"Retry-After": str(retry_after)} if retry_after else {}
        self._send(status, body.encode(), JSON, headers)

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # listen backlog; the stdlib's 5 resets bursts of connections

    def __init__(self, address: tuple[str, int], service: Service, max_body: int) -> None:
        self.service = service
        self.max_body = max_body
        super().__init__(address, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection the client broke (reset mid-request, gone before its answer) is one
        line in the log; anything else keeps its traceback."""
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError):
            log.info("%s: the connection broke (%s)", client_address[0], exc)
        else:
            log.error("error while serving %s", client_address[0], exc_info=exc)
