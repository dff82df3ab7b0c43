"""train.py's hyperparameters: the flag value types, SageMaker's flag spelling, and the
settings derived from them (effective settings, augmentation, learning-rate schedule).

train.py declares the flags (``get_args_parser``); this module holds what they are parsed
and interpreted with.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from pathlib import Path

from imgcls.failure import write_failure
from imgcls.transforms import Augmentation

log = logging.getLogger("train")


def boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def int_at_least(minimum: int):
    def parse(value: str) -> int:
        number = int(value)
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {number}")
        return number

    return parse


def positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value}")
    return number


def fraction(value: str) -> float:
    number = float(value)
    if not 0 < number <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return number


def weights(value: str) -> str:
    if value in ("imagenet", "none") or Path(value).is_file():
        return value
    raise argparse.ArgumentTypeError(f"expected 'imagenet', 'none' or a file, got {value!r}")


def default_workers() -> int:
    return min(4, (os.cpu_count() or 1) // 2)


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


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """The settings as they take effect (recorded in model.json and the checkpoint)."""
    if args.weights == "none" and args.fine_tune != "all":
        log.warning(
            "--weights none with --fine-tune %s would train on a frozen random backbone, "
            "which cannot learn useful features: training all layers instead",
            args.fine_tune,
        )
        return argparse.Namespace(**{**vars(args), "fine_tune": "all"})
    return args


def augmentation(args: argparse.Namespace) -> Augmentation:
    return Augmentation.of(args.augment, args.crop_scale, args.flip)


def learning_rate(args: argparse.Namespace, epoch: int) -> float:
    """The learning rate of ``epoch`` (1-based) under ``--lr-schedule``."""
    if args.lr_schedule == "constant":
        return args.learning_rate
    return args.learning_rate * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / args.epochs))
