"""serve.py's HTTP framing over raw sockets: strict Content-Length, admission before the body.

Every test ends by reading until the server closes the connection (or answers a request
that says ``Connection: close``): a request smuggled after a body would show up as a
second response.
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.training.serving_helpers import (
    GATED_HANDLERS,
    ServerProcess,
    image_bytes,
    make_model_dir,
    model_with_handlers,
)
from training.serve_http import HttpError, content_length

WAIT_S = 30  # bounds every read
MAX_BODY = 100_000
POST = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
PING = b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


@pytest.mark.parametrize(
    ("fields", "length"),
    [([], None), (["12"], 12), (["012"], 12), (["12, 12"], 12), (["12", "12"], 12)],
)
def test_content_length_is_one_value_or_identical_ones(
    fields: list[str], length: int | None
) -> None:
    assert content_length(fields) == length


@pytest.mark.parametrize(
    "fields", [["+7"], ["-5"], ["1_0"], ["\u00b2"], [" "], ["0x10"], ["5, 6"], ["5", "6"], ["5,"]]
)
def test_anything_else_is_a_400(fields: list[str]) -> None:
    with pytest.raises(HttpError) as raised:
        content_length(fields)
    assert raised.value.status == 400 and "Content-Length" in str(raised.value)


def test_a_length_past_ints_digit_limit_is_too_large_not_a_crash() -> None:
    assert content_length(["9" * 5000]) > MAX_BODY


def exchange(port: int, data: bytes) -> bytes:
    """All the server answers to ``data`` on one connection, until it closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as client:
        client.sendall(data)
        return read_until_closed(client)


def read_until_closed(client: socket.socket) -> bytes:
    """What arrives until the server ends the connection: with a FIN, or with a reset when
    it closes on bytes it never read (what it sent before still arrives first)."""
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := client.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def statuses(answer: bytes) -> list[int]:
    """The status of every response in ``answer`` (a 100 Continue included)."""
    return [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    model_dir = make_model_dir(tmp_path_factory.mktemp("model"), 32)
    with ServerProcess(model_dir, "--max-body-bytes", str(MAX_BODY)) as srv:
        srv.wait_ready()
        yield srv


@pytest.mark.parametrize(
    ("framing", "status"),
    [
        (b"Content-Length: +5\r\n", 400),  # was served as 5
        (b"Content-Length: -5\r\n", 400),  # was an empty body, "hello" the next request
        (b"Content-Length: 0_5\r\n", 400),  # int() reads 5
        (b"Content-Length: \xc2\xb2\r\n", 400),  # "\u00b2" (as UTF-8; latin-1 on the wire)
        (b"Content-Length: 5, 6\r\n", 400),
        (b"Content-Length: 5\r\nContent-Length: 6\r\n", 400),
        (b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", 400),
        (b"Transfer-Encoding: chunked\r\n", 411),
        (b"Transfer-Encoding: gzip\r\n", 411),
        (b"", 411),
        (f"Content-Length: {MAX_BODY + 1}\r\n".encode(), 413),
        (b"Content-Length: " + b"9" * 5000 + b"\r\n", 413),
    ],
)
def test_bad_framing_is_refused_and_nothing_after_it_is_a_request(
    server: ServerProcess, framing: bytes, status: int
) -> None:
    answer = exchange(server.port, POST + framing + b"\r\nhello" + PING)
    assert statuses(answer) == [status], answer
    assert b"Connection: close" in answer and b'"message": ' in answer


def test_identical_content_lengths_frame_the_body(server: ServerProcess) -> None:
    answer = exchange(server.port, POST + b"Content-Length: 5, 5\r\n\r\nhello" + PING)
    # "hello" is not an image (400, the connection stays open), then the pipelined /ping
    assert statuses(answer) == [400, 200], answer


def test_a_body_sent_with_a_get_is_not_a_request(server: ServerProcess) -> None:
    get = b"GET /ping HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"
    assert statuses(exchange(server.port, get + b"hello" + PING)) == [200]


def test_expect_100_continue_then_the_answer(server: ServerProcess) -> None:
    body = image_bytes()
    head = POST + f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_S) as client:
        client.sendall(head)
        assert client.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        client.sendall(body + PING)
        assert statuses(read_until_closed(client)) == [200, 200]


def test_a_client_reset_is_one_line_in_the_log(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_S) as client:
        client.sendall(POST + b"Content-Length: 1000\r\n\r\n" + b"x" * 10)
        # SO_LINGER 0: close() resets the connection instead of ending it
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert server.logged("the connection broke")
    assert server.request("GET", "/ping")[0] == 200  # the log has caught up with the reset
    assert "Traceback" not in "".join(server.log)


@pytest.fixture(scope="module")
def loading(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose model never finishes loading: every POST is refused (503)."""
    model_dir: Path = model_with_handlers(tmp_path_factory.mktemp("gated"), GATED_HANDLERS)
    with ServerProcess(model_dir, "--timeout", "120") as srv:
        yield srv


def test_a_refused_request_is_answered_before_its_body_is_read(loading: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", loading.port), timeout=WAIT_S) as client:
        client.sendall(POST + b"Content-Length: 300000\r\n\r\n")
        # the 503 comes with no byte of the body sent (before, serve.py waited for it)
        head = client.recv(65536)
        assert statuses(head) == [503] and b"Retry-After: 5" in head, head
        # the client sends its body anyway: it is read and dropped, then the connection ends
        client.sendall(b"x" * 300_000 + PING)
        assert statuses(read_until_closed(client)) == []


def test_a_refused_request_that_expects_100_continue_is_not_sent_it(
    loading: ServerProcess,
) -> None:
    head = POST + b"Content-Length: 300000\r\nExpect: 100-continue\r\n\r\n"
    answer = exchange(loading.port, head)
    assert statuses(answer) == [503], answer
