"""``python -m localcloud demo canary``: the canary and its alarm rollback, shown to a person.

It starts a local cloud, trains and deploys model A (an upload, as ``run`` does), then sends
steady traffic through the HTTP API (held-out JPEGs and the same images as PNGs) and:

1. retrains on the same data with another seed (model B, the pipeline's own path: gates,
   registry, canary): B takes a canary share next to A, passes the smoke test and takes
   all traffic;
2. registers model C, A's weights with a new ``code/inference.py`` that only decodes JPEG
   (``localcloud.cli.model_version_builder``), and approves it: its canary fails the PNG requests
   routed to it, the endpoint's 5XX alarm goes into ALARM and SageMaker rolls C back; B answers
   throughout.

While each run goes on it prints the states, the endpoint's status and deployment stage,
the alarms' state changes and, every few seconds, which model answered the last requests
(recognised by their answers: ``localcloud.cli.probe_traffic``); then a summary. Everything stops at
the end, on an error or on Ctrl-C.
"""

from __future__ import annotations

import datetime
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localcloud.cli import model_version_builder, probe_traffic
from localcloud.runner.pipeline_run import CliError, dataset_prefix, prepare_dataset, upload
from localcloud.runner.progress import Follower, wait_for_execution
from localcloud.runtime.connection import Connection
from localcloud.runtime.launcher import LocalCloudProcess
from localcloud.runtime.settings import Settings

Out = Callable[[str], None]
RUN_TIMEOUT_S = 1800.0
TRIGGER_WAIT_S = 30.0
SHARE_EVERY_S = 3.0  # while the endpoint deploys
QUIET_SHARE_EVERY_S = 15.0  # otherwise
FOLLOW_EVERY_S = 1.0  # the execution's history and training logs
QUICK_EVERY_S = 0.2  # the endpoint's deployment stage and the alarms
PROBE_IMAGES = 3


@dataclass
class Phase:
    """One model's run: what it was, how it ended, what the traffic saw meanwhile."""

    label: str
    what: str
    execution_arn: str = ""
    status: str = ""
    cause: str = ""
    endpoint_config: str = ""
    shares: dict[str, int] = field(default_factory=dict)
    alarms: list[str] = field(default_factory=list)


class Watch:
    """Follows one execution: the Follower's lines, plus the deployment stage, the stack's
    alarms and the traffic's shares as they change."""

    def __init__(
        self,
        conn: Connection,
        arn: str,
        *,
        endpoint_name: str,
        stack_name: str,
        flow: probe_traffic.Traffic | None,
        prints: probe_traffic.Fingerprints,
        candidate: str,
        out: Out,
    ) -> None:
        self.conn, self.arn, self.endpoint_name = conn, arn, endpoint_name
        self.stack_name, self.flow, self.prints = stack_name, flow, prints
        self.candidate, self.out = candidate, out
        self.follower = Follower(conn, arn, endpoint_name=endpoint_name, out=out)
        self._stage: str | None = None
        self._alarms: dict[str, str] = {}
        self.tripped: list[str] = []
        self.deploying_since: float | None = None  # the endpoint's update began
        self.started = time.monotonic()
        self._shares_at = self.started

    def say(self, text: str) -> None:
        self.follower._say(text)

    def alarm_states(self) -> dict[str, tuple[str, str]]:
        found = self.conn.client("cloudwatch").describe_alarms(
            AlarmNamePrefix=f"{self.stack_name}-"
        )["MetricAlarms"]
        return {a["AlarmName"]: (a["StateValue"], a.get("StateReason", "")) for a in found}

    def prime(self) -> None:
        """Remember the alarms' current states (only changes are shown)."""
        self._alarms = {name: state for name, (state, _) in self.alarm_states().items()}

    def poll(self) -> dict[str, Any]:
        """The Follower's round (history, training logs), then the quick checks until
        ``FOLLOW_EVERY_S`` passed: a canary that fails may last a second or two."""
        description = self.follower.poll()
        until = time.monotonic() + FOLLOW_EVERY_S
        while True:
            self._deployment()
            self._alarm_changes()
            every = SHARE_EVERY_S if self._stage else QUIET_SHARE_EVERY_S
            if self.flow is not None and time.monotonic() - self._shares_at >= every:
                self._shares()
            if description["status"] != "RUNNING" or time.monotonic() >= until:
                return description
            time.sleep(QUICK_EVERY_S)

    def _deployment(self) -> None:
        sm = self.conn.client("sagemaker")
        try:
            endpoint = sm.describe_endpoint(EndpointName=self.endpoint_name)
        except sm.exceptions.ClientError:  # not created yet
            return
        pending = endpoint.get("PendingDeploymentSummary") or {}
        stage = None
        for variant in pending.get("ProductionVariants", []):
            for status in variant.get("VariantStatus", []):
                stage = f"{status.get('Status')}: {status.get('StatusMessage', '')}".strip()
        if stage is None and endpoint["EndpointStatus"] == "RollingBack":
            stage = "RollingBack"
        if stage and stage != self._stage:
            self.say(f"deployment: {stage}")
            if self.deploying_since is None:
                self.deploying_since = time.monotonic()
        self._stage = stage

    def _alarm_changes(self) -> None:
        for name, (state, reason) in self.alarm_states().items():
            before = self._alarms.get(name)
            self._alarms[name] = state
            if before is None or before == state:
                continue
            self.say(f"alarm {name}: {before} -> {state}")
            if state == "ALARM":
                self.tripped.append(name)
                self.say(f"   {reason[:200]}")

    def _shares(self) -> None:
        assert self.flow is not None
        now = time.monotonic()
        window = self.flow.answers(since=self._shares_at, until=now)
        seconds, self._shares_at = now - self._shares_at, now
        counts = self.prints.shares(window, unknown_as=self.candidate)
        self.say(f"answered, last {seconds:.0f} s: {probe_traffic.describe_shares(counts)}")

    def follow(self, timeout: float = RUN_TIMEOUT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            description = self.poll()
            if description["status"] != "RUNNING":
                if self.flow is not None:
                    self._shares()
                return description
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.arn} still running after {timeout:.0f} s")


