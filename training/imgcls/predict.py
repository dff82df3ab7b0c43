"""The loaded classifier, batched prediction and the JSON response it becomes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imgcls.imaging import Preprocessor
from imgcls.model import load_model
from imgcls.transforms import IMAGENET_MEAN, IMAGENET_STD

DEFAULT_TOP_K = 5


@dataclass(frozen=True)
class Classifier:
    net: nn.Module
    classes: tuple[str, ...]
    preprocess: Preprocessor
    device: torch.device
    top_k: int  # default k for requests that do not ask


@dataclass(frozen=True)
class Prediction:
    logits: torch.Tensor  # 1-D, num_classes, on the CPU
    classes: tuple[str, ...]
    top_k: int


def load_classifier(model_dir: str | Path) -> Classifier:
    """The model written by train.py, on the GPU when there is one, in eval mode."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net, meta = load_model(model_dir, device)
    preprocess = Preprocessor(int(meta["image_size"]))
    _check_preprocessing(meta, preprocess)
    classes = tuple(meta["classes"])
    return Classifier(net, classes, preprocess, device, default_top_k())


def default_top_k() -> int:
    raw = os.environ.get("TOP_K", str(DEFAULT_TOP_K))
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"TOP_K must be a positive integer, got {raw!r}")
    return int(raw)


def _check_preprocessing(meta: dict[str, Any], preprocess: Preprocessor) -> None:
    # model.json records how training normalised images; serving must do the same.
    expected = {
        "resize_size": preprocess.resize_size,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
    }
    for key, value in expected.items():
        if key in meta and meta[key] != value:
            raise ValueError(f"model.json {key}={meta[key]!r} but this code serves with {value!r}")


def predict_batch(
    classifier: Classifier, images: Sequence[torch.Tensor], top_ks: Sequence[int | None]
) -> list[Prediction]:
    """One forward pass over ``N`` preprocessed ``1 x C x H x W`` images."""
    batch = torch.cat(list(images)).to(classifier.device, non_blocking=True)
    with torch.inference_mode():
        logits = classifier.net(batch).float().cpu()
    return [
        Prediction(row, classifier.classes, k or classifier.top_k)
        for row, k in zip(logits, top_ks, strict=True)
    ]


def response_body(prediction: Prediction) -> dict[str, Any]:
    """``{"predictions": top-k best first, "logits": [[...]]}`` (docs/architecture.md)."""
    probabilities = torch.softmax(prediction.logits, dim=0)
    k = min(prediction.top_k, len(prediction.classes))
    top = torch.topk(probabilities, k)
    return {
        "predictions": [
            {"label": prediction.classes[i], "index": i, "probability": p}
            for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
        ],
        "logits": [prediction.logits.tolist()],
    }
