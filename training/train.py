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
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import imgcls  # noqa: F401  (first: its __init__ makes torchvision importable)
from imgcls import artifacts, champion, checkpoint, distributed, engine
from imgcls.data import DatasetError, DataSplits, ImageList, eval_loader, locate, scan, train_loader
from imgcls.model import ARCHITECTURES, FINE_TUNE, WeightsError, set_trainable
from imgcls.model import build_model as build_network
from imgcls.transforms import AUGMENT_PRESETS, Augmentation, eval_transform, train_transform

log = logging.getLogger("train")
metrics_log = logging.getLogger("train.metrics")
SAGEMAKER_CHECKPOINT_DIR = Path("/opt/ml/checkpoints")
FAILURE_MESSAGE_LIMIT = 1024  # SageMaker keeps this much of /opt/ml/output/failure
EPOCH_KEYS = ("epoch", "train_loss", "train_acc", "valid_loss", "valid_acc")  # [metrics] lines
FINAL_KEYS = ("valid_loss", "valid_acc", "test_loss", "test_acc")  # the [final] line


# ---------------------------------------------------------------- command line


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _int_at_least(minimum: int):
    def parse(value: str) -> int:
        number = int(value)
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {number}")
        return number

    return parse


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value}")
    return number


def _fraction(value: str) -> float:
    number = float(value)
    if not 0 < number <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return number


def _weights(value: str) -> str:
    if value in ("imagenet", "none") or Path(value).is_file():
        return value
    raise argparse.ArgumentTypeError(f"expected 'imagenet', 'none' or a file, got {value!r}")


def _default_workers() -> int:
    return min(4, (os.cpu_count() or 1) // 2)


def failure_path() -> Path | None:
    """SageMaker's failure file (``/opt/ml/output/failure``), found as the parent of
    ``SM_OUTPUT_DATA_DIR``; None outside SageMaker."""
    output_data = os.environ.get("SM_OUTPUT_DATA_DIR")
    return Path(output_data).parent / "failure" if output_data else None


def write_failure(message: str) -> None:
    """Record why the job failed (SageMaker shows it as FailureReason). The first process
    to fail writes it: the others usually fail only because a peer went away."""
    path = failure_path()
    if path is None:
        return
    try:
        with path.open("x") as fh:
            fh.write(message[:FAILURE_MESSAGE_LIMIT])
    except OSError:
        pass  # written already, or no output directory: the log still has the message


class HyperparameterParser(argparse.ArgumentParser):
    """Accepts ``--batch_size`` for ``--batch-size``: SageMaker passes hyperparameters as
    ``--<name> <value>`` with the name spelt as the user wrote it. A bad flag also goes to
    SageMaker's failure file, so the job's FailureReason names it."""

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        argv = sys.argv[1:] if args is None else list(args)
        normalised = [
            a.partition("=")[0].replace("_", "-") + "".join(a.partition("=")[1:])
            if a.startswith("--")
            else a
            for a in argv
        ]
        return super().parse_known_args(normalised, namespace)

    def error(self, message: str):  # type: ignore[override]
        write_failure(f"invalid hyperparameters: {message}")
        super().error(message)


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    env = os.environ
    parser = HyperparameterParser(
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
        type=_weights,
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
        "--image-size", type=_int_at_least(32), default=224, help="training crop size (px)"
    )
    train = parser.add_argument_group("training")
    train.add_argument("--epochs", type=_int_at_least(1), default=10)
    train.add_argument(
        "--batch-size", type=_int_at_least(1), default=32, help="images per batch per process"
    )
    train.add_argument("--learning-rate", type=_positive_float, default=1e-3, help="AdamW lr")
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
        type=_int_at_least(0),
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
        type=_fraction,
        default=None,
        help="smallest crop area for --augment standard (default 0.08)",
    )
    train.add_argument(
        "--flip",
        type=_bool,
        default=None,
        help="random horizontal flips (default: true for standard, false otherwise)",
    )
    train.add_argument(
        "--amp",
        type=_bool,
        default=True,
        help="bf16 autocast on GPUs that support it (ignored on CPU)",
    )
    train.add_argument(
        "--num-workers",
        type=_int_at_least(0),
        default=_default_workers(),
        help="data-loading worker processes per training process",
    )
    out = parser.add_argument_group("output")
    out.add_argument(
        "--smoke-images",
        type=_int_at_least(0),
        default=24,
        help="held-out test images stored in smoke_set.json for the deployment smoke test",
    )
    out.add_argument(
        "--log-interval", type=_int_at_least(0), default=20, help="log every N batches (0: off)"
    )
    return parser


# ---------------------------------------------------------------- building blocks


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