def start_retraining(conn: Connection, dataset_uri: str, seed: int) -> str:
    """A run by hand on the same data set with another seed (docs/deploy.md, "Upload a data
    set")."""
    body = {"dataset": dataset_uri, "hyperparameters": {"seed": seed}}
    return conn.client("stepfunctions").start_execution(
        stateMachineArn=conn.the_state_machine(), input=json.dumps(body)
    )["executionArn"]


def deploy_repackaged(
    conn: Connection, source_arn: str, handlers: str, name: str, description: str
) -> tuple[str, str]:
    """Register ``source_arn``'s weights with ``handlers`` and approve it: (the version's ARN,
    the deploy-only execution its approval started)."""
    arn = model_version_builder.repackage(conn, source_arn, handlers, name, description)
    after = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
    model_version_builder.approve(conn, arn, f"approved by the demo: {description}"[:1000])
    return arn, wait_for_execution(conn, conn.the_state_machine(), after, TRIGGER_WAIT_S)


def probe_images(test_dir: Path, count: int = PROBE_IMAGES) -> list[Path]:
    """The last held-out image of the first ``count`` classes (the smoke set takes the
    first ones)."""
    classes = sorted(p for p in test_dir.iterdir() if p.is_dir()) if test_dir.is_dir() else []
    picks = [max(c.iterdir()) for c in classes if any(c.iterdir())][:count]
    if not picks:
        raise CliError(f"no held-out images under {test_dir}")
    return picks


def learn(
    conn: Connection,
    prints: probe_traffic.Fingerprints,
    label: str,
    probes: Sequence[probe_traffic.Probe],
) -> None:
    """Ask the endpoint once per probe image while only ``label`` serves."""
    answers = [probe_traffic.ask(conn, p) for p in probes if p.kind == "jpeg"]
    failed = [a for a in answers if not a.ok]
    if failed:
        raise CliError(f"model {label} did not answer: HTTP {failed[0].status} {failed[0].message}")
    prints.learn(label, answers)


