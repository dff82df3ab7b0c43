"""Errors the pipeline's functions raise.

Each class name is exactly the ``ErrorEquals`` string the state machine matches
(statemachine/train_deploy.asl.json), so renaming one means editing both places.
Expected negative outcomes (a rejected trigger, a failed quality gate, a failed smoke
test) are not errors: functions return them and a Choice state routes them to a Fail
state with a readable cause.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every error raised on purpose by the pipeline's functions."""


class ConfigurationError(PipelineError):
    """A function's environment is missing a variable or holds an invalid value."""


class InvalidStateInputError(PipelineError):
    """A state handed a function input that does not match its schema (an ASL bug)."""


class AwsThrottlingError(PipelineError):
    """AWS throttled a call; the state machine retries these with exponential backoff."""


class DeploymentError(PipelineError):
    """SageMaker refused a deployment step for a reason that waiting will not fix."""


class RollbackError(PipelineError):
    """A failed deployment could not be undone: the endpoint needs a person."""


class TrainingRetriesExhausted(PipelineError):
    """Every training job this run may start has failed or been stopped."""


class DatasetChangedError(PipelineError):
    """The data set was replaced between planning the run and copying it for training."""


class QuotaExceededError(PipelineError):
    """An AWS service quota refused the call (SageMaker's ResourceLimitExceeded); the message
    names the quota to raise. The state machine retries these with backoff: capacity frees
    up when another job or endpoint ends."""


class ModelPackageError(PipelineError):
    """A model package cannot be deployed (not approved, another group, no model data)."""
