"""Automatic model tuning (SageMaker AMT) with real trials.

A CreateHyperParameterTuningJob request starts a coordinator thread. Each trial is a real
training job of the local SageMaker (named ``<tuning job>-<NNN>-<8 hex>``, its
``TuningJobArn`` set, its hyperparameters the static ones, the tuned ones and
``_tuning_objective_metric``), at most ``MaxParallelTrainingJobs`` at once. The values
to try come from Optuna, a real optimisation library, never a search of our own:

- ``Bayesian``: Optuna's TPE sampler; ``Random``: its random sampler; ``Hyperband``: the
  random sampler with Optuna's Hyperband pruner (``MinResource``/``MaxResource`` epochs);
  ``Grid``: every combination of the categorical ranges, once each, as SageMaker runs it.
- ``TrainingJobEarlyStoppingType=Auto``: Optuna's median pruner. It stops a trial whose
  best objective so far is worse than the median of earlier trials at the same epoch;
  SageMaker's rule compares running averages instead (documented difference).
- The pruners are fed the objective metric every time a trial prints it (one value per
  epoch, the metric definitions' regex); a pruned trial is stopped and ends ``Stopped``.

The tuning job's status, ``TrainingJobStatusCounters``, ``ObjectiveStatusCounters``,
``BestTrainingJob`` and ``TuningJobCompletionDetails`` are kept on moto's tuning-job
object, so Describe and List answer from it as before.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from moto.sagemaker.exceptions import ValidationError

logger = logging.getLogger(__name__)

OBJECTIVE_HYPERPARAMETER = "_tuning_objective_metric"
MAX_PARALLEL_JOBS = 10  # AWS's default quota per tuning job
MAX_TRAINING_JOBS = 750
EPOCH_HYPERPARAMETERS = ("epochs", "numepochs", "n-epochs", "n_epochs", "num_epochs")
TERMINAL = ("Completed", "Failed", "Stopped")
_POLL_S = 0.2

StartChild = Callable[[dict[str, Any], Callable[[str, float], None]], Any]


def _now() -> datetime:
    return datetime.now(UTC)


# --- the request ----------------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    """One tuned hyperparameter: its kind (Integer, Continuous, Categorical) and bounds."""

    name: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    scaling: str = "Auto"
    values: tuple[str, ...] = ()

    def distribution(self) -> Any:
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        log = self.scaling == "Logarithmic"
        if self.kind == "Categorical":
            return CategoricalDistribution(list(self.values))
        if self.kind == "Integer":
            return IntDistribution(int(self.low), int(self.high), log=log)
        if self.scaling == "ReverseLogarithmic":  # x = 1 - u, u log-uniform on (1-high, 1-low]
            return FloatDistribution(1 - self.high, 1 - self.low, log=True)
        return FloatDistribution(self.low, self.high, log=log)

    def hyperparameter(self, sampled: Any) -> str:
        """The sampled value as the training job's hyperparameter string."""
        if self.kind == "Categorical":
            return str(sampled)
        if self.kind == "Integer":
            return str(int(sampled))
        value = 1 - sampled if self.scaling == "ReverseLogarithmic" else sampled
        return repr(float(value))


def ranges_of(config: Mapping[str, Any]) -> list[Range]:
    """The request's ``ParameterRanges``, checked as SageMaker checks them."""
    raw = config.get("ParameterRanges") or {}
    found: list[Range] = []
    for kind in ("Integer", "Continuous"):
        for item in raw.get(f"{kind}ParameterRanges") or []:
            low, high = float(item["MinValue"]), float(item["MaxValue"])
            scaling = item.get("ScalingType", "Auto")
            if low > high:
                raise ValidationError(
                    f"The MinValue {item['MinValue']} of hyperparameter {item['Name']} is "
                    f"greater than its MaxValue {item['MaxValue']}."
                )
            if scaling == "Logarithmic" and low <= 0:
                raise ValidationError(
                    f"Hyperparameter {item['Name']}: Logarithmic scaling needs MinValue > 0."
                )
            if scaling == "ReverseLogarithmic" and (kind == "Integer" or low < 0 or high >= 1):
                raise ValidationError(
                    f"Hyperparameter {item['Name']}: ReverseLogarithmic scaling is for "
                    "continuous ranges within 0 <= value < 1."
                )
            found.append(Range(item["Name"], kind, low, high, scaling))
    for item in raw.get("CategoricalParameterRanges") or []:
        found.append(Range(item["Name"], "Categorical", values=tuple(item["Values"])))
    if not found:
        raise ValidationError("The tuning job has no hyperparameter ranges to search.")
    names = [r.name for r in found]
    if len(set(names)) != len(names):
        raise ValidationError("A hyperparameter appears in more than one range.")
    return found


