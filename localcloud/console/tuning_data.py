"""The console's tuning jobs: each with its trials (hyperparameters, status, objective) and
the objective over the trials as a plot, read through SageMaker's tuning APIs."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from localcloud.console import plots
from localcloud.console.data import NotFound, iso

Clients = dict[str, Any]


def tuning_jobs(clients: Clients) -> list[dict[str, Any]]:
    sm = clients["sagemaker"]
    pages = sm.get_paginator("list_hyper_parameter_tuning_jobs").paginate(SortBy="CreationTime")
    jobs = [j for page in pages for j in page["HyperParameterTuningJobSummaries"]]
    return [
        {
            "name": j["HyperParameterTuningJobName"],
            "status": j["HyperParameterTuningJobStatus"],
            "strategy": j.get("Strategy"),
            "created": iso(j["CreationTime"]),
            "ended": iso(j.get("HyperParameterTuningEndTime")),
            "counters": j.get("TrainingJobStatusCounters") or {},
        }
        for j in sorted(jobs, key=lambda j: j["CreationTime"], reverse=True)
    ]


def _describe(clients: Clients, name: str) -> dict[str, Any]:
    try:
        return clients["sagemaker"].describe_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=name
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("ResourceNotFound", "ValidationException"):
            raise NotFound(f"no tuning job {name}") from None
        raise


def _trials(clients: Clients, name: str) -> list[dict[str, Any]]:
    sm = clients["sagemaker"]
    found, token = [], None
    while True:
        extra = {"NextToken": token} if token else {}
        page = sm.list_training_jobs_for_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=name, SortBy="CreationTime", MaxResults=100, **extra
        )
        found += page["TrainingJobSummaries"]
        token = page.get("NextToken")
        if not token:
            return sorted(found, key=lambda t: t["CreationTime"])


def tuning_job(clients: Clients, name: str) -> dict[str, Any]:
    job = _describe(clients, name)
    config = job["HyperParameterTuningJobConfig"]
    objective = config.get("HyperParameterTuningJobObjective") or {}
    best = (job.get("BestTrainingJob") or {}).get("TrainingJobName")
    return {
        "name": name,
        "status": job["HyperParameterTuningJobStatus"],
        "strategy": config.get("Strategy"),
        "objective": objective,
        "limits": config.get("ResourceLimits") or {},
        "early_stopping": config.get("TrainingJobEarlyStoppingType", "Off"),
        "counters": job.get("TrainingJobStatusCounters") or {},
        "objective_counters": job.get("ObjectiveStatusCounters") or {},
        "failure_reason": job.get("FailureReason"),
        "best": best,
        "trials": [
            {
                "name": t["TrainingJobName"],
                "status": t["TrainingJobStatus"],
                "hyperparameters": t.get("TunedHyperParameters") or {},
                "objective": (t.get("FinalHyperParameterTuningJobObjectiveMetric") or {}).get(
                    "Value"
                ),
                "objective_status": t.get("ObjectiveStatus"),
                "best": t["TrainingJobName"] == best,
            }
            for t in _trials(clients, name)
        ],
    }


def tuning_plot(clients: Clients, name: str, fmt: str = "svg") -> bytes:
    job = tuning_job(clients, name)
    values = [(i + 1, t["objective"]) for i, t in enumerate(job["trials"])]
    metric = job["objective"].get("MetricName", "objective")
    maximize = job["objective"].get("Type", "Maximize") == "Maximize"
    return plots.render_trials(values, metric, maximize, f"{name} ({job['status']})", fmt)
