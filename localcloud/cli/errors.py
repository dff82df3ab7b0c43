"""Every error of ``python -m localcloud`` as one line on stderr, never a traceback.

``one_line(exc)`` says what went wrong and, where there is one, what to do: a local cloud
that cannot be reached (botocore's connection errors, urllib's), an AWS API error (the
operation, the error code and its message), a file problem, or anything else (a bug:
its type and message; ``LOCALCLOUD_DEBUG=1`` prints the traceback as well).
"""

from __future__ import annotations

import os
import re
import sys
import traceback
import urllib.error

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from localcloud.cloudformation.intrinsics import TemplateError
from localcloud.runner.pipeline_run import CliError
from localcloud.runtime.connection import NotRunning
from localcloud.runtime.launcher import LaunchError

MAX_CHARS = 600
DEBUG_VARIABLE = "LOCALCLOUD_DEBUG"
# Errors whose message is written for the user already.
_OURS = (CliError, NotRunning, LaunchError, TemplateError)
_UNREACHABLE = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ConnectionClosedError,
)


def one_line(exc: BaseException) -> tuple[str, int]:
    """(message, exit status): 2 for errors the user can act on, 1 for bugs."""
    status = 2
    if isinstance(exc, _OURS):
        message = str(exc)
        status = getattr(exc, "status", status)
    elif isinstance(exc, _UNREACHABLE):
        url = exc.kwargs.get("endpoint_url", "")
        message = (
            f"the local cloud at {url} is not reachable ({_reason(exc)}): is "
            "`python -m localcloud up` running for this --state-dir, or is --endpoint-url right?"
        )
    elif isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        message = f"{exc.operation_name} failed: {error.get('Code')}: {error.get('Message')}"
    elif isinstance(exc, BotoCoreError):
        message = str(exc)
    elif isinstance(exc, urllib.error.URLError):
        message = f"the HTTP API is not reachable ({exc.reason})"
    elif isinstance(exc, TimeoutError):
        message = str(exc) or "timed out"
    elif isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        message = f"{exc.strerror or exc}{where}"
    else:
        status = 1
        message = (
            f"unexpected error {type(exc).__name__}: {exc} "
            f"(set {DEBUG_VARIABLE}=1 for the traceback)"
        )
    return _flatten(message), status


def report(exc: BaseException) -> int:
    """Print ``exc`` as one line (after its traceback with LOCALCLOUD_DEBUG=1); the exit status."""
    message, status = one_line(exc)
    if os.environ.get(DEBUG_VARIABLE):
        traceback.print_exception(exc, file=sys.stderr)
    print(f"localcloud: {message}", file=sys.stderr, flush=True)
    return status


def _reason(exc: BotoCoreError) -> str:
    """ "Connection refused" rather than urllib3's repr of its connection object."""
    error = str(exc.kwargs.get("error") or "")
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", error)
    return found.group(1).strip() if found else type(exc).__name__


def _flatten(message: str) -> str:
    text = " ".join(message.split())
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 3] + "..."
