"""What the console shows, read through the AWS APIs of the local cloud (Step Functions,
SageMaker, CloudWatch Logs, CloudWatch, Application Auto Scaling), as any script would.
Every function returns plain JSON-able data for the page."""

from __future__ import annotations

import datetime
import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError

from localcloud.console import graph
from localcloud.runner.execution_history import build_view, is_no_op, readable_cause
from localcloud.runner.report import cost_estimate
from localcloud.runtime.connection import CREDENTIALS
from localcloud.services.events import s3_events

TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
ENDPOINT_LOG_GROUP = "/aws/sagemaker/Endpoints/"
LOG_TAIL_LINES = 400
HISTORY_EVENTS_SHOWN = 1000
ENTRIES_SHOWN = 20  # the last runs of a state (polling loops enter one many times)
DETAIL_CHARS = 240  # of an event's details in the history table (the state panel has all)
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 2}, read_timeout=15)
_ONE_ATTEMPT = Config(retries={"mode": "standard", "max_attempts": 1}, read_timeout=15)
_SERVICES = ("stepfunctions", "sagemaker", "logs", "cloudwatch", "events", "lambda")


class NotFound(LookupError):
    """The page asked for something that does not exist (HTTP 404)."""


def iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime.datetime) else value


def _seconds(start: datetime.datetime | None, stop: datetime.datetime | None) -> float | None:
    if start is None:
        return None
    end = stop or datetime.datetime.now(datetime.UTC)
    return round((end - start).total_seconds(), 1)


Rule = tuple[str, Mapping[str, Any]]  # an EventBridge rule: (name, event pattern)


def started_by(execution_input: str | None, rules: Sequence[Rule] = ()) -> str:
    """What started an execution: the event its input is (an upload, a model package's
    state change) and the EventBridge rules of ``rules`` that match it, or by hand."""
    try:
        payload = json.loads(execution_input or "{}")
    except ValueError:
        return "manual"
    if not isinstance(payload, dict):
        return "manual"
    if payload.get("source") and payload.get("detail-type"):
        matched = [name for name, pattern in rules if s3_events.matches(pattern, payload)]
        via = f" via rule {', '.join(matched)}" if matched else ""
        return f"{_event(payload)}{via}"
    if payload.get("dataset"):
        return f"manual: {payload['dataset']}"
    return "manual"


def _event(payload: Mapping[str, Any]) -> str:
    detail = payload.get("detail") or {}
    kind = payload["detail-type"]
    if payload["source"] == "aws.s3":
        bucket = (detail.get("bucket") or {}).get("name", "?")
        key = (detail.get("object") or {}).get("key", "?")
        return f"upload s3://{bucket}/{key} ({kind})"
    if kind == "SageMaker Model Package State Change":
        status = detail.get("ModelApprovalStatus", "?")
        return f"model package {detail.get('ModelPackageArn', '?')} {status} ({kind})"
    return f"{payload['source']} event ({kind})"


def _event_state(event: Mapping[str, Any]) -> str:
    for key in ("stateEnteredEventDetails", "stateExitedEventDetails"):
        if key in event:
            return str(event[key].get("name", ""))
    return ""


def _event_detail(event: Mapping[str, Any]) -> str:
    """The interesting part of an event's details, as one line."""
    for key, value in event.items():
        if not key.endswith("EventDetails") or not isinstance(value, Mapping):
            continue
        parts = []
        for field in ("error", "cause", "resource", "resourceType"):
            if value.get(field):
                text = readable_cause(value[field]) if field == "cause" else value[field]
                parts.append(f"{field}: {text}")
        if not parts:
            for field in ("input", "output", "parameters"):
                if value.get(field):
                    parts.append(f"{field}: {value[field]}")
                    break
        text = "; ".join(parts)
        return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 1] + "…"
    return ""


