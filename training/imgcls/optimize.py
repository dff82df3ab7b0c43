"""The network in its fastest verified form for inference (docs/serving.md, "The optimised
network").

At load, :func:`optimise` builds candidates in order of speed and keeps the first one that
agrees with the eager network on a probe batch (the model's own held-out smoke images):

- ``jit-int8``: post-training int8 quantization (FX, the x86 backend, calibrated on the
  model's smoke images apart from the probe's), traced and frozen. About 4x less CPU per
  image than eager on a CPU with AVX512-VNNI. Lossy, so it runs *guarded* (below). The
  "auto" choice on x86 CPUs for networks of at least ``INT8_MIN_GFLOPS`` per image, where
  its seconds of load pay back.
- ``jit-bf16``: traced, frozen and ``optimize_for_inference``-d TorchScript with bf16
  weights and activations. About 2x less CPU per image than eager on a CPU with
  AVX512-BF16. Lossy, so guarded; opt-in only.
- ``jit``: the same graph in fp32, about 1.4x less CPU than eager here, the same answers
  to 1e-4 (on CUDA, 1e-2: TF32): the "auto" choice on CPUs for small networks and on
  GPUs, and what a guard re-runs.
- ``eager``: the plain ``nn.Module``; always the last resort.

On a CUDA GPU "auto" is ``jit``: resnet50 at 224 px ran 3.0-3.5x (batch 1), 1.8-1.9x
(batch 8) and 1.25x (batch 32) eager's images/s on an H200 in two runs (bench.gpu); bf16
added ~10% at batch 8-32 and is not worth a lossy form there.

A lossy form alone changed the top-1 class of 1 of 270 digits test images (bf16) in one
model, so it never answers a close call by itself: the guard measures its largest logit
error E on the probe and re-runs every image whose two best logits are within
``2 * GUARD_FACTOR * E`` through the fp32 graph, so the top-1 class is eager's wherever
the lossy error stays within ``GUARD_FACTOR`` times what the probe showed. The probe holds
none of int8's calibration images, so E is measured out-of-sample. At serving time a
shadow check (imgcls.shadow) also runs a sample of images through the fp32 graph and
drops the lossy form for good when their top-1 classes disagree beyond a bound.

A candidate passes when every probe image keeps its top-1 class and every logit stays
within ``tolerance(mode, device)`` times the larger of 1 and the image's largest absolute eager
logit. A candidate that fails, or raises, is dropped with one log line and the next is
tried. ``IMGCLS_OPTIMIZE`` (``auto``, ``jit-int8``, ``jit-bf16``, ``jit``, ``eager``)
picks the first candidate; the check still applies and eager still stands behind it.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from imgcls.shadow import Shadow

log = logging.getLogger("imgcls.optimize")

ENV_VAR = "IMGCLS_OPTIMIZE"
MODES = ("auto", "jit-int8", "jit-bf16", "jit", "eager")
# max |optimised - eager| / max(1, max |eager|), per probe image. int8's logits move most:
# up to 0.17 of scale on one digits model's 270 test images (its top-1s kept by the guard).
TOLERANCE = {"jit-int8": 0.25, "jit-bf16": 0.05, "jit": 1e-4, "eager": 0.0}
# On CUDA, fp32 convolutions run in TF32 (cuDNN's default: a 10-bit mantissa), so two
# correct fp32 forms differ by ~1e-3: 0.0011 of scale for resnet50 on an H200 (bench.gpu).
CUDA_FP32_TOLERANCE = 0.01
LOSSY = ("jit-int8", "jit-bf16")  # run guarded by the fp32 graph
# A guard re-runs images whose top-2 logits are within 2 * GUARD_FACTOR * (the largest
# error seen on the probe). On a digits model the int8 error on its 270 test images
# reached 3.6x the probe's; no top-1 changed with the guard (docs/serving.md).
GUARD_FACTOR = 4.0
# Below this a forward pass costs a few ms here, less than decoding and HTTP, and int8's
# load (calibration, conversion: seconds) does not pay back; resnet18 at 224 px is 3.6.
INT8_MIN_GFLOPS = 1.0
# A lossy form whose guard would re-run more of the probe than this costs more than the
# fp32 graph alone (both run): it is dropped. Random-weight networks, whose int8 logits
# are noise, end here; trained ones re-run a few percent (docs/serving.md).
MAX_RERUN_SHARE = 0.25
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
    mode: str  # the mode that runs: one of MODES but "auto"
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


def tolerance(mode: str, device: torch.device) -> float:
    if mode == "jit" and device.type == "cuda":
        return CUDA_FP32_TOLERANCE
    return TOLERANCE[mode]


def requested_mode() -> str:
    mode = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise OptimiseError(f"{ENV_VAR}={mode!r}: choose one of {', '.join(MODES)}")
    return mode


def int8_supported() -> bool:
    """The x86 quantized backend is built in (x86 CPUs; fbgemm needs AVX2 at least)."""
    return "x86" in torch.backends.quantized.supported_engines


def candidates(
    mode: str, device: torch.device, gflops: float = 0.0, calibrated: bool = False
) -> list[str]:
    """The modes to try, fastest first; the fp32 graph and eager always follow.

    ``gflops``: the network's cost per image; ``calibrated``: real images to calibrate
    int8 on exist. Both only steer "auto".
    """
    if mode == "auto":
        if device.type == "cuda":
            mode = "jit"
        elif gflops >= INT8_MIN_GFLOPS and calibrated and int8_supported():
            mode = "jit-int8"
        else:
            mode = "jit"
    later = [m for m in ("jit", "eager") if MODES.index(m) > MODES.index(mode)]
    return [mode, *later]


def gflops_per_image(net: nn.Module, example: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        net(example[:1])
    return counter.get_total_flops() / 1e9


def freeze(net: nn.Module, example: torch.Tensor, dtype: torch.dtype) -> nn.Module:
    """Trace, freeze and ``optimize_for_inference`` a copy of ``net`` computing in ``dtype``."""
    source = net if dtype == torch.float32 else copy.deepcopy(net).to(dtype)
    with warnings.catch_warnings(), torch.no_grad():
        # torch.jit is deprecated in favour of torch.compile (measured: slower here and
        # ~75 s to compile at load); it is still the fastest form on this CPU.
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(source.eval(), example[:1].to(dtype), check_trace=False)
        graph = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
    return _Graph(graph, dtype)


def quantize(net: nn.Module, calibration: torch.Tensor) -> nn.Module:
    """Post-training int8 of a copy of ``net`` (FX graph mode, the x86 backend's default
    qconfig: per-channel weights, histogram-calibrated activations), traced and frozen."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    if not int8_supported():
        raise RuntimeError("this torch build has no x86 quantized backend")
    torch.backends.quantized.engine = "x86"  # process-wide: a server process runs one model
    example = calibration[:1]
    with warnings.catch_warnings(), torch.no_grad():
        # FX quantization and quantized tensors are deprecated (torchao replaces them) but
        # work in torch 2.13; if they stop working, the check falls back to "jit".
        warnings.simplefilter("ignore")
        prepared = prepare_fx(
            copy.deepcopy(net).eval(), get_default_qconfig_mapping("x86"), (example,)
        )
        for chunk in calibration.split(8):
            prepared(chunk)
        quantized = convert_fx(prepared)
        graph = torch.jit.freeze(torch.jit.trace(quantized, example, check_trace=False))
    return _Graph(graph, torch.float32)


