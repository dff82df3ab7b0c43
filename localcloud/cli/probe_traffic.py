"""Steady traffic through the HTTP API, every answer recorded, and which model gave it.

``Traffic`` sends probe images (each held-out JPEG, and the same pixels as a PNG) through
``POST /classify`` from a few threads until stopped, and records every answer: when, which
probe, the HTTP status, the logits. A client cannot ask an endpoint which fleet answered
(during a blue/green update both fleets serve the same variant), but it can recognise a
model by its answers: ``Fingerprints`` holds each known model's logits per probe and names
the model an answer came from.
"""

from __future__ import annotations

import io
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from localcloud.runner.pipeline_run import classify_route
from localcloud.runtime.connection import Connection

TOLERANCE = 1e-3  # max |logit difference| of one model's answers (batching, threads)
FAILED = "failed"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Probe:
    index: int
    kind: str  # "jpeg" | "png"
    body: bytes

    @property
    def content_type(self) -> str:
        return f"image/{self.kind}"


@dataclass(frozen=True)
class Answer:
    at: float  # time.monotonic() when the answer arrived
    probe: Probe
    status: int
    logits: tuple[float, ...] | None
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200


def probes(images: Sequence[Path]) -> list[Probe]:
    """Each JPEG as sent, then the same decoded pixels as a PNG."""
    out: list[Probe] = []
    for index, path in enumerate(images):
        jpeg = path.read_bytes()
        buffer = io.BytesIO()
        with Image.open(io.BytesIO(jpeg)) as image:
            image.convert("RGB").save(buffer, format="PNG")
        out += [Probe(index, "jpeg", jpeg), Probe(index, "png", buffer.getvalue())]
    return out


def ask(conn: Connection, probe: Probe, route: str | None = None) -> Answer:
    """One request through the HTTP API."""
    try:
        status, reply = conn.post(route or classify_route(conn), probe.body, probe.content_type)
    except OSError as exc:  # the API itself did not answer
        return Answer(time.monotonic(), probe, 0, None, str(exc))
    logits = None
    if status == 200 and isinstance(reply, dict):
        try:
            logits = tuple(float(v) for v in reply["logits"][0])
        except (KeyError, IndexError, TypeError, ValueError):
            logits = None
    message = None if status == 200 else str(reply)[:300]
    return Answer(time.monotonic(), probe, status, logits, message)


class Traffic:
    """``workers`` threads sending the probes round robin, ``pause_s`` between requests."""

    def __init__(
        self, conn: Connection, probe_set: Sequence[Probe], workers: int = 2, pause_s: float = 0.1
    ) -> None:
        if not probe_set:
            raise ValueError("no probe images to send")
        self.conn = conn
        self.probes = list(probe_set)
        self.workers = workers
        self.pause_s = pause_s
        self._answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._next = 0

    def __enter__(self) -> Traffic:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        route = classify_route(self.conn)
        self._stop.clear()
        for number in range(self.workers):
            thread = threading.Thread(
                target=self._send, args=(route,), daemon=True, name=f"traffic-{number}"
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 70.0) -> None:
        """Stop sending; waits for the requests in flight (each is bounded by its timeout)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def _take(self) -> Probe:
        with self._lock:
            probe = self.probes[self._next % len(self.probes)]
            self._next += 1
            return probe

    def _send(self, route: str) -> None:
        while not self._stop.is_set():
            answer = ask(self.conn, self._take(), route)
            with self._lock:
                self._answers.append(answer)
            self._stop.wait(self.pause_s)

    def answers(self, since: float = 0.0, until: float = float("inf")) -> list[Answer]:
        with self._lock:
            return [a for a in self._answers if since <= a.at < until]


class Fingerprints:
    """Each known model's logits per probe image."""

    def __init__(self) -> None:
        self.models: dict[str, dict[int, tuple[float, ...]]] = {}

    def learn(self, label: str, answers: Iterable[Answer]) -> int:
        """Record ``label``'s logits from its answers; returns how many probes it knows."""
        known = self.models.setdefault(label, {})
        for answer in answers:
            if answer.ok and answer.logits is not None:
                known.setdefault(answer.probe.index, answer.logits)
        return len(known)

    def identify(self, answer: Answer) -> str:
        """The model that gave ``answer``: a label, FAILED or UNKNOWN."""
        if not answer.ok:
            return FAILED
        for label, known in self.models.items():
            logits = known.get(answer.probe.index)
            if logits is not None and answer.logits is not None and _close(logits, answer.logits):
                return label
        return UNKNOWN

    def shares(self, answers: Sequence[Answer], unknown_as: str = UNKNOWN) -> dict[str, int]:
        """How many answers each model gave (``unknown_as``: the label of new answers)."""
        counts: Counter[str] = Counter()
        for answer in answers:
            label = self.identify(answer)
            counts[unknown_as if label == UNKNOWN else label] += 1
        return dict(counts)


def _close(a: Sequence[float], b: Sequence[float]) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= TOLERANCE for x, y in zip(a, b, strict=True))


def describe_shares(counts: dict[str, int]) -> str:
    """``"A 52%, B 48% of 25"``."""
    total = sum(counts.values())
    if not total:
        return "no answers"
    parts = [f"{label} {100 * n / total:.0f}%" for label, n in sorted(counts.items())]
    return f"{', '.join(parts)} of {total}"


def summary(answers: Sequence[Answer]) -> dict[str, Any]:
    """Counts per probe kind and status (for a report)."""
    out: dict[str, Any] = {"requests": len(answers), "failed": sum(not a.ok for a in answers)}
    for kind in ("jpeg", "png"):
        mine = [a for a in answers if a.probe.kind == kind]
        out[kind] = {"requests": len(mine), "failed": sum(not a.ok for a in mine)}
    return out
