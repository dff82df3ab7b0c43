"""Live progress of an execution: states as the history grows, the training job's epochs
and metrics from its CloudWatch log streams, and the endpoint's status changes."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from typing import Any

from localcloud.runner.execution_history import failure_text, readable_cause
from localcloud.runner.report import execution_events, training_job_of
from localcloud.runtime.connection import Connection

TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
_SHOWN_LINES = ("[metrics]", "[final]", "Traceback", "Error", "error:")


class Follower:
    def __init__(
        self,
        conn: Connection,
        execution_arn: str,
        *,
        endpoint_name: str | None,
        out: Callable[[str], None] = print,
    ) -> None:
        self.conn = conn
        self.execution_arn = execution_arn
        self.endpoint_name = endpoint_name
        self.out = out
        self._started = time.monotonic()
        self._seen_events = 0
        self.events: list[dict[str, Any]] = []  # the history as of the last round
        self._entered: set[str] = set()
        self._job: str | None = None
        self._job_status: str | None = None
        self._log_ids: set[str] = set()
        self._log_since = 0
        self._endpoint_status: str | None = None

    def _say(self, text: str) -> None:
        elapsed = time.monotonic() - self._started
        self.out(f"  [{int(elapsed) // 60:02d}:{int(elapsed) % 60:02d}] {text}")

    def poll(self) -> dict[str, Any]:
        """One round of updates; returns the execution's description."""
        sfn = self.conn.client("stepfunctions")
        description = sfn.describe_execution(executionArn=self.execution_arn)
        events = execution_events(self.conn, self.execution_arn)
        for event in events[self._seen_events :]:
            self._state_event(event)
        self._seen_events = len(events)
        self.events = events
        self._training(description)
        self._endpoint()
        return description

    def _state_event(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind.endswith("StateEntered"):
            name = event["stateEnteredEventDetails"]["name"]
            if name not in self._entered:  # polling loops re-enter: announce once
                self._entered.add(name)
                self._say(f"-> {name}")
        for key in ("taskFailedEventDetails", "executionFailedEventDetails"):
            details = event.get(key)
            if details:
                text = failure_text(details.get("error"), readable_cause(details.get("cause")))
                self._say(f"!! {text[:300]}")

    def _training(self, description: dict[str, Any]) -> None:
        if self._job is None:
            job = training_job_of(self.conn, description)
            if job is None:
                return
            self._job = job["TrainingJobName"]
            count = job["ResourceConfig"]["InstanceCount"]
            self._say(f"training job {self._job} on {count} instance(s)")
        sm = self.conn.client("sagemaker")
        status = sm.describe_training_job(TrainingJobName=self._job)["TrainingJobStatus"]
        if status != self._job_status:
            self._job_status = status
            self._say(f"training job {status}")
        self._training_logs()

    def _training_logs(self) -> None:
        logs = self.conn.client("logs")
        try:
            streams = logs.describe_log_streams(
                logGroupName=TRAINING_LOG_GROUP, logStreamNamePrefix=f"{self._job}/"
            )["logStreams"]
            if not streams:
                return
            events = logs.filter_log_events(
                logGroupName=TRAINING_LOG_GROUP,
                logStreamNames=[stream["logStreamName"] for stream in streams],
                startTime=self._log_since,
            )["events"]
        except logs.exceptions.ResourceNotFoundException:
            return
        for event in sorted(events, key=lambda e: (e["timestamp"], e["eventId"])):
            if event["eventId"] in self._log_ids:
                continue
            self._log_ids.add(event["eventId"])
            self._log_since = max(self._log_since, event["timestamp"])
            message = event["message"].rstrip()
            if any(marker in message for marker in _SHOWN_LINES):
                host = event["logStreamName"].split("/", 1)[-1].split("-")[0:2]
                self._say(f"{'-'.join(host)}: {message}")

    def _endpoint(self) -> None:
        if not self.endpoint_name:
            return
        sm = self.conn.client("sagemaker")
        try:
            endpoint = sm.describe_endpoint(EndpointName=self.endpoint_name)
        except sm.exceptions.ClientError:
            return
        status = endpoint["EndpointStatus"]
        if status != self._endpoint_status:
            self._endpoint_status = status
            self._say(f"endpoint {self.endpoint_name}: {status} ({endpoint['EndpointConfigName']})")

    def follow(
        self, timeout: float, interval: float = 1.0, end_check: float = 0.1
    ) -> dict[str, Any]:
        """Poll until the execution ends (or ``timeout`` seconds); returns its description.

        A full round of updates (history, job, logs, endpoint) every ``interval`` s; in
        between, only the execution's status every ``end_check`` s (one cheap call), so
        the end is noticed within that, not within a whole interval."""
        deadline = time.monotonic() + timeout
        sfn = self.conn.client("stepfunctions")
        while True:
            description = self.poll()
            if description["status"] != "RUNNING":
                return description
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.execution_arn} still running after {timeout:.0f} s")
            next_round = time.monotonic() + interval
            while (remaining := next_round - time.monotonic()) > 0:
                time.sleep(min(end_check, remaining))
                status = sfn.describe_execution(executionArn=self.execution_arn)["status"]
                if status != "RUNNING":
                    break  # a last full round shows how it ended


def wait_for_execution(
    conn: Connection, state_machine_arn: str, after: datetime.datetime, timeout: float
) -> str:
    """The ARN of the first execution started after ``after`` (the trigger's)."""
    sfn = conn.client("stepfunctions")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        executions = sfn.list_executions(stateMachineArn=state_machine_arn)["executions"]
        fresh = [e for e in executions if e["startDate"] >= after]
        if fresh:
            return min(fresh, key=lambda e: e["startDate"])["executionArn"]
        time.sleep(0.05)
    raise TimeoutError(f"no execution of {state_machine_arn} started within {timeout:.0f} s")
