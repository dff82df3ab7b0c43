"""Peak memory of serve.py under many concurrent uploads: admitted before its body is read,
or (as serve.py did before) the body read first.

    python -m bench.serving_memory [--uploads 50] [--megabytes 6] [--max-pending 8]
                                   [--baseline REV]

``--uploads`` clients each POST a ``--megabytes`` body at the same moment to a server
whose model is held busy (its ``input_fn`` waits while a ``hold`` file exists), so that
at most ``--max-pending`` requests are admitted and the others get 503. The same run
measures serve.py as it is and serve.py as it was at ``--baseline`` (default: the last
commit that read every body before the admission check), started from ``git show REV:``.
For each it prints the server's resident memory idle and its peak (``VmHWM``) once every
refusal was answered, and the answers' statuses. Linux only (reads ``/proc``).
"""

from __future__ import annotations

import argparse
import http.client
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from training.server_process import REPO, running_server, serve_command

# serve.py before admission moved ahead of the body read
BASELINE = "c14694454308442de12127edcd45c9d3ebe8867d"
WAIT_S = 120  # bounds every wait
HANDLERS = """
import json
import time
from pathlib import Path

HOLD = Path(__file__).resolve().parent.parent / "hold"


def model_fn(model_dir):
    return None


def input_fn(body, content_type):
    deadline = time.monotonic() + 120
    while HOLD.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return len(body)


def predict_fn(item, model):
    return item


def output_fn(prediction, accept):
    return json.dumps({"bytes": prediction})
"""


def write_model(model_dir: Path) -> None:
    """A model directory whose handlers hold every request while ``hold`` exists."""
    (model_dir / "code").mkdir(parents=True)
    (model_dir / "model.json").write_text("{}")
    (model_dir / "code" / "inference.py").write_text(HANDLERS)


def memory_kib(pid: int, field: str) -> int:
    """``VmRSS`` (resident now) or ``VmHWM`` (the peak) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no {field}")


def upload(port: int, body: bytes, start: threading.Barrier, statuses: list[int]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_S)
    try:
        start.wait(WAIT_S)
        connection.request(
            "POST", "/invocations", body=body, headers={"Content-Type": "application/x-image"}
        )
        response = connection.getresponse()
        response.read()
        statuses.append(response.status)
    except OSError as exc:  # a reset instead of an answer
        statuses.append(0)
        print(f"  upload failed: {exc!r}", file=sys.stderr)
    finally:
        connection.close()


@dataclass(frozen=True)
class Result:
    idle_mib: float  # resident once /ping answers 200
    peak_mib: float  # the process's peak resident memory once every refusal was answered
    refused_in_s: float  # from the start of the uploads to the last refusal's answer
    statuses: dict[int, int]  # HTTP status (0: no answer) -> uploads

    def line(self) -> str:
        return (
            f"idle {self.idle_mib:.0f} MiB, peak {self.peak_mib:.0f} MiB "
            f"(+{self.peak_mib - self.idle_mib:.0f}), refusals answered in "
            f"{self.refused_in_s:.2f} s, statuses {self.statuses}"
        )


def measure(command: list[str], model_dir: Path, args: argparse.Namespace) -> Result:
    """Peak memory of one server under ``args.uploads`` concurrent uploads."""
    hold = model_dir / "hold"
    body = os.urandom(args.megabytes * 1024 * 1024)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    server_args = ["--max-pending", str(args.max_pending), "--log-level", "WARNING"]
    with running_server([*command, *server_args], env=env, quiet=True) as (url, process):
        port = int(url.rsplit(":", 1)[1])
        idle = memory_kib(process.pid, "VmRSS")
        hold.touch()
        statuses: list[int] = []
        start = threading.Barrier(args.uploads)
        threads = [
            threading.Thread(target=upload, args=(port, body, start, statuses), daemon=True)
            for _ in range(args.uploads)
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        refusals = args.uploads - args.max_pending
        deadline = started + WAIT_S
        while len(statuses) < refusals and time.monotonic() < deadline:
            time.sleep(0.05)
        refused_in = time.monotonic() - started
        peak = memory_kib(process.pid, "VmHWM")
        hold.unlink()
        for thread in threads:
            thread.join(WAIT_S)
    return Result(idle / 1024, peak / 1024, refused_in, dict(sorted(Counter(statuses).items())))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.serving_memory", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--uploads", type=int, default=50, help="concurrent uploads")
    parser.add_argument("--megabytes", type=int, default=6, help="MiB per upload (6: the limit)")
    parser.add_argument("--max-pending", type=int, default=8, help="serve.py's --max-pending")
    parser.add_argument("--baseline", default=BASELINE, help="the serve.py to compare (a commit)")
    args = parser.parse_args(argv)
    if not 1 <= args.max_pending < args.uploads:
        parser.error("--max-pending must be at least 1 and below --uploads")
    with tempfile.TemporaryDirectory(prefix="bench-serving-memory-") as tmp:
        model_dir = Path(tmp) / "model"
        write_model(model_dir)
        before = Path(tmp) / "serve_before.py"
        source = subprocess.run(
            ["git", "show", f"{args.baseline}:training/serve.py"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        before.write_text(source)
        servers = {
            "serve.py (admits, then reads)": serve_command(model_dir),
            f"serve.py at {args.baseline[:10]} (reads, then admits)": [
                sys.executable,
                str(before),
                "--model-dir",
                str(model_dir),
            ],
        }
        print(
            f"{args.uploads} concurrent uploads of {args.megabytes} MiB, "
            f"--max-pending {args.max_pending}, the model held busy"
        )
        for name, command in servers.items():
            print(f"{name}: {measure(command, model_dir, args).line()}")


if __name__ == "__main__":
    main()