class Guarded(nn.Module):
    """A lossy network whose close calls the exact one answers: every image whose two
    best logits are within ``margin`` is run again through ``exact``, and so is each image
    ``shadow`` samples (imgcls.shadow), in the same pass. Once the sample disagrees beyond
    its bound, ``exact`` answers everything (``dropped``)."""

    def __init__(
        self,
        fast: nn.Module,
        exact: nn.Module,
        margin: float,
        shadow: Shadow | None = None,
        name: str = "the lossy form",
    ) -> None:
        super().__init__()
        self.fast, self.exact, self.margin, self.name = fast, exact, margin, name
        self.shadow = shadow or Shadow()
        self.dropped = False
        self.images = 0  # seen, and re-run: how often the guard costs a second pass
        self.rerun = 0
        self._lock = threading.Lock()  # the counters, when threads share the network

    def watch(self, shadow: Shadow) -> None:
        """Start serving: counters from zero (the load's check is not traffic) and
        ``shadow`` sampling the images from now on."""
        self.images = self.rerun = 0
        self.shadow = shadow

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dropped:
            return self.exact(x)
        logits = self.fast(x)
        best = logits.topk(2, dim=1).values
        close = (best[:, 0] - best[:, 1]) <= self.margin
        sampled = torch.zeros_like(close)
        sampled[self.shadow.pick(len(x))] = True
        sampled &= ~close  # a close call's answer is the exact one already
        with self._lock:
            self.images += len(x)
            self.rerun += int(close.sum())
        again = close | sampled
        if bool(again.any()):
            exact = self.exact(x[again])
            shadowed = sampled[again]
            if bool(shadowed.any()):
                lossy_top1 = logits[sampled].argmax(dim=1)
                disagreed = int((lossy_top1 != exact[shadowed].argmax(dim=1)).sum())
                if self.shadow.record(disagreed):
                    self.dropped = True
                    log.warning(
                        "inference: dropping %s for the fp32 graph for good: %s",
                        self.name,
                        self.shadow.describe(),
                    )
            logits[again] = exact
        return logits


