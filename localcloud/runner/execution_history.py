"""The console's execution view, in the terminal: every state, its status, start, duration,
retries, and the cause of a failure, read from GetExecutionHistory events."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

_FAILURE_DETAILS = {
    "TaskFailed": "taskFailedEventDetails",
    "TaskTimedOut": "taskTimedOutEventDetails",
    "LambdaFunctionFailed": "lambdaFunctionFailedEventDetails",
    "LambdaFunctionTimedOut": "lambdaFunctionTimedOutEventDetails",
    "ExecutionFailed": "executionFailedEventDetails",
    "ExecutionTimedOut": "executionTimedOutEventDetails",
    "ExecutionAborted": "executionAbortedEventDetails",
    "FailStateEntered": "stateEnteredEventDetails",
}


EXECUTION_ENDS = {"ExecutionSucceeded", "ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut"}


@dataclass
class StateRun:
    """One state, over all the times the execution entered it (polling loops re-enter)."""

    name: str
    type: str
    first_start: datetime.datetime
    runs: int = 0
    seconds: float = 0.0
    attempts: int = 0
    status: str = "Running"
    error: str | None = None
    cause: str | None = None
    _entered: datetime.datetime | None = field(default=None, repr=False)


@dataclass
class ExecutionView:
    name: str
    status: str
    start: datetime.datetime | None
    stop: datetime.datetime | None
    states: list[StateRun]
    error: str | None = None
    cause: str | None = None

    @property
    def seconds(self) -> float | None:
        if self.start is None or self.stop is None:
            return None
        return (self.stop - self.start).total_seconds()


def _state_type(event_type: str) -> str:
    return event_type.removesuffix("StateEntered")


def failure_text(error: str | None, cause: str | None) -> str:
    """``error: cause`` without repeating the error when the cause already starts with it."""
    if not cause:
        return error or ""
    if not error or cause.startswith(f"{error}:"):
        return cause
    return f"{error}: {cause}"


def readable_cause(cause: str | None) -> str | None:
    """A Lambda error payload as ``errorType: errorMessage``; other causes unchanged."""
    if not cause:
        return cause
    try:
        payload = json.loads(cause)
    except ValueError:
        return cause
    if isinstance(payload, dict) and "errorMessage" in payload:
        return f"{payload.get('errorType', 'Error')}: {payload['errorMessage']}"
    return cause


def build_view(
    events: Iterable[Mapping[str, Any]], description: Mapping[str, Any] | None = None
) -> ExecutionView:
    description = description or {}
    states: dict[str, StateRun] = {}
    current: StateRun | None = None
    view = ExecutionView(
        name=str(description.get("name", "")),
        status=str(description.get("status", "RUNNING")),
        start=description.get("startDate"),
        stop=description.get("stopDate"),
        states=[],
    )
    for event in events:
        kind = event["type"]
        when = event["timestamp"]
        if kind == "ExecutionStarted" and view.start is None:
            view.start = when
        if kind.endswith("StateEntered"):
            name = event["stateEnteredEventDetails"]["name"]
            run = states.get(name)
            if run is None:
                run = states[name] = StateRun(name, _state_type(kind), when)
                view.states.append(run)
            run.runs += 1
            run.status = "Running"
            run._entered = when
            current = run
            if kind == "FailStateEntered":
                run.status = "Failed"
        elif kind.endswith("StateExited"):
            name = event["stateExitedEventDetails"]["name"]
            run = states[name]
            if run._entered is not None:
                run.seconds += (when - run._entered).total_seconds()
                run._entered = None
            if run.status == "Running":
                run.status = "Succeeded"
            elif run.status == "Failed" and run.type != "Fail":
                run.status = "Caught"
        elif kind in ("TaskScheduled", "LambdaFunctionScheduled") and current is not None:
            current.attempts += 1
        elif kind in ("TaskSucceeded", "LambdaFunctionSucceeded") and current is not None:
            current.status = "Running"
            current.error = current.cause = None
        if kind in _FAILURE_DETAILS:
            details = event.get(_FAILURE_DETAILS[kind], {})
            error, cause = details.get("error"), readable_cause(details.get("cause"))
            if kind.startswith("Execution"):
                view.error, view.cause = error, cause
                view.stop = view.stop or when
            elif current is not None:
                current.status = "Failed"
                current.error, current.cause = error, cause
        if kind in EXECUTION_ENDS:
            view.stop = view.stop or when
            view.status = view.status if description else kind.removeprefix("Execution").upper()
    for run in view.states:
        if run._entered is not None and view.stop is not None:
            run.seconds += (view.stop - run._entered).total_seconds()
            if view.status != "RUNNING" and run.status == "Running":
                run.status = "Failed" if view.status == "FAILED" else view.status.title()
    return view


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def _clock(when: datetime.datetime | None) -> str:
    return when.astimezone().strftime("%H:%M:%S") if when else "-"


def render(view: ExecutionView) -> str:
    lines = [
        f"Execution {view.name}: {view.status}  started {_clock(view.start)}"
        f"  duration {duration(view.seconds)}",
        "",
        f"  {'State':<26} {'Type':<9} {'Status':<10} {'Start':<9} {'Duration':>9}  Runs",
    ]
    for run in view.states:
        retries = run.attempts - run.runs
        runs = f"{run.runs}" + (f" ({retries} retries)" if retries > 0 else "")
        lines.append(
            f"  {run.name:<26} {run.type:<9} {run.status:<10} {_clock(run.first_start):<9}"
            f" {duration(run.seconds):>9}  {runs}"
        )
        if run.error and run.status in ("Failed", "Caught"):
            lines.append(f"      {failure_text(run.error, run.cause)}")
    if view.error or view.cause:
        lines += ["", f"  Failure: {failure_text(view.error, view.cause)}"]
    return "\n".join(lines)


def is_no_op(description: Mapping[str, Any]) -> bool:
    """A run that ended without doing anything (NothingToDeploy: a model package event this
    pipeline need not act on); its output is PrepareRun's with ``skipped`` set."""
    try:
        output = json.loads(description.get("output") or "null")
    except ValueError:
        return False
    return isinstance(output, dict) and output.get("skipped") is True


def render_output(output: str | None) -> str:
    """An execution's output (metrics, endpoint, model package, the approve command), one
    ``key: value`` line per leaf; empty when the execution has none (failed or running)."""
    try:
        value = json.loads(output or "null")
    except ValueError:
        return f"  Output: {output}"
    if not isinstance(value, dict) or not value:
        return ""
    lines = ["  Output:"]
    for key, leaf in _leaves(value, ""):
        lines.append(f"    {key}: {leaf}")
    return "\n".join(lines)


def _leaves(value: Any, prefix: str) -> Iterable[tuple[str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, f"{prefix}{key}." if isinstance(item, dict) else prefix + key)
        return
    if value is None:
        return
    text = value if isinstance(value, str) else json.dumps(value)
    yield prefix.rstrip("."), text
