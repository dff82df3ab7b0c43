"""The run's optional tuning stage: a SageMaker hyperparameter tuning job (AMT) in place of
the single training job.

With ``TuningMaxJobs`` above 0, StartTraining creates a tuning job whose trials are the
run's training job with tuned values, and CheckTraining polls it; once it completes,
CheckTraining hands on its best training job, so the gate, the registry and the deploy
go on unchanged. The objective is the gate's metric (``valid_acc``, maximised), which
train.py prints every epoch and the metric definitions read.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from typing import Any

from mlops.errors import ConfigurationError
from mlops.naming import content_id
from mlops.polling import training_wait
from mlops.training_job import start_or_adopt, training_status

STRATEGIES = ("Bayesian", "Random", "Hyperband", "Grid")
SCALINGS = ("Auto", "Linear", "Logarithmic", "ReverseLogarithmic")
MAX_JOBS = 750  # SageMaker's training jobs per tuning job
MAX_PARALLEL_JOBS = 10  # SageMaker's default quota of parallel jobs per tuning job
MAX_RANGES = 30  # searchable hyperparameters per tuning job
MAX_VALUES = 30  # values of one categorical range
# SageMaker's tuning job names: at most 32 characters. <endpoint>-<at least 8 hex>.
NAME_MAX = 32
MIN_ID = 8
ENDPOINT_NAME_MAX = NAME_MAX - MIN_ID - 1
ACTIVE = ("InProgress", "Stopping")
# Members of the training request a tuning job's definition has no place for (the
# HyperParameterTrainingJobDefinition shape) or that differ per trial.
_NOT_IN_DEFINITION = ("TrainingJobName", "HyperParameters", "Tags", "CheckpointConfig")


def tuning_settings(
    max_jobs: int, parallel: int, strategy: str, ranges: Mapping[str, Any], endpoint_name: str
) -> dict[str, Any] | None:
    """The plan's tuning section (None: no tuning), checked as SageMaker would check it.

    ``ranges`` maps a train.py flag (already spelt canonically) to ``{"min", "max",
    "scaling", "type"}`` (integer or continuous; the type defaults to integer when both
    bounds are JSON integers) or to a list of values (categorical).
    """
    if max_jobs == 0:
        return None
    if strategy not in STRATEGIES:
        raise ConfigurationError(
            f"TUNING_STRATEGY={strategy!r} must be one of {', '.join(STRATEGIES)}"
        )
    if max_jobs > MAX_JOBS or not 1 <= parallel <= MAX_PARALLEL_JOBS:
        raise ConfigurationError(
            f"TUNING_MAX_JOBS must be at most {MAX_JOBS} and TUNING_MAX_PARALLEL_JOBS "
            f"1-{MAX_PARALLEL_JOBS} (SageMaker's tuning limits)"
        )
    if len(endpoint_name) > ENDPOINT_NAME_MAX:
        raise ConfigurationError(
            f"tuning needs an ENDPOINT_NAME of at most {ENDPOINT_NAME_MAX} characters: "
            f"SageMaker's tuning job names are at most {NAME_MAX} (<endpoint>-<id>)"
        )
    if not 1 <= len(ranges) <= MAX_RANGES:
        raise ConfigurationError(f"TUNING_RANGES must name 1-{MAX_RANGES} hyperparameters")
    parsed = [_range(name, spec) for name, spec in ranges.items()]
    if strategy == "Grid" and any(r["type"] != "Categorical" for r in parsed):
        raise ConfigurationError(
            "TUNING_RANGES: the Grid strategy searches categorical ranges (lists of values) only"
        )
    return {
        "strategy": strategy,
        "max_jobs": max_jobs,
        "max_parallel_jobs": parallel,
        "ranges": parsed,
    }


def _range(name: str, spec: Any) -> dict[str, Any]:
    where = f"TUNING_RANGES: {name}"
    if isinstance(spec, list):
        if not 1 <= len(spec) <= MAX_VALUES or not all(
            isinstance(v, str | int | float) and not isinstance(v, bool) for v in spec
        ):
            raise ConfigurationError(f"{where} must list 1-{MAX_VALUES} strings or numbers")
        # JSON-encoded as the other script-mode hyperparameters, so the toolkit decodes them.
        return {"name": name, "type": "Categorical", "values": [json.dumps(v) for v in spec]}
    if not isinstance(spec, Mapping) or set(spec) - {"min", "max", "scaling", "type"}:
        raise ConfigurationError(
            f'{where} must be a list of values or {{"min": x, "max": y, "scaling": s}}'
        )
    low, high = spec.get("min"), spec.get("max")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)):
        raise ConfigurationError(f"{where} needs numbers min and max")
    assert isinstance(low, int | float) and isinstance(high, int | float)  # for the type checker
    both_int = isinstance(low, int) and isinstance(high, int)
    kind = str(spec.get("type", "integer" if both_int else "continuous")).capitalize()
    scaling = spec.get("scaling", "Auto")
    if kind not in ("Integer", "Continuous") or scaling not in SCALINGS:
        raise ConfigurationError(
            f"{where}: type must be integer or continuous and scaling one of {', '.join(SCALINGS)}"
        )
    if low > high or (scaling == "Logarithmic" and low <= 0):
        raise ConfigurationError(f"{where}: min must be at most max (and above 0 if Logarithmic)")
    if scaling == "ReverseLogarithmic" and (kind == "Integer" or low < 0 or high >= 1):
        raise ConfigurationError(f"{where}: ReverseLogarithmic is for continuous 0 <= x < 1")
    return {"name": name, "type": kind, "min": low, "max": high, "scaling": scaling}


def tuning_job_names(run: Mapping[str, Any], attempts: int) -> list[str]:
    """The names the run's tuning job may have: one per attempt, each within 32 characters."""
    endpoint = run["endpoint"]["endpoint_name"]
    width = NAME_MAX - len(endpoint) - 1
    return [
        f"{endpoint}-{content_id({'run_id': run['run_id'], 'tuning_attempt': n})[:width]}"
        for n in range(1, attempts + 1)
    ]


