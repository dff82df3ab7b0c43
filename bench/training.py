"""Training against the machine's compute limit: the local run's recipe and the SageMaker
defaults.

    python -m bench.training [--skip-previous] [--skip-sagemaker]

The machine: fp32 matmul and convolution throughput with all its cores as torch threads.

The local recipe (``TrainingHyperparameters`` of localcloud/parameters.yaml) trains as
``make run`` trains it: two "hosts" (train.py, one process per host, as SageMaker launches
them, each with half the cores) on the digits sample set. The bench counts its FLOPs with
torch's FLOP counter (``torch.utils.flop_counter``; forward and backward per training image,
forward per evaluated image), so the limit is those FLOPs at the measured matmul rate; it
reports the hosts' wall time, images/s, the ratio of the limit to the wall time, and where
the time went: start-up and end (interpreter, imports, data set, process group, writing the
model), waiting for batches, forward/backward/update, the gradient all-reduce not hidden by
the backward (DDP's own per-step sample) and evaluation. Goal: the wall time at most
``GOAL_SECONDS`` with test accuracy at least ``GOAL_TEST_ACC``. The previous recipe runs
next for comparison (``PREVIOUS_RECIPE``).

The SageMaker defaults (template.yaml's ``TrainingHyperparameters``: resnet50 at 224 px,
ImageNet weights, the head trained) as a short throughput measure: one process, one epoch
on 16 images per class, random weights in place of ImageNet's (none are downloaded; the
speed does not depend on them).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

import training  # noqa: F401  (puts training/ on sys.path: imgcls imports as in SageMaker)
from training.sample_data import write_digits

# isort: split
import imgcls  # noqa: F401  (first: its __init__ makes torchvision importable)
from imgcls.model import build_model, set_trainable

REPO = Path(__file__).resolve().parents[1]

EPOCH = re.compile(
    r"epoch (\d+): trained on (\d+) images in ([0-9.]+) s \(([0-9.]+) images/s.*?"
    r"waiting for batches ([0-9.]+) s, validation ([0-9.]+) s"
)
STEP = re.compile(r"all-reduce [0-9.]+ s of which ([0-9.]+) s not hidden")
TEST_PASS = re.compile(r"test pass ([0-9.]+) s")
TIMEOUT_S = 1800
PARAMETERS = REPO / "localcloud" / "parameters.yaml"
TEMPLATE = REPO / "template.yaml"
# The local run's recipe before issue 19 (its changes on top of today's).
PREVIOUS_RECIPE = {"image-size": 32, "epochs": 6, "batch-size": 32, "learning-rate": 0.002}
# The SageMaker defaults' short measure: images per class and split (resnet50 at 224 px
# takes about 0.1 s per image forward on 2 cores).
SAGEMAKER_PER_CLASS = {"train": 16, "valid": 4, "test": 4}
GOAL_SECONDS = 15.0
GOAL_TEST_ACC = 0.99
HOSTS = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(threads: int, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return {**env, "OMP_NUM_THREADS": str(threads), **extra}


@dataclass(frozen=True)
class Result:
    wall: float  # the whole run, process start to end
    test_acc: float
    log: str  # rank 0's log


def run_hosts(
    processes: int, threads: int, flags: list[str], work: Path, timeout: float = TIMEOUT_S
) -> Result:
    """Train with ``processes`` hosts (train.py, one process per host, as SageMaker runs it)."""
    hosts = [f"algo-{i + 1}" for i in range(processes)]
    port = str(_free_port())
    procs: list[subprocess.Popen[str]] = []
    started = time.monotonic()
    try:
        for rank, host in enumerate(hosts):
            extra = {}
            if processes > 1:
                extra = {
                    "SM_HOSTS": json.dumps(hosts),
                    "SM_CURRENT_HOST": host,
                    "MASTER_ADDR": "127.0.0.1",
                    "MASTER_PORT": port,
                }
            command = [
                sys.executable, "-m", "training.train", *flags,
                "--model-dir", str(work / f"model-{rank}"),
                "--output-dir", str(work / f"output-{rank}"),
            ]  # fmt: skip
            procs.append(
                subprocess.Popen(
                    command,
                    cwd=REPO,
                    env=_env(threads, extra),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        deadline = time.monotonic() + timeout
        logs = [
            proc.communicate(timeout=max(1.0, deadline - time.monotonic()))[1] for proc in procs
        ]
        wall = time.monotonic() - started
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    for proc, log in zip(procs, logs, strict=True):
        if proc.returncode != 0:
            raise SystemExit(f"train.py failed ({proc.returncode}):\n{log[-3000:]}")
    metrics = json.loads((work / "output-0" / "metrics.json").read_text())
    return Result(wall, float(metrics["final"]["test_acc"]), logs[0])


# ---------------------------------------------------------------- the machine and the FLOPs


def matmul_gflops(threads: int, size: int = 1024, repeats: int = 20) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def conv_gflops(threads: int, repeats: int = 10) -> float:
    """A ResNet layer1 convolution (3x3, 64 channels, 56x56, batch 8), forward."""
    torch.set_num_threads(threads)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False)
    x = torch.randn(8, 64, 56, 56)
    with torch.no_grad():
        for _ in range(3):
            conv(x)
        started = time.perf_counter()
        for _ in range(repeats):
            conv(x)
    return 2 * 8 * 64 * 56 * 56 * 64 * 9 * repeats / (time.perf_counter() - started) / 1e9


def flops_per_image(hps: dict, classes: int = 10, batch: int = 4) -> tuple[float, float]:
    """Counted FLOPs per image: (one training step's forward + backward, one evaluation)."""
    fine_tune = "all" if hps.get("weights") == "none" else hps.get("fine-tune", "head")
    net = build_model(hps["arch"], classes)
    set_trainable(net, fine_tune)
    size = int(hps["image-size"])
    images, labels = torch.randn(batch, 3, size, size), torch.randint(0, classes, (batch,))
    with FlopCounterMode(display=False) as train:
        torch.nn.functional.cross_entropy(net.train()(images), labels).backward()
    with torch.no_grad(), FlopCounterMode(display=False) as evaluation:
        net.eval()(images)
    return train.get_total_flops() / batch, evaluation.get_total_flops() / batch


# ---------------------------------------------------------------- the runs


def recipe_flags(hps: dict) -> list[str]:
    return [part for key, value in hps.items() for part in (f"--{key}", str(value))]


def local_recipe() -> dict:
    """The local run's TrainingHyperparameters."""
    return json.loads(yaml.safe_load(PARAMETERS.read_text())["TrainingHyperparameters"])


def sagemaker_defaults() -> dict:
    """template.yaml's TrainingHyperparameters default (read without CloudFormation tags)."""
    text = TEMPLATE.read_text()
    block = text[text.index("  TrainingHyperparameters:") :]
    default = re.search(r"Default: >-\n((?:      .*\n)+)", block)
    assert default, "template.yaml: TrainingHyperparameters has no folded default"
    return json.loads(" ".join(line.strip() for line in default.group(1).splitlines()))


def breakdown(result: Result, steps_per_epoch: int) -> dict[str, float]:
    """Rank 0's wall time by phase, from its log."""
    epochs = [tuple(map(float, m)) for m in EPOCH.findall(result.log)]
    trained = sum(e[2] for e in epochs)
    data = sum(e[4] for e in epochs)
    step = STEP.search(result.log)
    allreduce = float(step.group(1)) * steps_per_epoch * len(epochs) if step else 0.0
    test = TEST_PASS.search(result.log)
    evaluation = sum(e[5] for e in epochs) + (float(test.group(1)) if test else 0.0)
    return {
        "start-up and end": result.wall - trained - evaluation,
        "waiting for batches": data,
        "forward/backward/update": trained - data - allreduce,
        "all-reduce not hidden": allreduce,
        "evaluation": evaluation,
    }


def report(name: str, hps: dict, result: Result, counts: dict, peak: float, hosts: int) -> None:
    train_flops, eval_flops = flops_per_image(hps)
    batch = int(hps["batch-size"])
    shard = counts["train"] // hosts
    trained = shard * hosts  # DistributedSampler's drop_last
    epochs = len(EPOCH.findall(result.log))
    train_seconds = sum(float(m[2]) for m in EPOCH.findall(result.log))
    per_epoch = trained * train_flops + counts["valid"] * eval_flops
    total = epochs * per_epoch + counts["test"] * eval_flops
    limit = total / (peak * 1e9)
    steps = math.ceil(shard / batch) - (shard % batch == 1)
    print(
        f"  {name}: {' '.join(recipe_flags(hps))}\n"
        f"    FLOPs: {train_flops / 1e9:.4f} G per training image (forward + backward), "
        f"{eval_flops / 1e9:.4f} G evaluated; {per_epoch / 1e12:.3f} TFLOP per epoch, "
        f"{total / 1e12:.3f} TFLOP in all ({epochs} epochs and the test pass)\n"
        f"    {result.wall:.1f} s wall, {epochs * trained / result.wall:.1f} training images/s "
        f"({epochs * trained / train_seconds:.1f} in the training passes), "
        f"{total / result.wall / 1e9:.1f} GFLOP/s; the limit at {peak:.0f} GFLOP/s is "
        f"{limit:.1f} s: {limit / result.wall:.2f} of it; test accuracy {result.test_acc:.4f}",
        flush=True,
    )
    parts = breakdown(result, steps)
    print("    " + ", ".join(f"{k} {v:.1f} s" for k, v in parts.items()), flush=True)


def local(work: Path, peak: float, cores: int, previous: bool) -> None:
    counts = write_digits(work / "data32", image_size=32)
    common = ["--data-dir", str(work / "data32"), "--smoke-images", "0"]
    threads = max(1, cores // HOSTS)
    print(f"\nthe local recipe (localcloud/parameters.yaml), {HOSTS} hosts x {threads} threads:")
    now = local_recipe()
    result = run_hosts(HOSTS, threads, [*common, *recipe_flags(now)], work / "now")
    report("now", now, result, counts, peak, HOSTS)
    met = result.wall <= GOAL_SECONDS and result.test_acc >= GOAL_TEST_ACC
    print(
        f"  goal: <= {GOAL_SECONDS:.0f} s with test accuracy >= {GOAL_TEST_ACC}: "
        f"{result.wall:.1f} s, {result.test_acc:.4f}: {'met' if met else 'NOT met'}"
    )
    if previous:
        before = {**now, **PREVIOUS_RECIPE}
        old = run_hosts(HOSTS, threads, [*common, *recipe_flags(before)], work / "previous")
        report("previous", before, old, counts, peak, HOSTS)
        print(f"  now / previous wall time: {result.wall / old.wall:.2f}")


def prune(root: Path, per_class: dict[str, int]) -> dict[str, int]:
    """Keep the first ``per_class[split]`` images of every class; return the split sizes."""
    counts = {}
    for split, keep in per_class.items():
        for folder in (root / split).iterdir():
            for path in sorted(folder.iterdir())[keep:]:
                path.unlink()
        counts[split] = sum(1 for _ in (root / split).rglob("*.jpg"))
    return counts


def sagemaker(work: Path, peak: float, cores: int) -> None:
    """One epoch of the SageMaker defaults in one process: a throughput measure."""
    write_digits(work / "data64", image_size=64)
    counts = prune(work / "data64", SAGEMAKER_PER_CLASS)
    defaults = sagemaker_defaults()
    weights = work / "resnet50.pth"  # random weights in place of ImageNet's: same speed
    torch.save(build_model(defaults["arch"], 1000).state_dict(), weights)
    hps = {**defaults, "weights": str(weights), "epochs": 1, "log-interval": 0}
    flags = ["--data-dir", str(work / "data64"), "--smoke-images", "0", *recipe_flags(hps)]
    print(f"\nthe SageMaker defaults (template.yaml), 1 process x {cores} threads, 1 epoch:")
    result = run_hosts(1, cores, flags, work / "sagemaker")
    report("defaults", {**hps, "weights": "imagenet"}, result, counts, peak, 1)


def cpu_name() -> str:
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    names = [line.partition(":")[2].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.training", description=__doc__)
    parser.add_argument("--skip-previous", action="store_true", help="not the previous recipe")
    parser.add_argument("--skip-sagemaker", action="store_true", help="not the SageMaker defaults")
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    print(
        f"machine: {platform.machine()} {cpu_name()}, {cores} cores, "
        f"torch {torch.__version__}, python {platform.python_version()}; "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    peak, conv = matmul_gflops(cores), conv_gflops(cores)
    print(f"fp32 with {cores} threads: matmul {peak:.0f} GFLOP/s, convolution {conv:.0f} GFLOP/s")
    with tempfile.TemporaryDirectory(prefix="bench-training-") as scratch:
        local(Path(scratch), peak, cores, not args.skip_previous)
        if not args.skip_sagemaker:
            sagemaker(Path(scratch), peak, cores)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
