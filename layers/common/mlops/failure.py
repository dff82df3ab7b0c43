"""The one-sentence cause a failed execution shows, whatever failed.

A Lambda function's error reaches Step Functions as a JSON document with the message, the
error type and a stack trace; a service error or a timeout as plain text. A user reading
the failed execution in the console should see the error's name and its message only, and
for a failed deployment also whether the rollback worked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

CAUSE_MAX = 1000
UNKNOWN = "the run failed without a recorded cause; see the execution's event history"


def caught_message(caught: Mapping[str, Any]) -> tuple[str, str]:
    """(error name, readable message) of a Catch's ``{"Error", "Cause"}``."""
    name = str(caught.get("Error") or "States.TaskFailed")
    cause = caught.get("Cause")
    message = cause if isinstance(cause, str) else ""
    try:
        document = json.loads(message) if message.lstrip().startswith("{") else None
    except ValueError:
        document = None
    if isinstance(document, Mapping):
        message = str(document.get("errorMessage") or document.get("message") or "")
        name = str(document.get("errorType") or name) if name == "States.TaskFailed" else name
    return name, _sentence(message) or f"{name} (no message)"


def _sentence(text: str) -> str:
    """The text up to any traceback, on one line, within CAUSE_MAX characters."""
    text = text.split("Traceback (most recent call last)")[0]
    text = " ".join(text.split())
    if len(text) > CAUSE_MAX:
        text = text[: CAUSE_MAX - 3].rstrip() + "..."
    return text


def describe_failure(state: Mapping[str, Any]) -> dict[str, str]:
    """``{"error", "cause"}`` for the execution's Fail state, from the failure path's state."""
    original = _original(state)
    if isinstance(state.get("rollback_error"), Mapping):
        _, why = caught_message(state["rollback_error"])
        cause = f"the rollback failed: {why}"
        if original:
            cause = f"{original[1]}; then {cause}"
        return {"error": "RollbackFailed", "cause": _sentence(cause)}
    if original is None:
        return {"error": "PipelineFailed", "cause": UNKNOWN}
    error, cause = original
    rollback = state.get("rollback")
    if isinstance(rollback, Mapping) and rollback.get("done"):
        # "untouched": DeployModel failed before SageMaker took its request
        untouched = rollback.get("action") == "untouched"
        cause = f"{cause} ({'nothing was deployed' if untouched else 'rolled back'})"
    return {"error": error, "cause": _sentence(cause)}


def _original(state: Mapping[str, Any]) -> tuple[str, str] | None:
    """What made the run fail: a caught error, a failed smoke test or endpoint."""
    if isinstance(state.get("error"), Mapping):
        return caught_message(state["error"])
    smoke = state.get("smoke")
    if isinstance(smoke, Mapping) and smoke.get("passed") is False:
        return "SmokeTestFailed", str(smoke.get("reason") or "the smoke test failed")
    endpoint = state.get("endpoint")
    if isinstance(endpoint, Mapping) and endpoint.get("state") == "failed":
        return "EndpointDeploymentFailed", str(endpoint.get("reason") or "the endpoint failed")
    return None