def build_data(
    args: argparse.Namespace, scratch: Path, cfg: distributed.DistConfig
) -> tuple[DataSplits, dict[str, torch.utils.data.DataLoader]]:
    splits = scan(locate(Path(args.data_dir), scratch))
    sizes = {name: len(samples) for name, samples in splits.samples.items()}
    log.info("data set at %s: %d classes, %s images", splits.root, len(splits.classes), sizes)
    datasets = {
        "train": ImageList(
            splits.samples["train"], train_transform(args.image_size, augmentation(args))
        ),
        "valid": ImageList(splits.samples["valid"], eval_transform(args.image_size)),
        "test": ImageList(splits.samples["test"], eval_transform(args.image_size)),
    }
    loaders = {
        "train": train_loader(
            datasets["train"],
            args.batch_size,
            args.num_workers,
            cfg.rank,
            cfg.world_size,
            args.seed,
        ),
        **{
            name: eval_loader(
                datasets[name], args.batch_size, args.num_workers, cfg.rank, cfg.world_size
            )
            for name in ("valid", "test")
        },
    }
    if len(loaders["train"]) == 0:
        raise DatasetError(
            f"train/ has {sizes['train']} images: too few for {cfg.world_size} process(es)"
        )
    shard = len(loaders["train"].sampler)
    log.info("this process trains on a shard of %d of %d train images", shard, sizes["train"])
    return splits, loaders


def augmentation(args: argparse.Namespace) -> Augmentation:
    return Augmentation.of(args.augment, args.crop_scale, args.flip)


def resolve_args(args: argparse.Namespace) -> argparse.Namespace:
    """The settings as they take effect (recorded in model.json and the checkpoint)."""
    if args.weights == "none" and args.fine_tune != "all":
        log.warning(
            "--weights none with --fine-tune %s would train on a frozen random backbone, "
            "which cannot learn useful features: training all layers instead",
            args.fine_tune,
        )
        return argparse.Namespace(**{**vars(args), "fine_tune": "all"})
    return args


def build_model(
    args: argparse.Namespace, num_classes: int, device: torch.device
) -> tuple[nn.Module, list[nn.Parameter]]:
    torch.manual_seed(args.seed)  # the same initial head on every process
    net = build_network(args.arch, num_classes, args.weights)
    trainable = set_trainable(net, args.fine_tune)
    if device.type == "cuda":
        net = net.to(device, memory_format=torch.channels_last)
    return net.to(device), trainable


def learning_rate(args: argparse.Namespace, epoch: int) -> float:
    """The learning rate of ``epoch`` (1-based) under ``--lr-schedule``."""
    if args.lr_schedule == "constant":
        return args.learning_rate
    return args.learning_rate * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / args.epochs))


def build_optimizer(args: argparse.Namespace, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=args.weight_decay)


def use_amp(args: argparse.Namespace, device: torch.device) -> bool:
    return args.amp and device.type == "cuda" and torch.cuda.is_bf16_supported()


# ---------------------------------------------------------------- progress and checkpoints


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


# ---------------------------------------------------------------- the run


def metric_line(tag: str, values: dict[str, float], keys: Sequence[str]) -> str:
    fields = (f"{k}={int(values[k])}" if k == "epoch" else f"{k}={values[k]:.6f}" for k in keys)
    return f"[{tag}] " + " ".join(fields)


def run_epoch(
    args: argparse.Namespace,
    epoch: int,
    model: nn.Module,
    net: nn.Module,
    loaders: dict[str, torch.utils.data.DataLoader],
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    cfg: distributed.DistConfig,
) -> dict[str, float]:
    """Train one epoch, validate, and return the epoch's metrics (the same on every rank)."""
    # Seeding from (seed, epoch, rank) makes a resumed run augment exactly as an
    # uninterrupted one would, and gives every rank its own augmentation stream.
    torch.manual_seed(args.seed + 10_000 * epoch + cfg.rank)
    for group in optimizer.param_groups:  # a function of the epoch: resuming needs no state
        group["lr"] = learning_rate(args, epoch)
    loaders["train"].sampler.set_epoch(epoch)
    criterion = nn.CrossEntropyLoss()
    amp = use_amp(args, device)
    started = time.perf_counter()
    train = engine.summarise(
        engine.train_one_epoch(
            model, loaders["train"], criterion, optimizer, device, amp, epoch, args.log_interval
        )
    )
    seconds = time.perf_counter() - started
    log.info(
        "epoch %d: trained on %d images in %.1f s (%.1f images/s over %d process(es))",
        epoch,
        train.count,
        seconds,
        train.count / seconds,
        cfg.world_size,
    )
    valid = engine.summarise(engine.evaluate(net, loaders["valid"], criterion, device, amp))
    return {
        "epoch": epoch,
        "train_loss": train.loss,
        "train_acc": train.acc,
        "valid_loss": valid.loss,
        "valid_acc": valid.acc,
        "seconds": seconds,
        "images_per_second": train.count / seconds,
    }


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
    test = engine.summarise(
        engine.evaluate(net, loaders["test"], criterion, device, use_amp(args, device))
    )
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
    args = resolve_args(args)
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