def grid_points(ranges: Sequence[Range]) -> list[dict[str, str]]:
    """Every combination of the categorical values, in a fixed order."""
    combos = itertools.product(*(r.values for r in ranges))
    return [dict(zip((r.name for r in ranges), combo, strict=True)) for combo in combos]


def check_request(request: Mapping[str, Any]) -> None:
    """What SageMaker refuses before it creates the tuning job (ValidationError)."""
    config = request["HyperParameterTuningJobConfig"]
    if request.get("TrainingJobDefinitions"):
        raise ValidationError(
            "TrainingJobDefinitions (tuning several algorithms at once) is not emulated "
            "locally: give one TrainingJobDefinition."
        )
    for member in ("WarmStartConfig", "Autotune"):
        if request.get(member):
            raise ValidationError(f"{member} is not emulated by the local SageMaker yet.")
    definition = request.get("TrainingJobDefinition")
    if not definition:
        raise ValidationError("The request must contain a TrainingJobDefinition.")
    strategy = config["Strategy"]
    ranges = ranges_of(config)
    limits = config["ResourceLimits"]
    parallel = int(limits["MaxParallelTrainingJobs"])
    if parallel > MAX_PARALLEL_JOBS:
        raise ValidationError(
            f"MaxParallelTrainingJobs {parallel} is above the account's limit of "
            f"{MAX_PARALLEL_JOBS} parallel training jobs per tuning job."
        )
    total = limits.get("MaxNumberOfTrainingJobs")
    if total is not None and int(total) > MAX_TRAINING_JOBS:
        raise ValidationError(
            f"MaxNumberOfTrainingJobs {total} is above the limit of {MAX_TRAINING_JOBS}."
        )
    if strategy == "Grid":
        if any(r.kind != "Categorical" for r in ranges):
            raise ValidationError("The Grid strategy searches categorical ranges only.")
        combinations = len(grid_points(ranges))
        if total is not None and int(total) != combinations:
            raise ValidationError(
                f"MaxNumberOfTrainingJobs must be the number of grid combinations "
                f"({combinations}) for the Grid strategy, or left out."
            )
    elif total is None:
        raise ValidationError(f"The {strategy} strategy needs MaxNumberOfTrainingJobs.")
    early = config.get("TrainingJobEarlyStoppingType", "Off")
    if strategy == "Hyperband" and early != "Off":
        raise ValidationError(
            "TrainingJobEarlyStoppingType must be Off with the Hyperband strategy, which "
            "stops trials itself."
        )
    objective = config.get("HyperParameterTuningJobObjective") or {}
    metrics = (definition.get("AlgorithmSpecification") or {}).get("MetricDefinitions") or []
    if objective.get("MetricName") not in {m["Name"] for m in metrics}:
        raise ValidationError(
            f"The objective metric {objective.get('MetricName')!r} is not one of the "
            "training job definition's MetricDefinitions."
        )
    if strategy == "Hyperband":
        hyperband_resources(config, definition)


def hyperband_resources(
    config: Mapping[str, Any], definition: Mapping[str, Any]
) -> tuple[int, int]:
    """(MinResource, MaxResource) in epochs; MaxResource from the static epochs if unset."""
    settings = ((config.get("StrategyConfig") or {}).get("HyperbandStrategyConfig")) or {}
    static = definition.get("StaticHyperParameters") or {}
    maximum = settings.get("MaxResource")
    if maximum is None:
        epochs = next((static[k] for k in EPOCH_HYPERPARAMETERS if k in static), None)
        if epochs is None:
            raise ValidationError(
                "Hyperband needs HyperbandStrategyConfig.MaxResource, or an epochs static "
                f"hyperparameter ({', '.join(EPOCH_HYPERPARAMETERS)})."
            )
        maximum = int(str(epochs).strip('"'))
    return int(settings.get("MinResource", 1)), int(maximum)


def child_name(tuning_job: str, index: int) -> str:
    return f"{tuning_job}-{index:03d}-{secrets.token_hex(4)}"


# --- the run --------------------------------------------------------------------------


