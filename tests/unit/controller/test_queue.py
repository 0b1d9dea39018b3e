"""The work queue: one entry per key, one worker per key, exponential back-off, forget on success."""

from __future__ import annotations

import threading

import urllib3

from modeldeploy.controller.queue import NORMAL, TRANSIENT_MAX_DELAY, URGENT, URGENT_RUN, WorkQueue
from modeldeploy.k8s.client import ApiError, is_unavailable

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


def test_an_unavailable_api_server_is_retried_within_seconds_not_minutes() -> None:
    """After a dozen failures during an API server outage, a key must not sleep 5 minutes past the
    server's return (the chaos suite's restart scenario saw "retrying in 300s")."""
    queue = WorkQueue(base_delay=1.0, max_delay=300.0, clock=Clock())
    delays = [queue.add_rate_limited(A, transient=True) for _ in range(12)]
    assert delays[:4] == [1.0, 2.0, 4.0, 8.0] and max(delays) == TRANSIENT_MAX_DELAY
    assert queue.add_rate_limited(A) == 300.0  # a failure of another kind keeps the long cap


def test_what_counts_as_the_api_server_being_unavailable() -> None:
    refused = urllib3.exceptions.MaxRetryError(None, "/api", ConnectionRefusedError(111, "Connection refused"))
    assert is_unavailable(refused) and is_unavailable(ConnectionResetError()) and is_unavailable(TimeoutError())
    assert is_unavailable(ApiError(503, "GET", "/api", "unavailable"))
    assert is_unavailable(ApiError(429, "POST", "/api", "too many requests"))
    assert not is_unavailable(ApiError(422, "POST", "/api", "invalid"))
    assert not is_unavailable(ApiError(409, "POST", "/api", "conflict"))
    assert not is_unavailable(KeyError("spec"))


def test_an_urgent_key_goes_before_the_keys_that_are_not() -> None:
    """100 rolling Deployments keep queueing their ModelDeployments; a user's edit must not wait behind them."""
    queue = WorkQueue()
    rolling = [("ns", f"r{i}") for i in range(100)]
    for key in rolling:
        queue.add(key)
    queue.add(A, urgent=True)
    queue.add(B, urgent=True)
    assert [queue.get(timeout=0), queue.get(timeout=0)] == [A, B], "urgent keys first, in their own order"
    assert [queue.get(timeout=0) for _ in rolling] == rolling, "then the others, in theirs"
    assert queue.get(timeout=0) is None


def test_a_stream_of_urgent_keys_does_not_starve_the_others() -> None:
    """Every URGENT_RUN urgent keys in a row, one of the others (a Ready transition, a due canary step)."""
    queue = WorkQueue()
    others = [("ns", "o1"), ("ns", "o2")]
    edits = [("ns", f"e{i}") for i in range(8)]
    for key in others:
        queue.add(key)
    for key in edits:
        queue.add(key, urgent=True)
    taken = [queue.get(timeout=0) for _ in range(len(others) + len(edits))]
    run = URGENT_RUN
    assert taken == [*edits[:run], others[0], *edits[run : 2 * run], others[1], *edits[2 * run :]]


def test_a_waiting_key_that_turns_urgent_moves_up_once() -> None:
    queue = WorkQueue()
    for key in (B, ("ns", "c"), A):
        queue.add(key)
    queue.add(A, urgent=True)
    assert len(queue) == 3, "moved, not added twice"
    assert [queue.get(timeout=0) for _ in range(3)] == [A, B, ("ns", "c")]


def test_an_urgent_add_while_processing_comes_back_urgent() -> None:
    queue = WorkQueue()
    queue.add(A)
    assert queue.get(timeout=0) == A
    queue.add(B)
    queue.add(A, urgent=True)  # the spec changed while a worker reconciles A
    queue.done(A)
    assert queue.get(timeout=0) == A and queue.get(timeout=0) == B


def test_the_wait_of_each_key_is_reported_from_its_first_add() -> None:
    clock = Clock()
    waits: list[tuple[float, str]] = []
    queue = WorkQueue(clock=clock, observe_wait=lambda seconds, lane: waits.append((seconds, lane)))
    queue.add(A)
    clock.now = 2.0
    queue.add(A)  # de-duplicated: it has waited since 0
    queue.add(B, urgent=True)
    clock.now = 3.0
    assert queue.get(timeout=0) == B and queue.get(timeout=0) == A
    assert waits == [(1.0, URGENT), (3.0, NORMAL)]
