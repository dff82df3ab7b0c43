"""Model directories and images for the serving tests."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import torch
from PIL import Image

from imgcls.model import build_model
from imgcls.transforms import IMAGENET_MEAN, IMAGENET_STD, resize_size_for

TRAINING = Path(__file__).resolve().parents[2] / "training"
CLASSES = ("cat", "dog", "fox", "owl")


def make_model_dir(path: Path, image_size: int = 32, seed: int = 0) -> Path:
    """A model directory as train.py lays it out, with random resnet18 weights."""
    torch.manual_seed(seed)
    path.mkdir(parents=True, exist_ok=True)
    model = build_model("resnet18", len(CLASSES), weights="none")
    torch.save(model.state_dict(), path / "model.pth")
    meta = {
        "format": 1,
        "arch": "resnet18",
        "num_classes": len(CLASSES),
        "classes": list(CLASSES),
        "image_size": image_size,
        "resize_size": resize_size_for(image_size),
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "head": "linear",
    }
    (path / "model.json").write_text(json.dumps(meta))
    copy_code(path)
    return path


def copy_code(model_dir: Path) -> None:
    code = model_dir / "code"
    code.mkdir(exist_ok=True)
    shutil.copy2(TRAINING / "inference.py", code / "inference.py")
    shutil.copytree(
        TRAINING / "imgcls",
        code / "imgcls",
        ignore=shutil.ignore_patterns("__pycache__"),
        dirs_exist_ok=True,
    )


def image_bytes(
    size: tuple[int, int] = (48, 40), seed: int = 0, fmt: str = "JPEG", mode: str = "RGB"
) -> bytes:
    """A deterministic noisy image, different per seed, encoded as ``fmt``."""
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (size[1], size[0], 3), generator=generator, dtype=torch.uint8)
    image = Image.fromarray(pixels.numpy(), "RGB").convert(mode)
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()
