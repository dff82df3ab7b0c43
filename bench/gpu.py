"""The GPU path, once, on a machine with a CUDA GPU (run on demand; CI has none).

    python -m bench.gpu [--seconds 1.5] [--parts forms,steps,training,serving]

1. Training, train.py on the GPU as SageMaker runs it: the local run's digits recipe
   (localcloud/parameters.yaml) in one process, then resnet50 at 224 px with bf16 autocast
   on and off (channels_last is what train.py uses on CUDA); images/s of the last epoch.
   With two or more GPUs, two hosts train over DDP on nccl; with one, the same two-host
   job is tried once and its outcome printed (NCCL refuses two ranks on one GPU). The
   same training step on in-memory batches shows what bf16 autocast and channels_last
   give the GPU's compute alone (the digits runs are bound by data loading).
2. The serving forms of resnet50 at 224 px (the serving bench's model: bench.serving
   write_model) on the GPU: eager fp32, channels_last, bf16 autocast + channels_last, the
   frozen fp32 graph and the frozen bf16 graph (imgcls.optimize), and torch.compile:
   forward-only img/s at batch 1, 8 and 32, and each form's top-1 agreement and largest
   logit difference against eager fp32 on the model's probe images. Then what
   imgcls.predict.load_classifier picks on this GPU for each IMGCLS_OPTIMIZE mode.
3. serve.py against the course baseline on the GPU (bench.serving at 8 clients).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

import training  # noqa: F401  (puts training/ on sys.path: imgcls imports as in SageMaker)

# isort: split
from bench.serving import IMAGE_SIZE, forward_ceiling, image_kinds, write_model
from bench.training import REPO, local_recipe, run_hosts
from imgcls.imaging import Preprocessor
from imgcls.model import load_model
from imgcls.optimize import compare, freeze
from imgcls.predict import load_classifier
from training.sample_data import write_digits

BATCHES = (1, 8, 32)


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def training_figures(work: Path, cpus: int) -> None:
    section("training (train.py on the GPU)")
    write_digits(work / "digits", image_size=32)
    common = ["--data-dir", str(work / "digits"), "--smoke-images", "0"]
    result = run_hosts(1, cpus, [*common, *local_recipe()], work / "recipe")
    print(
        f"digits, local recipe, 1 process: {result.wall:.1f} s wall, {result.epochs} epochs, "
        f"test accuracy {result.test_acc:.4f}, {result.rate:.0f} images/s (last epoch)"
    )
    write_digits(work / "digits224", image_size=224)
    big = [
        "--data-dir", str(work / "digits224"), "--arch", "resnet50", "--weights", "none",
        "--image-size", "224", "--epochs", "2", "--batch-size", "64", "--num-workers", "6",
        "--early-stopping-patience", "0", "--log-interval", "0", "--smoke-images", "0",
    ]  # fmt: skip
    for amp in ("true", "false"):
        result = run_hosts(1, cpus, [*big, "--amp", amp], work / f"r50-amp-{amp}")
        print(
            f"resnet50 @224, batch 64, bf16 autocast {amp:<5}: {result.rate:6.0f} images/s "
            f"(last epoch {result.epoch_seconds:.1f} s), test accuracy {result.test_acc:.3f}",
            flush=True,
        )
    gpus = torch.cuda.device_count()
    what = "two hosts, DDP over nccl" + ("" if gpus > 1 else ", both on the one GPU")
    try:
        result = run_hosts(2, cpus // 2, [*big, "--epochs", "1"], work / "ddp", timeout=90)
        print(f"{what}: {result.rate:.0f} images/s, test accuracy {result.test_acc:.3f}")
    except (SystemExit, subprocess.TimeoutExpired) as exc:
        reason = [line for line in str(exc).splitlines() if line.strip()]
        print(f"{what}: failed: {(reason or ['?'])[0]} ... {(reason or ['?'])[-1][:300]}")


def step_rate(layout: torch.memory_format, amp: bool, seconds: float) -> float:
    """Images/s of resnet50 training steps at 224 px, batch 64, on in-memory batches."""
    from imgcls.model import build_model

    device = torch.device("cuda")
    net = build_model("resnet50", 133, weights="none").to(device, memory_format=layout)
    optimizer = torch.optim.AdamW(net.parameters())
    x = torch.randn(64, 3, 224, 224, device=device).contiguous(memory_format=layout)
    y = torch.randint(0, 133, (64,), device=device)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            loss = torch.nn.functional.cross_entropy(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        done += len(x)
    torch.cuda.synchronize()
    return done / (time.perf_counter() - start)


def training_steps(seconds: float) -> None:
    """GPU compute alone: what bf16 autocast and channels_last, as train.py uses them on
    CUDA, give a training step apart from data loading."""
    section("training steps, resnet50 @224, batch 64, in-memory data on the GPU")
    for name, layout in (
        ("contiguous", torch.contiguous_format),
        ("channels_last", torch.channels_last),
    ):
        for amp in (False, True):
            rate = step_rate(layout, amp, seconds)
            print(f"{name:<13} bf16 autocast {amp!s:<5}: {rate:6.0f} images/s", flush=True)


def serving_forms(model_dir: Path, seconds: float, device: torch.device) -> None:
    section(f"serving forms, resnet50 @224, forward only on {device.type}")
    eager, _ = load_model(model_dir, device)
    preprocess = Preprocessor(IMAGE_SIZE)
    probe = torch.cat([preprocess(b) for bodies in image_kinds().values() for b in bodies])
    probe = probe.to(device)
    last = eager.to(memory_format=torch.channels_last)

    def autocast(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            return last(x.contiguous(memory_format=torch.channels_last)).float()

    builders: dict[str, Callable[[], Callable[[torch.Tensor], torch.Tensor]]] = {
        "eager fp32": lambda: load_model(model_dir, device)[0],
        "channels_last": lambda: lambda x: last(x.contiguous(memory_format=torch.channels_last)),
        "bf16 autocast+cl": lambda: autocast,
        "jit fp32": lambda: freeze(load_model(model_dir, device)[0], probe, torch.float32),
        "jit bf16": lambda: freeze(load_model(model_dir, device)[0], probe, torch.bfloat16),
        "torch.compile": lambda: torch.compile(load_model(model_dir, device)[0]),
    }
    with torch.inference_mode():
        reference = load_model(model_dir, device)[0](probe).float()
    print(f"{'form':<18} {'build s':>7} " + " ".join(f"{'b' + str(b):>8}" for b in BATCHES))
    for name, build in builders.items():
        started = time.perf_counter()
        try:
            net = build()
            with torch.inference_mode():
                check = compare(reference, net(probe).float(), real_images=True)
            built = time.perf_counter() - started
            rates = [
                forward_ceiling(net, probe.repeat(b // len(probe) + 1, 1, 1, 1)[:b], seconds)[0]
                for b in BATCHES
            ]
        except Exception as exc:  # a form that does not run here is a finding, not a stop
            print(f"{name:<18} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            continue
        cells = " ".join(f"{rate:8.0f}" for rate in rates)
        print(f"{name:<18} {built:7.1f} {cells}   img/s; {check.describe()}", flush=True)
    for mode in ("auto", "jit", "jit-bf16", "jit-int8"):
        started = time.perf_counter()
        chosen = load_classifier(model_dir, mode=mode)
        print(
            f"load_classifier(mode={mode}) on {device.type}: runs {chosen.mode} "
            f"({time.perf_counter() - started:.1f} s)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.5, help="measured seconds per cell")
    parser.add_argument(
        "--parts",
        default="forms,steps,training,serving",
        help="which of forms, steps, training, serving",
    )
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench.gpu: no CUDA GPU here (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    cpus = os.cpu_count() or 1
    props = torch.cuda.get_device_properties(0)
    print(
        f"machine: {torch.cuda.device_count()} x {props.name} "
        f"({props.total_memory / 2**30:.0f} GiB), {cpus} CPUs, torch {torch.__version__} "
        f"(CUDA {torch.version.cuda}), python {platform.python_version()}, "
        f"bf16 {'supported' if torch.cuda.is_bf16_supported() else 'not supported'}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as scratch:
        work = Path(scratch)
        model_dir = work / "model"
        write_model(model_dir)
        if "forms" in args.parts:
            serving_forms(model_dir, args.seconds, torch.device("cuda"))
        if "steps" in args.parts:
            training_steps(args.seconds)
        if "training" in args.parts:
            training_figures(work, cpus)
    if "serving" in args.parts:
        section("serve.py vs the course baseline on the GPU (bench.serving)")
        command = [sys.executable, "-m", "bench.serving", "--levels", "8", "--duration", "5",
                   "--warmup", "1"]  # fmt: skip
        subprocess.run(command, cwd=REPO, check=False, timeout=600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
