"""What `up` prints while it runs: the events a user waits for, one line each (a run starts
or ends, a model version is registered or changes status, the endpoint changes state or
instance count), read from the local cloud's APIs as a console would."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from localcloud.runner.execution_history import failure_text
from localcloud.runtime.connection import Connection


@dataclass(frozen=True)
class Snapshot:
    executions: Mapping[str, str] = field(default_factory=dict)  # name -> status
    versions: Mapping[int, str] = field(default_factory=dict)  # version -> approval status
    endpoint: tuple[str, int] | None = None  # status, instances


def take(conn: Connection, outputs: Mapping[str, Any]) -> Snapshot:
    """The stack's executions, model versions and endpoint, now."""
    sfn = conn.client("stepfunctions")
    pages = sfn.get_paginator("list_executions").paginate(stateMachineArn=conn.the_state_machine())
    executions = {e["name"]: e["status"] for page in pages for e in page["executions"]}
    versions: dict[int, str] = {}
    group = outputs.get("ModelPackageGroupName")
    sagemaker = conn.client("sagemaker")
    if group:
        try:
            listed = sagemaker.list_model_packages(ModelPackageGroupName=group, MaxResults=100)
        except ClientError:  # no version yet: the group is created by the first registration
            listed = {}
        for package in listed.get("ModelPackageSummaryList", []):
            versions[int(package.get("ModelPackageVersion", 0))] = package["ModelApprovalStatus"]
    endpoint = None
    name = outputs.get("EndpointName")
    if name:
        try:
            described = sagemaker.describe_endpoint(EndpointName=name)
        except ClientError:  # not deployed yet
            described = None
        if described:
            variants = described.get("ProductionVariants") or [{}]
            instances = sum(int(v.get("CurrentInstanceCount") or 0) for v in variants)
            endpoint = (described["EndpointStatus"], instances)
    return Snapshot(executions, versions, endpoint)


def changes(
    before: Snapshot,
    after: Snapshot,
    endpoint_name: str = "endpoint",
    cause: Callable[[str], str] = lambda name: "",
) -> list[str]:
    """One line per event between two snapshots; ``cause(name)`` explains a failed run."""
    lines = []
    for name, status in after.executions.items():
        old = before.executions.get(name)
        if old is None:
            lines.append(f"run {name} started")
        if status != "RUNNING" and status != old:
            why = cause(name) if status == "FAILED" else ""
            lines.append(f"run {name} {status}" + (f": {why}" if why else ""))
    for version, status in sorted(after.versions.items()):
        old = before.versions.get(version)
        if old is None:
            lines.append(f"model version {version} registered: {status}")
        elif old != status:
            lines.append(f"model version {version}: {old} -> {status}")
    if after.endpoint is not None and after.endpoint != before.endpoint:
        status, instances = after.endpoint
        plural = "" if instances == 1 else "s"
        lines.append(f"endpoint {endpoint_name}: {status}, {instances} instance{plural}")
    return lines


class Activity:
    """Polls the stack and yields the lines of what happened since the last poll."""

    def __init__(self, conn: Connection, outputs: Mapping[str, Any]) -> None:
        self.conn, self.outputs = conn, outputs
        self.last = take(conn, outputs)

    def poll(self) -> list[str]:
        now = take(self.conn, self.outputs)
        lines = changes(self.last, now, str(self.outputs.get("EndpointName")), self._cause)
        self.last = now
        return lines

    def _cause(self, name: str) -> str:
        arn = self.conn.the_state_machine().replace(":stateMachine:", ":execution:") + f":{name}"
        described = self.conn.client("stepfunctions").describe_execution(executionArn=arn)
        return failure_text(described.get("error"), described.get("cause"))
