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
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from training.sample_data import write_digits
from training.server_process import REPO, running_server, serve_command

TRAIN_FLAGS = (
    "--arch", "resnet18", "--weights", "none", "--fine-tune", "all", "--image-size", "64",
    "--batch-size", "32", "--learning-rate", "1e-3", "--num-workers", "0",
    "--early-stopping-patience", "0",
)  # fmt: skip
HTTP_TIMEOUT_S = 30


def train(data_dir: Path, model_dir: Path, output_dir: Path, epochs: int) -> None:
    command = [sys.executable, "-m", "training.train", *TRAIN_FLAGS, "--epochs", str(epochs)]
    command += ["--data-dir", str(data_dir), "--model-dir", str(model_dir)]
    command += ["--output-dir", str(output_dir)]
    subprocess.run(command, cwd=REPO, check=True)


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
    with running_server(serve_command(model_dir)) as (url, _):
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
