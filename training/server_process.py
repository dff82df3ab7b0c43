"""Run a model server (serve.py, or the benchmark's baseline) as a child process.

One way to do it for the demo and the benchmarks: a free local port, a bounded wait for
``GET /ping`` to answer 200, and a clean stop (SIGTERM, then SIGKILL) however the block ends.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_command(model_dir: Path) -> list[str]:
    return [sys.executable, "-m", "training.serve", "--model-dir", str(model_dir)]


def is_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False  # not listening yet, or 503 while the model loads


@contextmanager
def running_server(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    ready_timeout: float = 120,
    quiet: bool = False,
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start ``command --port P`` and yield ``(url, process)`` once ``/ping`` answers 200."""
    port = free_port()
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        cwd=REPO,
        env=dict(env) if env is not None else None,
        stderr=subprocess.DEVNULL if quiet else None,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout
        while not is_ready(url):
            if process.poll() is not None:
                raise RuntimeError(f"{' '.join(command[:3])} exited with {process.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url}/ping did not answer 200 within {ready_timeout:.0f} s")
            time.sleep(0.2)
        yield url, process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
