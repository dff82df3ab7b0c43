"""The network in its fastest verified form for inference (docs/serving.md, "The optimised
network").

At load, :func:`optimise` builds candidates in order of speed and keeps the first one that
agrees with the eager network on a probe batch (the model's own held-out smoke images):

- ``jit-bf16``: traced, frozen and ``optimize_for_inference``-d TorchScript with bf16
  weights and activations. About 2x less CPU per image than eager on a CPU with
  AVX512-BF16, but not always the same answers: in one digits model it changed the top-1
  class of 1 of the 270 test images. Opt-in only (and only sensible where the CPU computes bf16).
- ``jit``: the same graph in fp32, about 1.4x less CPU than eager here, the same top-1
  on every test image: the "auto" choice on CPUs.
- ``eager``: the plain ``nn.Module``; always the last resort, and the "auto" choice on
  GPUs, where no optimised form has been measured.

A candidate passes when every probe image keeps its top-1 class and every logit stays
within ``TOLERANCE[mode]`` times the larger of 1 and the image's largest absolute eager
logit. A candidate that fails, or raises, is dropped with one log line and the next is
tried. ``IMGCLS_OPTIMIZE`` (``auto``, ``jit-bf16``, ``jit``, ``eager``) picks the first
candidate; the check still applies and eager still stands behind it.
"""

from __future__ import annotations

import copy
import logging
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

log = logging.getLogger("imgcls.optimize")

ENV_VAR = "IMGCLS_OPTIMIZE"
MODES = ("auto", "jit-bf16", "jit", "eager")
# max |optimised - eager| / max(1, max |eager|), per probe image
TOLERANCE = {"jit-bf16": 0.05, "jit": 1e-4, "eager": 0.0}
PROBE_SEED = 0


class OptimiseError(ValueError):
    """An ``IMGCLS_OPTIMIZE`` value that names no mode."""


@dataclass(frozen=True)
class Check:
    images: int
    top1_equal: int
    max_error: float  # the largest scaled logit difference seen
    real_images: bool  # the probe held real images (else seeded noise)

    def passed(self, tolerance: float) -> bool:
        return self.top1_equal == self.images and self.max_error <= tolerance

    def describe(self) -> str:
        what = "held-out images" if self.real_images else "noise images (no smoke set)"
        return (
            f"top-1 equal on {self.top1_equal}/{self.images} {what}, "
            f"max logit difference {self.max_error:.2g} of scale"
        )


@dataclass(frozen=True)
class Optimised:
    net: nn.Module  # takes and returns fp32 tensors, whatever it computes in
    mode: str  # the mode that runs: "jit-bf16", "jit" or "eager"
    check: Check | None  # None for eager
    seconds: float  # building and checking, all candidates together


class _Graph(nn.Module):
    """A TorchScript graph behind an fp32-in, fp32-out ``nn.Module``."""

    def __init__(self, graph: torch.jit.ScriptModule, dtype: torch.dtype) -> None:
        super().__init__()
        self.graph = graph
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph(x.to(self.dtype)).float()


def requested_mode() -> str:
    mode = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise OptimiseError(f"{ENV_VAR}={mode!r}: choose one of {', '.join(MODES)}")
    return mode


def candidates(mode: str, device: torch.device) -> list[str]:
    """The modes to try, fastest first; eager always ends the list."""
    if mode == "auto":
        mode = "eager" if device.type == "cuda" else "jit"
    return list(MODES[MODES.index(mode) :])


def freeze(net: nn.Module, example: torch.Tensor, dtype: torch.dtype) -> nn.Module:
    """Trace, freeze and ``optimize_for_inference`` a copy of ``net`` computing in ``dtype``."""
    source = net if dtype == torch.float32 else copy.deepcopy(net).to(dtype)
    with warnings.catch_warnings(), torch.no_grad():
        # torch.jit is deprecated in favour of torch.compile (measured: slower here and
        # ~75 s to compile at load); it is still the fastest form on this CPU.
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(source.eval(), example.to(dtype), check_trace=False)
        graph = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
    return _Graph(graph, dtype)


def compare(eager: torch.Tensor, optimised: torch.Tensor, real_images: bool) -> Check:
    eager, optimised = eager.float(), optimised.float()
    scale = eager.abs().amax(dim=1).clamp(min=1.0)
    error = ((optimised - eager).abs().amax(dim=1) / scale).max().item()
    same = int((eager.argmax(dim=1) == optimised.argmax(dim=1)).sum().item())
    return Check(len(eager), same, error, real_images)


BUILDERS: dict[str, Callable[[nn.Module, torch.Tensor], nn.Module]] = {
    "jit-bf16": lambda net, x: freeze(net, x, torch.bfloat16),
    "jit": lambda net, x: freeze(net, x, torch.float32),
}


def noise_probe(image_size: int, count: int = 4) -> torch.Tensor:
    generator = torch.Generator().manual_seed(PROBE_SEED)
    return torch.randn(count, 3, image_size, image_size, generator=generator)


def optimise(
    net: nn.Module, probe: torch.Tensor, real_images: bool, mode: str = "auto"
) -> Optimised:
    """The fastest candidate for ``mode`` that agrees with ``net`` (eval mode) on ``probe``."""
    started = time.perf_counter()
    device = next(net.parameters()).device
    probe = probe.to(device)
    with torch.inference_mode():
        reference = net(probe)
    for candidate in candidates(mode, device):
        if candidate == "eager":
            break
        try:
            built = BUILDERS[candidate](net, probe[:1])
            with torch.inference_mode():
                check = compare(reference, built(probe), real_images)
        except Exception as exc:  # any failure to build or run means: not this one
            reason = (str(exc).splitlines() or [""])[0]
            log.warning(
                "inference: %s failed (%s: %s); trying the next form",
                candidate,
                type(exc).__name__,
                reason,
            )
            continue
        if check.passed(TOLERANCE[candidate]):
            seconds = time.perf_counter() - started
            log.info(
                "inference: running the model as %s (%s; tolerance %g; built and checked "
                "in %.1f s)",
                candidate,
                check.describe(),
                TOLERANCE[candidate],
                seconds,
            )
            return Optimised(built, candidate, check, seconds)
        log.warning(
            "inference: %s rejected: %s, tolerance %g; trying the next form",
            candidate,
            check.describe(),
            TOLERANCE[candidate],
        )
    seconds = time.perf_counter() - started
    log.info("inference: running the model eagerly (%s)", f"{ENV_VAR}={mode}")
    return Optimised(net, "eager", None, seconds)
