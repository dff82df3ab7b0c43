"""The SageMaker side of the console: training jobs (status, hosts, log, per-epoch metrics),
endpoints (config, variants, instances, scaling, invocations and errors per minute) and the
model registry, read through the SageMaker, CloudWatch Logs, CloudWatch and Application
Auto Scaling APIs."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from botocore.client import BaseClient
from botocore.exceptions import ClientError

from localcloud.console import plots
from localcloud.console.data import (
    ENDPOINT_LOG_GROUP,
    LOG_TAIL_LINES,
    TRAINING_LOG_GROUP,
    NotFound,
    iso,
)

Clients = Mapping[str, BaseClient]
ENDPOINT_METRICS = ("Invocations", "Invocation4XXErrors", "Invocation5XXErrors", "ModelError")
METRIC_WINDOW_MINUTES = 60
_activities_supported: dict[str, bool] = {}  # endpoint URL -> DescribeScalingActivities works


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _log_events(clients: Clients, group: str, prefix: str) -> list[dict[str, Any]]:
    """Every event of the streams under ``prefix`` in ``group``, oldest first."""
    logs = clients["logs"]
    try:
        streams = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=prefix)[
            "logStreams"
        ]
        if not streams:
            return []
        names = [s["logStreamName"] for s in streams]
        events: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"logGroupName": group, "logStreamNames": names}
        for _ in range(50):  # pages; bounded
            page = logs.filter_log_events(**kwargs)
            events.extend(page["events"])
            token = page.get("nextToken")
            if not token or not page["events"]:
                break
            kwargs["nextToken"] = token
    except ClientError as exc:
        if _code(exc) == "ResourceNotFoundException":
            return []
        raise
    return sorted(events, key=lambda e: (e["timestamp"], e.get("eventId", "")))


# ---------------------------------------------------------------------- training
def training_jobs(clients: Clients) -> list[dict[str, Any]]:
    sm = clients["sagemaker"]
    pages = sm.get_paginator("list_training_jobs").paginate(SortBy="CreationTime")
    jobs = [j for page in pages for j in page["TrainingJobSummaries"]]
    return [
        {
            "name": j["TrainingJobName"],
            "status": j["TrainingJobStatus"],
            "created": iso(j["CreationTime"]),
            "ended": iso(j.get("TrainingEndTime")),
        }
        for j in sorted(jobs, key=lambda j: j["CreationTime"], reverse=True)
    ]


def describe_job(clients: Clients, name: str) -> dict[str, Any]:
    sm = clients["sagemaker"]
    try:
        return sm.describe_training_job(TrainingJobName=name)
    except ClientError as exc:
        if _code(exc) in ("ResourceNotFound", "ValidationException"):
            raise NotFound(f"no training job {name}") from None
        raise


def job_metrics(clients: Clients, job: Mapping[str, Any]) -> tuple[plots.EpochMetrics, list]:
    """Per-epoch metrics from the job's log lines (its MetricDefinitions), and the events."""
    name = job["TrainingJobName"]
    events = _log_events(clients, TRAINING_LOG_GROUP, f"{name}/")
    definitions = (job.get("AlgorithmSpecification") or {}).get("MetricDefinitions") or []
    return plots.parse_epochs((e["message"] for e in events), definitions), events


def training_job(clients: Clients, name: str) -> dict[str, Any]:
    job = describe_job(clients, name)
    metrics, events = job_metrics(clients, job)
    resources = job.get("ResourceConfig") or {}
    count = int(resources.get("InstanceCount", 1))
    streams = sorted({e["logStreamName"].split("/", 1)[-1] for e in events})
    columns, rows = plots.epochs_table(metrics)
    return {
        "name": name,
        "status": job["TrainingJobStatus"],
        "secondary_status": job.get("SecondaryStatus"),
        "failure_reason": job.get("FailureReason"),
        "created": iso(job.get("CreationTime")),
        "started": iso(job.get("TrainingStartTime")),
        "ended": iso(job.get("TrainingEndTime")),
        "seconds": job.get("TrainingTimeInSeconds"),
        "instance_type": resources.get("InstanceType"),
        "instance_count": count,
        "hosts": [f"algo-{i}" for i in range(1, count + 1)],
        "log_streams": streams,
        "hyperparameters": job.get("HyperParameters") or {},
        "transitions": [
            {"status": t["Status"], "start": iso(t["StartTime"]), "message": t.get("StatusMessage")}
            for t in job.get("SecondaryStatusTransitions") or []
        ],
        "final_metrics": {
            m["MetricName"]: m["Value"] for m in job.get("FinalMetricDataList") or []
        },
        "model_artifact": (job.get("ModelArtifacts") or {}).get("S3ModelArtifacts"),
        "epochs": {"columns": columns, "rows": rows},
        "log": [
            {
                "time": iso(datetime.datetime.fromtimestamp(e["timestamp"] / 1000, datetime.UTC)),
                "stream": e["logStreamName"].split("/", 1)[-1],
                "message": e["message"].rstrip(),
            }
            for e in events[-LOG_TAIL_LINES:]
        ],
        "log_total": len(events),
    }


