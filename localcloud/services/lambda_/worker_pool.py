"""Runs Lambda functions for real: a warm pool of worker processes per function.

Each worker is one execution environment (``worker.py``): a process with the
function's own environment variables and sys.path that imports the handler once and then
serves invocations, as Lambda reuses warm environments. A pool grows up to the function's
ReservedConcurrentExecutions (beyond it: throttled); an invocation that outlives the
function's Timeout kills its worker and fails with ``Sandbox.Timedout``.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localcloud.cloudformation.stack import Function
from localcloud.runtime import processes
from localcloud.services.lambda_.worker import read_frame, write_frame

WORKER_SCRIPT = Path(__file__).with_name("worker.py")
# Lambda gives a function's init phase 10 s on its own, outside the function Timeout.
INIT_LIMIT_S = 10.0
# Account-level concurrency for functions without a reservation.
UNRESERVED_LIMIT = 1000
# Environments that prewarm initialises at once (each init is CPU-bound imports).
PREWARM_PARALLEL = 2
# What the worker inherits from the host: enough to run Python, nothing project-specific.
HOST_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")

# Called with (function, log stream name, line) for every line a function logs.
LogSink = Callable[[Function, str, str], None]


@dataclass(frozen=True)
class InvokeResult:
    payload: bytes
    error_type: str | None = None

    @property
    def failed(self) -> bool:
        return self.error_type is not None

    def json(self) -> Any:
        return json.loads(self.payload)


class Throttled(Exception):
    """The function is at its concurrency limit (Lambda's TooManyRequestsException)."""


class UnknownFunction(KeyError):
    pass


def _error(error_type: str, message: str) -> InvokeResult:
    body = {"errorMessage": message, "errorType": error_type}
    return InvokeResult(json.dumps(body).encode(), error_type)


class Worker:
    """One execution environment of one function."""

    def __init__(self, fn: Function, env: Mapping[str, str], sink: LogSink, python: str) -> None:
        self.fn = fn
        now = datetime.datetime.now(datetime.UTC)
        self.log_stream = f"{now:%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
        request_r, self._request_w = os.pipe()
        self._response_r, response_w = os.pipe()
        paths = [str(fn.code_dir)] + [str(p) for p in (layer.sys_path for layer in fn.layers) if p]
        worker_env = dict(env)
        worker_env["AWS_LAMBDA_LOG_STREAM_NAME"] = self.log_stream
        try:
            self.proc = processes.spawn(
                [python, "-I", "-u", str(WORKER_SCRIPT), str(request_r), str(response_w), *paths],
                env=worker_env,
                cwd=fn.code_dir,
                pass_fds=(request_r, response_w),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        finally:
            os.close(request_r)
            os.close(response_w)
        self._requests = os.fdopen(self._request_w, "wb")
        self._responses = os.fdopen(self._response_r, "rb", buffering=0)
        self.initialised = False
        self.alive = True
        self._logger = threading.Thread(
            target=self._forward_logs, args=(sink,), name=f"logs-{fn.name}", daemon=True
        )
        self._logger.start()

    def _forward_logs(self, sink: LogSink) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            sink(self.fn, self.log_stream, raw.decode(errors="replace").rstrip("\n"))

    def _read(self, deadline: float) -> Any:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        ready, _, _ = select.select([self._responses], [], [], remaining)
        if not ready:
            return None
        message = read_frame(self._responses)
        if message is None:
            raise EOFError
        return message

    def invoke(self, event: bytes, request_id: str) -> InvokeResult:
        fn = self.fn
        try:
            if not self.initialised:
                ready = self._read(time.monotonic() + INIT_LIMIT_S)
                if ready is None:
                    self.close()
                    return _error("Runtime.InitTimeout", f"INIT timed out after {INIT_LIMIT_S} s")
                if "init_error" in ready:
                    self.close()
                    error = ready["init_error"]
                    return InvokeResult(json.dumps(error).encode(), error["errorType"])
                self.initialised = True
            deadline = time.monotonic() + fn.timeout
            write_frame(
                self._requests,
                {
                    "request_id": request_id,
                    "event": event.decode() if event else "{}",
                    "deadline_ms": int((time.time() + fn.timeout) * 1000),
                    "trace_id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Sampled=0",
                },
            )
            reply = self._read(deadline)
        except (EOFError, BrokenPipeError, OSError):
            code = self.proc.wait(timeout=5)
            self.close()
            return _error(
                "Runtime.ExitError",
                f"RequestId: {request_id} Error: Runtime exited with error: exit status {code}",
            )
        if reply is None:
            self.close()
            message = (
                f"RequestId: {request_id} Error: Task timed out after {fn.timeout:.2f} seconds"
            )
            return _error("Sandbox.Timedout", message)
        if "error" in reply:
            return InvokeResult(json.dumps(reply["error"]).encode(), reply["error"]["errorType"])
        return InvokeResult(reply["result"].encode())

    def wait_initialised(self, timeout: float) -> bool:
        """Whether the init phase ended (ready or failed) within ``timeout`` seconds.

        It reads nothing: the first invocation still reads the init frame."""
        deadline = time.monotonic() + timeout
        while self.alive and not self.initialised:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                ready, _, _ = select.select([self._responses], [], [], min(remaining, 0.1))
            except (ValueError, OSError):  # closed meanwhile
                return True
            if ready:
                return True
        return True

    def close(self) -> None:
        if not self.alive:
            return
        self.alive = False
        for stream in (self._requests, self._responses):
            with contextlib.suppress(OSError):
                stream.close()
        processes.kill(self.proc)
        self._logger.join(timeout=5)


class FunctionPool:
    """Warm workers of one function, capped by its reserved concurrency."""

    def __init__(self, fn: Function, env: Mapping[str, str], sink: LogSink, python: str) -> None:
        self.fn = fn
        self._env = env
        self._sink = sink
        self._python = python
        self._idle: list[Worker] = []
        self._all: set[Worker] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.limit = UNRESERVED_LIMIT
        self.reserve(fn.reserved_concurrency)

    def reserve(self, concurrency: int | str | None) -> None:
        """Apply the function's reserved concurrency (PutFunctionConcurrency; None: none).

        0 throttles every invocation, as Lambda does: a way to rehearse throttling.
        """
        self.limit = UNRESERVED_LIMIT if concurrency is None else int(concurrency)

    @property
    def size(self) -> int:
        """Execution environments alive (busy or warm)."""
        with self._lock:
            return len(self._all)

    @property
    def pids(self) -> list[int]:
        """Process ids of its execution environments."""
        with self._lock:
            return [worker.proc.pid for worker in self._all]

    @property
    def in_use(self) -> int:
        """Execution environments running an invocation now."""
        with self._lock:
            return len(self._all) - len(self._idle)

    def _acquire(self) -> Worker:
        with self._lock:
            if self._closed:
                raise Throttled(f"{self.fn.name} is shutting down")
            if len(self._all) - len(self._idle) >= self.limit:  # busy environments
                raise Throttled(f"{self.fn.name} is at its concurrency limit ({self.limit})")
            if self._idle:
                return self._idle.pop()
            worker = Worker(self.fn, self._env, self._sink, self._python)
            self._all.add(worker)
            return worker

    def prewarm(self) -> Worker | None:
        """Start one execution environment now (it imports the handler in the background),
        so the first invocation does not wait for an interpreter to start; None if the
        function has one already (or may not run)."""
        with self._lock:
            if self._closed or self._all or self.limit < 1:
                return None
            worker = Worker(self.fn, self._env, self._sink, self._python)
            self._all.add(worker)
            self._idle.append(worker)
            return worker

    def invoke(self, event: bytes) -> InvokeResult:
        worker = self._acquire()
        try:
            return worker.invoke(event, str(uuid.uuid4()))
        finally:
            with self._lock:
                if worker.alive and not self._closed:
                    self._idle.append(worker)
                else:
                    self._all.discard(worker)
                    worker.close()

    def kill(self) -> None:
        """SIGKILL every environment now, reaping none (``close`` reaps them)."""
        with self._lock:
            workers = list(self._all)
        for worker in workers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(worker.proc.pid, signal.SIGKILL)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers = list(self._all)
            self._all.clear()
            self._idle.clear()
        for worker in workers:
            worker.close()


def function_environment(
    fn: Function, *, region: str, endpoint_url: str, credentials: Mapping[str, str] | None = None
) -> dict[str, str]:
    """What Lambda sets for a function, plus the template's variables and the local endpoint.

    ``credentials`` (AWS_ACCESS_KEY_ID etc.) are the function's role session's, so the
    local cloud can tell its calls apart and enforce the role's policies.
    """
    env = {k: os.environ[k] for k in HOST_VARIABLES if k in os.environ}
    env.update(
        {
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_ENDPOINT_URL": endpoint_url,
            "AWS_LAMBDA_FUNCTION_NAME": fn.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": fn.log_group,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{fn.runtime}",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "LAMBDA_TASK_ROOT": str(fn.code_dir),
            "LOCALCLOUD_FUNCTION_ARN": fn.arn,
            "_HANDLER": fn.handler,
        }
    )
    env.update(credentials or {})
    env.update(fn.environment)
    return env


class LambdaRuntime:
    """All functions of a stack, invoked by name or ARN."""

    def __init__(
        self,
        functions: Iterable[Function],
        *,
        region: str,
        endpoint_url: str,
        sink: LogSink,
        python: str = sys.executable,
        credentials: Callable[[Function], Mapping[str, str]] | None = None,
    ) -> None:
        self._pools: dict[str, FunctionPool] = {}
        for fn in functions:
            env = function_environment(
                fn,
                region=region,
                endpoint_url=endpoint_url,
                credentials=credentials(fn) if credentials else None,
            )
            self._pools[fn.name] = FunctionPool(fn, env, sink, python)

    def pool(self, name: str) -> FunctionPool:
        try:
            return self._pools[name]
        except KeyError:
            raise UnknownFunction(name) from None

    def invoke(self, name: str, event: bytes) -> InvokeResult:
        return self.pool(name).invoke(event)

    def prewarm(
        self, first: Sequence[str] = (), parallel: int = PREWARM_PARALLEL, *, rest: bool = True
    ) -> list[str]:
        """One warm environment per function: local runs skip the cold starts (0.5 s of
        imports each, seconds when a dozen start at once on two cores) that a pipeline of
        a dozen functions would otherwise pay on its critical path.

        The functions named in ``first`` start first, in that order, then (with ``rest``)
        the others; at most ``parallel`` initialise at once, so the first ones are ready
        soonest. Functions that have an environment already are skipped. Blocks until the
        last one has started; returns the names in the order started."""
        rank = {name: i for i, name in enumerate(first)}
        pools = sorted(self._pools.values(), key=lambda p: rank.get(p.fn.name, len(rank)))
        if not rest:
            pools = [pool for pool in pools if pool.fn.name in rank]
        started: list[str] = []
        initialising: list[Worker] = []
        for pool in pools:
            while len(initialising) >= max(1, parallel):
                initialising.pop(0).wait_initialised(INIT_LIMIT_S)
            worker = pool.prewarm()
            if worker is not None:
                initialising.append(worker)
                started.append(pool.fn.name)
        return started

    def close(self) -> None:
        # every environment gets its SIGKILL first, then all are reaped: one wait, not one
        # per environment in turn
        for pool in self._pools.values():
            pool.kill()
        for pool in self._pools.values():
            pool.close()
