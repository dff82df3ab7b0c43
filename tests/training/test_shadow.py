"""The shadow check: served images sampled through the fp32 graph too; the lossy form
dropped for good once they disagree beyond the bound (imgcls.shadow, imgcls.optimize)."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from torch import nn

from imgcls import optimize
from imgcls.model import load_model
from imgcls.optimize import Guarded
from imgcls.shadow import Shadow
from tests.training.serving_helpers import make_model_dir

IMAGE_SIZE = 32


class Shifted(nn.Module):
    """A lossy form wrong on every image: the exact logits with the classes rotated."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).roll(1, dims=1)


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> nn.Module:
    """The fp32 graph of a real (random-weight) resnet18, as the guard re-runs it."""
    net = load_model(make_model_dir(tmp_path_factory.mktemp("model"), IMAGE_SIZE))[0]
    return optimize.freeze(net, images(1), torch.float32)


def images(count: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)


def drops(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "dropping" in r.getMessage()]


def test_a_disagreeing_sample_drops_the_lossy_form_once_with_one_line(
    graph: nn.Module, caplog: pytest.LogCaptureFixture
) -> None:
    """Eight threads serve at once; the first batch's first image is sampled, disagrees,
    and from then on the fp32 graph answers everything."""
    guarded = Guarded(Shifted(graph), graph, margin=0.0, shadow=Shadow(4, 8), name="jit-int8")
    batches = [images(4, seed) for seed in range(8)]
    with caplog.at_level(logging.WARNING, "imgcls.optimize"), torch.inference_mode():
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(guarded, batches))
        assert guarded.dropped
        assert torch.equal(guarded(batches[0]), graph(batches[0]))
    [line] = drops(caplog)
    assert line.startswith(
        "inference: dropping jit-int8 for the fp32 graph for good: its top-1 class differed "
        "from the fp32 graph's on "
    )
    assert line.endswith("sampled images (more than 0 of the 8 the shadow check samples, 1 in 4)")
    assert guarded.shadow.checked <= 8


def test_the_sampled_images_get_the_fp32_answer_and_the_rest_the_lossy_one(
    graph: nn.Module,
) -> None:
    guarded = Guarded(Shifted(graph), graph, margin=0.0, shadow=Shadow(3, 200))
    x = images(6)
    with torch.inference_mode():
        out, exact = guarded(x), graph(x)
    sampled = [0, 3]  # every third image served, the first one included
    assert torch.equal(out[sampled], exact[sampled])
    assert torch.equal(out[[1, 2, 4, 5]], exact.roll(1, dims=1)[[1, 2, 4, 5]])
    assert (guarded.shadow.checked, guarded.shadow.disagreed) == (2, 2)
    assert not guarded.dropped  # 2 of the 200 it may sample may disagree (1%), a third not


def identity() -> nn.Module:
    """A "network" whose logits are its input: a test chooses which images flip."""
    net = nn.Linear(3, 3, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.eye(3))
    return net


class Raised(nn.Module):
    """Class 0 raised by 1: wrong wherever class 0 is within 1 of the best."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)
        logits[:, 0] += 1.0
        return logits


def test_disagreement_within_the_bound_keeps_the_lossy_form(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exact = identity()
    guarded = Guarded(Raised(exact), exact, margin=0.1, shadow=Shadow(1, 200))  # bound 2
    clear = torch.tensor([[0.0, 5.0, 0.0]] * 50)
    flips = torch.tensor([[0.0, 0.5, 0.0]])  # 1.0 vs 0.5 once raised: class 0 wins
    with caplog.at_level(logging.WARNING, "imgcls.optimize"), torch.inference_mode():
        guarded(torch.cat([clear, flips, clear, flips]))
        assert (guarded.shadow.disagreed, guarded.dropped) == (2, False)
        assert drops(caplog) == []
        guarded(flips)
    assert guarded.dropped and len(drops(caplog)) == 1


def test_a_stopped_shadow_costs_nothing_more() -> None:
    exact = identity()
    guarded = Guarded(Raised(exact), exact, margin=0.1, shadow=Shadow(2, 3))
    with torch.inference_mode():
        guarded(torch.tensor([[0.0, 5.0, 0.0]] * 20))
    assert (guarded.shadow.seen, guarded.shadow.checked) == (20, 3)
    assert Shadow(0, 500).pick(10) == []  # rate 0: off


def test_the_rate_and_limit_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (Shadow.from_env().rate, Shadow.from_env().limit) == (50, 500)
    monkeypatch.setenv("IMGCLS_SHADOW_RATE", "10")
    monkeypatch.setenv("IMGCLS_SHADOW_LIMIT", "40")
    assert (Shadow.from_env().rate, Shadow.from_env().limit) == (10, 40)
    monkeypatch.setenv("IMGCLS_SHADOW_RATE", "often")
    with pytest.raises(ValueError, match="IMGCLS_SHADOW_RATE must be a whole number >= 0"):
        optimize.optimise(identity(), torch.eye(3), real_images=False, mode="jit")


def test_the_loads_own_check_is_not_counted_as_traffic(
    graph: nn.Module, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A lossy form that passes the load's check starts serving with fresh counters and
    the environment's shadow."""
    monkeypatch.setenv("IMGCLS_SHADOW_RATE", "7")
    monkeypatch.setitem(optimize.BUILDERS, "jit-bf16", optimize.BUILDERS["jit"])  # agrees
    net = load_model(make_model_dir(tmp_path / "m", IMAGE_SIZE))[0]
    result = optimize.optimise(net, images(8), real_images=True, mode="jit-bf16")
    assert result.mode == "jit-bf16" and isinstance(result.net, Guarded)
    assert (result.net.images, result.net.rerun, result.net.shadow.seen) == (0, 0, 0)
    assert result.net.shadow.rate == 7
