"""A resnet50 trained from scratch in the bench on real images, for ``bench.serving --trained``.

The images are scikit-learn's digits (training/sample_data.py: 1,797 scans of 8x8, ten
classes, split 70/15/15 per class), upscaled and JPEG-encoded, then read through serving's
own preprocessing. Three disjoint sets: part of the train split trains; 40 images of the
valid split become the smoke set (serving's probe and int8 calibration images); the test
split (270 images) is held out, never trained or calibrated on. A training step at 224 px
costs 25 GFLOP an image (forward and backward), so most epochs run at smaller sizes first
(progressive resizing: the same network, fewer pixels) and the last at 224 px; BatchNorm's
statistics are then measured at 224 px. The recipe is 11 TFLOP (counted): 7-10 min at the
18-28 GFLOP/s one process reaches training on these 2 cores when idle; ~20 min under
``nice -n 10`` beside a load average of 20.
"""

from __future__ import annotations

import base64
import io
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

import training  # noqa: F401  (puts training/ on sys.path: imgcls imports as in SageMaker)

# isort: split
from imgcls.artifacts import model_meta, write_model_dir
from imgcls.imaging import Preprocessor
from imgcls.model import build_model
from imgcls.optimize import Guarded, quantize
from imgcls.predict import CALIBRATION_IMAGES, PROBE_IMAGES, Classifier
from training.sample_data import load_digits, stratified_split

# isort: split
from torchvision.models.resnet import Bottleneck  # after imgcls: its import guard

IMAGE_SIZE = 224
# (image size, epochs, train images)
RECIPE = ((56, 2, 600), (112, 2, 400), (224, 1, 128))
BATCH = 32
LEARNING_RATE = 2e-3
BN_IMAGES = 64  # train images BatchNorm's 224 px statistics are measured on


@dataclass(frozen=True)
class Digits:
    train: list[tuple[bytes, int]]
    smoke: list[tuple[bytes, int]]  # the probe's and calibration's images
    held_out: list[tuple[bytes, int]]


def digits(seed: int = 0) -> Digits:
    """The digits as 256 px JPEGs (as sample_data writes them), in three disjoint sets."""
    images, labels = load_digits()
    pixels = (images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)

    def encode(index: int) -> tuple[bytes, int]:
        image = Image.fromarray(pixels[index], mode="L").convert("RGB")
        out = io.BytesIO()
        image.resize((256, 256), Image.Resampling.BICUBIC).save(out, "JPEG", quality=95)
        return out.getvalue(), int(labels[index])

    train, smoke, test = split(labels, seed)
    return Digits([encode(i) for i in train], [encode(i) for i in smoke], [encode(i) for i in test])


def split(labels: np.ndarray, seed: int) -> tuple[list[int], list[int], list[int]]:
    """Indices of the train images (shuffled: a prefix holds every class), the smoke set
    (from the validation split, one per class in turn) and the held-out test images."""
    train, valid, test = stratified_split(labels, seed)
    shuffled = np.random.default_rng(seed).permutation(train)
    smoke = round_robin(valid, labels, PROBE_IMAGES + CALIBRATION_IMAGES)
    return [int(i) for i in shuffled], smoke, [int(i) for i in test]


def round_robin(indices: np.ndarray, labels: np.ndarray, count: int) -> list[int]:
    """``count`` of ``indices``, one per class in turn (the probe holds every class)."""
    by_class = [list(indices[labels[indices] == c]) for c in np.unique(labels[indices])]
    picked: list[int] = []
    while len(picked) < count and any(by_class):
        picked += [int(members.pop(0)) for members in by_class if members][: count - len(picked)]
    return picked


