"""The pieces of a training run that train.py puts together: the data loaders, the model
and optimizer built from the hyperparameters, one epoch of training plus validation, and
the metric lines SageMaker reads.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from imgcls import distributed, engine
from imgcls.data import (
    CachedImageList,
    DatasetError,
    DataSplits,
    ImageList,
    dataset_name,
    eval_loader,
    locate,
    scan,
    train_loader,
)
from imgcls.hyperparameters import augmentation, learning_rate
from imgcls.model import build_model as build_network
from imgcls.model import set_trainable
from imgcls.transforms import EVALUATION, Augmentation, stages, train_transform

log = logging.getLogger("train")  # train.py's logger: its lines are part of the job log
EPOCH_KEYS = ("epoch", "train_loss", "train_acc", "valid_loss", "valid_acc")  # [metrics] lines
FINAL_KEYS = ("valid_loss", "valid_acc", "test_loss", "test_acc")  # the [final] line


def image_list(
    args: argparse.Namespace, samples: list[tuple[Path, int]], aug: Augmentation = EVALUATION
) -> ImageList:
    """A split's dataset, transformed with ``aug`` (evaluation's by default). Loading in
    this process (no workers), each image is decoded once and kept."""
    split_stages = stages(args.image_size, aug)
    if args.num_workers == 0 and split_stages is not None:
        return CachedImageList(samples, split_stages)
    return ImageList(samples, train_transform(args.image_size, aug))


def build_data(
    args: argparse.Namespace, scratch: Path, cfg: distributed.DistConfig
) -> tuple[DataSplits, dict[str, torch.utils.data.DataLoader]]:
    data_dir = Path(args.data_dir)
    splits = scan(locate(data_dir, scratch), dataset_name(data_dir))
    sizes = {name: len(samples) for name, samples in splits.samples.items()}
    log.info("data set at %s: %d classes, %s images", splits.root, len(splits.classes), sizes)
    datasets = {
        "train": image_list(args, splits.samples["train"], augmentation(args)),
        "valid": image_list(args, splits.samples["valid"]),
        "test": image_list(args, splits.samples["test"]),
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


def build_model(
    args: argparse.Namespace, num_classes: int, device: torch.device
) -> tuple[nn.Module, list[nn.Parameter]]:
    torch.manual_seed(args.seed)  # the same initial head on every process
    net = build_network(args.arch, num_classes, args.weights)
    trainable = set_trainable(net, args.fine_tune)
    if device.type == "cuda":
        net = net.to(device, memory_format=torch.channels_last)
    return net.to(device), trainable


def build_optimizer(args: argparse.Namespace, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=args.weight_decay)


def use_amp(args: argparse.Namespace, device: torch.device) -> bool:
    return args.amp and device.type == "cuda" and torch.cuda.is_bf16_supported()


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
    clock = engine.Clock()
    started = time.perf_counter()
    train = engine.summarise(
        engine.train_one_epoch(
            model,
            loaders["train"],
            criterion,
            optimizer,
            device,
            amp,
            epoch,
            args.log_interval,
            clock,
        )
    )
    seconds = time.perf_counter() - started
    valid = engine.summarise(engine.evaluate(net, loaders["valid"], criterion, device, amp))
    log.info(
        "epoch %d: trained on %d images in %.1f s (%.1f images/s over %d process(es)); "
        "waiting for batches %.2f s, validation %.2f s",
        epoch,
        train.count,
        seconds,
        train.count / seconds,
        cfg.world_size,
        clock.data,
        time.perf_counter() - started - seconds,
    )
    return {
        "epoch": epoch,
        "train_loss": train.loss,
        "train_acc": train.acc,
        "valid_loss": valid.loss,
        "valid_acc": valid.acc,
        "seconds": seconds,
        "images_per_second": train.count / seconds,
    }
