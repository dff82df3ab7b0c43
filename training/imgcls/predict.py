"""The loaded classifier, batched prediction and the JSON response it becomes."""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imgcls.artifacts import SMOKE_FILE
from imgcls.imaging import Preprocessor
from imgcls.model import load_model
from imgcls.optimize import noise_probe, optimise, requested_mode
from imgcls.transforms import IMAGENET_MEAN, IMAGENET_STD

DEFAULT_TOP_K = 5
PROBE_IMAGES = 8  # smoke images the optimised network is checked on at load
# Smoke images int8 calibrates on: those after the probe's, never the probe's own, so that
# the error the probe measures (which sizes the guard) is out-of-sample.
CALIBRATION_IMAGES = 32

log = logging.getLogger("imgcls.predict")


@dataclass(frozen=True)
class Classifier:
    net: nn.Module
    classes: tuple[str, ...]
    preprocess: Preprocessor
    device: torch.device
    top_k: int  # default k for requests that do not ask
    mode: str = "eager"  # how the network runs (imgcls.optimize)


@dataclass(frozen=True)
class Prediction:
    logits: torch.Tensor  # 1-D, num_classes, on the CPU
    classes: tuple[str, ...]
    top_k: int


def load_classifier(model_dir: str | Path, mode: str | None = None) -> Classifier:
    """The model written by train.py, on the GPU when there is one, in eval mode, in its
    fastest form that agrees with the eager network (``mode``: see imgcls.optimize;
    default ``$IMGCLS_OPTIMIZE``, else ``auto``)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    mode = requested_mode() if mode is None else mode
    net, meta = load_model(model_dir, device)
    preprocess = Preprocessor(int(meta["image_size"]))
    _check_preprocessing(meta, preprocess)
    classes = tuple(meta["classes"])
    if mode != "eager":
        probe, calibration, real = probe_and_calibration(model_dir, preprocess)
        optimised = optimise(net, probe, real, mode, calibration)
        net, mode = optimised.net, optimised.mode
    return Classifier(net, classes, preprocess, device, default_top_k(), mode)


def probe_batch(
    model_dir: str | Path, preprocess: Preprocessor, limit: int = PROBE_IMAGES
) -> tuple[torch.Tensor, bool]:
    """Up to ``limit`` of the model's smoke images (one per class first), and True;
    seeded noise and False when the model has none that decode."""
    path = Path(model_dir) / SMOKE_FILE
    tensors = []
    try:
        items = json.loads(path.read_text())["items"] if path.is_file() else []
        for item in items[:limit]:
            tensors.append(preprocess(base64.b64decode(item["image"])))
    except (ValueError, KeyError, TypeError, OSError) as exc:
        log.warning("cannot read probe images from %s (%s); probing with noise", path, exc)
        tensors = []
    if tensors:
        return torch.cat(tensors), True
    return noise_probe(preprocess.image_size), False


def probe_and_calibration(
    model_dir: str | Path, preprocess: Preprocessor
) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """The probe (the first ``PROBE_IMAGES`` smoke images), the disjoint images after them
    that int8 calibrates on (None when there are none), and whether the images are real."""
    smoke, real = probe_batch(model_dir, preprocess, PROBE_IMAGES + CALIBRATION_IMAGES)
    rest = smoke[PROBE_IMAGES:]
    return smoke[:PROBE_IMAGES], rest if real and len(rest) else None, real


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
