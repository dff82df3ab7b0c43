"""Train an image classifier (a torchvision ResNet) on a train/valid/test image folder.

One entry point for three ways to run:

- SageMaker script mode: paths come from ``SM_CHANNEL_TRAINING``, ``SM_MODEL_DIR``,
  ``SM_OUTPUT_DATA_DIR`` and ``/opt/ml/checkpoints``; hyperparameters arrive as flags.
- Several hosts or processes: under torchrun (``RANK``/``WORLD_SIZE``/...), or one process
  per SageMaker host (``SM_HOSTS``/``SM_CURRENT_HOST``), it trains with
  DistributedDataParallel, each process on its own shard of the data.
- Any machine: ``python -m training.train --data-dir DIR --model-dir DIR``.

Per-epoch and final metrics go to stdout as ``[metrics] ...`` and ``[final] ...`` lines
(read by ``metric_definitions.json``); logs go to stderr.

This file is the command line and the main flow; the pieces live in ``imgcls``:
``hyperparameters`` (flag types and derived settings), ``loop`` (data, model, one epoch),
``progress`` (best epoch, checkpoint save and resume), ``failure`` (SageMaker's failure
file), ``artifacts`` and ``champion`` (what is written and scored at the end).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import imgcls  # noqa: F401  (first: its __init__ makes torchvision importable)
from imgcls import artifacts, champion, checkpoint, distributed, engine
from imgcls import hyperparameters as hp
from imgcls.data import DatasetError, DataSplits
from imgcls.failure import write_failure
from imgcls.hyperparameters import augmentation, learning_rate  # noqa: F401  (public here too)
from imgcls.loop import (
    EPOCH_KEYS,
    FINAL_KEYS,
    build_data,
    build_model,
    build_optimizer,
    metric_line,
    run_epoch,
    use_amp,
)
from imgcls.model import ARCHITECTURES, FINE_TUNE, WeightsError
from imgcls.progress import Progress, load_checkpoint, save_checkpoint
from imgcls.transforms import AUGMENT_PRESETS

log = logging.getLogger("train")
metrics_log = logging.getLogger("train.metrics")
SAGEMAKER_CHECKPOINT_DIR = Path("/opt/ml/checkpoints")


# ---------------------------------------------------------------- command line


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    env = os.environ
    parser = hp.HyperparameterParser(
        prog="python -m training.train",
        description=(
            "Train a ResNet image classifier on DATA_DIR/{train,valid,test}/<class>/ images "
            "(a folder, or one .zip/.tar.gz/.tgz archive holding it, possibly under one top "
            "folder) and write a servable model directory. Every flag also accepts "
            "underscores (--batch_size); booleans take true/false."
        ),
        add_help=add_help,
        allow_abbrev=False,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    paths = parser.add_argument_group("paths (defaults from the SageMaker environment)")
    data_dir = env.get("SM_CHANNEL_TRAINING")
    paths.add_argument(
        "--data-dir",
        default=data_dir,
        required=data_dir is None,
        help="data set folder or archive; env SM_CHANNEL_TRAINING",
    )
    paths.add_argument(
        "--model-dir",
        default=env.get("SM_MODEL_DIR", "model"),
        help="where the model directory is written; env SM_MODEL_DIR",
    )
    paths.add_argument(
        "--output-dir",
        default=env.get("SM_OUTPUT_DATA_DIR", "output"),
        help="where metrics.json is written; env SM_OUTPUT_DATA_DIR",
    )
    paths.add_argument(
        "--champion-dir",
        default=env.get("SM_CHANNEL_CHAMPION"),
        help="the live model (a model directory or its model.tar.gz), scored on the same "
        "test split after training: the champion_test_acc metric; env SM_CHANNEL_CHAMPION",
    )
    paths.add_argument(
        "--checkpoint-dir",
        default=str(SAGEMAKER_CHECKPOINT_DIR) if SAGEMAKER_CHECKPOINT_DIR.is_dir() else None,
        help="save a checkpoint here every epoch and resume from it when present "
        f"(default {SAGEMAKER_CHECKPOINT_DIR} when that exists, else no checkpoints)",
    )
    model = parser.add_argument_group("model")
    model.add_argument("--arch", default="resnet50", choices=sorted(ARCHITECTURES))
    model.add_argument(
        "--weights",
        type=hp.weights,
        default="imagenet",
        help="initial weights: 'imagenet' (torchvision's, downloaded), 'none' (random) "
        "or a path to a saved state_dict",
    )
    model.add_argument(
        "--fine-tune",
        default="head",
        choices=list(FINE_TUNE),
        help="what trains: the new head only, the last residual block and the head, or all "
        "layers (--weights none always trains all)",
    )
    model.add_argument(
        "--image-size", type=hp.int_at_least(16), default=224, help="training crop size (px)"
    )
    train = parser.add_argument_group("training")
    train.add_argument("--epochs", type=hp.int_at_least(1), default=10)
    train.add_argument(
        "--batch-size", type=hp.int_at_least(1), default=32, help="images per batch per process"
    )
    train.add_argument("--learning-rate", type=hp.positive_float, default=1e-3, help="AdamW lr")
    train.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay")
    train.add_argument(
        "--lr-schedule",
        default="constant",
        choices=("constant", "cosine"),
        help="cosine: the learning rate falls from --learning-rate to 0 along a half cosine "
        "over --epochs (set per epoch)",
    )
    train.add_argument(
        "--early-stopping-patience",
        type=hp.int_at_least(0),
        default=3,
        help="stop after this many epochs without a better valid accuracy (0: never)",
    )
    train.add_argument("--seed", type=int, default=0, help="seed for init, shuffling, augmentation")
    train.add_argument(
        "--augment",
        default="standard",
        choices=AUGMENT_PRESETS,
        help="training augmentation: standard (random resized crop + flips: photos), light "
        "(a shift of a few pixels, no flips: small or non-photographic images such as "
        "digits), none (the evaluation transform)",
    )
    train.add_argument(
        "--crop-scale",
        type=hp.fraction,
        default=None,
        help="smallest crop area for --augment standard (default 0.08)",
    )
    train.add_argument(
        "--flip",
        type=hp.boolean,
        default=None,
        help="random horizontal flips (default: true for standard, false otherwise)",
    )
    train.add_argument(
        "--amp",
        type=hp.boolean,
        default=True,
        help="bf16 autocast on GPUs that support it (ignored on CPU)",
    )
    train.add_argument(
        "--num-workers",
        type=hp.int_at_least(0),
        default=hp.default_workers(),
        help="data-loading worker processes per training process",
    )
    out = parser.add_argument_group("output")
    out.add_argument(
        "--smoke-images",
        type=hp.int_at_least(0),
        default=24,
        help="held-out test images stored in smoke_set.json for the deployment smoke test",
    )
    out.add_argument(
        "--log-interval", type=hp.int_at_least(0), default=20, help="log every N batches (0: off)"
    )
    return parser


# ---------------------------------------------------------------- the run


def setup_logging(cfg: distributed.DistConfig) -> None:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s {cfg.log_prefix}%(name)s: %(message)s",
        force=True,
    )
    metrics_log.propagate = False
    metrics_log.handlers.clear()
    # Only rank 0 prints metric lines: SageMaker reads every host's log.
    handler = logging.StreamHandler(sys.stdout) if cfg.is_main else logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    metrics_log.addHandler(handler)


def fit(
    args: argparse.Namespace,
    cfg: distributed.DistConfig,
    device: torch.device,
    splits: DataSplits,
    loaders: dict[str, torch.utils.data.DataLoader],
) -> dict[str, float]:
    """Train up to ``args.epochs``, keep the best-valid weights, test them, write the model."""
    net, params = build_model(args, len(splits.classes), device)
    optimizer = build_optimizer(args, params)
    progress = load_checkpoint(args, net, optimizer, splits.classes, cfg)
    model = net
    if cfg.enabled:
        model = DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None
        )
    patience = args.early_stopping_patience
    for epoch in range(progress.epoch + 1, args.epochs + 1):
        if patience and progress.epochs_without_improvement >= patience:
            log.info("early stop: no better valid accuracy for %d epochs", patience)
            break
        row = run_epoch(args, epoch, model, net, loaders, optimizer, device, cfg)
        progress.record(row, net)
        metrics_log.info(metric_line("metrics", row, EPOCH_KEYS))
        log.info(
            "epoch %d: train loss %.6f acc %.6f, valid loss %.6f acc %.6f",
            *(row[k] for k in EPOCH_KEYS),
        )
        if cfg.is_main and args.checkpoint_dir is not None:
            save_checkpoint(args, net, optimizer, progress, splits.classes)
    timings = distributed.step_timings(model)
    if timings:
        log.info(
            "per step (DDP's sample): forward %.3f s, backward %.3f s, all-reduce %.3f s "
            "of which %.3f s not hidden by the backward",
            *(timings[k] for k in ("forward_compute", "backward_compute", "backward_comm")),
            timings["exposed_comm"],
        )
    return finish(args, cfg, device, net, progress, splits, loaders)


def finish(
    args: argparse.Namespace,
    cfg: distributed.DistConfig,
    device: torch.device,
    net: nn.Module,
    progress: Progress,
    splits: DataSplits,
    loaders: dict[str, torch.utils.data.DataLoader],
) -> dict[str, float]:
    """Test the best-valid weights and (rank 0) write the model directory and metrics."""
    net.load_state_dict(progress.best_state)
    criterion = nn.CrossEntropyLoss()
    started = time.perf_counter()
    test = engine.summarise(
        engine.evaluate(net, loaders["test"], criterion, device, use_amp(args, device))
    )
    log.info("test pass %.2f s", time.perf_counter() - started)
    metrics = {
        **{k: progress.best[k] for k in EPOCH_KEYS},
        "test_loss": test.loss,
        "test_acc": test.acc,
    }
    if cfg.is_main and args.champion_dir:
        # Before the [final] line: both are on the test split; the gate compares them.
        with tempfile.TemporaryDirectory(prefix="imgcls-champion-") as scratch:
            score = champion.evaluate(
                Path(args.champion_dir), splits.samples["test"], splits.classes, Path(scratch)
            )
        metrics_log.info(score.line())
    metrics_log.info(metric_line("final", metrics, FINAL_KEYS))
    log.info(
        "best epoch %d: valid loss %.6f acc %.6f, test loss %.6f acc %.6f",
        metrics["epoch"],
        *(metrics[k] for k in FINAL_KEYS),
    )
    if cfg.is_main:
        meta = artifacts.model_meta(args.arch, splits.classes, args.image_size, metrics, vars(args))
        meta["augmentation"] = augmentation(args).as_dict()
        smoke = artifacts.pick_smoke_samples(
            splits.samples["test"], len(splits.classes), args.smoke_images
        )
        artifacts.write_model_dir(
            Path(args.model_dir),
            progress.best_state,
            meta,
            artifacts.smoke_set(smoke, splits.classes),
        )
        artifacts.write_metrics(
            Path(args.output_dir), {"final": metrics, "history": progress.history}
        )
        log.info("wrote the model to %s", args.model_dir)
    distributed.barrier()  # every process ends once the model is written
    return metrics


def main(args: argparse.Namespace) -> dict[str, float]:
    args = hp.resolve(args)
    cfg = distributed.from_env()
    device = distributed.device_for(cfg)
    log.info(
        "%s on %s (%s); torch %s, %d threads",
        f"process {cfg.rank + 1} of {cfg.world_size}" if cfg.enabled else "single process",
        device,
        cfg.launcher,
        torch.__version__,
        torch.get_num_threads(),
    )
    if torch.cuda.device_count() > 1 and not cfg.enabled:
        log.warning(
            "%d GPUs but one process: only %s trains; launch with torchrun (SageMaker: "
            "distribution torch_distributed) to use them all",
            torch.cuda.device_count(),
            device,
        )
    with tempfile.TemporaryDirectory(prefix="imgcls-data-") as scratch:
        splits, loaders = build_data(args, Path(scratch), cfg)
        with distributed.process_group(cfg, device):
            return fit(args, cfg, device, splits, loaders)


def run(argv: Sequence[str] | None = None) -> int:
    """The command line: bad input ends with one readable line and exit status 1."""
    args = get_args_parser().parse_args(argv)
    try:
        setup_logging(distributed.from_env())
        main(args)
    except (DatasetError, WeightsError, checkpoint.CheckpointError, distributed.ConfigError) as exc:
        write_failure(str(exc))
        log.error("%s", exc)
        return 1
    except Exception as exc:
        write_failure(f"{type(exc).__name__}: {exc}")
        raise
    return 0


if __name__ == "__main__":
    sys.exit(run())