def training_plot(clients: Clients, name: str, fmt: str = "svg") -> bytes:
    job = describe_job(clients, name)
    metrics, _ = job_metrics(clients, job)
    return plots.render(metrics, f"{name} ({job['TrainingJobStatus']})", fmt)


# ---------------------------------------------------------------------- endpoints
def endpoints(clients: Clients) -> list[dict[str, Any]]:
    found = clients["sagemaker"].list_endpoints(SortBy="CreationTime")["Endpoints"]
    return [
        {
            "name": e["EndpointName"],
            "status": e["EndpointStatus"],
            "created": iso(e["CreationTime"]),
            "modified": iso(e.get("LastModifiedTime")),
        }
        for e in found
    ]


def _per_minute(clients: Clients, endpoint: str, variant: str) -> dict[str, list]:
    cloudwatch = clients["cloudwatch"]
    now = datetime.datetime.now(datetime.UTC).replace(second=0, microsecond=0)
    start = now - datetime.timedelta(minutes=METRIC_WINDOW_MINUTES)
    series: dict[str, list] = {}
    for metric in ENDPOINT_METRICS:
        points = cloudwatch.get_metric_statistics(
            Namespace="AWS/SageMaker",
            MetricName=metric,
            Dimensions=[
                {"Name": "EndpointName", "Value": endpoint},
                {"Name": "VariantName", "Value": variant},
            ],
            StartTime=start,
            EndTime=now + datetime.timedelta(minutes=1),
            Period=60,
            Statistics=["Sum"],
        )["Datapoints"]
        per_minute: dict[str, float] = {}
        for point in points:  # one row per clock minute
            when = iso(point["Timestamp"].replace(second=0, microsecond=0))
            per_minute[when] = per_minute.get(when, 0.0) + point["Sum"]
        series[metric] = sorted([when, total] for when, total in per_minute.items())
    return series


def _scaling(clients: Clients, resource_id: str) -> dict[str, Any]:
    aas = clients["application-autoscaling"]
    targets = aas.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[resource_id])
    policies = aas.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=resource_id)
    activities: list[dict[str, Any]] = []
    activity_note = None
    if _activities_supported.get(aas.meta.endpoint_url, True):
        try:
            activities = aas.describe_scaling_activities(
                ServiceNamespace="sagemaker", ResourceId=resource_id
            )["ScalingActivities"]
        except ClientError as exc:
            if _code(exc) not in ("500", "InternalFailure", "InternalServerError"):
                raise
            _activities_supported[aas.meta.endpoint_url] = False  # ask once, not every poll
    if not _activities_supported.get(aas.meta.endpoint_url, True):
        activity_note = (
            "this endpoint does not implement DescribeScalingActivities; the instance "
            "counts above and the instances' log streams below show the scaling"
        )
    return {
        "targets": [
            {"min": t["MinCapacity"], "max": t["MaxCapacity"], "dimension": t["ScalableDimension"]}
            for t in targets["ScalableTargets"]
        ],
        "policies": [
            {
                "name": p["PolicyName"],
                "type": p["PolicyType"],
                "target_value": (p.get("TargetTrackingScalingPolicyConfiguration") or {}).get(
                    "TargetValue"
                ),
                "metric": (
                    (p.get("TargetTrackingScalingPolicyConfiguration") or {}).get(
                        "PredefinedMetricSpecification"
                    )
                    or {}
                ).get("PredefinedMetricType"),
            }
            for p in policies["ScalingPolicies"]
        ],
        "activities": [
            {
                "start": iso(a.get("StartTime")),
                "end": iso(a.get("EndTime")),
                "status": a.get("StatusCode"),
                "description": a.get("Description"),
                "cause": a.get("Cause"),
            }
            for a in activities
        ],
        "activity_note": activity_note,
    }