def compare(eager: torch.Tensor, optimised: torch.Tensor, real_images: bool) -> Check:
    eager, optimised = eager.float(), optimised.float()
    scale = eager.abs().amax(dim=1).clamp(min=1.0)
    error = ((optimised - eager).abs().amax(dim=1) / scale).max().item()
    same = int((eager.argmax(dim=1) == optimised.argmax(dim=1)).sum().item())
    return Check(len(eager), same, error, real_images)


def guard(
    fast: nn.Module,
    exact: nn.Module,
    probe: torch.Tensor,
    reference: torch.Tensor,
    name: str = "the lossy form",
) -> Guarded:
    """``fast`` (mode ``name``) behind a guard sized by its largest logit error on
    ``probe``."""
    with torch.inference_mode():
        exact_check = compare(reference, exact(probe), real_images=True)
        fast_logits = fast(probe).float()
    if not exact_check.passed(tolerance("jit", probe.device)):
        raise ValueError(
            f"the fp32 graph a guard re-runs differs from eager: {exact_check.describe()}"
        )
    margin = 2 * GUARD_FACTOR * (fast_logits - reference).abs().max().item()
    guarded = Guarded(fast, exact, margin, name=name)
    best = fast_logits.topk(2, dim=1).values
    close = int(((best[:, 0] - best[:, 1]) <= guarded.margin).sum())
    if close > MAX_RERUN_SHARE * len(probe):
        raise ValueError(
            f"its guard would re-run {close}/{len(probe)} probe images (top-2 gaps under "
            f"{guarded.margin:.3g}, its error): slower than the fp32 graph alone"
        )
    return guarded


BUILDERS: dict[str, Callable[[nn.Module, torch.Tensor], nn.Module]] = {
    "jit-int8": quantize,
    "jit-bf16": lambda net, x: freeze(net, x, torch.bfloat16),
    "jit": lambda net, x: freeze(net, x, torch.float32),
}


def noise_probe(image_size: int, count: int = 4) -> torch.Tensor:
    generator = torch.Generator().manual_seed(PROBE_SEED)
    return torch.randn(count, 3, image_size, image_size, generator=generator)


def optimise(
    net: nn.Module,
    probe: torch.Tensor,
    real_images: bool,
    mode: str = "auto",
    calibration: torch.Tensor | None = None,
) -> Optimised:
    """The fastest candidate for ``mode`` that agrees with ``net`` (eval mode) on ``probe``.

    ``calibration``: real images int8 calibrates on, none of them in ``probe`` (the probe
    then measures the error on images the calibration never saw); without it, no int8.
    """
    started = time.perf_counter()
    shadow = Shadow.from_env()  # a bad setting fails the load, as a bad mode does
    device = next(net.parameters()).device
    probe = probe.to(device)
    with torch.inference_mode():
        reference = net(probe)
    gflops = gflops_per_image(net, probe) if mode == "auto" and device.type == "cpu" else 0.0
    exact: nn.Module | None = None  # the fp32 graph, built once for "jit" and the guards
    for candidate in candidates(mode, device, gflops, calibration is not None):
        if candidate == "eager":
            break
        try:
            if candidate in LOSSY:
                if candidate == "jit-int8" and calibration is None:
                    raise ValueError(
                        "int8 calibrates on smoke images apart from the probe's; the model has none"
                    )
                fast = BUILDERS[candidate](
                    net, probe if calibration is None else calibration.to(device)
                )
                if exact is None:
                    exact = BUILDERS["jit"](net, probe)
                built: nn.Module = guard(fast, exact, probe, reference, candidate)
            else:
                if exact is None:
                    exact = BUILDERS[candidate](net, probe)
                built = exact
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
        if check.passed(tolerance(candidate, device)):
            seconds = time.perf_counter() - started
            guarded = ""
            if isinstance(built, Guarded):
                built.watch(shadow)
                sampled = f"1 in {shadow.rate}" if shadow.rate else "no"
                guarded = (
                    f"; re-runs top-2 gaps under {built.margin:.3g} and {sampled} images "
                    "as a shadow check"
                )
            log.info(
                "inference: running the model as %s (%s; tolerance %g%s; built and checked "
                "in %.1f s)",
                candidate,
                check.describe(),
                tolerance(candidate, device),
                guarded,
                seconds,
            )
            return Optimised(built, candidate, check, seconds)
        log.warning(
            "inference: %s rejected: %s, tolerance %g; trying the next form",
            candidate,
            check.describe(),
            tolerance(candidate, device),
        )
    seconds = time.perf_counter() - started
    log.info("inference: running the model eagerly (%s)", f"{ENV_VAR}={mode}")
    return Optimised(net, "eager", None, seconds)
