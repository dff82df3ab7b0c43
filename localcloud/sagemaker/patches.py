"""The changes to moto's SageMaker classes; applied once, reverted by ``revert()``."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from moto.core.responses import ActionResult, EmptyResult
from moto.sagemaker.exceptions import ResourceInUseException, ResourceNotFound, ValidationError
from moto.sagemaker.models import FakeTrainingJob, SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse

from . import settings
from .registry import Registry
from .training import TrainingRun, check_metric_definitions

_MISSING = object()
_originals: dict[tuple[type, str], Any] = {}

TRAINING_RUNS: Registry[TrainingRun] = Registry()


def _patch(cls: type, name: str, func: Callable[..., Any]) -> None:
    _originals.setdefault((cls, name), cls.__dict__.get(name, _MISSING))
    setattr(cls, name, func)


def _original(cls: type, name: str) -> Any:
    original = _originals[(cls, name)]
    return getattr(super(cls, cls), name) if original is _MISSING else original


def create_training_job(self: SageMakerResponse) -> ActionResult:
    # a copy: moto's FakeTrainingJob overwrites the request's MetricDefinitions with a sample
    request = copy.deepcopy(self._get_params())
    name = request.get("TrainingJobName")
    backend = self.sagemaker_backend
    if name in backend.training_jobs:
        raise ResourceInUseException(
            "Training job names must be unique within an AWS account and region, and a "
            f"training job with this name already exists ({backend.training_jobs[name].arn})"
        )
    check_metric_definitions(
        (request.get("AlgorithmSpecification") or {}).get("MetricDefinitions") or []
    )
    result = _original(SageMakerResponse, "create_training_job")(self)
    job = backend.training_jobs[name]
    job.algorithm_specification = request["AlgorithmSpecification"]
    run = TrainingRun(job, self.current_account, self.region, request, settings.current())
    TRAINING_RUNS.put((self.current_account, self.region, name), run)
    run.start()
    return result


def stop_training_job(self: SageMakerResponse) -> EmptyResult:
    name = self._get_param("TrainingJobName")
    if name not in self.sagemaker_backend.training_jobs:
        arn = FakeTrainingJob.arn_formatter(name, self.current_account, self.region)
        raise ResourceNotFound(f"Could not find training job '{arn}'.")
    run = TRAINING_RUNS.get((self.current_account, self.region, name))
    if run is None:
        raise ValidationError(f"Training job {name} is not running in this local cloud.")
    run.request_stop()
    return EmptyResult()


def reset(self: SageMakerModelBackend) -> None:
    """An account reset (end of ``mock_aws``, ``/moto-api/reset``) also stops its processes."""
    for run in TRAINING_RUNS.pop_where(self.account_id, self.region_name):
        run.abandon()
    _original(SageMakerModelBackend, "reset")(self)


def apply() -> None:
    if _originals:
        return
    _patch(SageMakerResponse, "create_training_job", create_training_job)
    _patch(SageMakerResponse, "stop_training_job", stop_training_job)
    _patch(SageMakerModelBackend, "reset", reset)


def revert() -> None:
    for (cls, name), original in _originals.items():
        if original is _MISSING:
            delattr(cls, name)
        else:
            setattr(cls, name, original)
    _originals.clear()


def stop_everything() -> None:
    for run in TRAINING_RUNS.pop_where():
        run.abandon()
