"""Training throughput, and the local run's recipe against its goal, on the digits.

    python -m bench.training [--epochs 2] [--image-size 64] [--arch resnet18] [--no-recipe]

Throughput: trains on the digits sample set (``training.sample_data``) and reads the
images/s that train.py logs for the last epoch (the first one includes warm-up), for one
process and for two "hosts" (DDP over gloo). The two hosts run as two processes here,
launched as SageMaker launches one process per host (``SM_HOSTS``); on one machine they
share its cores, so each gets half of them as torch threads and the ratio shows the cost
of DDP (gradient all-reduce, a smaller batch per step), not a speed-up.

Recipe: the local run's training (``TrainingHyperparameters`` of localcloud/parameters.yaml,
two hosts, as ``make run`` trains) and the previous recipe (``standard`` augmentation,
constant learning rate, 12 epochs, patience 4), one after the other: wall time, epochs run
and test accuracy. Goal: test accuracy >= 0.97 in no more wall time than before.
"""

from __future__ import annotations

import argparse
import json
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

from training.sample_data import write_digits

REPO = Path(__file__).resolve().parents[1]
THROUGHPUT = re.compile(r"epoch (\d+): trained on (\d+) images in ([0-9.]+) s \(([0-9.]+) images/s")
TIMEOUT_S = 1800
PARAMETERS = REPO / "localcloud" / "parameters.yaml"
# The local run's recipe before augmentation became a choice (its changes on top of today's).
PREVIOUS_RECIPE = {
    "augment": "standard", "lr-schedule": "constant", "epochs": 12, "early-stopping-patience": 4,
}  # fmt: skip
GOAL_TEST_ACC = 0.97


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
    rate: float  # images/s of the last epoch
    epoch_seconds: float  # the last epoch
    wall: float  # the whole run, process start to end
    epochs: int
    test_acc: float


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
                "--model-dir", str(work / f"model-{processes}-{rank}"),
                "--output-dir", str(work / f"output-{processes}-{rank}"),
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
    epochs = THROUGHPUT.findall(logs[0])  # rank 0 logs the global figure
    _, _, seconds, rate = epochs[-1]
    metrics = json.loads((work / f"output-{processes}-0" / "metrics.json").read_text())
    return Result(
        float(rate), float(seconds), wall, len(epochs), float(metrics["final"]["test_acc"])
    )


def local_recipe() -> list[str]:
    """train.py flags of the local run's TrainingHyperparameters."""
    values = json.loads(yaml.safe_load(PARAMETERS.read_text())["TrainingHyperparameters"])
    return [part for key, value in values.items() for part in (f"--{key}", str(value))]


def recipe(work: Path, threads: int) -> None:
    now = local_recipe()
    before = now + [part for k, v in PREVIOUS_RECIPE.items() for part in (f"--{k}", str(v))]
    common = ["--data-dir", str(work / "data32"), "--smoke-images", "0"]
    write_digits(work / "data32", image_size=32)
    print(f"\nlocal recipe (localcloud/parameters.yaml), 2 hosts x {threads} threads:")
    results = {}
    for name, flags in (("previous", before), ("now", now)):
        results[name] = result = run_hosts(2, threads, [*common, *flags], work / name)
        print(
            f"  {name:<8} {' '.join(flags)}\n"
            f"           {result.wall:6.1f} s wall, {result.epochs} epochs, "
            f"test accuracy {result.test_acc:.4f}",
            flush=True,
        )
    now_result, before_result = results["now"], results["previous"]
    met = now_result.test_acc >= GOAL_TEST_ACC and now_result.wall <= before_result.wall
    print(
        f"goal: test accuracy >= {GOAL_TEST_ACC} in no more wall time than the previous "
        f"recipe: {now_result.test_acc:.4f} in {now_result.wall:.1f} s vs "
        f"{before_result.wall:.1f} s: {'met' if met else 'NOT met'}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.training", description=__doc__)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=32, help="per process")
    parser.add_argument("--no-recipe", action="store_true", help="throughput only")
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="bench-training-") as scratch:
        work = Path(scratch)
        counts = write_digits(work / "data", image_size=args.image_size)
        flags = [
            "--data-dir", str(work / "data"), "--arch", args.arch, "--weights", "none",
            "--image-size", str(args.image_size), "--epochs", str(args.epochs),
            "--batch-size", str(args.batch_size), "--num-workers", "0",
            "--early-stopping-patience", "0", "--log-interval", "0", "--smoke-images", "0",
        ]  # fmt: skip
        single_threads, pair_threads = cores, max(1, cores // 2)
        print(
            f"machine: {platform.machine()}, {cores} cores, torch {torch.__version__}, "
            f"python {platform.python_version()}; load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        single = run_hosts(1, single_threads, flags, work)
        pair = run_hosts(2, pair_threads, flags, work)
        print(
            f"data: digits, {counts['train']} training images at {args.image_size} px, "
            f"{args.arch}, batch {args.batch_size} per process, last of {args.epochs} epochs"
        )
        for name, threads, result in (
            ("1 process ", single_threads, single),
            ("2 hosts   ", pair_threads, pair),
        ):
            print(
                f"{name} x {threads} threads: {result.rate:7.1f} images/s "
                f"({result.epoch_seconds:.1f} s)"
            )
        print(f"scaling (2 hosts / 1 process): {pair.rate / single.rate:.2f}x on {cores} cores")
        if not args.no_recipe:
            recipe(work, pair_threads)
        print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
