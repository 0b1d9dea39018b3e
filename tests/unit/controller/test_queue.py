"""The work queue: one entry per key, one worker per key, exponential back-off, forget on success."""

from __future__ import annotations

import threading

from modeldeploy.controller.queue import WorkQueue

A, B = ("ns", "a"), ("ns", "b")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_of_adds_is_one_entry_in_order() -> None:
    queue = WorkQueue()
    for key in (A, B, A, A, B):
        queue.add(key)
    assert len(queue) == 2
    assert queue.get(timeout=0) == A and queue.get(timeout=0) == B
    assert queue.get(timeout=0) is None


def test_a_key_added_while_processing_comes_back_after_done_not_before() -> None:
    queue = WorkQueue()
    queue.add(A)
    assert queue.get(timeout=0) == A
    queue.add(A)  # an event while a worker reconciles A
    queue.add(A)
    assert queue.get(timeout=0) is None, "no second worker may take A meanwhile"
    queue.done(A)
    assert queue.get(timeout=0) == A, "the event is not lost"
    queue.done(A)
    assert queue.get(timeout=0) is None


def test_back_off_doubles_per_failure_up_to_the_cap_and_forget_resets_it() -> None:
    clock = Clock()
    queue = WorkQueue(base_delay=1.0, max_delay=5.0, clock=clock)
    assert [queue.add_rate_limited(A) for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    queue.forget(A)
    assert queue.add_rate_limited(A) == 1.0


def test_a_delayed_key_is_held_until_its_time() -> None:
    clock = Clock()
    queue = WorkQueue(clock=clock)
    queue.add_after(A, 10)
    assert queue.get(timeout=0) is None
    clock.now = 9.9
    assert queue.get(timeout=0) is None
    clock.now = 10.0
    assert queue.get(timeout=0) == A


def test_shutdown_wakes_a_waiting_worker() -> None:
    queue = WorkQueue()
    got: list[object] = []
    worker = threading.Thread(target=lambda: got.append(queue.get()))
    worker.start()
    queue.shutdown()
    worker.join(timeout=5)
    assert not worker.is_alive() and got == [None]


def test_workers_never_share_a_key() -> None:
    """Many threads, many adds of few keys: a key is never processed by two workers at once."""
    queue = WorkQueue()
    busy: set[tuple[str, str]] = set()
    overlaps: list[tuple[str, str]] = []
    lock = threading.Lock()
    processed = 0

    def work() -> None:
        nonlocal processed
        while (key := queue.get(timeout=0.5)) is not None:
            with lock:
                if key in busy:
                    overlaps.append(key)
                busy.add(key)
            with lock:
                busy.discard(key)
                processed += 1
            queue.done(key)

    workers = [threading.Thread(target=work) for _ in range(8)]
    for worker in workers:
        worker.start()
    for i in range(2000):
        queue.add(("ns", f"k{i % 5}"))
    for worker in workers:
        worker.join(timeout=30)
    assert overlaps == [] and 5 <= processed <= 2000