def tuning_job_request(
    training_request: Mapping[str, Any], tuning: Mapping[str, Any], objective: str
) -> dict[str, Any]:
    """CreateHyperParameterTuningJob (less its name) from the run's CreateTrainingJob
    request: the same image, role, channels, instances, spot and stopping settings; the
    tuned hyperparameters taken out of the static ones. Without a CheckpointConfig: every
    trial would share its S3 prefix, and a trial must not resume another's weights."""
    # sagemaker_job_name names a training job that never exists: each trial has its own.
    tuned = {r["name"] for r in tuning["ranges"]} | {"sagemaker_job_name"}
    static = {k: v for k, v in training_request["HyperParameters"].items() if k not in tuned}
    spec = dict(training_request["AlgorithmSpecification"])
    spec.pop("EnableSageMakerMetricsTimeSeries", None)  # not in a tuning job's definition
    definition = {k: v for k, v in training_request.items() if k not in _NOT_IN_DEFINITION} | {
        "AlgorithmSpecification": spec,
        "StaticHyperParameters": static,
    }
    limits: dict[str, int] = {"MaxParallelTrainingJobs": tuning["max_parallel_jobs"]}
    if tuning["strategy"] != "Grid":  # Grid runs every combination once
        limits["MaxNumberOfTrainingJobs"] = tuning["max_jobs"]
    config = {
        "Strategy": tuning["strategy"],
        "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": objective},
        "ResourceLimits": limits,
        "ParameterRanges": _parameter_ranges(tuning["ranges"]),
        "TrainingJobEarlyStoppingType": "Off",
    }
    return {
        "HyperParameterTuningJobConfig": config,
        "TrainingJobDefinition": definition,
        "Tags": training_request["Tags"],
    }


def _parameter_ranges(ranges: list[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for r in ranges:
        if r["type"] == "Categorical":
            item: dict[str, Any] = {"Name": r["name"], "Values": r["values"]}
        else:
            bounds = {"MinValue": str(r["min"]), "MaxValue": str(r["max"])}
            item = {"Name": r["name"], **bounds, "ScalingType": r["scaling"]}
        found.setdefault(f"{r['type']}ParameterRanges", []).append(item)
    return found


def tuning_progress(
    job: Mapping[str, Any], poll_seconds: int, now: datetime.datetime
) -> dict[str, Any]:
    """A tuning job's state for the run: its status, trials and best job so far; a failed
    or stopped one with a one-sentence cause."""
    name = job["HyperParameterTuningJobName"]
    status = job["HyperParameterTuningJobStatus"]
    best = job.get("BestTrainingJob") or {}
    metric = best.get("FinalHyperParameterTuningJobObjectiveMetric") or {}
    age = (now - job["CreationTime"]).total_seconds() if job.get("CreationTime") else 0
    reason = None
    if status not in ACTIVE and not (status == "Completed" and best):
        verb = "was stopped" if status == "Stopped" else "failed"
        why = job.get("FailureReason") or "no training job completed with the objective metric"
        reason = f"tuning job {name} {verb}: {why.rstrip('.')}"
        status = "Stopped" if status == "Stopped" else "Failed"
    return {
        "tuning_job_name": name,
        "status": "InProgress" if status in ACTIVE else status,
        "failure_reason": reason,
        "best_training_job": best.get("TrainingJobName"),
        "best_objective": metric.get("Value"),
        "objective_metric": job["HyperParameterTuningJobConfig"][
            "HyperParameterTuningJobObjective"
        ]["MetricName"],
        "trials": job.get("TrainingJobStatusCounters", {}),
        "next_poll_seconds": training_wait(age, poll_seconds),
    }


def start_tuning_job(
    sagemaker: Any, request: Mapping[str, Any], names: list[str], poll_seconds: int
) -> dict[str, Any]:
    """Create the run's tuning job, or adopt it if it is running or done; one that failed
    or was stopped is not adopted (``training_job.start_or_adopt``)."""

    def create(name: str) -> str:
        return sagemaker.create_hyper_parameter_tuning_job(
            **request, HyperParameterTuningJobName=name
        )["HyperParameterTuningJobArn"]

    def describe(name: str) -> tuple[str, str]:
        job = sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
        return job["HyperParameterTuningJobStatus"], job["HyperParameterTuningJobArn"]

    name, arn, adopted = start_or_adopt(create, describe, names, "tuning job")
    return {
        "training_job_name": None,
        "tuning_job_name": name,
        "tuning_job_arn": arn,
        "adopted": adopted,
        "status": "InProgress",
        "next_poll_seconds": poll_seconds,
    }


def tuning_status(
    sagemaker: Any, name: str, poll_seconds: int, now: datetime.datetime
) -> dict[str, Any]:
    """CheckTraining's answer for a tuning job: while it runs, its progress; once it has
    completed, its best training job's status, metrics and artifact (what the gate reads)."""
    job = sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    progress = tuning_progress(job, poll_seconds, now)
    if progress["status"] != "Completed":
        return {
            "training_job_name": None,
            "tuning_job_name": name,
            "status": progress["status"],
            "failure_reason": progress["failure_reason"],
            "next_poll_seconds": progress["next_poll_seconds"],
            "tuning": progress,
        }
    best = training_status(sagemaker, progress["best_training_job"], poll_seconds, now)
    return {**best, "tuning_job_name": name, "tuning": progress}