def state_runs(events: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Every entry into each state: input, output, error and cause, times."""
    runs: dict[str, list[dict[str, Any]]] = {}
    current: dict[str, Any] | None = None
    for event in events:
        kind = event["type"]
        if kind.endswith("StateEntered"):
            details = event["stateEnteredEventDetails"]
            current = {
                "entered": iso(event["timestamp"]),
                "exited": None,
                "input": details.get("input"),
                "output": None,
                "error": None,
                "cause": None,
            }
            runs.setdefault(details["name"], []).append(current)
        elif kind.endswith("StateExited"):
            details = event["stateExitedEventDetails"]
            entries = runs.get(details["name"]) or [{}]
            entries[-1].update(exited=iso(event["timestamp"]), output=details.get("output"))
        for key, value in event.items():
            failure = key.endswith(("FailedEventDetails", "TimedOutEventDetails"))
            if failure and current is not None and not kind.startswith("Execution"):
                current["error"] = value.get("error")
                current["cause"] = readable_cause(value.get("cause"))
        if kind == "FailStateEntered" and current is not None:
            current["error"], current["cause"] = _fail_state_outcome(events, event)
    return runs


def _fail_state_outcome(
    events: Sequence[Mapping[str, Any]], entered: Mapping[str, Any]
) -> tuple[str | None, str | None]:
    for event in events:
        if event["id"] > entered["id"] and event["type"] == "ExecutionFailed":
            details = event.get("executionFailedEventDetails", {})
            return details.get("error"), readable_cause(details.get("cause"))
    return None, None


class Reader:
    """Clients of the local cloud's endpoint, and the views built from their answers."""

    def __init__(self, endpoint_url: str, region: str) -> None:
        session = boto3.session.Session(region_name=region, **CREDENTIALS)
        self.clients: dict[str, BaseClient] = {
            name: session.client(name, endpoint_url=endpoint_url, config=_CONFIG)
            for name in _SERVICES
        }
        # an optional API that may be missing locally: one attempt, no retries with backoff
        self.clients["application-autoscaling"] = session.client(
            "application-autoscaling", endpoint_url=endpoint_url, config=_ONE_ATTEMPT
        )
        self._finished: dict[str, dict[str, Any]] = {}  # execution ARN -> description
        self._costs: dict[str, list[str]] = {}  # a finished execution's ARN -> its cost
        self._definitions: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def client(self, service: str) -> BaseClient:
        """A client of the local cloud (what ``report`` and ``run_cost`` read through)."""
        return self.clients[service]

    # ------------------------------------------------------------------ executions
    def state_machines(self) -> list[dict[str, Any]]:
        machines = self.clients["stepfunctions"].list_state_machines()["stateMachines"]
        return [{"name": m["name"], "arn": m["stateMachineArn"]} for m in machines]

    def _describe(self, arn: str) -> dict[str, Any]:
        with self._lock:
            cached = self._finished.get(arn)
        if cached is not None:
            return cached
        try:
            description = self.clients["stepfunctions"].describe_execution(executionArn=arn)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("ExecutionDoesNotExist", "InvalidArn"):
                raise NotFound(f"no execution {arn}") from None
            raise
        if description["status"] != "RUNNING":
            with self._lock:
                self._finished[arn] = description
        return description

    def rules(self) -> list[Rule]:
        """The default bus's rules (what may start an execution), as the console shows them."""
        pages = self.clients["events"].get_paginator("list_rules").paginate()
        return [
            (rule["Name"], json.loads(rule["EventPattern"]))
            for page in pages
            for rule in page["Rules"]
            if rule.get("EventPattern") and rule.get("State") == "ENABLED"
        ]

    def executions(self) -> list[dict[str, Any]]:
        sfn = self.clients["stepfunctions"]
        rules = self.rules()
        rows = []
        for machine in self.state_machines():
            pages = sfn.get_paginator("list_executions").paginate(stateMachineArn=machine["arn"])
            for execution in (e for page in pages for e in page["executions"]):
                description = self._describe(execution["executionArn"])
                rows.append(
                    {
                        "name": execution["name"],
                        "arn": execution["executionArn"],
                        "state_machine": machine["name"],
                        "status": description["status"],
                        "start": iso(description["startDate"]),
                        "stop": iso(description.get("stopDate")),
                        "seconds": _seconds(description["startDate"], description.get("stopDate")),
                        "started_by": started_by(description.get("input"), rules),
                        "error": description.get("error"),
                    }
                )
        rows.sort(key=lambda r: r["start"], reverse=True)
        return rows

    def _definition(self, state_machine_arn: str) -> dict[str, Any]:
        with self._lock:
            cached = self._definitions.get(state_machine_arn)
        if cached is None:
            raw = self.clients["stepfunctions"].describe_state_machine(
                stateMachineArn=state_machine_arn
            )["definition"]
            cached = json.loads(raw)
            with self._lock:
                self._definitions[state_machine_arn] = cached
        return cached

    def _history(self, arn: str) -> list[dict[str, Any]]:
        pages = self.clients["stepfunctions"].get_paginator("get_execution_history")
        return [e for page in pages.paginate(executionArn=arn) for e in page["events"]]

    def cost(
        self, description: Mapping[str, Any], events: Sequence[Mapping[str, Any]]
    ) -> list[str] | None:
        """A finished run's cost on AWS, the lines its summary and ``history`` print; None
        while it runs (its training is not billed yet) or when it did nothing."""
        arn = description["executionArn"]
        if description["status"] == "RUNNING" or is_no_op(description):
            return None
        with self._lock:
            cached = self._costs.get(arn)
        if cached is None:
            cached = [line.strip() for line in cost_estimate(self, description, events)]
            with self._lock:
                self._costs[arn] = cached
        return cached

    def execution(self, arn: str) -> dict[str, Any]:
        description = self._describe(arn)
        events = self._history(arn)
        view = build_view(events, description)
        entered = [
            e["stateEnteredEventDetails"]["name"] for e in events if e["type"].endswith("Entered")
        ]
        try:
            drawn = graph.execution_graph(
                self._definition(description["stateMachineArn"]),
                view.states,
                entered,
                description["status"],
            )
            graph_error = None
        except graph.DefinitionError as exc:
            drawn, graph_error = None, str(exc)
        runs = state_runs(events)
        states = {
            run.name: {
                "type": run.type,
                "status": graph.STATUS_CLASS.get(run.status, "running"),
                "runs": run.runs,
                "attempts": run.attempts,
                "seconds": round(run.seconds, 1),
                "error": run.error or (runs.get(run.name) or [{}])[-1].get("error"),
                "cause": run.cause or (runs.get(run.name) or [{}])[-1].get("cause"),
                "entries": runs.get(run.name, [])[-ENTRIES_SHOWN:],
                "first_entry": max(1, len(runs.get(run.name, [])) - ENTRIES_SHOWN + 1),
            }
            for run in view.states
        }
        return {
            "name": description["name"],
            "arn": arn,
            "state_machine_arn": description["stateMachineArn"],
            "status": description["status"],
            "start": iso(description["startDate"]),
            "stop": iso(description.get("stopDate")),
            "seconds": _seconds(description["startDate"], description.get("stopDate")),
            "started_by": started_by(description.get("input"), self.rules()),
            "input": description.get("input"),
            "output": description.get("output"),
            "error": description.get("error") or view.error,
            "cause": readable_cause(description.get("cause")) or view.cause,
            "graph": drawn,
            "graph_error": graph_error,
            "states": states,
            "events": [
                {
                    "id": e["id"],
                    "previous": e.get("previousEventId"),
                    "type": e["type"],
                    "time": iso(e["timestamp"]),
                    "state": _event_state(e),
                    "detail": _event_detail(e),
                }
                for e in events[-HISTORY_EVENTS_SHOWN:]
            ],
            "events_total": len(events),
            "cost": self.cost(description, events),
        }
