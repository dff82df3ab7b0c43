"""The optimised inference network: chosen at load, checked against eager, eager as fallback."""

from __future__ import annotations

import base64
import json
import logging
import re
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from imgcls import optimize
from imgcls.model import build_model, load_model
from imgcls.optimize import (
    INT8_MIN_GFLOPS,
    TOLERANCE,
    Guarded,
    OptimiseError,
    candidates,
    compare,
    optimise,
)
from imgcls.predict import (
    CALIBRATION_IMAGES,
    PROBE_IMAGES,
    load_classifier,
    predict_batch,
    probe_and_calibration,
    probe_batch,
)
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


def calibration(seed: int = 3) -> torch.Tensor:
    """Stand-in for a model's smoke images: int8 refuses to calibrate on nothing."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(8, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)


def test_the_fp32_graph_matches_eager_within_its_tolerance(net: nn.Module) -> None:
    result = optimise(net, calibration(), real_images=True, mode="jit")
    assert result.mode == "jit" and result.check is not None
    assert result.check.top1_equal == result.check.images
    batch = torch.randn(6, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        check = compare(net(batch), result.net(batch), real_images=False)
        assert check.max_error <= TOLERANCE["jit"]
        assert result.net(batch).dtype == torch.float32
    # the lossy forms on a trained network: test_augmentation.py (digits)


@pytest.mark.parametrize("mode", ["jit-int8", "jit-bf16"])
def test_a_lossy_form_whose_guard_would_rerun_most_calls_is_dropped(
    net: nn.Module, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Random weights: the lossy logits' error is of the size of the gaps between them."""
    with caplog.at_level(logging.WARNING, "imgcls.optimize"):
        result = optimise(net, calibration(), True, mode, calibration=calibration(4))
    assert result.mode == "jit"
    [message] = [r.getMessage() for r in caplog.records]
    assert re.fullmatch(
        rf"inference: {mode} failed \(ValueError: its guard would re-run \d/8 probe images "
        r"\(top-2 gaps under [\d.e-]+, its error\): slower than the fp32 graph alone\); "
        r"trying the next form",
        message,
    ), message


def test_int8_needs_images_to_calibrate_on(
    net: nn.Module, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "imgcls.optimize"):
        result = optimise(net, probe(), real_images=False, mode="jit-int8")
    assert result.mode == "jit"
    assert [r.getMessage() for r in caplog.records] == [
        "inference: jit-int8 failed (ValueError: int8 calibrates on smoke images apart from "
        "the probe's; the model has none); trying the next form"
    ]


def test_int8_never_calibrates_on_the_probe(
    net: nn.Module, caplog: pytest.LogCaptureFixture
) -> None:
    """Real images but none apart from the probe: no int8 (the probe's error bound would
    be measured on the images it was calibrated on)."""
    with caplog.at_level(logging.WARNING, "imgcls.optimize"):
        result = optimise(net, calibration(), real_images=True, mode="jit-int8")
    assert result.mode == "jit"
    assert "int8 calibrates on smoke images apart from the probe's" in caplog.text


def test_the_probe_and_the_calibration_images_are_disjoint(tmp_path: Path) -> None:
    model_dir = make_model_dir(tmp_path / "m", IMAGE_SIZE)
    preprocess = load_classifier(model_dir, mode="eager").preprocess
    raw = [image_bytes(seed=i) for i in range(50)]
    items = [{"image": base64.b64encode(r).decode()} for r in raw]
    (model_dir / "smoke_set.json").write_text(json.dumps({"items": items}))
    probe, calibration, real = probe_and_calibration(model_dir, preprocess)
    assert real and calibration is not None
    assert (len(probe), len(calibration)) == (PROBE_IMAGES, CALIBRATION_IMAGES)
    assert torch.equal(probe[0], preprocess(raw[0])[0])
    assert torch.equal(calibration[0], preprocess(raw[PROBE_IMAGES])[0])
    assert not any(torch.equal(p, c) for p in probe for c in calibration)
    # only as many as the probe: nothing left to calibrate on
    (model_dir / "smoke_set.json").write_text(json.dumps({"items": items[:PROBE_IMAGES]}))
    assert probe_and_calibration(model_dir, preprocess)[1] is None


class Offset(nn.Module):
    """A 'lossy' network: eager's logits with the first class raised by ``by``."""

    def __init__(self, net: nn.Module, by: float) -> None:
        super().__init__()
        self.net, self.by = net, by

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)
        logits[:, 0] += self.by
        return logits


