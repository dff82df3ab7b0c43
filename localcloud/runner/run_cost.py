"""What a run would have cost on AWS: its own usage, priced by the dated table the
``make verify-aws`` estimate uses (tools/prices.json; never fetched at run time).

The usage is read from what the run left: the training job's billable seconds (a tuning
job's: all its trials') and
instances (so spot savings show once training is billed below its run time), every Lambda
invocation's duration and its function's memory, the state transitions of the execution,
and the endpoint's instances, priced per hour since it serves until deleted.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tools.costs import Prices, UnknownPrice, Usage, estimate, render

_STARTS = ("LambdaFunctionStarted", "TaskStarted")
_ENDS = (
    "LambdaFunctionSucceeded",
    "LambdaFunctionFailed",
    "LambdaFunctionTimedOut",
    "TaskSucceeded",
    "TaskFailed",
    "TaskTimedOut",
)


def _function_of(event: Mapping[str, Any]) -> str | None:
    """The function a Task or Lambda state invoked, from its Scheduled event."""
    details = event.get("lambdaFunctionScheduledEventDetails")
    if details:
        return str(details.get("resource", "")).rsplit(":", 1)[-1] or None
    details = event.get("taskScheduledEventDetails") or {}
    if details.get("resourceType") != "lambda":
        return None
    try:
        parameters = json.loads(details.get("parameters") or "{}")
    except ValueError:
        return None
    name = str(parameters.get("FunctionName", ""))
    return name.split(":function:")[-1].split(":")[0] or None


def lambda_usage(
    events: Sequence[Mapping[str, Any]], memory_mb: Callable[[str], int]
) -> tuple[int, float]:
    """(invocations, GB-seconds) of the Lambda functions the execution ran."""
    requests, gb_seconds = 0, 0.0
    function: str | None = None
    started: datetime.datetime | None = None
    for event in events:
        kind = event["type"]
        if kind in ("LambdaFunctionScheduled", "TaskScheduled"):
            function, started = _function_of(event), None
        elif kind in _STARTS and function:
            started = event["timestamp"]
            requests += 1
        elif kind in _ENDS and function and started is not None:
            seconds = (event["timestamp"] - started).total_seconds()
            gb_seconds += max(seconds, 0.001) * memory_mb(function) / 1024
            function, started = None, None
    return requests, gb_seconds


def transitions(events: Sequence[Mapping[str, Any]]) -> int:
    """State transitions, as Step Functions bills a standard workflow: one per state entered."""
    return sum(1 for e in events if e["type"].endswith("StateEntered"))


def cost_lines(
    events: Sequence[Mapping[str, Any]],
    job: Mapping[str, Any] | None,
    endpoint: Mapping[str, Any] | None,
    endpoint_instance_type: str | None,
    memory_mb: Callable[[str], int],
    prices: Prices | None = None,
) -> list[str]:
    """The run's cost on AWS, one line per meter, then the endpoint's hourly rate."""
    prices = prices or Prices.load()
    requests, gb_seconds = lambda_usage(events, memory_mb)
    resources = (job or {}).get("ResourceConfig") or {}
    billable = float((job or {}).get("BillableTimeInSeconds") or 0)
    usage = Usage(
        training_instance_type=str(resources.get("InstanceType", "ml.m5.xlarge")),
        training_instances=int(resources.get("InstanceCount", 0)),
        training_minutes=round(billable / 60, 2),
        endpoint_instance_type=endpoint_instance_type or "ml.m5.large",
        endpoint_instances=0,  # priced per hour below: it serves until deleted
        endpoint_minutes=0,
        lambda_gb_seconds=round(gb_seconds, 1),
        lambda_requests=requests,
        state_transitions=transitions(events),
    )
    try:
        lines = render(estimate(usage, prices), prices).splitlines()
        if endpoint and endpoint_instance_type:
            count = sum(
                int(v.get("CurrentInstanceCount") or 0)
                for v in endpoint.get("ProductionVariants") or []
            )
            hourly = count * prices.hourly("hosting", endpoint_instance_type)
            lines.append(
                f"  and the endpoint: {count} x {endpoint_instance_type} at "
                f"${hourly:.3f}/h (${hourly * 24 * 30:.0f} a month) until it is deleted"
            )
    except UnknownPrice as exc:
        return [f"  {exc}"]
    return lines


def for_run(
    conn: Any,
    events: Sequence[Mapping[str, Any]],
    job: Mapping[str, Any] | None,
    endpoint: Mapping[str, Any] | None,
) -> list[str]:
    """``cost_lines`` with the functions' memory and the endpoint's instance type read
    from the local cloud."""
    memory: dict[str, int] = {}
    lam = conn.client("lambda")

    def memory_mb(name: str) -> int:
        if name not in memory:
            memory[name] = int(lam.get_function_configuration(FunctionName=name)["MemorySize"])
        return memory[name]

    try:
        if job and job.get("TuningJobArn"):  # every trial of the tuning job is billed
            job = {**job, "BillableTimeInSeconds": tuning_billable_seconds(conn, job)}
        instance_type = None
        if endpoint and endpoint.get("EndpointConfigName"):
            config = conn.client("sagemaker").describe_endpoint_config(
                EndpointConfigName=endpoint["EndpointConfigName"]
            )
            variants = config.get("ProductionVariants") or [{}]
            instance_type = variants[0].get("InstanceType")
        return cost_lines(events, job, endpoint, instance_type, memory_mb)
    except (ClientError, BotoCoreError) as exc:  # a summary line, never a failed summary
        return [f"  not estimated: {exc}"]


def tuning_billable_seconds(conn: Any, job: Mapping[str, Any]) -> float:
    """The billable seconds of every training job of ``job``'s tuning job (its trials run
    on the same instances, so they add up as one job's would)."""
    sm = conn.client("sagemaker")
    name = job["TuningJobArn"].rsplit("/", 1)[-1]
    pages = sm.get_paginator("list_training_jobs_for_hyper_parameter_tuning_job")
    trials = [
        t["TrainingJobName"]
        for page in pages.paginate(HyperParameterTuningJobName=name)
        for t in page["TrainingJobSummaries"]
    ]
    return sum(
        float(sm.describe_training_job(TrainingJobName=t).get("BillableTimeInSeconds") or 0)
        for t in trials
    )
