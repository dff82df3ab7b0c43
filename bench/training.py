"""Training throughput: one process against two "hosts" (DDP over gloo) on this machine.

    python -m bench.training [--epochs 2] [--image-size 64] [--arch resnet18]

Trains on the digits sample set (``training.sample_data``) and reads the images/s that
train.py logs for the last epoch (the first one includes warm-up). The two hosts run as two
processes here, launched as SageMaker launches one process per host (``SM_HOSTS``); on one
machine they share its cores, so each gets half of them as torch threads and the ratio
shows the cost of DDP (gradient all-reduce, a smaller batch per step), not a speed-up.
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
from pathlib import Path

import torch

from training.sample_data import write_digits

REPO = Path(__file__).resolve().parents[1]
THROUGHPUT = re.compile(r"epoch (\d+): trained on (\d+) images in ([0-9.]+) s \(([0-9.]+) images/s")
TIMEOUT_S = 1800


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(threads: int, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return {**env, "OMP_NUM_THREADS": str(threads), **extra}


def _run(processes: int, threads: int, flags: list[str], work: Path) -> tuple[float, float]:
    """Train with ``processes`` hosts; return (images/s, seconds) of the last epoch."""
    hosts = [f"algo-{i + 1}" for i in range(processes)]
    port = str(_free_port())
    procs: list[subprocess.Popen[str]] = []
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
        deadline = time.monotonic() + TIMEOUT_S
        logs = [
            proc.communicate(timeout=max(1.0, deadline - time.monotonic()))[1] for proc in procs
        ]
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
    return float(rate), float(seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.training", description=__doc__)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=32, help="per process")
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
        single = _run(1, single_threads, flags, work)
        pair = _run(2, pair_threads, flags, work)
    print(
        f"machine: {platform.machine()}, {cores} cores, torch {torch.__version__}, "
        f"python {platform.python_version()}"
    )
    print(
        f"data: digits, {counts['train']} training images at {args.image_size} px, "
        f"{args.arch}, batch {args.batch_size} per process, last of {args.epochs} epochs"
    )
    print(f"1 process  x {single_threads} threads: {single[0]:7.1f} images/s ({single[1]:.1f} s)")
    print(f"2 hosts    x {pair_threads} threads: {pair[0]:7.1f} images/s ({pair[1]:.1f} s)")
    print(f"scaling (2 hosts / 1 process): {pair[0] / single[0]:.2f}x on the same {cores} cores")


if __name__ == "__main__":
    main()
