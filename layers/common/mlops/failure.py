"""The one-sentence cause a failed execution shows, whatever failed.

A Lambda function's error reaches Step Functions as a JSON document with the message, the
error type and a stack trace; a service error or a timeout as plain text. A user reading
the failed execution in the console should see the state that failed, the error's message
only, and for a failed deployment also whether the rollback worked. A Catch's result does
not say which state failed, so the state names come from the execution's history.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

CAUSE_MAX = 1000
UNKNOWN = "the run failed without a recorded cause; see the execution's event history"
# History events that end a Task's attempt in failure: the state failed unless the next
# event schedules another attempt (a Retry).
TASK_FAILURES = frozenset(
    {
        "LambdaFunctionFailed",
        "LambdaFunctionTimedOut",
        "LambdaFunctionStartFailed",
        "LambdaFunctionScheduleFailed",
        "TaskFailed",
        "TaskTimedOut",
        "TaskStartFailed",
        "TaskSubmitFailed",
    }
)


def caught_states(events: Iterable[Mapping[str, Any]]) -> list[str]:
    """The Task states whose failure was caught, in the order they failed, from an
    execution's history events (any order: they are sorted by id)."""
    caught: list[str] = []
    state = failed = None
    for event in sorted(events, key=lambda e: int(e["id"])):
        kind = str(event["type"])
        if kind in TASK_FAILURES:
            failed = state
        elif kind.endswith("Scheduled"):
            failed = None  # retried
        elif kind.endswith(("StateExited", "StateEntered")) and failed:
            caught.append(failed)
            failed = None
        if kind.endswith("StateEntered"):
            state = event["stateEnteredEventDetails"]["name"]
    return caught


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


def describe_failure(state: Mapping[str, Any], caught: Sequence[str] = ()) -> dict[str, str]:
    """``{"error", "cause"}`` for the execution's Fail state, from the failure path's state
    and the states whose failure was caught (``caught_states``; empty if unknown). Each
    caught error has its own key, written in the order the ASL reaches them: ``error`` (a
    Task of the run), ``rollback_error`` (RollBack), ``release_error`` (the release)."""
    where = iter(caught)
    original = _original(state, where)
    if isinstance(state.get("rollback_error"), Mapping):
        cause = f"then {_failed(state['rollback_error'], next(where, 'the rollback'))}"
        cause = f"{original[1]}; {cause}" if original else cause.removeprefix("then ")
        return {"error": "RollbackFailed", "cause": _sentence(_also_release(cause, state, where))}
    if original is None:
        return {"error": "PipelineFailed", "cause": UNKNOWN}
    error, cause = original
    rollback = state.get("rollback")
    if isinstance(rollback, Mapping) and rollback.get("done"):
        # "untouched": DeployModel failed before SageMaker took its request
        untouched = rollback.get("action") == "untouched"
        cause = f"{cause} ({'nothing was deployed' if untouched else 'rolled back'})"
    return {"error": error, "cause": _sentence(_also_release(cause, state, where))}


def _failed(caught: Mapping[str, Any], where: str | None) -> str:
    """A caught error as a clause that names its state: "<state> failed: <message>"."""
    message = caught_message(caught)[1]
    return f"{where} failed: {message}" if where else message


def _also_release(cause: str, state: Mapping[str, Any], where: Iterator[str]) -> str:
    """The lock's release failed too (the next run takes over a lock whose holder ended)."""
    if not isinstance(state.get("release_error"), Mapping):
        return cause
    return f"{cause}; then {_failed(state['release_error'], next(where, 'the lock release'))}"


def _original(state: Mapping[str, Any], where: Iterator[str]) -> tuple[str, str] | None:
    """What made the run fail: a caught error, a failed smoke test or endpoint."""
    if isinstance(state.get("error"), Mapping):
        return caught_message(state["error"])[0], _failed(state["error"], next(where, None))
    deployment = state.get("deployment")
    if isinstance(deployment, Mapping) and deployment.get("action") == "refused":
        return "QualityGateFailed", str(deployment.get("reason") or "a better model is live")
    smoke = state.get("smoke")
    if isinstance(smoke, Mapping) and smoke.get("passed") is False:
        return "SmokeTestFailed", str(smoke.get("reason") or "the smoke test failed")
    endpoint = state.get("endpoint")
    if isinstance(endpoint, Mapping) and endpoint.get("state") == "failed":
        return "EndpointDeploymentFailed", str(endpoint.get("reason") or "the endpoint failed")
    return None
