"""``python -m localcloud`` as a user runs it: every error is one line on stderr, exit != 0.

Each command runs as a subprocess against a local cloud that is not there (a closed port),
not running for the state dir, or whose port is taken; none may print a traceback.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcloud.cli.errors import one_line
from localcloud.runtime.statefile import STATE_FILE
from tests.data_helpers import held_port

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def refused_url() -> Iterator[str]:
    """A URL whose port refuses connections and stays so: bound here, never listening (a
    port closed after a probe could be taken by another test's server meanwhile)."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{held.getsockname()[1]}"


def localcloud(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LOCALCLOUD_"))}
    return subprocess.run(
        [sys.executable, "-m", "localcloud", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0, result
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("localcloud: "), result.stderr
    for text in expected:
        assert text in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cli")
    image = folder / "digit.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
    archive = folder / "data.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(image, arcname="train/a/digit.png")
    return {"image": image, "archive": archive, "empty": folder / "no-state"}


@pytest.fixture(scope="module")
def nowhere(refused_url: str) -> list[str]:
    """Connection options that point at a port that refuses connections."""
    return ["--endpoint-url", refused_url, "--api-url", refused_url]


@pytest.mark.parametrize(
    "command",
    [
        ["executions"],
        ["history", "some-execution"],
        ["upload", "{archive}", "--no-check"],  # the archive is no data set: skip its check
        ["classify", "{image}"],
        ["classify", "https://example.com/dog.jpg"],
    ],
)
def test_an_unreachable_local_cloud_is_one_line(
    command: list[str], files: dict[str, Path], nowhere: list[str]
) -> None:
    argv = [part.format(**files) for part in command]
    options = nowhere if command[0] == "classify" else nowhere[:2]  # only classify uses the API
    line = assert_one_line_error(localcloud(*argv, *options), "not reachable")
    assert "127.0.0.1" in line and "Connection refused" in line


@pytest.mark.parametrize("command", [["history"], ["classify", "{image}"]])
def test_no_local_cloud_for_the_state_dir_is_one_line(
    command: list[str], files: dict[str, Path]
) -> None:
    argv = [part.format(**files) for part in command]
    result = localcloud(*argv, "--state-dir", str(files["empty"]))
    assert_one_line_error(result, "no local cloud is running")


def test_a_stale_state_file_is_one_line(tmp_path: Path, refused_url: str) -> None:
    """The state file names a live process but nothing answers at its URL (a hung server)."""
    url = refused_url
    state = {
        "pid": os.getpid(),
        "endpoint_url": url,
        "api_url": url,
        "region": "us-east-1",
        "buckets": ["bucket"],
        "state_machines": ["arn:aws:states:us-east-1:123456789012:stateMachine:m"],
    }
    (tmp_path / STATE_FILE).write_text(json.dumps(state))
    for command in (["executions"], ["history"]):
        result = localcloud(*command, "--state-dir", str(tmp_path))
        assert_one_line_error(result, "not reachable", url)


def test_missing_files_are_one_line(files: dict[str, Path], nowhere: list[str]) -> None:
    result = localcloud("classify", str(files["image"].with_name("absent.png")), *nowhere)
    assert_one_line_error(result, "absent.png")


@pytest.fixture
def taken_port() -> Iterator[int]:
    with held_port() as port:
        yield port


@pytest.mark.parametrize("option", ["--port", "--api-port"])
def test_up_on_a_taken_port_is_one_line(option: str, taken_port: int, tmp_path: Path) -> None:
    # before: the server hung in moto's start-up, and `up` never returned
    result = localcloud("up", option, str(taken_port), "--state-dir", str(tmp_path), timeout=60)
    assert_one_line_error(result, f"{option} {taken_port}", "not free")


def test_unexpected_errors_are_one_line_too() -> None:
    message, status = one_line(KeyError("boom\nwith a second line"))
    assert (status, "\n" in message) == (1, False)
    assert message.startswith("unexpected error KeyError") and "LOCALCLOUD_DEBUG=1" in message
