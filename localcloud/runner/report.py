"""What a run produced, read back through the AWS APIs: the execution, its training job,
the endpoint, its autoscaling, and where the time went."""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from localcloud.runner import run_cost
from localcloud.runner.execution_history import duration, failure_text, readable_cause
from localcloud.runtime.connection import Connection


def execution_events(conn: Connection, execution_arn: str) -> list[dict[str, Any]]:
    pages = conn.client("stepfunctions").get_paginator("get_execution_history")
    return [e for page in pages.paginate(executionArn=execution_arn) for e in page["events"]]


def run_output(description: Mapping[str, Any]) -> dict[str, Any]:
    """The execution's output (the run's summary), or {} while it runs or if it failed."""
    try:
        output = json.loads(description.get("output") or "{}")
    except ValueError:
        return {}
    return output if isinstance(output, dict) else {}


def training_job_of(conn: Connection, description: Mapping[str, Any]) -> dict[str, Any] | None:
    """The training job this execution deployed (with tuning: the best trial), else the
    last one it started (created between its start and stop)."""
    sm = conn.client("sagemaker")
    name = run_output(description).get("training_job_name")
    if name:
        return sm.describe_training_job(TrainingJobName=name)
    start = description["startDate"]
    stop = description.get("stopDate") or datetime.datetime.now(datetime.UTC)
    jobs = sm.list_training_jobs(
        CreationTimeAfter=start - datetime.timedelta(seconds=1), SortBy="CreationTime"
    )["TrainingJobSummaries"]
    jobs = [j for j in jobs if j["CreationTime"] <= stop]
    if not jobs:
        return None
    return sm.describe_training_job(TrainingJobName=jobs[-1]["TrainingJobName"])


def final_metrics(job: Mapping[str, Any]) -> dict[str, float]:
    return {m["MetricName"]: m["Value"] for m in job.get("FinalMetricDataList", [])}


def state_spans(
    events: Sequence[Mapping[str, Any]],
) -> dict[str, list[tuple[datetime.datetime, datetime.datetime | None]]]:
    """(entered, exited) times of every state entry, by state name."""
    spans: dict[str, list[tuple[datetime.datetime, datetime.datetime | None]]] = {}
    for event in events:
        if event["type"].endswith("StateEntered"):
            name = event["stateEnteredEventDetails"]["name"]
            spans.setdefault(name, []).append((event["timestamp"], None))
        elif event["type"].endswith("StateExited"):
            name = event["stateExitedEventDetails"]["name"]
            entered, _ = spans[name][-1]
            spans[name][-1] = (entered, event["timestamp"])
    return spans


@dataclass(frozen=True)
class Timings:
    total: float
    training: float
    endpoint: float
    smoke_test: float

    @property
    def orchestration(self) -> float:
        return max(0.0, self.total - self.training - self.endpoint - self.smoke_test)

    def line(self) -> str:
        share = 100 * self.orchestration / self.total if self.total else 0.0
        return (
            f"training {duration(self.training)} | endpoint start {duration(self.endpoint)} | "
            f"smoke test {duration(self.smoke_test)} | orchestration and the rest "
            f"{duration(self.orchestration)} ({share:.0f}%) | total {duration(self.total)}"
        )


def timings(
    events: Sequence[Mapping[str, Any]],
    job: Mapping[str, Any] | None,
    endpoint: Mapping[str, Any] | None,
    total_seconds: float,
) -> Timings:
    """Split ``total_seconds`` into training (the job's own start to end), endpoint start
    (the deploy call returning to the endpoint turning InService), smoke tests (their states)
    and everything else (orchestration: polling, Lambda calls, start-up, data)."""
    spans = state_spans(events)
    training = 0.0
    if job and job.get("TrainingStartTime") and job.get("TrainingEndTime"):
        training = (job["TrainingEndTime"] - job["TrainingStartTime"]).total_seconds()
    endpoint_s = 0.0
    deployed = [end for _, end in spans.get("DeployModel", []) if end is not None]
    if deployed and endpoint and endpoint.get("EndpointStatus") == "InService":
        endpoint_s = max(0.0, (endpoint["LastModifiedTime"] - deployed[0]).total_seconds())
    smoke = sum(
        (end - start).total_seconds()
        for state in ("CanarySmokeTest", "SmokeTest")
        for start, end in spans.get(state, [])
        if end
    )
    return Timings(total_seconds, training, endpoint_s, smoke)


def _seconds(start: datetime.datetime | None, end: datetime.datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def orchestration_parts(
    marks: Mapping[str, datetime.datetime],
    description: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]],
    job: Mapping[str, Any] | None,
    endpoint: Mapping[str, Any] | None,
) -> list[tuple[str, float]]:
    """Where the time outside training, the endpoint start and the smoke test went, in
    the order it was spent: the run's own marks (``began``, ``cloud_up``, ``data_ready``,
    ``uploaded``, ``followed``, ``classified``, ``summarised``: wall-clock times) joined
    to the execution's events and the job's and endpoint's times. A part whose times are
    missing (no job, a failed run) is left out."""
    spans = state_spans(events)

    def entered(state: str) -> datetime.datetime | None:
        return spans[state][0][0] if spans.get(state) else None

    def exited(state: str) -> datetime.datetime | None:
        return spans[state][-1][1] if spans.get(state) else None

    job = job or {}
    in_service = (endpoint or {}).get("LastModifiedTime")
    if (endpoint or {}).get("EndpointStatus") != "InService":
        in_service = None
    ready = max(marks["cloud_up"], marks.get("data_ready", marks["cloud_up"]))
    parts = [
        ("local cloud start", _seconds(marks["began"], marks["cloud_up"])),
        ("data set (after the start)", _seconds(marks["cloud_up"], ready)),
        ("upload and trigger", _seconds(ready, description["startDate"])),
        ("to the job's start (PrepareRun, StartTraining)",
         _seconds(description["startDate"], job.get("TrainingStartTime"))),
        ("job's end noticed", _seconds(job.get("TrainingEndTime"), entered("QualityGate"))),
        ("gate, registry, lock, deploy call",
         _seconds(entered("QualityGate"), exited("DeployModel"))),
        ("endpoint InService noticed", _seconds(in_service, entered("SmokeTest"))),
        ("autoscaling, lock release, summary",
         _seconds(exited("SmokeTest"), description.get("stopDate"))),
        ("execution end noticed", _seconds(description.get("stopDate"), marks.get("followed"))),
        ("classification", _seconds(marks.get("followed"), marks.get("classified"))),
        ("summary", _seconds(marks.get("classified"), marks.get("summarised"))),
    ]  # fmt: skip
    return [(name, seconds) for name, seconds in parts if seconds is not None]


