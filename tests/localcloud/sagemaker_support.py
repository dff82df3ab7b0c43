"""Helpers for the local SageMaker tests: archives, bounded waits, leak checks."""

from __future__ import annotations

import io
import os
import tarfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from localcloud import processes

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/sagemaker"
TERMINAL_JOB = ("Completed", "Failed", "Stopped")


def tgz(files: Mapping[str, bytes | str]) -> bytes:
    """A gzip tar holding ``files`` (name -> content) at its root."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def tgz_dir(folder: Path) -> bytes:
    """``folder``'s contents at the root of a gzip tar (like the SDK's sourcedir.tar.gz)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            if "__pycache__" not in path.parts and path.is_file():
                tar.add(path, arcname=path.relative_to(folder).as_posix())
    return buffer.getvalue()


def untar(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def wait_for(read: Callable[[], Any], done: Callable[[Any], bool], timeout: float) -> Any:
    """Poll ``read()`` until ``done(value)``; fail with the last value after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"still waiting after {timeout} s: {value}"
        time.sleep(0.1)


def wait_job(sagemaker: Any, name: str, timeout: float = 60) -> dict[str, Any]:
    return wait_for(
        lambda: sagemaker.describe_training_job(TrainingJobName=name),
        lambda job: job["TrainingJobStatus"] in TERMINAL_JOB,
        timeout,
    )


def wait_endpoint(sagemaker: Any, name: str, timeout: float = 60) -> dict[str, Any]:
    return wait_for(
        lambda: sagemaker.describe_endpoint(EndpointName=name),
        lambda endpoint: endpoint["EndpointStatus"] not in ("Creating", "Updating"),
        timeout,
    )


def children() -> set[int]:
    return set(processes.descendants(os.getpid()))


def assert_no_new_children(before: set[int], timeout: float = 20) -> None:
    """Every process started since ``before`` was taken is gone (bounded wait)."""
    wait_for(lambda: children() - before, lambda extra: not extra, timeout)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"
