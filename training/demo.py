"""The plain-host ("EC2") walk-through: sample data -> train -> serve -> classify.

    python -m training.demo [--work-dir work/demo]

Writes scikit-learn's handwritten digits as an image folder, trains a small ResNet on it
with train.py, starts serve.py, classifies held-out test digits over HTTP and stops the
server again (also on Ctrl-C or failure). Sized for a laptop CPU: resnet18 from random
weights at 64 px, 8 epochs (fewer when validation accuracy stops improving), takes a few
minutes on two cores and reaches about 0.9 test accuracy.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from training.sample_data import write_digits

REPO = Path(__file__).resolve().parents[1]
TRAIN_FLAGS = (
    "--arch", "resnet18", "--weights", "none", "--fine-tune", "all", "--image-size", "64",
    "--batch-size", "32", "--learning-rate", "1e-3", "--num-workers", "0",
    "--early-stopping-patience", "0",
)  # fmt: skip
READY_TIMEOUT_S = 120
HTTP_TIMEOUT_S = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train(data_dir: Path, model_dir: Path, output_dir: Path, epochs: int) -> None:
    command = [sys.executable, "-m", "training.train", *TRAIN_FLAGS, "--epochs", str(epochs)]
    command += ["--data-dir", str(data_dir), "--model-dir", str(model_dir)]
    command += ["--output-dir", str(output_dir)]
    subprocess.run(command, cwd=REPO, check=True)


@contextmanager
def serving(model_dir: Path) -> Iterator[str]:
    """serve.py on a free local port for the duration of the block; yields its URL."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "training.serve",
            "--model-dir",
            str(model_dir),
            "--port",
            str(port),
        ],
        cwd=REPO,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
        yield url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_ready(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"serve.py exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass  # not listening yet (or 503 while the model loads)
        time.sleep(0.2)
    raise TimeoutError(f"serve.py did not answer /ping within {READY_TIMEOUT_S} s")


def classify(url: str, image: bytes) -> dict:
    request = urllib.request.Request(
        f"{url}/invocations", data=image, headers={"Content-Type": "image/jpeg"}
    )
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
        return json.loads(response.read())


def held_out(data_dir: Path, per_class: int) -> list[tuple[str, Path]]:
    """The first ``per_class`` test images of every class, as (label, path)."""
    return [
        (folder.name, path)
        for folder in sorted((data_dir / "test").iterdir())
        for path in sorted(folder.glob("*.jpg"))[:per_class]
    ]


def run(work_dir: Path, epochs: int, per_class: int) -> int:
    data_dir, model_dir = work_dir / "data", work_dir / "model"
    print(f"1/4 writing the digits sample data to {data_dir}", flush=True)
    counts = write_digits(data_dir)
    print(f"    {counts}", flush=True)
    print(f"2/4 training resnet18 at 64 px for {epochs} epochs into {model_dir}", flush=True)
    train(data_dir, model_dir, work_dir / "output", epochs)
    print("3/4 starting serve.py", flush=True)
    with serving(model_dir) as url:
        print(f"4/4 classifying held-out test digits via POST {url}/invocations", flush=True)
        samples = held_out(data_dir, per_class)
        correct = 0
        for label, path in samples:
            best = classify(url, path.read_bytes())["predictions"][0]
            correct += best["label"] == label
            mark = "ok" if best["label"] == label else "WRONG"
            print(f"    {path.name}: label {label}  predicted {best['label']} "
                  f"(p={best['probability']:.2f})  {mark}", flush=True)  # fmt: skip
    metrics = json.loads((model_dir / "model.json").read_text())["metrics"]
    print(f"served: {correct}/{len(samples)} correct; test accuracy of the model "
          f"(whole test split): {metrics['test_acc']:.3f}")  # fmt: skip
    print(f"serve it yourself: python -m training.serve --model-dir {model_dir} --host 0.0.0.0")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.demo", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--work-dir", type=Path, default=Path("work/demo"), help="where data and model go"
    )
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument(
        "--per-class", type=int, default=1, help="test digits to classify per class"
    )
    args = parser.parse_args(argv)
    try:
        return run(args.work_dir.resolve(), args.epochs, args.per_class)
    except subprocess.CalledProcessError as exc:
        print(f"demo: error: training failed (exit status {exc.returncode})", file=sys.stderr)
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("demo: interrupted", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