def identity() -> nn.Module:
    """A "network" whose logits are its input: tests choose the gaps between them."""
    net = nn.Linear(3, 3, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.eye(3))
    return net


def test_the_guard_reruns_close_calls_through_the_exact_network() -> None:
    exact = identity()
    guarded = Guarded(Offset(exact, 0.3), exact, margin=0.5)
    x = torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.2, 0.0], [5.0, 1.0, 0.0]])
    with torch.inference_mode():
        out = guarded(x)
    # row 1 (0.3 against 0.2 after the offset: a gap of 0.1) is re-run and keeps eager's
    # class 1; rows 0 and 2 are clear calls and keep the lossy logits
    assert out.argmax(dim=1).tolist() == [1, 1, 0]
    assert torch.equal(out[1], x[1]) and out[0, 0] == pytest.approx(0.3)
    assert (guarded.images, guarded.rerun) == (3, 1)
    unguarded = Offset(exact, 0.3)(x)
    assert unguarded.argmax(dim=1).tolist() == [1, 0, 0]  # what the guard prevents


def test_a_guard_is_sized_by_the_error_the_probe_shows() -> None:
    exact = identity()
    clear = torch.tensor([[9.0, 0.0, 0.0], [0.0, 9.0, 0.0], [0.0, 0.0, 9.0], [0.0, 5.0, 0.0]])
    with torch.no_grad():
        built = optimize.guard(Offset(exact, 0.25), exact, clear, exact(clear))
        assert built.margin == pytest.approx(2 * optimize.GUARD_FACTOR * 0.25)
        close = clear * 0.2  # lossy gaps of 2.05 (class 0: +0.25), 1.8, 1.8 and 1.0
        with pytest.raises(ValueError, match="its guard would re-run 3/4 probe images"):
            optimize.guard(Offset(exact, 0.25), exact, close, exact(close))
        with pytest.raises(ValueError, match="the fp32 graph a guard re-runs differs from eager"):
            optimize.guard(Offset(exact, 0.25), Shifted(exact), clear, exact(clear))


def test_the_check_measures_scaled_logit_error_and_top1() -> None:
    eager = torch.tensor([[10.0, 2.0, 0.0], [0.5, 0.2, 0.1]])
    close = eager + torch.tensor([[0.1, 0.0, 0.0], [0.0, 0.0, 0.02]])
    check = compare(eager, close, real_images=True)
    assert check.top1_equal == 2 and check.max_error == pytest.approx(
        0.02
    )  # 0.1/10, 0.02/max(1, 0.5)
    swapped = compare(eager, eager[:, [1, 0, 2]], real_images=True)
    assert swapped.top1_equal == 0


def test_auto_is_int8_for_large_networks_on_x86_and_the_fp32_graph_for_small_and_on_gpus() -> None:
    cpu, big = torch.device("cpu"), INT8_MIN_GFLOPS
    if optimize.int8_supported():
        assert candidates("auto", cpu, big, calibrated=True) == ["jit-int8", "jit", "eager"]
    assert candidates("auto", cpu, big, calibrated=False) == [
        "jit",
        "eager",
    ]  # nothing to calibrate on
    assert candidates("auto", cpu, big / 2, calibrated=True) == ["jit", "eager"]
    assert candidates("auto", torch.device("cuda"), big, calibrated=True) == ["jit", "eager"]
    assert candidates("jit-bf16", cpu) == ["jit-bf16", "jit", "eager"]
    assert candidates("jit-int8", cpu) == ["jit-int8", "jit", "eager"]
    assert candidates("eager", cpu) == ["eager"]


def test_fp32_forms_on_cuda_may_differ_by_tf32_rounding_and_no_more() -> None:
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert optimize.tolerance("jit", cpu) == TOLERANCE["jit"]
    # measured 0.0011 of scale between eager and the graph on an H200 (TF32 convolutions)
    assert 0.0011 < optimize.tolerance("jit", cuda) < TOLERANCE["jit-bf16"]
    assert optimize.tolerance("jit-bf16", cuda) == TOLERANCE["jit-bf16"]


def test_the_cost_that_steers_auto_counts_the_networks_flops() -> None:
    small = build_model("resnet18", 4).eval()  # 0.07 GFLOPs at 32 px, 3.6 at 224
    assert optimize.gflops_per_image(small, torch.zeros(1, 3, 32, 32)) < INT8_MIN_GFLOPS
    assert optimize.gflops_per_image(small, torch.zeros(2, 3, 224, 224)) > INT8_MIN_GFLOPS


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
