"""Fixtures for the training tests: tiny data sets and a way to run train.py."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from tests.data_helpers import write_image_folder

REPO = Path(__file__).resolve().parents[2]
# Variables that would make train.py think it runs on SageMaker or under torchrun.
LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
# A tiny, fast run: 32 px, resnet18 from random weights, no data-loading workers.
FAST_FLAGS = (
    "--arch", "resnet18", "--weights", "none", "--fine-tune", "all", "--image-size", "32",
    "--batch-size", "8", "--num-workers", "0", "--log-interval", "0", "--smoke-images", "5",
)  # fmt: skip


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without SageMaker/torchrun variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_") and k not in LAUNCH_VARS}
    env["PYTHONUNBUFFERED"] = "1"
    return {**env, **(extra or {})}


def train_command(args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "training.train", *args]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 classes x (8 train, 4 valid, 4 test) JPEGs of 32 px. Do not modify it."""
    return write_image_folder(tmp_path_factory.mktemp("tiny") / "data")


def run_train(
    args: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m training.train ARGS`` to completion (killed after ``timeout``)."""
    return subprocess.run(
        train_command(args),
        cwd=REPO,
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
