"""The rolling training checkpoint: the full state after each epoch, for resuming.

SageMaker syncs the checkpoint directory (``/opt/ml/checkpoints``) to S3 while the job runs
and restores it into a new job started with the same checkpoint URI, which is how managed
spot training resumes after an interruption. Everything stored is a tensor or a plain
Python value, so ``torch.load(weights_only=True)`` reads it back.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FILE = "checkpoint.pth"
FORMAT = 1


class CheckpointError(ValueError):
    """The checkpoint found cannot continue this run."""


def save(directory: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``directory/checkpoint.pth`` atomically: a reader (or an
    interruption) sees the previous checkpoint or the new one, never half of one."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CHECKPOINT_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("wb") as fh:
            torch.save({"format": FORMAT, **state}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load(directory: Path) -> dict[str, Any] | None:
    """The checkpoint in ``directory``, or None when there is none."""
    path = directory / CHECKPOINT_FILE
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} has checkpoint format {state.get('format')!r}, expected {FORMAT}"
        )
    return state


def cpu_copy(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A snapshot of a state_dict that later training steps do not change."""
    return {key: value.detach().to("cpu", copy=True) for key, value in state_dict.items()}


def _names(classes: list[str]) -> str:
    return f"{len(classes)} classes {classes[:5]}" + ("..." if len(classes) > 5 else "")


def check_compatible(state: dict[str, Any], arch: str, classes: list[str], directory: Path) -> None:
    """Refuse to resume a checkpoint made for another network or another set of classes."""
    if state["arch"] != arch or state["classes"] != classes:
        raise CheckpointError(
            f"the checkpoint in {directory} was written for {state['arch']} on "
            f"{_names(state['classes'])}, not for this run's {arch} on {_names(classes)}; "
            "remove it or choose another --checkpoint-dir"
        )
