"""serve.py under overload: no work for callers that are gone, a bounded queue, stalled uploads.

The model's ``input_fn`` logs each decoded request and its ``predict_batch_fn`` each
forward pass to a file and, while a ``hold`` file exists, holds the model: a test keeps it
busy exactly as long as it needs and counts the passes that really ran. A probe request
after the release runs after anything still queued (the queue is first in, first out), so
counting up to it shows what ran.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.training.serving_helpers import TRAINING, ServerProcess, image_bytes, make_model_dir

JPEG = {"Content-Type": "image/jpeg"}
WAIT_S = 30  # bounds every wait

SLOW_HANDLERS = """
import time
from pathlib import Path

import bundled
from bundled import model_fn, output_fn, predict_fn  # noqa: F401

MODEL_DIR = Path(__file__).resolve().parent.parent


def input_fn(data, content_type):
    item = bundled.input_fn(data, content_type)
    with (MODEL_DIR / "decoded.log").open("a") as log:  # serve.py queues it right after
        log.write("1\\n")
    return item


def predict_batch_fn(items, model):
    with (MODEL_DIR / "forward_passes.log").open("a") as log:
        log.write(f"{len(items)}\\n")
    deadline = time.monotonic() + 30
    while (MODEL_DIR / "hold").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return bundled.predict_batch_fn(items, model)
"""


class GatedModel:
    def __init__(self, path: Path) -> None:
        self.dir = make_model_dir(path, 32)
        (self.dir / "code" / "bundled.py").write_text((TRAINING / "inference.py").read_text())
        (self.dir / "code" / "inference.py").write_text(SLOW_HANDLERS)
        self.log = self.dir / "forward_passes.log"
        self.decoded = self.dir / "decoded.log"

    def hold(self) -> None:
        (self.dir / "hold").touch()

    def release(self) -> None:
        (self.dir / "hold").unlink(missing_ok=True)

    def passes(self) -> list[int]:
        """The batch size of every forward pass so far."""
        return [int(n) for n in self.log.read_text().split()] if self.log.exists() else []

    def decodes(self) -> int:
        """How many request bodies ``input_fn`` decoded so far."""
        return len(self.decoded.read_text().split()) if self.decoded.exists() else 0

    def wait_for_passes(self, count: int) -> None:
        wait_until(lambda: len(self.passes()) >= count, f"only {self.passes()} forward passes")

    def wait_for_decodes(self, count: int) -> None:
        wait_until(lambda: self.decodes() >= count, f"only {self.decodes()} requests decoded")


def wait_until(condition: Callable[[], bool], failure: str) -> None:
    """Poll ``condition`` until it holds; fail with ``failure`` after WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, failure
        time.sleep(0.02)


def post(port: int, body: bytes = b"") -> tuple[int, dict, dict[str, str]]:
    """(status, JSON body, headers) of one POST /invocations."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_S)
    try:
        connection.request("POST", "/invocations", body=body or image_bytes(), headers=JPEG)
        response = connection.getresponse()
        return response.status, json.loads(response.read()), dict(response.getheaders())
    finally:
        connection.close()


def in_background(port: int, count: int) -> tuple[list[threading.Thread], list[tuple]]:
    replies: list[tuple] = []
    threads = [
        threading.Thread(target=lambda: replies.append(post(port)), daemon=True)
        for _ in range(count)
    ]
    for thread in threads:
        thread.start()
    return threads, replies


def read_until_closed(client: socket.socket) -> str:
    chunks = []
    while chunk := client.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks).decode()


def join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(WAIT_S)
        assert not thread.is_alive()


Served = tuple[ServerProcess, GatedModel]


def probe_runs(server: ServerProcess, model: GatedModel, expected_passes: int) -> None:
    """Release the model, then one request: everything queued before it has run by then."""
    model.release()
    deadline = time.monotonic() + WAIT_S
    while (status := post(server.port)[0]) == 503 and time.monotonic() < deadline:
        time.sleep(0.1)  # the queue is still full: retry, as Retry-After says
    assert status == 200
    assert len(model.passes()) == expected_passes, model.passes()


@pytest.fixture(scope="module")
def expiring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One request per forward pass, each due within 3 s of its arrival."""
    model = GatedModel(tmp_path_factory.mktemp("expiring"))
    with ServerProcess(model.dir, "--timeout", "3", "--max-batch-size", "1") as server:
        server.wait_ready()
        yield server, model
        model.release()


def test_requests_that_timed_out_never_run_their_forward_pass(expiring) -> None:
    server, model = expiring
    before = len(model.passes())
    model.hold()
    first, first_reply = in_background(server.port, 1)
    model.wait_for_passes(before + 1)  # the model is busy until released
    waiting, replies = in_background(server.port, 4)
    join(first + waiting)
    assert [reply[0] for reply in first_reply + replies] == [504] * 5
    assert all(reply[1]["error"] == "timeout" for reply in replies)
    # the old server ran the four expired requests now, before the probe
    probe_runs(server, model, before + 2)


def test_a_stalled_upload_gets_408(expiring) -> None:
    server, _ = expiring
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_S) as client:
        client.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: 1000\r\n\r\n" + image_bytes()[:10]
        )
        answer = read_until_closed(client)  # the client stalls: it sends nothing more
    assert answer.startswith("HTTP/1.1 408 ")
    assert '"error": "request_timeout"' in answer and "10 of 1000 bytes" in answer
    # the request's 3 s deadline, not the 60 s idle timeout (the client waits at most 30 s)
    assert "did not arrive within 3 s" in answer


@pytest.fixture(scope="module")
def bounded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One request per forward pass; at most 2 requests wait for the model."""
    model = GatedModel(tmp_path_factory.mktemp("bounded"))
    args = ("--timeout", "60", "--max-batch-size", "1", "--max-queue", "2")
    with ServerProcess(model.dir, *args) as server:
        server.wait_ready()
        yield server, model
        model.release()


def test_the_queue_is_bounded_and_refused_work_gets_503_with_retry_after(bounded) -> None:
    server, model = bounded
    before = len(model.passes())
    model.hold()
    first, first_reply = in_background(server.port, 1)
    model.wait_for_passes(before + 1)
    decoded = model.decodes()
    queued, queued_replies = in_background(server.port, 2)
    model.wait_for_decodes(decoded + 2)  # both decoded, so queued behind the held model
    status, body, headers = post(server.port)
    assert (status, body["error"]) == (503, "unavailable")
    assert "2 requests are already queued" in body["message"]
    assert headers["Retry-After"] == "1"
    probe_runs(server, model, before + 4)  # the first, the two queued, the probe
    join(first + queued)
    assert [reply[0] for reply in first_reply + queued_replies] == [200] * 3


def test_a_request_whose_client_hung_up_never_runs(bounded) -> None:
    server, model = bounded
    before = len(model.passes())
    model.hold()
    first, first_reply = in_background(server.port, 1)
    model.wait_for_passes(before + 1)
    body, decoded = image_bytes(), model.decodes()
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_S) as client:
        client.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        model.wait_for_decodes(decoded + 1)  # queued behind the held model
    # then the client gives up
    assert server.logged("the client hung up; its request was dropped", WAIT_S)
    probe_runs(server, model, before + 2)  # the first and the probe: not the dropped one
    join(first)
    assert first_reply[0][0] == 200
