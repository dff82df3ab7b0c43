"""Serving throughput and latency: training/serve.py against the course-style baseline.

    python -m bench.serving [--duration 10] [--levels 1,8,32] [--serve-arg=--threads=1 ...]

Both servers host the same resnet50 at 224 px (random weights: speed does not depend on
them) and are loaded in turn by closed-loop clients (each client sends its next request
when the last one is answered) over keep-alive connections, at each concurrency level,
on three kinds of JPEG: the two photos scikit-learn ships (640x427), a 6-megapixel
photo (one of them upscaled to 3024x2016, as a phone takes them) and 224x224 crops.
Warm-up requests are excluded. It also prints the compute ceiling (forward passes
only) and each server's CPU time per request, which other processes on a shared machine
distort far less than throughput and latency do.
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

# as serve.py does (see docs/serving.md), so that the ceiling is what serve.py can reach;
# set before torch loads libgomp
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import sklearn.datasets
import torch
from PIL import Image

import training  # noqa: F401  (puts training/ on sys.path: imgcls imports as in SageMaker)

# isort: split
from imgcls.artifacts import model_meta, write_model_dir
from imgcls.model import build_model, load_model
from training.server_process import running_server, serve_command

NUM_CLASSES = 133  # as the dog-breed data set of the original project
IMAGE_SIZE = 224
SAMPLE_IMAGES = Path(sklearn.datasets.__file__).parent / "images"


@dataclass(frozen=True)
class Stats:
    requests: int
    errors: int
    seconds: float
    latencies: list[float]
    cpu_seconds: float  # the server process's user + system CPU time in the window

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.cpu_seconds / self.requests if self.requests else float("nan")

    def percentile(self, q: int) -> float:
        if len(self.latencies) < 2:
            return self.latencies[0] if self.latencies else float("nan")
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[q - 1]


def write_model(model_dir: Path) -> None:
    torch.manual_seed(0)
    net = build_model("resnet50", NUM_CLASSES, weights="none")
    classes = [f"class_{i:03d}" for i in range(NUM_CLASSES)]
    meta = model_meta("resnet50", classes, IMAGE_SIZE, {}, {"bench": True})
    write_model_dir(model_dir, net.state_dict(), meta, {"format": 1, "items": []})


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def image_kinds() -> dict[str, list[bytes]]:
    files = [SAMPLE_IMAGES / "china.jpg", SAMPLE_IMAGES / "flower.jpg"]
    photos = [Image.open(path).convert("RGB") for path in files]
    big = photos[0].resize((3024, 2016), Image.Resampling.BICUBIC)
    small = [p.resize((336, 224)).crop((56, 0, 280, 224)) for p in photos]
    return {
        "photo 640x427": [path.read_bytes() for path in files],
        "photo 3024x2016": [jpeg(big)],
        "224x224": [jpeg(s) for s in small],
    }


def forward_ceiling(model_dir: Path, batch: int, seconds: float) -> float:
    """Images per second through the network alone (no decoding, no HTTP)."""
    net, _ = load_model(model_dir)
    x = torch.randn(batch, 3, IMAGE_SIZE, IMAGE_SIZE)
    with torch.inference_mode():
        for _ in range(2):
            net(x)
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            net(x)
            done += batch
    return done / (time.perf_counter() - start)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(
    server: tuple[int, int], bodies: list[bytes], clients: int, warmup: float, duration: float
) -> Stats:
    """Closed-loop clients; the requests that finish in the measured window (after the
    warm-up) count."""
    port, pid = server
    start = time.monotonic() + 0.2
    measure_from, end = start + warmup, start + warmup + duration
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def client(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        i = index
        time.sleep(max(0.0, start - time.monotonic()))
        while (sent := time.monotonic()) < end:
            body = bodies[i % len(bodies)]
            i += 1
            try:
                connection.request("POST", "/invocations", body, {"Content-Type": "image/jpeg"})
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                connection.close()  # reconnects on the next request
                ok = False
            done = time.monotonic()
            if measure_from <= done <= end:
                with lock:
                    latencies.append(done - sent)
                    errors[0] += not ok
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, measure_from - time.monotonic()))
    cpu_start = cpu_seconds(pid)
    time.sleep(max(0.0, end - time.monotonic()))
    cpu = cpu_seconds(pid) - cpu_start
    for thread in threads:
        thread.join()
    return Stats(len(latencies), errors[0], duration, latencies, cpu)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.serving", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per cell")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds per cell")
    parser.add_argument("--levels", default="1,8,32", help="client concurrency levels")
    parser.add_argument("--serve-arg", action="append", default=[], help="extra serve.py flag")
    args = parser.parse_args(argv)
    levels = [int(level) for level in args.levels.split(",")]
    kinds = image_kinds()

    with tempfile.TemporaryDirectory() as scratch:
        model_dir = Path(scratch) / "model"
        write_model(model_dir)
        ceiling = {b: forward_ceiling(model_dir, b, args.duration / 2) for b in (1, 8)}
        print(
            f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.1f}"
        )
        print(
            f"forward-only ceiling, resnet50 @224: batch 1 {ceiling[1]:.1f} img/s, "
            f"batch 8 {ceiling[8]:.1f} img/s\n"
        )
        python = sys.executable
        servers = {
            "baseline": [python, "-m", "bench.baseline_server", "--model-dir", str(model_dir)],
            "serve.py": [*serve_command(model_dir), *args.serve_arg],
        }
        results: dict[tuple[str, int, str], Stats] = {}
        # the baseline runs with torch's OpenMP defaults, as the original did
        base_env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        with (
            running_server(
                servers["baseline"], env=base_env, ready_timeout=180, quiet=True
            ) as base,
            running_server(
                servers["serve.py"], env=os.environ, ready_timeout=180, quiet=True
            ) as ours,
        ):
            handles = {
                name: (urlsplit(url).port, process.pid)
                for name, (url, process) in (("baseline", base), ("serve.py", ours))
            }
            print(
                f"{'images':<16} {'clients':>7} {'server':<9} {'req/s':>7} "
                f"{'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'CPU ms/req':>10}"
            )
            for kind, bodies in kinds.items():
                for level in levels:
                    for name, server in handles.items():  # adjacent in time: same conditions
                        stats = load(server, bodies, level, args.warmup, args.duration)
                        results[kind, level, name] = stats
                        print(
                            f"{kind:<16} {level:>7} {name:<9} {stats.rps:>7.1f} "
                            f"{stats.percentile(50) * 1000:>8.0f} "
                            f"{stats.percentile(99) * 1000:>8.0f} {stats.errors:>6} "
                            f"{stats.cpu_ms_per_request:>10.0f}",
                            flush=True,
                        )
        level = 8 if 8 in levels else levels[-1]
        print(f"\nserve.py vs baseline at {level} clients:")
        for kind in kinds:
            ours, base = results[kind, level, "serve.py"], results[kind, level, "baseline"]
            print(
                f"  {kind:<16} throughput x{ours.rps / base.rps:.2f}, "
                f"p99 x{ours.percentile(99) / base.percentile(99):.2f} (lower is better), "
                f"CPU per request x{ours.cpu_ms_per_request / base.cpu_ms_per_request:.2f}, "
                f"{ours.rps / ceiling[1]:.0%} of the batch-1 ceiling"
            )


if __name__ == "__main__":
    main()
