"""The deployment's invariants (docs/architecture.md, "Invariants"), checked against an
in-process cloud (invariants_support.py) by test_invariants.py's state machine and by
``python -m bench.invariants``.

``Observer`` keeps what the test did and what the executions did, and ``violations()``
says, in one line each, which invariant the cloud's state breaks now.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from tests.localcloud.invariants_support import Cloud, executions, model_of

NOT_IN_A_CAUSE = ("Traceback", "stackTrace", 'File "', "errorType", "\n")


@dataclass
class Run:
    """One finished execution, as the invariants read it."""

    arn: str
    status: str
    cause: str
    states: list[str]
    failed_state: str | None  # the last Task whose error was not retried away, if any
    artifact: str | None  # the model it deployed or tried to deploy
    package: str | None
    mode: str  # ApprovalMode when it ran


@dataclass
class Observer:
    cloud: Cloud
    # invariants not checked (a test's budget while a known finding is open)
    tolerate: frozenset[str] = frozenset()
    mode: str = "auto"
    verified: str | None = None  # artifact of the last run that deployed and verified
    verified_package: str | None = None
    unverified: str | None = None  # what a stopped run may have left serving
    human_approved: set[str] = field(default_factory=set)
    runs: dict[str, Run] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)  # artifact -> its test accuracy
    replaced: list[tuple[str, str]] = field(default_factory=list)  # (old, new) verified

    # --- reading the cloud ---------------------------------------------------------------

    def _history(self, arn: str) -> list[dict[str, Any]]:
        sfn = self.cloud.client("stepfunctions")
        return sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]

    def _read_run(self, arn: str) -> Run:
        sfn = self.cloud.client("stepfunctions")
        described = sfn.describe_execution(executionArn=arn)
        history = self._history(arn)
        states: list[str] = []
        failed_state = None
        artifact = package = None
        current = None
        for event in history:
            if event["type"].endswith("StateEntered"):
                current = event["stateEnteredEventDetails"]["name"]
                states.append(current)
                details = json.loads(event["stateEnteredEventDetails"].get("input") or "{}")
                if current == "DeployModel" and isinstance(details, dict):
                    registry = details.get("registry") or {}
                    package = registry.get("model_package_arn")
                    artifact = (details.get("training") or {}).get("model_artifact")
            if event["type"] in ("LambdaFunctionFailed", "LambdaFunctionTimedOut", "TaskFailed"):
                failed_state = current
            elif event["type"] == "LambdaFunctionSucceeded" and current == failed_state:
                failed_state = None  # a retry of the state succeeded: it did not fail
        return Run(
            arn=arn,
            status=described["status"],
            cause=described.get("cause") or "",
            states=states,
            failed_state=failed_state,
            artifact=artifact,
            package=package,
            mode=self.mode,
        )

    def served(self) -> str | None:
        """The artifact the endpoint's live config serves (None: no endpoint)."""
        model = self._served_model()
        if model is None:
            return None
        container = model.get("PrimaryContainer") or model["Containers"][0]
        return str(container["ModelDataUrl"])

    def served_package(self) -> str | None:
        """The registry version the live model was created from (None: none, or no model)."""
        model = self._served_model()
        containers = (model or {}).get("Containers") or [{}]
        return containers[0].get("ModelPackageName")

    def _served_model(self) -> dict[str, Any] | None:
        sagemaker = self.cloud.client("sagemaker")
        try:
            endpoint = sagemaker.describe_endpoint(EndpointName=self.cloud.endpoint)
        except ClientError:
            return None
        config = sagemaker.describe_endpoint_config(
            EndpointConfigName=endpoint["EndpointConfigName"]
        )
        return dict(
            sagemaker.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
        )

    def settle(self, timeout: float = 60) -> str:
        """Wait (bounded) until the endpoint is no longer changing; its status."""
        sagemaker = self.cloud.client("sagemaker")
        deadline = time.monotonic() + timeout
        while True:
            try:
                status = sagemaker.describe_endpoint(EndpointName=self.cloud.endpoint)[
                    "EndpointStatus"
                ]
            except ClientError:
                return "none"
            if status in ("InService", "Failed", "UpdateRollbackFailed", "OutOfService"):
                return str(status)
            assert time.monotonic() < deadline, f"endpoint still {status} after {timeout} s"
            time.sleep(0.05)

    def packages(self) -> list[dict[str, Any]]:
        sagemaker = self.cloud.client("sagemaker")
        summaries = sagemaker.list_model_packages(
            ModelPackageGroupName=self.cloud.group, MaxResults=100
        )["ModelPackageSummaryList"]
        return [
            sagemaker.describe_model_package(ModelPackageName=s["ModelPackageArn"])
            for s in summaries
        ]

    # --- after each step ------------------------------------------------------------------

    def record(self) -> list[Run]:
        """Read the executions that ended since the last step, in the order they ended, and
        update what the endpoint may serve; returns them."""
        new = []
        for summary in executions(self.cloud):
            if summary["executionArn"] in self.runs or summary["status"] == "RUNNING":
                continue
            run = self._read_run(summary["executionArn"])
            run.mode = self.mode
            self.runs[run.arn] = run
            new.append((summary.get("stopDate"), run))
        ordered = [run for _, run in sorted(new, key=lambda pair: pair[0])]
        for run in ordered:
            deployed = "DeployModel" in run.states
            if run.artifact and run.artifact not in self.scores:
                self.scores[run.artifact] = float(model_of(self.cloud, run.artifact)["test_acc"])
            if run.status == "SUCCEEDED" and "ReleaseLock" in run.states:
                if self.verified and run.artifact and run.artifact != self.verified:
                    self.replaced.append((self.verified, run.artifact))
                self.verified, self.unverified = run.artifact, None
                self.verified_package = run.package
            elif run.status in ("ABORTED", "TIMED_OUT") and deployed:
                self.unverified = run.artifact  # a stop cannot roll back
            elif deployed:
                self.unverified = None  # a later deploy must leave the verified one
        return ordered

    def violations(self) -> list[str]:
        found: list[str] = []
        status = self.settle()
        served = self.served()
        allowed = {self.verified, self.unverified} - {None}
        if served is None and self.verified is not None:
            found.append(f"serves-last-verified: no endpoint, but {self.verified} was verified")
        if served is not None and served not in allowed:
            live = model_of(self.cloud, served).get("version")
            found.append(
                f"serves-last-verified: the endpoint serves {live} ({served}), the last "
                f"verified model is {self.verified}"
            )
        packages = {p["ModelPackageArn"]: p for p in self.packages()}
        if served is not None:
            package = packages.get(self.served_package() or "")
            approval = package["ModelApprovalStatus"] if package else "unregistered"
            if approval != "Approved":
                found.append(f"only-approved-serves: the endpoint serves a {approval} model")
        found += self._registry(packages)
        for old, new in self.replaced:
            if self.scores[new] < self.scores[old]:
                found.append(
                    f"never-worse: a model of test accuracy {self.scores[new]} replaced one of "
                    f"{self.scores[old]}"
                )
        found += self._lock()
        found += self._causes()
        if status == "InService":
            found += self._autoscaling()
        return [f for f in found if f.split(":", 1)[0] not in self.tolerate]

    def _registry(self, packages: dict[str, dict[str, Any]]) -> list[str]:
        found = []
        for run in self.runs.values():
            by_training = "DeployModel" in run.states and "UseApprovedPackage" not in run.states
            if run.mode == "manual" and by_training and run.package not in self.human_approved:
                found.append(
                    "registry-says-what-happened: a training run in manual mode deployed "
                    f"{run.package} that no person approved"
                )
        verified = packages.get(self.verified_package or "")
        if verified and verified["ModelApprovalStatus"] != "Approved":
            found.append(
                "registry-says-what-happened: the verified live model's version is "
                f"{verified['ModelApprovalStatus']}"
            )
        return found

    def _lock(self) -> list[str]:
        """A stopped execution cannot release the lock (no state runs after a stop): its
        lock is stale and the next run takes it over, so only a live holder's counts."""
        if executions(self.cloud, "RUNNING"):
            return []
        items = self.cloud.client("dynamodb").scan(TableName=self.cloud.lock_table)["Items"]
        sfn = self.cloud.client("stepfunctions")
        found = []
        for item in items:
            holder = item["holder"]["S"]
            status = sfn.describe_execution(executionArn=holder)["status"]
            if status != "ABORTED":
                found.append(f"no-lock-without-a-run: the lock is held by {holder} ({status})")
        return found

    def _causes(self) -> list[str]:
        found = []
        for run in self.runs.values():
            if run.status != "FAILED":
                continue
            cause = run.cause.strip()
            bad = [word for word in NOT_IN_A_CAUSE if word in cause]
            if not cause or bad or len(cause) > 600:
                found.append(f"one-sentence-cause: {run.arn} failed with cause {cause[:200]!r}")
            state = run.failed_state
            if state and state not in cause:
                found.append(
                    f"cause-names-the-state: the run failed in {state}; its cause "
                    f"{cause[:160]!r} does not say so"
                )
        return found

    def _autoscaling(self) -> list[str]:
        if self.verified is None:
            return []
        targets = self.cloud.client("application-autoscaling").describe_scalable_targets(
            ServiceNamespace="sagemaker"
        )["ScalableTargets"]
        wanted = f"endpoint/{self.cloud.endpoint}/variant/"
        if not any(t["ResourceId"].startswith(wanted) for t in targets):
            return ["autoscaling-attached: the endpoint is InService with no scalable target"]
        return []
