"""The model directory SageMaker packs into model.tar.gz, and the run's metrics file.

::

    model.pth        state_dict of the whole network
    model.json       what serving needs to rebuild and feed it, plus metrics and provenance
    smoke_set.json   a few held-out test images with their labels, for the smoke test
    code/            inference.py and the imgcls package, for the PyTorch serving container
"""

from __future__ import annotations

import base64
import io
import json
import platform
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torchvision

from imgcls.data import open_rgb
from imgcls.model import META_FILE, MODEL_FILE
from imgcls.transforms import IMAGENET_MEAN, IMAGENET_STD, resize_size_for

SMOKE_FILE = "smoke_set.json"
METRICS_FILE = "metrics.json"
SMOKE_MAX_SIDE = 512
SMOKE_JPEG_QUALITY = 90
PACKAGE_DIR = Path(__file__).resolve().parent  # imgcls/
SOURCE_DIR = PACKAGE_DIR.parent  # training/ (or /opt/ml/code): holds inference.py


def model_meta(
    arch: str,
    classes: Sequence[str],
    image_size: int,
    metrics: dict[str, float],
    hyperparameters: dict[str, Any],
) -> dict[str, Any]:
    return {
        "format": 1,
        "arch": arch,
        "num_classes": len(classes),
        "classes": list(classes),
        "image_size": image_size,
        "resize_size": resize_size_for(image_size),
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "head": "linear",
        "metrics": metrics,
        "hyperparameters": hyperparameters,
        "versions": {
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "python": platform.python_version(),
        },
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def pick_smoke_samples(
    samples: Sequence[tuple[Path, int]], num_classes: int, limit: int
) -> list[tuple[Path, int]]:
    """Up to ``limit`` samples taken round-robin over the classes (the first image of each
    class, then the second, ...), in a fixed order, so every class shows up early."""
    per_class: list[list[Path]] = [[] for _ in range(num_classes)]
    for path, label in sorted(samples):
        per_class[label].append(path)
    picked: list[tuple[Path, int]] = []
    depth = 0
    while len(picked) < limit and any(depth < len(paths) for paths in per_class):
        for label, paths in enumerate(per_class):
            if depth < len(paths) and len(picked) < limit:
                picked.append((paths[depth], label))
        depth += 1
    return picked


def _jpeg_base64(path: Path) -> str:
    image = open_rgb(path)
    image.thumbnail((SMOKE_MAX_SIDE, SMOKE_MAX_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=SMOKE_JPEG_QUALITY)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def smoke_set(samples: Sequence[tuple[Path, int]], classes: Sequence[str]) -> dict[str, Any]:
    items = [
        {
            "label": classes[label],
            "index": label,
            "content_type": "image/jpeg",
            "image": _jpeg_base64(path),
        }
        for path, label in samples
    ]
    return {"format": 1, "items": items}


def copy_serving_code(dest: Path) -> None:
    """Copy inference.py (when present) and the imgcls package into ``dest`` (model/code),
    replacing whatever an earlier run left there."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    inference = SOURCE_DIR / "inference.py"
    if inference.is_file():
        shutil.copy2(inference, dest / inference.name)
    shutil.copytree(
        PACKAGE_DIR,
        dest / PACKAGE_DIR.name,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )


def write_model_dir(
    model_dir: Path,
    state_dict: dict[str, torch.Tensor],
    meta: dict[str, Any],
    smoke: dict[str, Any],
) -> None:
    """Write the model directory; model.json goes last, so its presence means complete."""
    model_dir.mkdir(parents=True, exist_ok=True)
    torch.save(state_dict, model_dir / MODEL_FILE)
    (model_dir / SMOKE_FILE).write_text(json.dumps(smoke))
    copy_serving_code(model_dir / "code")
    (model_dir / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def write_metrics(output_dir: Path, metrics: dict[str, Any]) -> Path:
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / METRICS_FILE
    path.write_text(json.dumps(metrics, indent=2) + "\n")
    return path