def run_demo(settings: Settings, *, data: Path | None = None, out: Out = print) -> list[Phase]:
    """The whole demo; returns the phases (A, B, C) for the summary."""
    cloud = LocalCloudProcess(settings)
    flow: probe_traffic.Traffic | None = None
    with tempfile.TemporaryDirectory(prefix="localcloud-demo-") as tmp:
        out(f"Starting the local cloud (state in {settings.state_dir})...")
        conn = cloud.start()
        try:
            state = cloud.state
            endpoint_name = str((state.get("parameters") or {}).get("EndpointName"))
            stack = str(state.get("stack_name"))
            archive, data_dir = prepare_dataset(settings, data, Path(tmp), out)
            if data_dir is None:
                raise CliError("the demo needs a data set folder (its test/ images are the probes)")
            key = f"{dataset_prefix(state)}{archive.name}"
            watch = _watcher(conn, endpoint_name, stack, out)

            out(f"\n== Model A: upload {archive.name}, train, deploy (no canary: a new endpoint)")
            a = Phase("A", "trained on the upload")
            after = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
            upload(conn, archive, key)
            a.execution_arn = wait_for_execution(
                conn, conn.the_state_machine(), after, TRIGGER_WAIT_S
            )
            _finish(
                a,
                watch(a.execution_arn, None, probe_traffic.Fingerprints(), "A"),
                conn,
                endpoint_name,
            )
            if a.status != "SUCCEEDED":
                raise CliError(f"model A was not deployed: {a.cause}")
            a_package = model_version_builder.live_package(conn, endpoint_name)

            probes = probe_traffic.probes(probe_images(data_dir / "test"))
            prints = probe_traffic.Fingerprints()
            learn(conn, prints, "A", probes)
            flow = probe_traffic.Traffic(conn, probes)
            flow.start()
            out(
                f"\nTraffic: {len(probes) // 2} held-out JPEGs and the same images as PNGs "
                "through the HTTP API, 2 clients, until the end"
            )

            out("\n== Model B: retrain on the same data with seed 1, canary, all traffic")
            b = Phase("B", "retrained with seed 1")
            b.execution_arn = start_retraining(conn, f"s3://{conn.the_bucket()}/{key}", seed=1)
            _finish(b, watch(b.execution_arn, flow, prints, "B"), conn, endpoint_name)
            if b.status != "SUCCEEDED" or b.endpoint_config == a.endpoint_config:
                why = b.cause or "it was not deployed (the demo needs ApprovalMode=auto)"
                raise CliError(f"model B did not take the endpoint: {why}")
            learn(conn, prints, "B", probes)

            out("\n== Model C: A's weights with a code/inference.py that decodes only JPEG")
            c = Phase("C", "A + JPEG-only handlers")
            arn, c.execution_arn = deploy_repackaged(
                conn,
                a_package,
                model_version_builder.JPEG_ONLY_HANDLERS,
                "jpeg-only",
                "JPEG-only decoding",
            )
            out(f"  registered and approved {arn}")
            # C answers a JPEG as A does (A's weights); what C fails, it fails
            c_prints = probe_traffic.Fingerprints()
            c_prints.models = {"B": prints.models["B"], "C": prints.models["A"]}
            _finish(c, watch(c.execution_arn, flow, c_prints, "C"), conn, endpoint_name)
            flow.stop()
            out("\n" + summary([a, b, c], flow))
            return [a, b, c]
        finally:
            if flow is not None:
                flow.stop(timeout=5)
            out("Stopping the local cloud...")
            cloud.stop()


def _watcher(conn: Connection, endpoint_name: str, stack: str, out: Out) -> Callable[..., Watch]:
    def make(
        arn: str,
        flow: probe_traffic.Traffic | None,
        prints: probe_traffic.Fingerprints,
        candidate: str,
    ) -> Watch:
        watch = Watch(
            conn,
            arn,
            endpoint_name=endpoint_name,
            stack_name=stack,
            flow=flow,
            prints=prints,
            candidate=candidate,
            out=out,
        )
        watch.prime()
        return watch

    return make


def _finish(phase: Phase, watch: Watch, conn: Connection, endpoint_name: str) -> None:
    began = time.monotonic()
    description = watch.follow()
    phase.status = description["status"]
    phase.cause = description.get("cause") or ""
    phase.alarms = list(watch.tripped)
    endpoint = conn.client("sagemaker").describe_endpoint(EndpointName=endpoint_name)
    phase.endpoint_config = endpoint["EndpointConfigName"]
    if watch.flow is not None:
        answers = watch.flow.answers(since=watch.deploying_since or began)
        phase.shares = watch.prints.shares(answers, unknown_as=watch.candidate)
    ending = f"{phase.status}" + (f": {phase.cause}" if phase.cause else "")
    watch.say(f"model {phase.label}: {ending}")
    watch.say(f"endpoint {endpoint_name}: {endpoint['EndpointStatus']} on {phase.endpoint_config}")


def as_expected(phases: Sequence[Phase]) -> bool:
    """A and B live in turn, C rolled back by an alarm with B serving again."""
    if [p.label for p in phases] != ["A", "B", "C"]:
        return False
    a, b, c = phases
    return (
        a.status == b.status == "SUCCEEDED"
        and c.status == "FAILED"
        and bool(c.alarms)
        and c.endpoint_config == b.endpoint_config
    )


def summary(phases: Sequence[Phase], flow: probe_traffic.Traffic | None) -> str:
    lines = ["Summary"]
    for phase in phases:
        shares = probe_traffic.describe_shares(phase.shares) if phase.shares else "-"
        lines.append(f"  model {phase.label} ({phase.what}): {phase.status}")
        lines.append(f"    answers while it deployed: {shares}")
        if phase.alarms:
            lines.append(f"    alarms that went into ALARM: {', '.join(phase.alarms)}")
        if phase.cause:
            lines.append(f"    cause: {phase.cause[:400]}")
        lines.append(f"    endpoint afterwards: {phase.endpoint_config}")
    if flow is not None:
        counts = probe_traffic.summary(flow.answers())
        lines.append(
            f"  traffic: {counts['requests']} requests, {counts['failed']} failed "
            f"(JPEG {counts['jpeg']['failed']}/{counts['jpeg']['requests']}, "
            f"PNG {counts['png']['failed']}/{counts['png']['requests']})"
        )
    return "\n".join(lines)
