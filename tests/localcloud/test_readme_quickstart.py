"""The README's "Use it like AWS" block works as written: its commands run in order, as a user
pastes them, against the local cloud its own `up` starts (with the `export` line `up` prints
applied), and each exits 0; then the AWS CLI block runs against the same local cloud."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcloud.runtime import processes
from tests.parts_support import missing_part

REPO = Path(__file__).resolve().parents[2]
UP_READY_S = 240
COMMAND_S = 900
pytestmark = pytest.mark.e2e


def blocks(section: str) -> list[str]:
    """The ```bash blocks of the README section headed ``section``."""
    text = (REPO / "README.md").read_text()
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```bash\n(.*?)```", text[start : end if end > 0 else None], re.S)


def commands(block: str) -> list[str]:
    """Each command of a block: continuations joined, comments and blank lines dropped."""
    joined = block.replace("\\\n", " ")
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            found.append(line)
    return found


def exported(line: str) -> dict[str, str]:
    """The variables of `up`'s ``export A=1 B=2`` line."""
    return dict(word.split("=", 1) for word in shlex.split(line.strip())[1:])


@pytest.fixture
def fresh_data() -> Iterator[None]:
    """The block writes data/digits: remove what it wrote, keep what was there."""
    made = [p for p in (REPO / "data/digits", REPO / "data/digits.tar.gz") if not p.exists()]
    yield
    for path in made:
        subprocess.run(["rm", "-rf", str(path)], check=False)


def test_the_quick_start_block_works_as_written(tmp_path: Path, fresh_data: None) -> None:
    [quick_start, aws_cli] = blocks("Use it like AWS")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LOCALCLOUD_"))}
    # `up` finds its state dir here (as it would after a previous `up` exported it)
    env["LOCALCLOUD_STATE"] = str(tmp_path / "state" / "localcloud.json")
    # the AWS CLI a user has on PATH: the one make setup-dev installs
    env["PATH"] = f"{REPO / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"
    up: subprocess.Popen[str] | None = None
    spawned: list[int] = []
    try:
        for command in commands(quick_start):
            if re.search(r"-m localcloud up(\s|$)", command):
                up = subprocess.Popen(
                    command, shell=True, cwd=REPO, env=env, text=True,
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
                output = Output(up)
                env.update(exported(output.export_line()))
                spawned = [up.pid, *processes.descendants(up.pid)]
                continue
            _run(command, env)
        if _has_aws_cli():  # one shell, as a user pastes it: its variables carry over
            _run("set -euo pipefail\n" + aws_cli, env)
        elif os.environ.get("LOCALCLOUD_STRICT"):
            missing_part("the README's AWS CLI block needs the AWS CLI (make setup-dev)")
    finally:
        if up is not None:
            os.killpg(up.pid, signal.SIGINT)  # Ctrl-C in terminal 1
            try:
                up.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(up.pid, signal.SIGKILL)
                up.wait(timeout=10)
            assert processes.wait_until(lambda: not _alive(spawned), timeout=30), (
                "processes left after `up` stopped"
            )


class Output:
    """`up`'s output, read on a thread for as long as it runs (a full pipe would block it)."""

    def __init__(self, up: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.export = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(up,), daemon=True)
        self._thread.start()

    def _read(self, up: subprocess.Popen[str]) -> None:
        assert up.stdout is not None
        for line in up.stdout:
            self.lines.append(line)
            if line.strip().startswith("export "):
                self.export.set()

    def export_line(self) -> str:
        if not self.export.wait(UP_READY_S):
            pytest.fail("`up` printed no export line:\n" + "".join(self.lines))
        return next(line for line in self.lines if line.strip().startswith("export "))


def _run(command: str, env: dict[str, str]) -> None:
    result = subprocess.run(
        ["bash", "-c", command], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=COMMAND_S,
    )  # fmt: skip
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


def _has_aws_cli() -> bool:
    return (REPO / ".venv" / "bin" / "aws").is_file()


def _alive(pids: list[int]) -> bool:
    return any(Path(f"/proc/{pid}").exists() and _running(pid) for pid in pids)


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"
    except OSError:
        return False
