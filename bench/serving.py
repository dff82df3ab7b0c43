"""Serving throughput and latency: training/serve.py against the course-style baseline.

    python -m bench.serving [--duration 10] [--levels 1,8,32] [--serve-arg=--threads=1 ...]
    python -m bench.serving --trained   # a resnet50 trained here first (11 TFLOP)

Both servers host the same resnet50 at 224 px (random weights shaped like a trained
network's: see write_model) and are loaded in turn by closed-loop clients (each client
sends its next request when the last one is answered) over keep-alive connections, at
each concurrency level, on three kinds of JPEG: the two photos scikit-learn ships
(640x427), a 6-megapixel photo (one of them upscaled to 3024x2016, as a phone takes them)
and 224x224 crops. Warm-up requests are excluded. It also prints the compute ceilings
(forward passes only, on the bench's images) of the eager network, which the baseline
runs, of the frozen fp32 graph and of the form serve.py runs (imgcls.optimize: guarded
int8 for a network this size on x86), side by side, how often that form's guard re-ran an
image, and each server's CPU time per request, which other processes on a shared machine
distort far less than throughput and latency do. Goal: at 8 clients on the 6 MP photo, at least 2.5x
the baseline's throughput with a p99 below the baseline's.

``--trained`` hosts a resnet50 trained from scratch on real images instead (the digits,
bench/trained_model.py), reports on held-out images never trained or calibrated on its
accuracy, the int8 form's top-1 agreement with the fp32 graph and the guard's re-run rate,
and measures the 6 MP photo only (at 8 clients unless ``--levels`` says otherwise).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
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
from bench import trained_model
from imgcls.artifacts import model_meta, write_model_dir
from imgcls.imaging import Preprocessor
from imgcls.model import build_model, load_model
from imgcls.optimize import Guarded
from imgcls.predict import load_classifier, probe_and_calibration
from training.server_process import running_server, serve_command

# isort: split
from torchvision.models.resnet import Bottleneck  # after imgcls: its import guard

NUM_CLASSES = 133  # as the dog-breed data set of the original project
IMAGE_SIZE = 224
SAMPLE_IMAGES = Path(sklearn.datasets.__file__).parent / "images"
PHOTOS = ("china.jpg", "flower.jpg")
CEILING_BATCHES = (1, 4, 8)
GOAL_KIND, GOAL_CLIENTS, GOAL_SPEEDUP = "photo 3024x2016", 8, 2.5


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
    """resnet50 with random weights shaped like a trained network's, and its smoke set
    (crops of the two photos, as a trained model's holds held-out images).

    Speed does not depend on the weights, but how often a lossy form's guard re-runs an
    image does (imgcls.optimize), and int8 logits of raw random weights are noise: every
    call would be close. So, as in a trained ResNet, the residual branches are small next
    to the identity path (their last BatchNorm scaled to 0.1), BatchNorm holds the
    statistics of the bench's images, and the head (least squares) makes each bench image
    a clear call: its class 10 logits above the rest. A model unsure of every request
    would re-run each one through the fp32 graph too (then serve.py rejects the lossy form
    at load: see MAX_RERUN_SHARE).
    """
    torch.manual_seed(0)
    net = build_model("resnet50", NUM_CLASSES, weights="none")
    classes = [f"class_{i:03d}" for i in range(NUM_CLASSES)]
    meta = model_meta("resnet50", classes, IMAGE_SIZE, {}, {"bench": True})
    photos = [Image.open(SAMPLE_IMAGES / name).convert("RGB") for name in PHOTOS]
    crops = [p.crop((x, 0, x + 427, 427)) for p in photos for x in (0, 106, 213)]
    items = [
        {"label": classes[i], "index": i, "content_type": "image/jpeg",
         "image": base64.b64encode(jpeg(crop)).decode("ascii")}
        for i, crop in enumerate(crops)
    ]  # fmt: skip
    # the requests: photo i is the source of crops 3i..3i+2 and takes class 3i
    labelled = [(base64.b64decode(item["image"]), item["index"]) for item in items]
    for bodies in image_kinds().values():
        labelled += [(body, 3 * (i % len(PHOTOS))) for i, body in enumerate(bodies)]
    shape_like_trained(net, [body for body, _ in labelled], [c for _, c in labelled])
    write_model_dir(model_dir, net.state_dict(), meta, {"format": 1, "items": items})


def shape_like_trained(net: torch.nn.Module, bodies: list[bytes], labels: list[int]) -> None:
    preprocess = Preprocessor(IMAGE_SIZE)
    x = torch.cat([preprocess(body) for body in bodies])
    for module in net.modules():
        if isinstance(module, Bottleneck):
            torch.nn.init.constant_(module.bn3.weight, 0.1)
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the batch
    net.train()
    with torch.no_grad():
        net(x)
        net.eval()
        features = torch.nn.Sequential(*list(net.children())[:-1])(x).flatten(1)
        inputs = torch.cat([features, torch.ones(len(x), 1)], dim=1)
        targets = torch.zeros(len(x), NUM_CLASSES)
        targets[torch.arange(len(x)), torch.tensor(labels)] = 10.0
        solution = torch.linalg.lstsq(inputs, targets, driver="gelsd").solution
        net.fc.weight.copy_(solution[:-1].T)
        net.fc.bias.copy_(solution[-1])


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def image_kinds() -> dict[str, list[bytes]]:
    files = [SAMPLE_IMAGES / name for name in PHOTOS]
    photos = [Image.open(path).convert("RGB") for path in files]
    big = photos[0].resize((3024, 2016), Image.Resampling.BICUBIC)
    small = [p.resize((336, 224)).crop((56, 0, 280, 224)) for p in photos]
    return {
        "photo 640x427": [path.read_bytes() for path in files],
        "photo 3024x2016": [jpeg(big)],
        "224x224": [jpeg(s) for s in small],
    }


def forward_ceiling(
    net: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, seconds: float
) -> tuple[float, float]:
    """Images per second through the network alone (no decoding, no HTTP), and CPU ms
    per image (this process's; other processes distort it less than the rate)."""
    with torch.inference_mode():
        for _ in range(2):
            net(x)
        if x.is_cuda:  # the warm-up's kernels end before the clock starts
            torch.cuda.synchronize()
        done, start, cpu_start = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - start < seconds:
            net(x)
            done += len(x)
        if x.is_cuda:
            torch.cuda.synchronize()
    cpu_ms = 1000 * (time.process_time() - cpu_start) / done
    return done / (time.perf_counter() - start), cpu_ms


def ceilings(
    model_dir: Path, kinds: dict[str, list[bytes]], seconds: float
) -> tuple[str, dict[tuple[str, int], tuple]]:
    """The eager, the fp32 graph's and serve.py's form's ceilings on the bench's images,
    interleaved per batch size so that all see the same load; returns serve.py's mode and
    {(name, batch): (img/s, CPU ms)}."""
    eager, _ = load_model(model_dir, "cuda" if torch.cuda.is_available() else "cpu")
    started = time.perf_counter()
    optimised = load_classifier(model_dir)  # as serve.py loads it, $IMGCLS_OPTIMIZE included
    seconds_to_load = time.perf_counter() - started
    print(f"optimised form: {optimised.mode}, loaded, built and checked in {seconds_to_load:.1f} s")
    nets = {"eager": eager, "jit": load_classifier(model_dir, mode="jit").net}
    nets[optimised.mode] = optimised.net
    images = torch.cat([optimised.preprocess(body) for bodies in kinds.values() for body in bodies])
    images = images.to(optimised.device)
    figures = {}
    for batch in CEILING_BATCHES:
        x = images.repeat(batch // len(images) + 1, 1, 1, 1)[:batch]
        for name, net in nets.items():
            figures[name, batch] = forward_ceiling(net, x, seconds / len(CEILING_BATCHES))
    if isinstance(optimised.net, Guarded):
        guard = optimised.net
        print(
            f"its guard re-ran {guard.rerun} of {guard.images} images through the fp32 graph "
            f"(close calls: top-2 logits within {guard.margin:.2g})"
        )
    return optimised.mode, figures


def write_trained(model_dir: Path) -> None:
    """Train the resnet50 on the digits, write it, and report on the held-out digits."""
    started = time.perf_counter()
    data = trained_model.digits()
    print(f"training resnet50 from scratch on the digits ({trained_model.RECIPE}):", flush=True)
    net = trained_model.train(data)
    trained_model.write(model_dir, data, net)
    print(f"trained in {time.perf_counter() - started:.0f} s", flush=True)
    classifier = load_classifier(model_dir)
    calibration = probe_and_calibration(model_dir, classifier.preprocess)[1]
    assert calibration is not None  # the smoke set holds 40 images
    trained_model.report_held_out(classifier, net, calibration, data)


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


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
    parser.add_argument("--levels", help="client concurrency levels (default 1,8,32; 8 trained)")
    parser.add_argument("--serve-arg", action="append", default=[], help="extra serve.py flag")
    parser.add_argument(
        "--trained", action="store_true", help="train a resnet50 on the digits first and host it"
    )
    args = parser.parse_args(argv)
    levels = [
        int(level) for level in (args.levels or ("8" if args.trained else "1,8,32")).split(",")
    ]
    kinds = image_kinds()
    if args.trained:
        kinds = {GOAL_KIND: kinds[GOAL_KIND]}

    with tempfile.TemporaryDirectory() as scratch:
        model_dir = Path(scratch) / "model"
        print(
            f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
            f"load average {os.getloadavg()[0]:.1f} at start"
        )
        if args.trained:
            write_trained(model_dir)
        else:
            write_model(model_dir)
        mode, figures = ceilings(model_dir, kinds, args.duration)
        print("forward-only ceilings, resnet50 @224 (img/s, CPU ms per image):")
        for batch in CEILING_BATCHES:
            cells = "   ".join(
                f"{name:<8} {figures[name, batch][0]:6.1f} img/s {figures[name, batch][1]:5.0f} ms"
                for name in dict.fromkeys(("eager", "jit", mode))
            )
            print(f"  batch {batch:<2} {cells}")
        best = max(CEILING_BATCHES, key=lambda b: figures[mode, b][0])
        ceiling = figures[mode, best][0]
        print()
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
                f"  {kind:<16} throughput x{ratio(ours.rps, base.rps):.2f}, "
                f"p99 x{ratio(ours.percentile(99), base.percentile(99)):.2f} (lower is better), "
                f"CPU per request x{ratio(ours.cpu_ms_per_request, base.cpu_ms_per_request):.2f}, "
                f"{ours.rps / ceiling:.0%} of the optimised ceiling (batch {best})"
            )
        if (GOAL_KIND, GOAL_CLIENTS, "serve.py") in results:
            ours = results[GOAL_KIND, GOAL_CLIENTS, "serve.py"]
            base = results[GOAL_KIND, GOAL_CLIENTS, "baseline"]
            speedup = ratio(ours.rps, base.rps)
            met = speedup >= GOAL_SPEEDUP and ours.percentile(99) < base.percentile(99)
            print(
                f"goal: >= {GOAL_SPEEDUP}x the baseline's throughput on the {GOAL_KIND} at "
                f"{GOAL_CLIENTS} clients with a lower p99: x{speedup:.2f}, p99 "
                f"{ours.percentile(99) * 1000:.0f} vs {base.percentile(99) * 1000:.0f} ms: "
                f"{'met' if met else 'NOT met'}"
            )
        print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
