"""Micro-batching: many request threads, one inference thread, one forward pass per batch.

Request threads decode and preprocess in parallel, then ``submit`` what the model needs
and wait on a future. The single worker takes the oldest waiting item, adds whatever else
arrives until the batch is full or the oldest item has waited ``max_delay_s``, runs one
forward pass and hands each result back. Items already queued while the model was busy
go straight into the next batch without waiting. Stdlib only: serve.py must not import
``imgcls`` before the model's own copy of it loads.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class _Job:
    item: Any
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.monotonic)


_STOP = _Job(None)


class Batcher:
    def __init__(
        self,
        run_batch: Callable[[Sequence[Any]], Sequence[Any]],
        max_batch_size: int = 8,
        max_delay_s: float = 0.005,
    ) -> None:
        if max_batch_size < 1 or max_delay_s < 0:
            raise ValueError("max_batch_size must be >= 1 and max_delay_s >= 0")
        self._run_batch = run_batch
        self._max_batch_size = max_batch_size
        self._max_delay_s = max_delay_s
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="inference", daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> Future:
        job = _Job(item)
        self._queue.put(job)
        return job.future

    def close(self, timeout: float) -> None:
        """Finish the queued items, then stop the worker (waits at most ``timeout``)."""
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch, stop = self._collect(first)
            self._run(batch)
            if stop:
                return

    def _collect(self, first: _Job) -> tuple[list[_Job], bool]:
        batch = [first]
        deadline = first.enqueued + self._max_delay_s
        while len(batch) < self._max_batch_size:
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is _STOP:
                return batch, True
            batch.append(job)
        return batch, False

    def _run(self, batch: list[_Job]) -> None:
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
