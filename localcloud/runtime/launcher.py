"""Starting and stopping the local cloud process from the command line, tests and benches."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from localcloud.runtime import processes
from localcloud.runtime.connection import Connection, from_state
from localcloud.runtime.settings import Settings
from localcloud.runtime.statefile import STATE_FILE, read_state

START_TIMEOUT_S = 120.0
STOP_GRACE_S = 20.0


class LaunchError(RuntimeError):
    pass


def port_not_free(option: str, port: int, exc: OSError) -> str:
    """The one-line error for a taken port (here and in the server itself)."""
    return (
        f"{option} {port}: the port is not free ({exc.strerror}); "
        "pick another or leave it out for a free one"
    )


def _check_port_free(option: str, port: int) -> None:
    """A fixed port that is taken fails here, in one line, before the server starts (the
    server reports the same line if the port is taken between this check and its bind)."""
    if not port:
        return
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise LaunchError(port_not_free(option, port, exc)) from None


class LocalCloudProcess:
    """``python -m localcloud.runtime.server`` as a child that cannot outlive this process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.proc: subprocess.Popen[bytes] | None = None
        self.connection: Connection | None = None
        self.state: dict[str, object] = {}

    @property
    def log_path(self) -> Path:
        return self.settings.state_dir / "logs" / "server.log"

    def start(self, timeout: float = START_TIMEOUT_S) -> Connection:
        s = self.settings
        running = read_state(s.state_dir)
        if running is not None:
            owner = running.get("owner_pid", running["pid"])
            started_by = f" started by `{running['owner']}`" if running.get("owner") else ""
            raise LaunchError(
                f"a local cloud is already running for {s.state_dir} (pid {owner}{started_by}, "
                f"{running['endpoint_url']}): stop it (Ctrl-C there, or kill {owner}) or pass "
                "another --state-dir"
            )
        for option, port in (("--port", s.port), ("--api-port", s.api_port)):
            _check_port_free(option, port)
        (s.state_dir / STATE_FILE).unlink(missing_ok=True)  # stale
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = processes.spawn(
                [s.python, "-m", "localcloud.runtime.server", *s.server_argv()],
                death_signal=signal.SIGTERM,  # the server then stops its own children
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=Path(__file__).resolve().parents[2],
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = read_state(s.state_dir)
            if state is not None and state.get("pid") == self.proc.pid:
                self.state = state
                self.connection = from_state(state)
                return self.connection
            if self.proc.poll() is not None:
                raise LaunchError(self._failure(f"the local cloud exited ({self.proc.returncode})"))
            time.sleep(0.02)  # a stat of the state file: noticing "ready" sooner is cheap
        self.stop()
        raise LaunchError(self._failure(f"the local cloud was not ready after {timeout:.0f} s"))

    def _failure(self, what: str) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            lines = []
        # one line: the server's own "localcloud: ..." reason, else its last line
        reasons = [line for line in lines if line.startswith("localcloud: ")]
        last = [line.strip() for line in lines if line.strip()][-1:]
        detail = reasons[-1].removeprefix("localcloud: ") if reasons else " ".join(last)
        return f"{what}: {detail or 'no reason logged'} (log: {self.log_path})"

    def stop(self) -> None:
        if self.proc is not None:
            processes.stop(self.proc, grace=STOP_GRACE_S)
            self.proc = None

    def __enter__(self) -> Connection:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
