"""One Lambda execution environment: imports a handler once, then serves invocations.

Started by ``localcloud.services.lambda_.worker_pool`` as ``python -I -u worker.py REQ_FD RESP_FD
[DIR ...]`` with the function's own environment. It imports nothing from the project
(stdlib only), so the function sees exactly its code directory, its layers and the
installed packages, like /var/task, /opt/python and the runtime on Lambda.

Frames on both pipes: 4-byte big-endian length + UTF-8 JSON. The worker sends one
``{"ready": true}`` or ``{"init_error": {...}}`` frame after init, then answers each
``{"request_id", "event", "deadline_ms", "trace_id"}`` with ``{"result": <json text>}`` or
``{"error": {"errorMessage", "errorType", "stackTrace"}}``. stdout and stderr are the
function's log stream: the START/END/REPORT lines are printed here so they stay in order
with what the handler prints.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import struct
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, BinaryIO

_HEADER = struct.Struct(">I")


def read_frame(stream: BinaryIO) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    body = b""
    while len(body) < size:
        chunk = stream.read(size - len(body))
        if not chunk:
            return None
        body += chunk
    return json.loads(body)


def write_frame(stream: BinaryIO, message: Any) -> None:
    body = json.dumps(message).encode()
    stream.write(_HEADER.pack(len(body)) + body)
    stream.flush()


class LambdaContext:
    """The context object Lambda's Python runtime passes to handlers."""

    def __init__(self, request_id: str, deadline_ms: int) -> None:
        self.function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = os.environ["AWS_LAMBDA_FUNCTION_VERSION"]
        self.invoked_function_arn = os.environ["LOCALCLOUD_FUNCTION_ARN"]
        self.memory_limit_in_mb = int(os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"])
        self.aws_request_id = request_id
        self.log_group_name = os.environ["AWS_LAMBDA_LOG_GROUP_NAME"]
        self.log_stream_name = os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def error_payload(exc: BaseException, error_type: str | None = None) -> dict[str, Any]:
    # the user's frames only, as Lambda reports them (not this runtime's)
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != __file__]
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "stackTrace": traceback.format_list(frames),
    }


def load_handler(spec: str) -> Callable[[Any, Any], Any]:
    """Import ``module.function`` the way the Lambda runtime does, with its error types."""
    module_name, _, function_name = spec.rpartition(".")
    if not module_name:
        raise RuntimeFault("Runtime.MalformedHandlerName", f"Bad handler '{spec}'")
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as exc:
        message = f"Unable to import module '{module_name}': {exc}"
        raise RuntimeFault("Runtime.ImportModuleError", message) from exc
    except SyntaxError as exc:
        message = f"Syntax error in module '{module_name}': {exc}"
        raise RuntimeFault("Runtime.UserCodeSyntaxError", message) from exc
    handler = getattr(module, function_name, None)
    if handler is None:
        message = f"Handler '{function_name}' missing on module '{module_name}'"
        raise RuntimeFault("Runtime.HandlerNotFound", message)
    return handler


class RuntimeFault(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


class _RequestIdFilter(logging.Filter):
    request_id = ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = self.request_id
        return True


def _configure_logging() -> _RequestIdFilter:
    """The root logger format of Lambda's Python runtime."""
    request_filter = _RequestIdFilter()
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        logging.Formatter(
            "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n",
            "%Y-%m-%dT%H:%M:%S",
        )
    )
    handler.addFilter(request_filter)
    logging.Formatter.converter = time.gmtime
    logging.getLogger().addHandler(handler)
    return request_filter


def _log_error(error: dict[str, Any]) -> None:
    trace = "".join(error["stackTrace"])
    head = f"[ERROR] {error['errorType']}: {error['errorMessage']}"
    print(f"{head}\nTraceback (most recent call last):\n{trace}", flush=True)


def _peak_memory_mb() -> int:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forking parent
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    return 0


def serve(requests: BinaryIO, responses: BinaryIO) -> None:
    request_filter = _configure_logging()
    started = time.monotonic()
    try:
        handler = load_handler(os.environ["_HANDLER"])
    except RuntimeFault as exc:
        error = error_payload(exc, exc.error_type)
        _log_error(error)
        write_frame(responses, {"init_error": error})
        return
    except Exception as exc:  # an exception in the module's own init code
        error = error_payload(exc)
        _log_error(error)
        write_frame(responses, {"init_error": error})
        return
    init_ms = (time.monotonic() - started) * 1000
    write_frame(responses, {"ready": True})
    memory = os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]
    while (request := read_frame(requests)) is not None:
        request_id = request["request_id"]
        request_filter.request_id = request_id
        os.environ["_X_AMZN_TRACE_ID"] = request["trace_id"]
        print(f"START RequestId: {request_id} Version: $LATEST", flush=True)
        began = time.monotonic()
        context = LambdaContext(request_id, request["deadline_ms"])
        try:
            result = handler(json.loads(request["event"]), context)
            try:
                reply: dict[str, Any] = {"result": json.dumps(result)}
            except (TypeError, ValueError) as exc:
                error = error_payload(exc, "Runtime.MarshalError")
                error["errorMessage"] = f"Unable to marshal response: {exc}"
                reply = {"error": error}
        except Exception as exc:
            reply = {"error": error_payload(exc)}
        if "error" in reply:
            _log_error(reply["error"])
        duration = (time.monotonic() - began) * 1000
        used = _peak_memory_mb()
        init = f" Init Duration: {init_ms:.2f} ms" if init_ms else ""
        print(f"END RequestId: {request_id}", flush=True)
        print(
            f"REPORT RequestId: {request_id}\tDuration: {duration:.2f} ms\t"
            f"Billed Duration: {int(duration) + 1} ms\tMemory Size: {memory} MB\t"
            f"Max Memory Used: {used} MB{init}",
            flush=True,
        )
        init_ms = 0.0
        write_frame(responses, reply)


def main(argv: list[str]) -> None:
    request_fd, response_fd, *paths = argv
    # Like /var/task then /opt/python: the function's code first, then its layers.
    sys.path[:0] = paths
    with (
        os.fdopen(int(request_fd), "rb") as requests,
        os.fdopen(int(response_fd), "wb") as responses,
    ):
        serve(requests, responses)


if __name__ == "__main__":
    main(sys.argv[1:])