@dataclass
class Trial:
    index: int
    name: str
    tuned: dict[str, str]
    optuna_trial: Any | None
    job: Any = None
    run: Any = None
    values: list[float] = field(default_factory=list)
    reported: int = 0
    pruned: bool = False
    done: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def observe(self, metric: str) -> Callable[[str, float], None]:
        def on_value(name: str, value: float) -> None:
            if name == metric:
                with self.lock:
                    self.values.append(value)

        return on_value

    @property
    def objective(self) -> float | None:
        with self.lock:
            return self.values[-1] if self.values else None


class TuningRun:
    """Runs one tuning job: asks Optuna for trials, runs them as training jobs, tells it
    each trial's result, and keeps the tuning job's description current."""

    def __init__(self, job: Any, request: dict[str, Any], start_child: StartChild) -> None:
        self.job = job
        self._request = request
        self._start_child = start_child
        config = request["HyperParameterTuningJobConfig"]
        self._config = config
        self._definition = request["TrainingJobDefinition"]
        self._ranges = ranges_of(config)
        self._strategy = config["Strategy"]
        objective = config["HyperParameterTuningJobObjective"]
        self._metric = objective["MetricName"]
        self._maximize = objective["Type"] == "Maximize"
        limits = config["ResourceLimits"]
        self._parallel = int(limits["MaxParallelTrainingJobs"])
        self._grid = grid_points(self._ranges) if self._strategy == "Grid" else []
        self._total = int(limits.get("MaxNumberOfTrainingJobs") or len(self._grid))
        self._deadline = limits.get("MaxRuntimeInSeconds")
        self._trials: list[Trial] = []
        self._stop = threading.Event()
        self._tick = threading.Event()  # the poll's sleep; set only to abandon the run
        self._study = self._make_study()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"tuning-{job.arn}")

    def _make_study(self) -> Any:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        seed = self._config.get("RandomSeed")
        sampler: Any = optuna.samplers.RandomSampler(seed=seed)
        pruner: Any = optuna.pruners.NopPruner()
        if self._strategy == "Bayesian":
            sampler = optuna.samplers.TPESampler(seed=seed)
        if self._strategy == "Hyperband":
            low, high = hyperband_resources(self._config, self._definition)
            pruner = optuna.pruners.HyperbandPruner(min_resource=low, max_resource=high)
        elif self._config.get("TrainingJobEarlyStoppingType") == "Auto":
            pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=1)
        return optuna.create_study(
            study_name=self.job.hyper_parameter_tuning_job_name,
            direction="maximize" if self._maximize else "minimize",
            sampler=sampler,
            pruner=pruner,
        )

    # --- control, from request threads ----------------------------------------------

    def start(self) -> None:
        job = self.job
        job.hyper_parameter_tuning_job_status = "InProgress"
        job.hyper_parameter_tuning_end_time = None
        job.best_training_job = None
        job.OverallBestTrainingJob = None
        job.failure_reason = None
        job.consumed_resources = {"RuntimeInSeconds": 0}
        job.tuning_job_completion_details = {"NumberOfTrainingJobsObjectiveNotImproving": 0}
        self._update()
        self._thread.start()

    def request_stop(self) -> None:
        if self.job.hyper_parameter_tuning_job_status != "InProgress":
            raise ValidationError(
                f"The request was rejected because the tuning job is in status "
                f"{self.job.hyper_parameter_tuning_job_status}."
            )
        self.job.hyper_parameter_tuning_job_status = "Stopping"
        self._stop.set()

    def abandon(self, timeout: float = 30.0) -> None:
        """Stop the coordinator and its trials (account reset or shutdown)."""
        self._stop.set()
        self._tick.set()
        self._stop_trials()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def summaries(self) -> list[dict[str, Any]]:
        """ListTrainingJobsForHyperParameterTuningJob's summaries, one per trial."""
        return [self._summary(t) for t in list(self._trials) if t.job is not None]

    # --- the coordinator thread -------------------------------------------------------

    def _run(self) -> None:
        started = _now()
        try:
            while True:
                self._follow_trials()
                out_of_time = self._deadline is not None and (
                    _now() - started
                ).total_seconds() > float(self._deadline)
                if (self._stop.is_set() or out_of_time) and not self._stopping_done():
                    self._stop_trials()
                elif not self._stop.is_set() and not out_of_time:
                    self._launch_trials()
                if all(t.done for t in self._trials) and (
                    self._stop.is_set() or out_of_time or len(self._trials) >= self._total
                ):
                    break
                self._update()
                self._tick.wait(_POLL_S)
            self._finish(started, stopped=self._stop.is_set() or out_of_time)
        except Exception as exc:  # a local bug must still end the tuning job
            logger.exception("tuning job %s crashed", self.job.hyper_parameter_tuning_job_name)
            self._stop_trials()
            self.job.failure_reason = f"InternalServerError: {exc!r}"[:1024]
            self.job.hyper_parameter_tuning_job_status = "Failed"
            self.job.hyper_parameter_tuning_end_time = _now()

    def _stopping_done(self) -> bool:
        return all(t.done or t.run is None for t in self._trials)

    def _launch_trials(self) -> None:
        running = sum(1 for t in self._trials if not t.done)
        while running < self._parallel and len(self._trials) < self._total:
            index = len(self._trials) + 1
            trial = self._new_trial(index)
            self._trials.append(trial)
            request = self._child_request(trial)
            try:
                trial.job, trial.run = self._start_child(request, trial.observe(self._metric))
            except Exception as exc:  # refused (a quota, a bad definition): a failed trial
                logger.warning("tuning trial %s not started: %s", trial.name, exc)
                trial.done = True
                if trial.optuna_trial is not None:
                    self._study.tell(trial.optuna_trial, state=_states().FAIL)
                self.job.failure_reason = f"Training job {trial.name} was not started: {exc}"[:1024]
            running += 1

    def _new_trial(self, index: int) -> Trial:
        name = child_name(self.job.hyper_parameter_tuning_job_name, index)
        if self._grid:
            return Trial(index, name, dict(self._grid[index - 1]), None)
        asked = self._study.ask({r.name: r.distribution() for r in self._ranges})
        tuned = {r.name: r.hyperparameter(asked.params[r.name]) for r in self._ranges}
        return Trial(index, name, tuned, asked)

    def _child_request(self, trial: Trial) -> dict[str, Any]:
        d = self._definition
        static = dict(d.get("StaticHyperParameters") or {})
        spec = {
            k: v
            for k, v in (d.get("AlgorithmSpecification") or {}).items()
            if k in ("TrainingImage", "TrainingInputMode", "MetricDefinitions", "AlgorithmName")
        }
        request: dict[str, Any] = {
            "TrainingJobName": trial.name,
            "AlgorithmSpecification": spec,
            "RoleArn": d["RoleArn"],
            "OutputDataConfig": d["OutputDataConfig"],
            "ResourceConfig": d.get("ResourceConfig") or _first_instance(d),
            "StoppingCondition": d["StoppingCondition"],
            "HyperParameters": {**static, **trial.tuned, OBJECTIVE_HYPERPARAMETER: self._metric},
            "InputDataConfig": d.get("InputDataConfig") or [],
            "Tags": self._request.get("Tags") or [],
        }
        for key in (
            "VpcConfig",
            "EnableManagedSpotTraining",
            "CheckpointConfig",
            "Environment",
            "EnableNetworkIsolation",
            "RetryStrategy",
        ):
            if key in d:
                request[key] = d[key]
        return request

    def _follow_trials(self) -> None:
        for trial in self._trials:
            if trial.done or trial.job is None:
                continue
            with trial.lock:
                fresh = trial.values[trial.reported :]
                trial.reported = len(trial.values)
            for offset, value in enumerate(fresh):
                self._report(trial, trial.reported - len(fresh) + offset, value)
            if trial.job.training_job_status in TERMINAL:
                self._conclude(trial)

    def _report(self, trial: Trial, step: int, value: float) -> None:
        if trial.optuna_trial is None or trial.pruned or not math.isfinite(value):
            return
        trial.optuna_trial.report(value, step)
        if trial.optuna_trial.should_prune() and trial.job.training_job_status == "InProgress":
            trial.pruned = True
            logger.info("tuning: stopping trial %s early at epoch %d", trial.name, step + 1)
            with contextlib.suppress(ValidationError):  # it ended meanwhile
                trial.run.request_stop()

    def _conclude(self, trial: Trial) -> None:
        trial.done = True
        if trial.optuna_trial is None:
            return
        states = _states()
        objective = trial.objective
        if trial.pruned:
            self._study.tell(trial.optuna_trial, state=states.PRUNED)
        elif trial.job.training_job_status == "Completed" and objective is not None:
            self._study.tell(trial.optuna_trial, objective)
        else:
            self._study.tell(trial.optuna_trial, state=states.FAIL)

    def _stop_trials(self) -> None:
        for trial in self._trials:
            running = not trial.done and trial.job is not None
            if running and trial.job.training_job_status == "InProgress":
                with contextlib.suppress(ValidationError):  # it ended meanwhile
                    trial.run.request_stop()

    # --- the description ----------------------------------------------------------------

    def _objective_status(self, trial: Trial) -> str:
        if not trial.done:
            return "Pending"
        return "Succeeded" if trial.objective is not None else "Failed"

    def _summary(self, trial: Trial) -> dict[str, Any]:
        job = trial.job
        summary: dict[str, Any] = {
            "TrainingJobName": trial.name,
            "TrainingJobArn": job.arn,
            "TuningJobName": self.job.hyper_parameter_tuning_job_name,
            "CreationTime": job.creation_time,
            "TrainingJobStatus": job.training_job_status,
            "TunedHyperParameters": dict(trial.tuned),
            "ObjectiveStatus": self._objective_status(trial),
        }
        if job.training_start_time:
            summary["TrainingStartTime"] = job.training_start_time
        if job.training_end_time:
            summary["TrainingEndTime"] = job.training_end_time
        if getattr(job, "failure_reason", None):
            summary["FailureReason"] = job.failure_reason
        if trial.objective is not None:
            summary["FinalHyperParameterTuningJobObjectiveMetric"] = {
                "Type": "Maximize" if self._maximize else "Minimize",
                "MetricName": self._metric,
                "Value": trial.objective,
            }
        return summary

    def _best(self) -> Trial | None:
        scored = [
            t for t in self._trials if t.done and t.job is not None and t.objective is not None
        ]
        if not scored:
            return None
        key = (lambda t: t.objective) if self._maximize else (lambda t: -t.objective)  # type: ignore[operator]
        return max(scored, key=key)

    def _update(self) -> None:
        counters = dict.fromkeys(
            ("Completed", "InProgress", "RetryableError", "NonRetryableError", "Stopped"), 0
        )
        objectives = dict.fromkeys(("Succeeded", "Pending", "Failed"), 0)
        for trial in self._trials:
            status = trial.job.training_job_status if trial.job is not None else "Failed"
            counted = "NonRetryableError" if status == "Failed" else status
            counters["InProgress" if counted == "Stopping" else counted] += 1
            objectives[self._objective_status(trial)] += 1
        job = self.job
        job.training_job_status_counters = counters
        job.objective_status_counters = objectives
        best = self._best()
        job.best_training_job = self._summary(best) if best else None
        job.tuning_job_completion_details = {
            "NumberOfTrainingJobsObjectiveNotImproving": self._not_improving()
        }
        job.last_modified_time = _now()

    def _not_improving(self) -> int:
        """Trials since the best objective last improved by 1% or more."""
        best: float | None = None
        since = 0
        for trial in self._trials:
            value = trial.objective if trial.done else None
            if value is None:
                continue
            better = best is None or (
                value >= best + abs(best) * 0.01
                if self._maximize
                else value <= best - abs(best) * 0.01
            )
            best, since = (value, 0) if better else (best, since + 1)
        return since

    def _finish(self, started: datetime, stopped: bool) -> None:
        self._update()
        job = self.job
        end = _now()
        job.hyper_parameter_tuning_end_time = end
        job.consumed_resources = {"RuntimeInSeconds": int((end - started).total_seconds())}
        if stopped:
            job.hyper_parameter_tuning_job_status = "Stopped"
        elif job.best_training_job is None:
            job.hyper_parameter_tuning_job_status = "Failed"
            job.failure_reason = (
                job.failure_reason
                or f"No training job completed with the objective metric {self._metric}."
            )
        else:
            job.hyper_parameter_tuning_job_status = "Completed"
            job.failure_reason = None


def _first_instance(definition: Mapping[str, Any]) -> dict[str, Any]:
    """A ResourceConfig from HyperParameterTuningResourceConfig (its first instance config)."""
    config = definition.get("HyperParameterTuningResourceConfig") or {}
    first = (config.get("InstanceConfigs") or [{}])[0]
    return {
        "InstanceType": first.get("InstanceType", config.get("InstanceType", "ml.m5.xlarge")),
        "InstanceCount": int(first.get("InstanceCount", config.get("InstanceCount", 1))),
        "VolumeSizeInGB": int(first.get("VolumeSizeInGB", config.get("VolumeSizeInGB", 30))),
    }


def _states() -> Any:
    from optuna.trial import TrialState

    return TrialState
