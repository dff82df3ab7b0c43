"""The optimised inference network: chosen at load, checked against eager, eager as fallback."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from imgcls import optimize
from imgcls.model import load_model
from imgcls.optimize import TOLERANCE, OptimiseError, candidates, compare, optimise
from imgcls.predict import load_classifier, predict_batch, probe_batch
from imgcls.transforms import eval_transform
from tests.training.serving_helpers import image_bytes, make_model_dir

IMAGE_SIZE = 32


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("model"), IMAGE_SIZE)


@pytest.fixture(scope="module")
def net(model_dir: Path) -> nn.Module:
    return load_model(model_dir)[0]


def probe() -> torch.Tensor:
    return optimize.noise_probe(IMAGE_SIZE)


class Shifted(nn.Module):
    """A wrong 'optimisation': the eager network with the class scores rotated by one."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).roll(1, dims=1)


def test_a_candidate_that_changes_the_answers_falls_back_to_eager(
    net: nn.Module, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(optimize.BUILDERS, "jit", lambda n, x: Shifted(n))
    with caplog.at_level(logging.INFO, "imgcls.optimize"):
        result = optimise(net, probe(), real_images=False, mode="jit")
    assert result.mode == "eager" and result.net is net
    rejected = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert len(rejected) == 1 and "jit rejected: top-1 equal on " in rejected[0]


def test_a_candidate_that_fails_to_build_falls_back_with_one_line(
    net: nn.Module, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(n: nn.Module, x: torch.Tensor) -> nn.Module:
        raise RuntimeError("tracing is not supported here\nmore detail")

    monkeypatch.setitem(optimize.BUILDERS, "jit-bf16", broken)
    with caplog.at_level(logging.WARNING, "imgcls.optimize"):
        result = optimise(net, probe(), real_images=False, mode="jit-bf16")
    assert result.mode == "jit"  # the next candidate, which works
    assert [r.getMessage() for r in caplog.records] == [
        "inference: jit-bf16 failed (RuntimeError: tracing is not supported here); "
        "trying the next form"
    ]


@pytest.mark.parametrize("mode", ["jit", "jit-bf16"])
def test_each_optimised_form_matches_eager_within_its_tolerance(net: nn.Module, mode: str) -> None:
    result = optimise(net, probe(), real_images=False, mode=mode)
    assert result.mode == mode and result.check is not None
    assert result.check.top1_equal == result.check.images
    batch = torch.randn(6, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        check = compare(net(batch), result.net(batch), real_images=False)
    assert check.max_error <= TOLERANCE[mode]
    assert result.net(batch).dtype == torch.float32


def test_the_check_measures_scaled_logit_error_and_top1() -> None:
    eager = torch.tensor([[10.0, 2.0, 0.0], [0.5, 0.2, 0.1]])
    close = eager + torch.tensor([[0.1, 0.0, 0.0], [0.0, 0.0, 0.02]])
    check = compare(eager, close, real_images=True)
    assert check.top1_equal == 2 and check.max_error == pytest.approx(
        0.02
    )  # 0.1/10, 0.02/max(1, 0.5)
    swapped = compare(eager, eager[:, [1, 0, 2]], real_images=True)
    assert swapped.top1_equal == 0


def test_auto_is_fp32_on_cpus_and_eager_on_gpus_bf16_only_on_request() -> None:
    cpu = torch.device("cpu")
    assert candidates("auto", cpu) == ["jit", "eager"]
    assert candidates("auto", torch.device("cuda")) == ["eager"]
    assert candidates("jit-bf16", cpu) == ["jit-bf16", "jit", "eager"]
    assert candidates("eager", cpu) == ["eager"]


def test_the_mode_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGCLS_OPTIMIZE", " JIT ")
    assert optimize.requested_mode() == "jit"
    monkeypatch.setenv("IMGCLS_OPTIMIZE", "turbo")
    with pytest.raises(OptimiseError, match="IMGCLS_OPTIMIZE='turbo': choose one of auto"):
        optimize.requested_mode()


def test_the_probe_is_the_models_smoke_images(tmp_path: Path) -> None:
    model_dir = make_model_dir(tmp_path / "m", IMAGE_SIZE)
    preprocess = load_classifier(model_dir, mode="eager").preprocess
    assert probe_batch(model_dir, preprocess)[1] is False  # no smoke set: noise
    raw = [image_bytes(seed=i) for i in range(10)]
    items = [{"image": base64.b64encode(r).decode()} for r in raw]
    (model_dir / "smoke_set.json").write_text(json.dumps({"items": items}))
    tensors, real = probe_batch(model_dir, preprocess)
    assert real and tensors.shape == (8, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert torch.equal(tensors[0], preprocess(raw[0])[0])


def test_served_top1_equals_eager_on_a_test_set(model_dir: Path, tiny_data: Path) -> None:
    """Through predict_batch, as serving runs it, batched the way serve.py batches."""
    optimised = load_classifier(model_dir)  # IMGCLS_OPTIMIZE unset: auto
    eager = load_classifier(model_dir, mode="eager")
    assert optimised.mode != "eager" and eager.mode == "eager"
    paths = sorted((tiny_data / "test").rglob("*.jpg"))
    images = [optimised.preprocess(p.read_bytes()) for p in paths]
    reference = eval_transform(IMAGE_SIZE)(Image.open(paths[0]).convert("RGB"))
    assert torch.allclose(images[0][0], reference, atol=1e-6)
    got = []
    for start in range(0, len(images), 5):
        batch = images[start : start + 5]
        got += [p.logits for p in predict_batch(optimised, batch, [None] * len(batch))]
    want = [p.logits for p in predict_batch(eager, images, [None] * len(images))]
    assert [int(g.argmax()) for g in got] == [int(w.argmax()) for w in want]
    check = compare(torch.stack(want), torch.stack(got), real_images=True)
    assert check.max_error <= TOLERANCE[optimised.mode]
