"""The network: a torchvision ResNet with a new head sized for the data set's classes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision import models

# name -> (constructor, ImageNet weights enum)
ARCHITECTURES: dict[str, tuple[Any, Any]] = {
    "resnet18": (models.resnet18, models.ResNet18_Weights.IMAGENET1K_V1),
    "resnet34": (models.resnet34, models.ResNet34_Weights.IMAGENET1K_V1),
    "resnet50": (models.resnet50, models.ResNet50_Weights.IMAGENET1K_V2),
}
# --fine-tune choice -> the top-level modules that train; everything else stays frozen.
FINE_TUNE = {"head": ("fc",), "last-block": ("layer4", "fc"), "all": None}
MODEL_FILE = "model.pth"
META_FILE = "model.json"


class WeightsError(ValueError):
    """A ``--weights`` file that cannot initialise the network."""


def _load_backbone(model: nn.Module, path: Path, arch: str) -> None:
    """Load every tensor but the head from a state_dict file; all of them must fit."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # whatever fails, the file is not a readable state_dict
        raise WeightsError(f"--weights {path} is not a readable state_dict: {exc}") from exc
    if not isinstance(state, dict):
        raise WeightsError(f"--weights {path} holds a {type(state).__name__}, not a state_dict")
    # DDP-wrapped models save "module."-prefixed names; the head is replaced anyway.
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        reason = str(exc).strip().splitlines()[-1].strip()
        raise WeightsError(f"--weights {path} does not fit {arch}: {reason}") from exc
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise WeightsError(
            f"--weights {path} does not fit {arch}: {len(missing)} tensors missing, "
            f"{len(unexpected)} unexpected (e.g. {(missing + unexpected)[0]!r})"
        )


def build_model(arch: str, num_classes: int, weights: str = "none") -> nn.Module:
    """A ResNet whose ``fc`` is a new ``Linear(features, num_classes)``.

    ``weights``: ``"imagenet"`` (torchvision's pretrained weights, downloaded once into
    the torch hub cache), ``"none"`` (random init) or a path to a saved state_dict of the
    same architecture (any head: it is replaced).
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown --arch {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    if num_classes < 2:
        raise ValueError(f"need at least 2 classes, found {num_classes}")
    constructor, imagenet = ARCHITECTURES[arch]
    model = constructor(weights=imagenet if weights == "imagenet" else None)
    if weights not in ("imagenet", "none"):
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"--weights {weights!r} is neither 'imagenet', 'none' nor a file")
        _load_backbone(model, path, arch)
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def set_trainable(model: nn.Module, fine_tune: str) -> list[nn.Parameter]:
    """Freeze all but the parts ``fine_tune`` names; return the parameters that train."""
    if fine_tune not in FINE_TUNE:
        raise ValueError(f"unknown --fine-tune {fine_tune!r}; choose one of {', '.join(FINE_TUNE)}")
    parts = FINE_TUNE[fine_tune]
    for name, param in model.named_parameters():
        param.requires_grad = parts is None or name.split(".", 1)[0] in parts
    return [p for p in model.parameters() if p.requires_grad]


def read_meta(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: not a model directory written by train.py")
    return json.loads(path.read_text())


def load_model(model_dir: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the network described by ``model.json`` and load ``model.pth`` into it."""
    meta = read_meta(model_dir)
    model = build_model(meta["arch"], int(meta["num_classes"]), weights="none")
    state = torch.load(Path(model_dir) / MODEL_FILE, map_location=device, weights_only=True)
    model.load_state_dict(state)
    return model.to(device).eval(), meta
