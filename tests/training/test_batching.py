"""training/batching.py directly: shared forward passes, expired and cancelled work, the bound."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import CancelledError, Future
from typing import Any

import pytest

from training.batching import Batcher, Expired, QueueFull

WAIT_S = 10  # bounds every wait; the tests take well under a second each


class Model:
    """A stand-in forward pass: records every batch; ``hold()`` blocks the next one."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.started = threading.Event()
        self._gate = threading.Event()
        self._gate.set()

    def __call__(self, items: Sequence[Any]) -> list[Any]:
        self.batches.append(list(items))
        self.started.set()
        assert self._gate.wait(WAIT_S), "the test never released the forward pass"
        if "boom" in items:
            raise RuntimeError("boom")
        return [f"result:{item}" for item in items]

    def hold(self) -> None:
        self._gate.clear()
        self.started.clear()

    def release(self) -> None:
        self._gate.set()

    def ran(self) -> list[Any]:
        return [item for batch in self.batches for item in batch]


@pytest.fixture
def model() -> Model:
    return Model()


@pytest.fixture
def make_batcher(model: Model) -> Iterator[Any]:
    made: list[Batcher] = []

    def make(**options: Any) -> Batcher:
        batcher = Batcher(model, **options)
        made.append(batcher)
        return batcher

    yield make
    model.release()
    for batcher in made:
        batcher.close(timeout=WAIT_S)


def busy(model: Model, batcher: Batcher) -> Future:
    """Start a forward pass that blocks until ``model.release()``."""
    model.hold()
    future = batcher.submit("running")
    assert model.started.wait(WAIT_S)
    return future


def test_each_caller_gets_its_own_result(make_batcher: Any) -> None:
    batcher = make_batcher(max_batch_size=4, max_delay_s=0.01)
    futures = {n: batcher.submit(n) for n in range(10)}
    assert {n: f.result(WAIT_S) for n, f in futures.items()} == {
        n: f"result:{n}" for n in range(10)
    }


def test_concurrent_requests_share_a_forward_pass(model: Model, make_batcher: Any) -> None:
    batcher = make_batcher(max_batch_size=8, max_delay_s=0.2)
    start = threading.Barrier(6)
    results: dict[int, Any] = {}

    def request(n: int) -> None:
        start.wait(WAIT_S)
        results[n] = batcher.submit(n).result(WAIT_S)

    threads = [threading.Thread(target=request, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    assert results == {n: f"result:{n}" for n in range(6)}
    assert max(len(batch) for batch in model.batches) > 1
    assert batcher.stats.largest_batch > 1
    assert batcher.stats.batches < 6 and batcher.stats.items == 6


def test_work_queued_behind_a_busy_model_joins_one_batch(model: Model, make_batcher: Any) -> None:
    batcher = make_batcher(max_batch_size=8, max_delay_s=0)
    first = busy(model, batcher)
    queued = [batcher.submit(n) for n in range(5)]
    model.release()
    assert [f.result(WAIT_S) for f in queued] == [f"result:{n}" for n in range(5)]
    assert first.result(WAIT_S) == "result:running"
    assert model.batches == [["running"], [0, 1, 2, 3, 4]]


def test_a_full_batch_runs_without_waiting_for_the_delay(model: Model, make_batcher: Any) -> None:
    batcher = make_batcher(max_batch_size=2, max_delay_s=30)
    futures = [batcher.submit(n) for n in range(2)]
    # answered within WAIT_S (10 s), so before the 30 s delay ended
    assert [f.result(WAIT_S) for f in futures] == ["result:0", "result:1"]


def test_expired_work_never_runs(model: Model, make_batcher: Any) -> None:
    now = [100.0]  # the batcher's clock: moved by the test, not by the machine's speed
    batcher = make_batcher(max_batch_size=8, max_delay_s=0, clock=lambda: now[0])
    first = busy(model, batcher)
    soon = batcher.submit("expires", deadline=now[0] + 0.05)
    later = batcher.submit("in time", deadline=now[0] + 60)
    now[0] += 0.1  # the first deadline passes while the model is busy
    model.release()
    with pytest.raises(Expired, match="deadline passed"):
        soon.result(WAIT_S)
    assert later.result(WAIT_S) == "result:in time"
    assert first.result(WAIT_S) == "result:running"
    assert "expires" not in model.ran()
    assert batcher.stats.expired == 1


def test_an_item_whose_deadline_passed_before_it_was_queued_never_runs(
    model: Model, make_batcher: Any
) -> None:
    batcher = make_batcher()
    with pytest.raises(Expired):
        batcher.submit("late", deadline=time.monotonic() - 1).result(WAIT_S)
    assert model.ran() == []


def test_cancelled_work_never_runs_and_frees_its_place(model: Model, make_batcher: Any) -> None:
    batcher = make_batcher(max_batch_size=8, max_delay_s=0, max_queue=2)
    busy(model, batcher)
    gave_up = batcher.submit("gave up")
    kept = batcher.submit("kept")
    with pytest.raises(QueueFull):
        batcher.submit("one too many")
    assert gave_up.cancel()  # the caller gave up: its place is free at once
    assert batcher.queued == 1
    replacement = batcher.submit("replacement")
    model.release()
    assert kept.result(WAIT_S) == "result:kept"
    assert replacement.result(WAIT_S) == "result:replacement"
    with pytest.raises(CancelledError):
        gave_up.result(0)
    assert "gave up" not in model.ran() and "one too many" not in model.ran()
    assert (batcher.stats.cancelled, batcher.stats.refused) == (1, 1)


def test_the_queue_bound_counts_queued_work_not_the_running_batch(
    model: Model, make_batcher: Any
) -> None:
    batcher = make_batcher(max_batch_size=1, max_delay_s=0, max_queue=3)
    busy(model, batcher)
    queued = [batcher.submit(n) for n in range(3)]
    with pytest.raises(QueueFull, match="3 requests are already queued"):
        batcher.submit("refused")
    assert batcher.queued == 3
    model.release()
    assert [f.result(WAIT_S) for f in queued] == ["result:0", "result:1", "result:2"]
    assert batcher.submit("after").result(WAIT_S) == "result:after"  # room again


def test_a_failed_forward_pass_fails_every_item_of_the_batch(
    model: Model, make_batcher: Any
) -> None:
    batcher = make_batcher(max_batch_size=8, max_delay_s=0)
    busy(model, batcher)
    futures = [batcher.submit("ok"), batcher.submit("boom")]
    model.release()
    for future in futures:
        with pytest.raises(RuntimeError, match="boom"):
            future.result(WAIT_S)
    assert batcher.submit("next").result(WAIT_S) == "result:next"  # the worker lives on


def test_close_finishes_queued_work_then_refuses_more(model: Model, make_batcher: Any) -> None:
    batcher = make_batcher(max_batch_size=1, max_delay_s=0)
    first = busy(model, batcher)
    queued = batcher.submit("queued")
    closer = threading.Thread(target=batcher.close, args=(WAIT_S,))
    closer.start()
    model.release()
    closer.join(WAIT_S)
    assert (first.result(0), queued.result(0)) == ("result:running", "result:queued")
    with pytest.raises(QueueFull, match="stopping"):
        batcher.submit("too late")


@pytest.mark.parametrize("options", [{"max_batch_size": 0}, {"max_delay_s": -1}, {"max_queue": 0}])
def test_bad_options(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Batcher(lambda items: items, **options)
