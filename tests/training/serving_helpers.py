"""Model directories and images for the serving tests."""

from __future__ import annotations

import http.client
import io
import json
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
from PIL import Image

from imgcls.model import build_model
from imgcls.transforms import IMAGENET_MEAN, IMAGENET_STD, resize_size_for

REPO = Path(__file__).resolve().parents[2]
TRAINING = REPO / "training"
CLASSES = ("cat", "dog", "fox", "owl")


def make_model_dir(path: Path, image_size: int = 32, seed: int = 0) -> Path:
    """A model directory as train.py lays it out, with random resnet18 weights."""
    torch.manual_seed(seed)
    path.mkdir(parents=True, exist_ok=True)
    model = build_model("resnet18", len(CLASSES), weights="none")
    torch.save(model.state_dict(), path / "model.pth")
    meta = {
        "format": 1,
        "arch": "resnet18",
        "num_classes": len(CLASSES),
        "classes": list(CLASSES),
        "image_size": image_size,
        "resize_size": resize_size_for(image_size),
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "head": "linear",
    }
    (path / "model.json").write_text(json.dumps(meta))
    copy_code(path)
    return path


def model_with_handlers(path: Path, source: str, image_size: int = 32) -> Path:
    """A model whose code/inference.py is ``source``, with the real handlers as ``bundled``."""
    model_dir = make_model_dir(path, image_size)
    code = model_dir / "code"
    (code / "bundled.py").write_text((TRAINING / "inference.py").read_text())
    (code / "inference.py").write_text(source)
    return model_dir


# Handlers whose model_fn waits (at most 300 s) for a "release" file in the model directory:
# the server stays "loading" until a test creates it.
GATED_HANDLERS = """
import time
from pathlib import Path

import bundled
from bundled import input_fn, output_fn, predict_batch_fn, predict_fn  # noqa: F401


def model_fn(model_dir):
    gate = Path(model_dir) / "release"
    deadline = time.monotonic() + 300
    while not gate.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return bundled.model_fn(model_dir)
"""


def copy_code(model_dir: Path) -> None:
    code = model_dir / "code"
    code.mkdir(exist_ok=True)
    shutil.copy2(TRAINING / "inference.py", code / "inference.py")
    shutil.copytree(
        TRAINING / "imgcls",
        code / "imgcls",
        ignore=shutil.ignore_patterns("__pycache__"),
        dirs_exist_ok=True,
    )


def image_bytes(
    size: tuple[int, int] = (48, 40), seed: int = 0, fmt: str = "JPEG", mode: str = "RGB"
) -> bytes:
    """A deterministic noisy image, different per seed, encoded as ``fmt``."""
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (size[1], size[0], 3), generator=generator, dtype=torch.uint8)
    image = Image.fromarray(pixels.numpy(), "RGB").convert(mode)
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


class ServerProcess:
    """``python -m training.serve`` on a free port; always stopped on exit."""

    def __init__(self, model_dir: Path, *args: str) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "training.serve",
                "--model-dir",
                str(model_dir),
                "--port",
                "0",
                *args,
            ],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        try:
            self.port = self._wait_for_port()
        except BaseException:
            self.__exit__()
            raise

    def _pump(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)
        self.lines.put("")  # end of output

    def read_line(self, timeout: float) -> str:
        line = self.lines.get(timeout=timeout)
        self.log.append(line)
        return line

    def _wait_for_port(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.read_line(max(0.1, deadline - time.monotonic()))
            if not line:
                raise RuntimeError(f"serve.py exited before listening:\n{''.join(self.log)}")
            if match := re.search(r"listening on http://[\d.]+:(\d+)", line):
                return int(match.group(1))
        raise TimeoutError("serve.py did not start listening")

    def output(self, timeout: float = 10) -> str:
        """All stderr until the process ends (call after stopping it)."""
        try:
            while self.read_line(timeout):
                pass
        except queue.Empty:
            pass
        return "".join(self.log)

    def logged(self, text: str, timeout: float = 30) -> bool:
        """Whether serve.py logs a line holding ``text`` (reads its stderr for at most
        ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.log):
            left = deadline - time.monotonic()
            if left <= 0 or not self.read_line(left):
                return False
        return True

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> tuple[int, dict]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            connection.close()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.request("GET", "/ping")[0] == 200:
                return
            time.sleep(0.05)
        raise TimeoutError("/ping never answered 200")

    def stop(self, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)
            raise

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