def _alarms(clients: Clients, endpoint: str) -> list[dict[str, Any]]:
    """CloudWatch alarms on a metric of this endpoint (a canary's rollback alarms, say)."""
    pages = clients["cloudwatch"].get_paginator("describe_alarms").paginate()
    found = []
    for alarm in (a for page in pages for a in page.get("MetricAlarms", [])):
        dimensions = {d["Name"]: d["Value"] for d in alarm.get("Dimensions") or []}
        metrics = alarm.get("Metrics") or []
        for query in metrics:
            stat = (query.get("MetricStat") or {}).get("Metric") or {}
            dimensions.update({d["Name"]: d["Value"] for d in stat.get("Dimensions") or []})
        if dimensions.get("EndpointName") != endpoint:
            continue
        found.append(
            {
                "name": alarm["AlarmName"],
                "state": alarm.get("StateValue"),
                "reason": alarm.get("StateReason"),
                "metric": f"{alarm.get('Namespace', '')} {alarm.get('MetricName', '')}".strip()
                or "metric math",
                "condition": f"{alarm.get('ComparisonOperator', '')} {alarm.get('Threshold', '')}"
                f" for {alarm.get('EvaluationPeriods', '?')} period(s)",
            }
        )
    return found


def _instances(clients: Clients, endpoint: str) -> list[dict[str, Any]]:
    """One row per instance that ever ran: its log stream ``<variant>/<instance id>``."""
    logs = clients["logs"]
    try:
        streams = logs.describe_log_streams(logGroupName=ENDPOINT_LOG_GROUP + endpoint)[
            "logStreams"
        ]
    except ClientError as exc:
        if _code(exc) == "ResourceNotFoundException":
            return []
        raise

    def when(ms: int | None) -> str | None:
        if not ms:
            return None
        return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).isoformat()

    rows = []
    for stream in streams:
        variant, _, instance = stream["logStreamName"].partition("/")
        rows.append(
            {
                "variant": variant,
                "instance": instance or variant,
                "first_log": when(stream.get("firstEventTimestamp") or stream.get("creationTime")),
                "last_log": when(stream.get("lastEventTimestamp")),
            }
        )
    return sorted(rows, key=lambda r: r["first_log"] or "")


def endpoint(clients: Clients, name: str) -> dict[str, Any]:
    sm = clients["sagemaker"]
    try:
        live = sm.describe_endpoint(EndpointName=name)
    except ClientError as exc:
        if _code(exc) in ("ValidationException", "ResourceNotFound"):
            raise NotFound(f"no endpoint {name}") from None
        raise
    try:
        config = sm.describe_endpoint_config(EndpointConfigName=live["EndpointConfigName"])
    except ClientError:
        config = {}
    configured = {v["VariantName"]: v for v in config.get("ProductionVariants", [])}
    variants = []
    for variant in live.get("ProductionVariants", []):
        vname = variant["VariantName"]
        resource_id = f"endpoint/{name}/variant/{vname}"
        spec = configured.get(vname, {})
        variants.append(
            {
                "name": vname,
                "model": spec.get("ModelName"),
                "instance_type": spec.get("InstanceType"),
                "current_instances": variant.get("CurrentInstanceCount"),
                "desired_instances": variant.get("DesiredInstanceCount"),
                "current_weight": variant.get("CurrentWeight"),
                "scaling": _scaling(clients, resource_id),
                "per_minute": _per_minute(clients, name, vname),
            }
        )
    pending = live.get("PendingDeploymentSummary") or {}
    return {
        "name": name,
        "status": live["EndpointStatus"],
        "config": live["EndpointConfigName"],
        "pending_config": pending.get("EndpointConfigName"),
        "failure_reason": live.get("FailureReason"),
        "created": iso(live.get("CreationTime")),
        "modified": iso(live.get("LastModifiedTime")),
        "variants": variants,
        "instances": _instances(clients, name),
        "alarms": _alarms(clients, name),
    }


# ---------------------------------------------------------------------- registry
def registry(clients: Clients) -> dict[str, Any]:
    """Model package groups and their versions (metrics, approval status), if any."""
    sm = clients["sagemaker"]
    groups = sm.list_model_package_groups()["ModelPackageGroupSummaryList"]
    result = []
    for group in groups:
        name = group["ModelPackageGroupName"]
        packages = sm.list_model_packages(ModelPackageGroupName=name)["ModelPackageSummaryList"]
        versions = []
        for package in packages:
            described = sm.describe_model_package(ModelPackageName=package["ModelPackageArn"])
            versions.append(
                {
                    "version": package.get("ModelPackageVersion"),
                    "arn": package["ModelPackageArn"],
                    "status": package.get("ModelPackageStatus"),
                    "approval": package.get("ModelApprovalStatus"),
                    "created": iso(package.get("CreationTime")),
                    "description": described.get("ModelPackageDescription"),
                    "metadata": described.get("CustomerMetadataProperties") or {},
                }
            )
        result.append({"name": name, "versions": versions})
    return {"groups": result}
