"""Child processes that cannot outlive the local cloud.

Every process the local cloud starts (the server, Lambda workers, training and model
servers) gets three guarantees:
- its own process group, so stopping it also stops whatever it started;
- ``PR_SET_PDEATHSIG``: the kernel signals it when its parent dies, even on SIGKILL;
- a bounded stop: SIGTERM to the group, a grace period, then SIGKILL.

``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child exits, not the process.
The moto server handles each request on a short-lived thread, so a child forked there
would be killed as soon as the request returned. ``spawn`` therefore forks every child
from one long-lived launcher thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux)."""
    _libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


def _child_setup(sig: int) -> Callable[[], None]:
    def setup() -> None:
        os.setpgid(0, 0)
        die_with_parent(sig)

    return setup


class _Launcher:
    """Runs ``subprocess.Popen`` on one thread that lives as long as the process."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], Any], queue.Queue[Any]]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _serve(self) -> None:
        while True:
            job, reply = self._jobs.get()
            try:
                reply.put((True, job()))
            except BaseException as exc:  # handed back to the caller's thread
                reply.put((False, exc))

    def run(self, job: Callable[[], Any]) -> Any:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="launcher", daemon=True)
                self._thread.start()
        reply: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._jobs.put((job, reply))
        ok, value = reply.get()
        if not ok:
            raise value
        return value


_launcher = _Launcher()


def spawn(
    argv: list[str], *, death_signal: int = signal.SIGKILL, **popen_kwargs: Any
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own process group, tied to this process's lifetime.

    Safe to call from any thread (see the module docstring). ``popen_kwargs`` go to
    ``subprocess.Popen``; ``preexec_fn``, ``start_new_session`` and ``process_group``
    are owned by this function.
    """
    for owned in ("preexec_fn", "start_new_session", "process_group"):
        if owned in popen_kwargs:
            raise ValueError(f"spawn() sets {owned} itself")
    setup = _child_setup(death_signal)
    return _launcher.run(lambda: subprocess.Popen(argv, preexec_fn=setup, **popen_kwargs))


def stop(proc: subprocess.Popen[Any], grace: float = 5.0) -> int | None:
    """SIGTERM the process group of ``proc``, wait up to ``grace`` seconds, then SIGKILL it.

    Also reaps stragglers of the group that outlived their leader.
    """
    pgid = proc.pid  # spawn() makes every child the leader of its own group
    _signal_group(pgid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    _signal_group(pgid, signal.SIGKILL)
    try:
        return proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        return None


def kill(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL the whole process group of ``proc`` at once and reap it."""
    _signal_group(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def descendants(pid: int) -> list[int]:
    """Pids of every live descendant of ``pid`` (from /proc), for leak checks."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: split after the last ')'
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] == "Z":
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