def tuning_lines(tuning: Mapping[str, Any] | None) -> list[str]:
    """The run's tuning job, its best objective and its trials (from the run's summary)."""
    if not tuning:
        return []
    trials = {k: v for k, v in (tuning.get("trials") or {}).items() if v}
    counts = ", ".join(f"{v} {k}" for k, v in trials.items())
    best = tuning.get("best_objective")
    value = f"{best:.4f}" if isinstance(best, int | float) else "-"
    return [
        f"  Tuning       {tuning['tuning_job_name']}: best {tuning.get('objective_metric')}="
        f"{value} of {sum(trials.values())} trials ({counts})"
    ]


def describe_endpoint(conn: Connection, name: str) -> dict[str, Any] | None:
    sm = conn.client("sagemaker")
    try:
        return sm.describe_endpoint(EndpointName=name)
    except sm.exceptions.ClientError:
        return None


def autoscaling_lines(conn: Connection, endpoint: Mapping[str, Any]) -> list[str]:
    aas = conn.client("application-autoscaling")
    lines = []
    for variant in endpoint.get("ProductionVariants", []):
        resource = f"endpoint/{endpoint['EndpointName']}/variant/{variant['VariantName']}"
        targets = aas.describe_scalable_targets(
            ServiceNamespace="sagemaker", ResourceIds=[resource]
        )["ScalableTargets"]
        policies = aas.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=resource)[
            "ScalingPolicies"
        ]
        for target in targets:
            lines.append(f"{resource}: {target['MinCapacity']}..{target['MaxCapacity']} instances")
        for policy in policies:
            config = policy.get("TargetTrackingScalingPolicyConfiguration", {})
            metric = config.get("PredefinedMetricSpecification", {}).get(
                "PredefinedMetricType", "custom metric"
            )
            lines.append(
                f"policy {policy['PolicyName']}: {policy['PolicyType']} "
                f"{metric} target {config.get('TargetValue')}"
            )
        if not targets:
            lines.append(f"{resource}: no scalable target")
    return lines


def summary(
    conn: Connection,
    description: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]],
    endpoint_name: str | None,
    total_seconds: float,
) -> tuple[str, Timings]:
    job = training_job_of(conn, description)
    endpoint = describe_endpoint(conn, endpoint_name) if endpoint_name else None
    spent = timings(events, job, endpoint, total_seconds)
    started, stopped = description["startDate"], description.get("stopDate")
    took = duration((stopped - started).total_seconds()) if stopped else "-"
    lines = ["Summary", f"  Execution    {description['name']}: {description['status']} in {took}"]
    if description.get("error"):
        failure = failure_text(description["error"], readable_cause(description.get("cause")))
        lines.append(f"               {failure}")
    if job:
        resources = job["ResourceConfig"]
        metrics = " ".join(f"{k}={v:.4f}" for k, v in sorted(final_metrics(job).items()))
        lines.append(
            f"  Training     {job['TrainingJobName']}: {job['TrainingJobStatus']}, "
            f"{resources['InstanceCount']} x {resources['InstanceType']}, "
            f"{job.get('TrainingTimeInSeconds', '-')} s"
        )
        if metrics:
            lines.append(f"               {metrics}")
        if job.get("FailureReason"):
            lines.append(f"               {job['FailureReason']}")
    else:
        lines.append("  Training     no training job")
    lines += tuning_lines(run_output(description).get("tuning"))
    if endpoint:
        variants = ", ".join(
            f"{v['VariantName']} {v.get('CurrentInstanceCount', '?')} instance(s)"
            for v in endpoint.get("ProductionVariants", [])
        )
        lines.append(
            f"  Endpoint     {endpoint['EndpointName']}: {endpoint['EndpointStatus']}, "
            f"config {endpoint['EndpointConfigName']}, {variants}"
        )
        lines += [f"  Autoscaling  {line}" for line in autoscaling_lines(conn, endpoint)]
    elif endpoint_name:
        lines.append(f"  Endpoint     {endpoint_name}: does not exist")
    lines.append(f"  Timings      {spent.line()}")
    lines.append("  On AWS it would cost (estimate)")
    lines += ["  " + line for line in run_cost.for_run(conn, events, job, endpoint)]
    return "\n".join(lines), spent


def cost_estimate(
    conn: Connection, description: Mapping[str, Any], events: Sequence[Mapping[str, Any]]
) -> list[str]:
    """What the execution would cost on AWS (``run_cost.for_run``), from the training job
    and the endpoint it left: what ``history`` prints and the console shows."""
    endpoint_name = run_output(description).get("endpoint_name")
    endpoint = describe_endpoint(conn, endpoint_name) if endpoint_name else None
    return run_cost.for_run(conn, events, training_job_of(conn, description), endpoint)
