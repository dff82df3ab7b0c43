"""Micro-batching: many request threads, one inference thread, one forward pass per batch.

Request threads decode and preprocess in parallel, then ``submit`` what the model needs
and wait on a future. The single worker takes the oldest waiting item, adds whatever else
arrives until the batch is full or the oldest item has waited ``max_delay_s``, runs one
forward pass and hands each result back. Items already queued while the model was busy
go straight into the next batch without waiting.

No work is wasted and none piles up:

- the queue holds at most ``max_queue`` items; ``submit`` raises ``QueueFull`` beyond
  that (serve.py answers 503 with Retry-After), so overload cannot grow it without bound;
- an item carries its request's deadline; one whose deadline has passed when the worker
  reaches it fails with ``Expired`` and never runs;
- a caller that gives up cancels its future (``future.cancel()``): the item leaves the
  queue at once, freeing its place, and never runs. Once an item is in a forward pass it
  can no longer be cancelled.

Stdlib only: serve.py must not import ``imgcls`` before the model's own copy of it loads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class QueueFull(Exception):
    """The queue is at its bound: the caller should answer "busy" and not wait."""


class Expired(Exception):
    """The item's deadline passed before its forward pass; it was not run.

    Not a ``TimeoutError``: ``Future.result(timeout)`` raises that for its own wait.
    """


@dataclass
class _Job:
    item: Any
    deadline: float | None
    enqueued: float
    future: Future = field(default_factory=Future)


@dataclass
class BatcherStats:
    """Counters since start (read them for logs and tests)."""

    batches: int = 0  # forward passes run
    items: int = 0  # items that went through a forward pass
    largest_batch: int = 0
    expired: int = 0  # dropped: their deadline had passed
    cancelled: int = 0  # dropped: their caller gave up
    refused: int = 0  # QueueFull


class Batcher:
    def __init__(
        self,
        run_batch: Callable[[Sequence[Any]], Sequence[Any]],
        max_batch_size: int = 8,
        max_delay_s: float = 0.005,
        max_queue: int = 32,
        clock: Clock = time.monotonic,
    ) -> None:
        if max_batch_size < 1 or max_delay_s < 0 or max_queue < 1:
            raise ValueError("max_batch_size and max_queue must be >= 1, max_delay_s >= 0")
        self._run_batch = run_batch
        self._max_batch_size = max_batch_size
        self._max_delay_s = max_delay_s
        self._max_queue = max_queue
        self._clock = clock
        self._queue: deque[_Job] = deque()
        self._lock = threading.Condition()  # guards _queue, _closed and stats
        self._closed = False
        self.stats = BatcherStats()
        self._thread = threading.Thread(target=self._loop, name="inference", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        """Items waiting for a forward pass (not the one running)."""
        with self._lock:
            return len(self._queue)

    def submit(self, item: Any, deadline: float | None = None) -> Future:
        """Queue ``item``; its future gets the result, or ``Expired`` if ``deadline`` (on
        this batcher's clock) passes first. Raises ``QueueFull`` at the bound."""
        job = _Job(item, deadline, self._clock())
        with self._lock:
            if self._closed:
                raise QueueFull("the server is stopping")
            if len(self._queue) >= self._max_queue:
                self.stats.refused += 1
                raise QueueFull(f"{len(self._queue)} requests are already queued")
            self._queue.append(job)
            self._lock.notify_all()
        job.future.add_done_callback(lambda future: self._forget(job, future))
        return job.future

    def close(self, timeout: float) -> None:
        """Finish the queued items, then stop the worker (waits at most ``timeout``)."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._thread.join(timeout)

    def _forget(self, job: _Job, future: Future) -> None:
        """A cancelled item leaves the queue at once (its caller has given up)."""
        if not future.cancelled():
            return
        with self._lock:
            try:
                self._queue.remove(job)
            except ValueError:  # the worker took it already and will skip it
                return
            self.stats.cancelled += 1

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if batch:
                self._run(batch)

    def _next_batch(self) -> list[_Job] | None:
        """The next batch to run (possibly empty when all of it expired); None to stop."""
        with self._lock:
            first: _Job | None = None
            while first is None:
                while not self._queue and not self._closed:
                    self._lock.wait()
                if not self._queue:
                    return None  # closed and drained
                first = self._admit(self._queue.popleft())
            batch = [first]
            delay_ends = first.enqueued + self._max_delay_s
            while len(batch) < self._max_batch_size:
                if self._queue:
                    job = self._admit(self._queue.popleft())
                    if job is not None:
                        batch.append(job)
                    continue
                left = delay_ends - self._clock()
                if left <= 0 or self._closed:
                    break
                self._lock.wait(left)
            return [job for job in batch if self._still_due(job)]

    def _admit(self, job: _Job) -> _Job | None:
        """``job`` marked running if it is still wanted, else None (it never runs)."""
        if not job.future.set_running_or_notify_cancel():
            self.stats.cancelled += 1
            return None
        return job if self._still_due(job) else None

    def _still_due(self, job: _Job) -> bool:
        """False (and the job failed with Expired) once its deadline has passed."""
        if job.deadline is None or self._clock() < job.deadline:
            return True
        self.stats.expired += 1
        waited = self._clock() - job.enqueued
        job.future.set_exception(Expired(f"the deadline passed after {waited:.2f} s in queue"))
        return False

    def _run(self, batch: list[_Job]) -> None:
        with self._lock:
            self.stats.batches += 1
            self.stats.items += len(batch)
            self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        try:
            log.debug("forward pass for a batch of %d", len(batch))
            results = self._run_batch([job.item for job in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"batch of {len(batch)} gave {len(results)} results")
        except Exception as exc:  # every waiting request must hear about it
            log.exception("inference failed for a batch of %d", len(batch))
            for job in batch:
                job.future.set_exception(exc)
            return
        for job, result in zip(batch, results, strict=True):
            job.future.set_result(result)
