"""Real SageMaker training and hosting for the embedded local cloud (on top of moto).

``install()`` patches moto's SageMaker, SageMaker Runtime and Application Auto Scaling in
this process: CreateTrainingJob runs the submitted script-mode source as local processes,
endpoints run ``training.serve`` model servers, InvokeEndpoint reaches them, and scalable
targets with target-tracking policies resize the fleets; UpdateEndpoint follows its
DeploymentConfig (canary, linear, alarm rollback), endpoints publish their metrics to the
local CloudWatch, whose alarms evaluate (``localcloud.services.cloudwatch.alarms``). It works inside
the moto server process and under ``mock_aws`` alike. See docs/local-sagemaker.md.
"""

from __future__ import annotations

import atexit
import pathlib
import sys

from localcloud.runtime.account_profiles import AccountProfile
from localcloud.services.cloudwatch import alarms

from . import container, install_options, responses
from .autoscaling import SCALER

__all__ = ["install", "shutdown", "uninstall"]

_atexit_registered = False


def install(
    state_dir: pathlib.Path,
    *,
    python: str = sys.executable,
    time_scale: float = 1.0,
    serve_command: tuple[str, ...] = install_options.DEFAULT_SERVE_COMMAND,
    quotas: AccountProfile | None = None,
    sandbox: bool = False,
    spot_interruptions: float = 0.0,
) -> str:
    """Patch moto's SageMaker, SageMaker Runtime and Application Auto Scaling backends in this
    process so training jobs and endpoints run for real. Idempotent; a later call replaces
    the settings.

    ``python`` runs the training hosts and model servers; ``time_scale`` multiplies the
    autoscaling clock (metric window and cooldowns: 0.05 turns 300 s into 15 s);
    ``serve_command`` is what follows the interpreter to start a model server that speaks
    the SageMaker hosting contract (``--model-dir D --host H --port P`` are appended);
    ``quotas``: the account profile whose instance quotas CreateTrainingJob, CreateEndpoint,
    UpdateEndpoint and UpdateEndpointWeightsAndCapacities keep (None: unlimited);
    CloudWatch alarms evaluate from now on, on the same clock; their SNS notifications are
    also appended to ``state_dir/cloudwatch/alarm-notifications.jsonl``.
    ``sandbox``: run each training host and endpoint instance in a bubblewrap sandbox with
    its own /opt/ml and hostname (the container contract) when bwrap works here, else as
    plain processes. ``spot_interruptions``: reclaim managed spot training jobs at random,
    on average this many times per hour of training. Returns one line that says how hosts
    run.
    """
    global _atexit_registered
    if time_scale <= 0:
        raise ValueError("time_scale must be positive")
    state_dir = pathlib.Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    box, note = container.probe(python) if sandbox else (None, "the sandbox is off")
    toolkit_missing = container.toolkit_missing()
    install_options.configure(
        install_options.Settings(
            state_dir=state_dir,
            python=python,
            time_scale=time_scale,
            serve_command=serve_command,
            quotas=quotas,
            sandbox=box,
            sandbox_note=note,
            spot_interruptions=spot_interruptions,
            toolkit=toolkit_missing is None,
        )
    )
    responses.apply()
    SCALER.start()
    alarms.start(time_scale, state_dir / "cloudwatch" / "alarm-notifications.jsonl")
    if not _atexit_registered:
        atexit.register(shutdown)
        _atexit_registered = True
    return container.describe(box, note, toolkit_missing)


def shutdown() -> None:
    """Stop every training and model-server process this module started (also registered
    atexit). The patches stay: new jobs and endpoints can still start."""
    responses.stop_processes()


def uninstall() -> None:
    """``shutdown()`` and restore moto's own behaviour (tests that need stock moto)."""
    SCALER.stop()
    alarms.stop()
    shutdown()
    responses.revert()


def interrupt_training_job(name: str) -> None:
    """A spot reclaim of the running managed spot training job ``name`` (any account):
    KeyError if this local SageMaker runs no such job, ValueError if it cannot be
    interrupted now (moto's ValidationError: not spot, not training)."""
    from .training import TRAINING_RUNS

    runs = [run for (_, _, job), run in TRAINING_RUNS.items() if job == name]
    if not runs:
        raise KeyError(f"no training job named {name} runs in this local cloud")
    try:
        runs[0].interrupt()
    except Exception as exc:  # moto's ValidationError: its message says why
        raise ValueError(getattr(exc, "message", None) or str(exc)) from None
