"""Training hosts and model servers as child processes: start, follow their output, stop.

Processes are started through ``localcloud.runtime.processes.spawn`` (own process group, killed with
this process). A stop also reaches descendants outside that group: torchrun starts each
worker in a session of its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from localcloud.runtime import processes

LineSink = Callable[[str], None]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LogFile:
    """A log file several output pumps append whole lines to."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, line: str) -> None:
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


class _Pump(threading.Thread):
    def __init__(self, pipe: IO[bytes], sinks: list[LineSink], tail: deque[str] | None) -> None:
        super().__init__(daemon=True, name="output-pump")
        self._pipe = pipe
        self._sinks = sinks
        self._tail = tail

    def run(self) -> None:
        with self._pipe:
            for raw in self._pipe:
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                if self._tail is not None:
                    self._tail.append(line)
                for sink in self._sinks:
                    sink(line)


class Child:
    """One child process whose stdout and stderr lines go to ``sinks``; keeps a stderr tail."""

    def __init__(
        self,
        argv: list[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        sinks: list[LineSink],
        tail_lines: int = 30,
    ) -> None:
        self.argv = argv
        self._tail: deque[str] = deque(maxlen=tail_lines)
        self.proc = processes.spawn(
            argv,
            env=dict(env),
            cwd=str(cwd),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._pumps = [
            _Pump(self.proc.stdout, sinks, None),
            _Pump(self.proc.stderr, sinks, self._tail),
        ]
        for pump in self._pumps:
            pump.start()

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def stderr_tail(self) -> str:
        """The last stderr lines, once the output has been read to the end (bounded wait)."""
        for pump in self._pumps:
            pump.join(timeout=5)
        return "\n".join(self._tail)

    def stop(self, grace: float) -> None:
        """SIGTERM the process and its descendants, SIGKILL what is left after ``grace`` s."""
        strays = [
            pid for pid in processes.descendants(self.proc.pid) if _group(pid) != self.proc.pid
        ]
        _signal(strays, signal.SIGTERM)
        processes.stop(self.proc, grace)
        _signal(strays, signal.SIGKILL)
        for pump in self._pumps:
            pump.join(timeout=5)


def _group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
