"""Serve a model directory over the SageMaker hosting contract on any host.

    python -m training.serve --model-dir DIR [--host 127.0.0.1] [--port 8080]

``GET /ping`` answers 200 once the model is loaded (503 before), ``POST /invocations``
runs the handlers of ``DIR/code/inference.py`` (the bundled ``training/inference.py``
when the model has no code) the way the SageMaker inference toolkit does. Requests are
decoded on their own threads and batched into one forward pass on a single inference
thread. Each request has one deadline, ``--timeout`` from its arrival, for its upload
and its answer: a body that does not arrive in time is a 408, work whose deadline passed
or whose client hung up is dropped before its forward pass, and at most ``--max-queue``
items wait for the model (503 with Retry-After beyond). A request is admitted (at most
``--max-pending`` in flight) before its body is read; the HTTP side, its strict framing
included, is ``training/serve_http.py``. Errors are JSON ``{"error": ..., "message": ...}``;
see docs/serving.md.
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from training.batching import Batcher, Expired, QueueFull
from training.serve_http import JSON, ClientGone, HttpError, Server

log = logging.getLogger("serve")

BUNDLED_HANDLERS = Path(__file__).resolve().parent / "inference.py"
HOOKS = ("model_fn", "input_fn", "predict_fn", "output_fn")
MAX_BODY = 6 * 1024 * 1024  # InvokeEndpoint's payload limit
DRAIN_S = 10.0  # bounds the wait for requests in flight at shutdown
UTF8_TYPES = ("application/json", "text/csv")  # the toolkit hands these over as str
CLIENT_CHECK_S = 0.25  # how often a waiting request checks that its client is still there
RETRY_AFTER_BUSY_S = 1
RETRY_AFTER_LOADING_S = 5


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

    @contextmanager
    def admitted(self) -> Iterator[None]:
        """A place among the ``--max-pending`` requests in flight, taken before the body is
        read (so refused uploads take no memory); HttpError 503 while loading or full."""
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
            yield
        finally:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    def drain(self, timeout: float) -> None:
        """Wait (at most ``timeout``) for the requests in flight to finish."""
        with self._idle:
            self._idle.wait_for(lambda: self._pending == 0, timeout)

    def invoke(
        self,
        body: bytes,
        content_type: str | None,
        accept: str | None,
        deadline: float,
        client_gone: Callable[[], bool] = lambda: False,
    ) -> tuple[bytes, str]:
        """The answer to one admitted request, due by ``deadline`` (``time.monotonic()``)."""
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
