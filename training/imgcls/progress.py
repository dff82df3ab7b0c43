"""Where a training run stands, and saving and resuming it through the rolling checkpoint.

The checkpoint (``imgcls.checkpoint``) holds this progress plus the model, the optimizer
and the settings, so a run interrupted after any epoch (managed spot training) continues
exactly where it stopped.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from imgcls import checkpoint, distributed

log = logging.getLogger("train")  # train.py's logger: its lines are part of the job log


@dataclass
class Progress:
    """Where training stands; a checkpoint holds this plus the model and optimizer."""

    epoch: int = 0  # epochs completed
    best: dict[str, float] = field(default_factory=dict)  # the best epoch's metrics
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    epochs_without_improvement: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    def record(self, row: dict[str, float], net: nn.Module) -> bool:
        """Add an epoch's metrics; keep the weights when valid accuracy improved (ties go
        to the lower valid loss). Returns whether it improved."""
        self.epoch = int(row["epoch"])
        self.history.append(row)
        best = self.best
        improved = not best or (row["valid_acc"], -row["valid_loss"]) > (
            best["valid_acc"],
            -best["valid_loss"],
        )
        if improved:
            self.best = row
            self.best_state = checkpoint.cpu_copy(net.state_dict())
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1
        return improved


def save_checkpoint(
    args: argparse.Namespace,
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    progress: Progress,
    classes: list[str],
) -> None:
    state = {
        "epoch": progress.epoch,
        "model": net.state_dict(),
        "optimizer": optimizer.state_dict(),
        "best": progress.best,
        "best_model": progress.best_state,
        "epochs_without_improvement": progress.epochs_without_improvement,
        "history": progress.history,
        "arch": args.arch,
        "classes": classes,
        "args": vars(args),
    }
    path = checkpoint.save(Path(args.checkpoint_dir), state)
    log.info("saved checkpoint %s (epoch %d)", path, progress.epoch)


def load_checkpoint(
    args: argparse.Namespace,
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    classes: list[str],
    cfg: distributed.DistConfig,
) -> Progress:
    """Resume from the checkpoint directory when it holds a checkpoint. Rank 0 reads it
    and sends it to the others, so only one host needs the files."""
    if args.checkpoint_dir is None:
        return Progress()
    directory = Path(args.checkpoint_dir)
    state = distributed.broadcast_from_main(checkpoint.load(directory) if cfg.is_main else None)
    if state is None:
        return Progress()
    checkpoint.check_compatible(state, args.arch, classes, directory)
    net.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    progress = Progress(
        epoch=state["epoch"],
        best=state["best"],
        best_state=state["best_model"],
        epochs_without_improvement=state["epochs_without_improvement"],
        history=state["history"],
    )
    log.info(
        "resuming from the checkpoint in %s: %d epoch(s) done, continuing at epoch %d",
        directory,
        progress.epoch,
        progress.epoch + 1,
    )
    return progress