def tensors(items: Sequence[tuple[bytes, int]], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as serving preprocesses them at ``size`` px, and their labels."""
    preprocess = Preprocessor(size)
    return torch.cat([preprocess(body) for body, _ in items]), torch.tensor([c for _, c in items])


def train(data: Digits, recipe: Sequence[tuple[int, int, int]] = RECIPE) -> nn.Module:
    torch.manual_seed(0)
    net = build_model("resnet50", 10, weights="none")
    for module in net.modules():
        if isinstance(module, Bottleneck):  # each block starts as the identity: trains fast
            nn.init.zeros_(module.bn3.weight)
    optimizer = torch.optim.AdamW(net.parameters(), lr=LEARNING_RATE, weight_decay=1e-4)
    net.train()
    started = time.perf_counter()
    for size, epochs, count in recipe:
        # a cycle per size: a new size needs a learning rate that can still move the
        # network (one cycle over the whole run left the last sizes at almost none)
        steps = epochs * math.ceil(count / BATCH)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, LEARNING_RATE, total_steps=steps)
        x, y = tensors(data.train[:count], size)
        for epoch in range(epochs):
            order = torch.randperm(len(x))
            total = 0.0
            for batch in order.split(BATCH):
                loss = nn.functional.cross_entropy(net(x[batch]), y[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                total += loss.item() * len(batch)
            print(
                f"  {size} px, epoch {epoch + 1}/{epochs}, {len(x)} images: loss "
                f"{total / len(x):.3f} ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    measure_batchnorm(net, tensors(data.train[:BN_IMAGES], IMAGE_SIZE)[0])
    return net.eval()


def measure_batchnorm(net: nn.Module, x: torch.Tensor) -> None:
    """BatchNorm's running statistics, averaged over ``x`` at the serving size (training
    at smaller sizes left them at those sizes' statistics)."""
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the batches
    net.train()
    with torch.no_grad():
        for chunk in x.split(BATCH):
            net(chunk)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = 0.1
    net.eval()


def write(model_dir: Path, data: Digits, net: nn.Module) -> None:
    classes = [str(c) for c in range(10)]
    meta = model_meta("resnet50", classes, IMAGE_SIZE, {}, {"bench": "trained", "recipe": RECIPE})
    items = [
        {"label": classes[c], "index": c, "content_type": "image/jpeg",
         "image": base64.b64encode(body).decode("ascii")}
        for body, c in data.smoke
    ]  # fmt: skip
    write_model_dir(model_dir, net.state_dict(), meta, {"format": 1, "items": items})


def report_held_out(
    classifier: Classifier, eager: nn.Module, calibration: torch.Tensor, data: Digits
) -> None:
    """fp32 accuracy on the held-out images, and what serving's form did on them: its
    top-1 agreement with the fp32 graph as served, int8's unguarded (``calibration``: the
    images the load calibrated on), and the guard's re-runs."""
    x, y = tensors(data.held_out, IMAGE_SIZE)
    net = classifier.net
    exact = net.exact if isinstance(net, Guarded) else net
    # int8 even where the load refused it, to say how far from the fp32 answers it is
    fast = net.fast if isinstance(net, Guarded) else quantize(eager, calibration)
    with torch.inference_mode():
        fp32 = torch.cat([exact(chunk) for chunk in x.split(8)]).argmax(dim=1)
        served = torch.cat([net(chunk) for chunk in x.split(8)]).argmax(dim=1)
        raw = torch.cat([fast(chunk) for chunk in x.split(8)]).argmax(dim=1)
    n = len(y)
    print(
        f"held-out digits ({n} images, never trained or calibrated on): fp32 accuracy "
        f"{(fp32 == y).float().mean():.3f} (chance 0.1)"
    )
    print(
        f"  served as {classifier.mode}: top-1 equal to fp32 on {int((served == fp32).sum())}"
        f"/{n}; int8 unguarded: {int((raw == fp32).sum())}/{n}"
    )
    if isinstance(net, Guarded):
        shadow = net.shadow
        print(
            f"  guard re-ran {net.rerun}/{net.images} images ({net.rerun / net.images:.1%}); "
            f"shadow check: {shadow.disagreed} of {shadow.checked} sampled differed, "
            f"{'dropped' if net.dropped else 'kept'} {net.name}"
        )
