"""Serve a model directory over the SageMaker hosting contract on any host.

    python -m training.serve --model-dir DIR [--host 127.0.0.1] [--port 8080]

``GET /ping`` answers 200 once the model is loaded (503 before), ``POST /invocations``
runs the handlers of ``DIR/code/inference.py`` (the bundled ``training/inference.py``
when the model has no code) the way the SageMaker inference toolkit does. Requests are
decoded on their own threads and batched into one forward pass on a single inference
thread. Each request has one deadline, ``--timeout`` from its arrival, for its upload
and its answer: a body that does not arrive in time is a 408, work whose deadline passed
or whose client hung up is dropped before its forward pass, and at most ``--max-queue``
items wait for the model (503 with Retry-After beyond). Errors are JSON
``{"error": ..., "message": ...}``; see docs/serving.md.
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import json
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

from training.batching import Batcher, Expired, QueueFull

log = logging.getLogger("serve")

BUNDLED_HANDLERS = Path(__file__).resolve().parent / "inference.py"
HOOKS = ("model_fn", "input_fn", "predict_fn", "output_fn")
MAX_BODY = 6 * 1024 * 1024  # InvokeEndpoint's payload limit
JSON = "application/json"
DRAIN_S = 10.0  # bounds the wait for requests in flight at shutdown
UTF8_TYPES = ("application/json", "text/csv")  # the toolkit hands these over as str
CLIENT_CHECK_S = 0.25  # how often a waiting request checks that its client is still there
RETRY_AFTER_BUSY_S = 1
RETRY_AFTER_LOADING_S = 5
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


class StartupError(Exception):
    """The model directory cannot be served; the message says why."""


def load_handlers(model_dir: Path) -> ModuleType:
    """The model's ``code/inference.py`` (its ``code/`` first on sys.path, as the toolkit
    does), else the bundled handlers."""
    if not model_dir.is_dir():
        raise StartupError(f"model directory {model_dir} does not exist")
    if not (model_dir / "model.json").is_file():
        raise StartupError(f"{model_dir} has no model.json: not a model written by train.py")
    path = model_dir / "code" / "inference.py"
    if path.is_file():
        sys.path.insert(0, str(path.parent))
    else:
        path = BUNDLED_HANDLERS
    spec = importlib.util.spec_from_file_location("inference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["inference"] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise StartupError(f"cannot import {path}: {exc!r}") from exc
    missing = [hook for hook in HOOKS if not callable(getattr(module, hook, None))]
    if missing:
        raise StartupError(f"{path} does not define {', '.join(missing)}")
    log.info("handlers from %s", path)
    return module


class Service:
    """The model behind the HTTP server: loading, admission control, batching."""

    def __init__(self, handlers: ModuleType, model_dir: Path, args: argparse.Namespace) -> None:
        self.handlers = handlers
        self.model_dir = model_dir
        self.ready = threading.Event()
        self.timeout_s = args.timeout
        self._batch_size = args.max_batch_size
        self._batch_delay_s = args.max_batch_delay_ms / 1000
        self._max_pending = args.max_pending
        self._max_queue = args.max_queue
        self._pending = 0
        self._idle = threading.Condition()
        self._decoders = threading.BoundedSemaphore(args.decode_threads)
        self.batcher: Batcher | None = None

    def load(self) -> None:
        model = self.handlers.model_fn(str(self.model_dir))
        warmup = getattr(self.handlers, "model_warmup_fn", None)
        if warmup is not None:
            warmup(str(self.model_dir), model)
        batch_fn = getattr(self.handlers, "predict_batch_fn", None)
        if batch_fn is None:
            predict = self.handlers.predict_fn

            def batch_fn(items: Sequence[Any], model: Any) -> list[Any]:
                return [predict(item, model) for item in items]

        self.batcher = Batcher(
            lambda items: batch_fn(items, model),
            self._batch_size,
            self._batch_delay_s,
            max_queue=self._max_queue,
        )
        self.ready.set()

    def invoke(
        self,
        body: bytes,
        content_type: str | None,
        accept: str | None,
        deadline: float,
        client_gone: Callable[[], bool] = lambda: False,
    ) -> tuple[bytes, str]:
        """The answer to one request, due by ``deadline`` (``time.monotonic()``)."""
        if not self.ready.is_set() or self.batcher is None:
            raise HttpError(
                503,
                "the model is still loading; retry when /ping answers 200",
                RETRY_AFTER_LOADING_S,
            )
        with self._idle:
            if self._pending >= self._max_pending:
                raise HttpError(503, "the server is busy; retry shortly", RETRY_AFTER_BUSY_S)
            self._pending += 1
        try:
            return self._invoke(body, content_type, accept, deadline, client_gone)
        finally:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    def drain(self, timeout: float) -> None:
        """Wait (at most ``timeout``) for the requests in flight to finish."""
        with self._idle:
            self._idle.wait_for(lambda: self._pending == 0, timeout)

    def _invoke(
        self,
        body: bytes,
        content_type: str | None,
        accept: str | None,
        deadline: float,
        client_gone: Callable[[], bool],
    ) -> tuple[bytes, str]:
        assert self.batcher is not None
        data: Any = body
        if content_type in UTF8_TYPES:
            try:
                data = body.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise HttpError(400, f"the {content_type} body is not UTF-8") from exc
        if not accept or accept == "*/*":
            accept = JSON
        with self._decoders:  # bounds the memory and CPU that decoding takes at once
            item = self.handlers.input_fn(data, content_type)
        prediction = self._predict(item, deadline, client_gone)
        result = self.handlers.output_fn(prediction, accept)
        payload, response_type = result if isinstance(result, tuple) else (result, accept)
        if isinstance(payload, str):
            payload = payload.encode()
        return bytes(payload), response_type

    def _predict(self, item: Any, deadline: float, client_gone: Callable[[], bool]) -> Any:
        """The item's prediction; the item is withdrawn (never run) if the deadline passes
        or the client hangs up while it waits."""
        assert self.batcher is not None
        late = HttpError(504, f"no answer within {self.timeout_s:g} s")
        if time.monotonic() >= deadline:
            raise late
        try:
            future = self.batcher.submit(item, deadline)
        except QueueFull as exc:
            message = f"the server is busy ({exc}); retry shortly"
            raise HttpError(503, message, RETRY_AFTER_BUSY_S) from None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                future.cancel()  # a no-op once its forward pass has started
                raise late
            try:
                return future.result(min(left, CLIENT_CHECK_S))
            except FutureTimeout:
                if client_gone():
                    future.cancel()
                    raise ClientGone from None
            except Expired:
                raise late from None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    # headers and body go out as two writes: with Nagle on, the body waited for the
    # client's delayed ACK (up to 40 ms per response on Linux)
    disable_nagle_algorithm = True
    server_version = "imgcls-serve"
    timeout = 60  # drop idle or stalled connections
    server: Server

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/ping":
            self._send_error(HttpError(404, f"no such path {self.path}; use GET /ping"))
        elif self.server.service.ready.is_set():
            self._send(200, b'{"status": "Healthy"}', JSON)
        else:
            self._send_error(HttpError(503, "the model is still loading"))

    def do_POST(self) -> None:
        deadline = time.monotonic() + self.server.service.timeout_s
        try:
            if self.path.split("?", 1)[0] != "/invocations":
                self.close_connection = True  # its body stays unread
                raise HttpError(404, f"no such path {self.path}; use POST /invocations")
            body = self._read_body(deadline)
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
        except Exception as exc:
            self._send_error(exc)
        else:
            self._send(200, payload, content_type)

    def handle_expect_100(self) -> bool:
        try:
            self._content_length()
        except HttpError as exc:
            self.close_connection = True
            self._send_error(exc)
            return False
        return super().handle_expect_100()

    def _content_length(self) -> int:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise HttpError(411, "chunked bodies are not supported; send Content-Length")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise HttpError(411, "a Content-Length header is required") from None
        if length > self.server.max_body:
            raise HttpError(
                413, f"the body is {length} bytes; the limit is {self.server.max_body} bytes"
            )
        return length

    def _read_body(self, deadline: float) -> bytes:
        try:
            length = self._content_length()
        except HttpError:
            self.close_connection = True  # the unread body would be taken as the next request
            raise
        data = bytearray()
        try:
            while len(data) < length:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                self.connection.settimeout(left)  # bounds the whole body, not each read
                chunk = self.rfile.read1(min(length - len(data), 1 << 16))
                if not chunk:
                    raise ClientGone
                data += chunk
        except TimeoutError:
            self.close_connection = True
            raise HttpError(
                408,
                f"the request body did not arrive within {self.server.service.timeout_s:g} s "
                f"({len(data)} of {length} bytes)",
            ) from None
        finally:
            self.connection.settimeout(self.timeout)
        return bytes(data)

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


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.serve", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--model-dir", type=Path, required=True, help="a model directory from train.py"
    )
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to accept other hosts (EC2)")
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080")),
        help="0 picks a free port (printed at start); default $SAGEMAKER_BIND_TO_PORT or 8080",
    )
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--max-batch-delay-ms", type=float, default=5.0)
    parser.add_argument("--max-pending", type=int, default=64, help="requests in flight before 503")
    parser.add_argument(
        "--max-queue",
        type=int,
        default=32,
        help="decoded requests waiting for the model before 503 (default: %(default)s)",
    )
    parser.add_argument("--max-body-bytes", type=int, default=MAX_BODY)
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds per request from its arrival: upload (408 after) and answer (504 after)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's)"
    )
    parser.add_argument(
        "--decode-threads", type=int, default=os.cpu_count() or 1, help="images decoded at once"
    )
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING"))
    args = parser.parse_args(argv)
    for name in (
        "max_batch_size",
        "max_pending",
        "max_queue",
        "max_body_bytes",
        "threads",
        "decode_threads",
    ):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.max_batch_delay_ms < 0 or args.timeout <= 0:
        parser.error("--max-batch-delay-ms must be >= 0 and --timeout > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    # libgomp's idle threads spin; when decoding threads (or other processes) share the
    # cores, a spinning team stalls each forward pass by up to 10x (docs/serving.md).
    # Sleeping costs little. Set before torch loads libgomp, which reads it once.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        handlers = load_handlers(args.model_dir)
        service = Service(handlers, args.model_dir, args)
        server = Server((args.host, args.port), service, args.max_body_bytes)
    except (StartupError, OSError) as exc:
        print(f"serve: error: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()
    failed = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    def load() -> None:
        started = time.monotonic()
        try:
            service.load()
        except Exception:
            log.exception("cannot load the model from %s", args.model_dir)
            failed.set()
            stop.set()
            return
        log.info("model loaded in %.1f s; /ping answers 200", time.monotonic() - started)

    host, port = server.server_address[:2]
    print(
        f"serve: listening on http://{host}:{port} (model {args.model_dir})",
        file=sys.stderr,
        flush=True,
    )
    threading.Thread(target=server.serve_forever, args=(0.1,), name="http", daemon=True).start()
    threading.Thread(target=load, name="load", daemon=True).start()
    stop.wait()  # the signal handlers and a failed load set it
    log.info("stopping")
    server.shutdown()  # no new connections; requests in flight still get their answers
    service.drain(timeout=DRAIN_S)
    server.server_close()
    if service.batcher is not None:
        service.batcher.close(timeout=DRAIN_S)
    return 1 if failed.is_set() else 0


def exit_now(code: int) -> None:
    """Exit without the interpreter's teardown, once everything is stopped: a daemon thread
    still inside torch (the model load that just failed, say) can make it abort
    ("terminate called without an active exception", status -6 instead of 1). The exit
    handlers still run and the logs are flushed."""
    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
