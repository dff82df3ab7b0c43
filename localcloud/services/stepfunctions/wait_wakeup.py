"""Local only: a Wait state that polls a training job or an endpoint ends as soon as the
job ends or the endpoint's deployment settles.

The state machine polls a training job, and an endpoint being deployed, with ``Wait``
(``SecondsPath``) then a status check. The training wait grows with the job's age
(mlops/polling.py: a thirtieth of it), so locally the end of a one-minute job was noticed
up to 3 s late, and an endpoint turning InService up to the poll interval (1 s) late: time
the run spends doing nothing. Here the local SageMaker calls ``settled(name)`` when a job
reaches a terminal status (Completed, Failed, Stopped) or an endpoint's deployment ends
(InService, also after a rollback, or Failed), and every Wait state running at that moment
whose input names that job or endpoint ends early, so the check that follows sees the new
status at once.

What does not change: the state machine, its history (the same Wait, Task and Choice
events; only the wait is shorter), what any state reads, the outcome. A job ends once and
a deployment settles once, so a Wait is cut short at most once per job or deployment, and
only a Wait whose input names it. Every other wait lasts its full time. A loop bounded by
a count of attempts whose input names the endpoint (another run waiting for the
deployment lock) loses at most one attempt's wait per deployment. On AWS the wait is not
cut: the check runs after the Wait's seconds, which is what the loops are sized for.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

# A stopped execution is noticed within this many seconds (the thread returns).
_STOP_CHECK_S = 0.2


class _Waiter:
    def __init__(self, mentions: str) -> None:
        self.mentions = mentions
        self.woken = threading.Event()


_lock = threading.Lock()
_waiters: set[_Waiter] = set()
_installed: Any = None


def settled(name: str) -> int:
    """End the Wait states whose input names ``name`` (a training job that ended, an
    endpoint whose deployment settled); how many there were."""
    needle = json.dumps(name)
    with _lock:
        matching = [w for w in _waiters if needle in w.mentions]
    for waiter in matching:
        waiter.woken.set()
    return len(matching)


def wait(env: Any, seconds: float) -> None:
    """Wait ``seconds`` for a Wait state of ``env`` (moto's Environment): less if a job or
    endpoint its input names settles, or the execution stops."""
    if seconds <= 0:
        return
    try:
        mentions = json.dumps(env.states.get_input(), default=str)
    except Exception:  # an input that cannot be read: wait the full time
        mentions = ""
    waiter = _Waiter(mentions)
    with _lock:
        _waiters.add(waiter)
    try:
        deadline = time.monotonic() + seconds
        while env.is_running():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or waiter.woken.wait(min(remaining, _STOP_CHECK_S)):
                return
    finally:
        with _lock:
            _waiters.discard(waiter)


def waiting() -> int:
    """Wait states waiting now (for tests)."""
    with _lock:
        return len(_waiters)


def install() -> None:
    """Wait states of the local Step Functions wait through ``wait`` (idempotent)."""
    global _installed
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function import (
        wait_function,
    )

    if _installed is not None:
        return
    _installed = wait_function.WaitFunction._wait_interval

    def _wait_interval(self: Any, env: Any, wait_seconds: int) -> None:
        wait(env, wait_seconds)

    wait_function.WaitFunction._wait_interval = _wait_interval  # type: ignore[method-assign]


def uninstall() -> None:
    global _installed
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function import (
        wait_function,
    )

    if _installed is not None:
        wait_function.WaitFunction._wait_interval = _installed  # type: ignore[method-assign]
        _installed = None
