"""A de-duplicating work queue of ModelDeployment keys, with per-key exponential back-off.

The semantics of client-go's workqueue, which controller-runtime's reconcilers rely on:
- a key waits in the queue at most once, however many events name it (a burst of 14 watch events
  for one object is one reconcile);
- a key is handed to one worker at a time: added again while being processed, it is marked dirty
  and queued once that worker is done, so two workers never reconcile the same object;
- a failed key comes back after a delay that doubles per consecutive failure (capped), and
  `forget` resets it after a success;
- a key added as `urgent` (its ModelDeployment's spec changed: someone waits for the edit) goes
  before every key that is not: while 100 Deployments roll, their status events queue their
  ModelDeployments again and again, and a user's edit must not wait behind all of them. Urgent keys
  keep their own first-in, first-out order; a key already waiting moves up when it turns urgent. So
  that a steady stream of edits never starves everything else (a Ready transition, a canary step
  that is due), every URGENT_RUN-th key taken while others wait is one of the others.
The time each key waited (from its add to a worker taking it) goes to `observe_wait` with its lane
(URGENT or NORMAL), for the operator's metrics. Thread-safe; the clock is injectable so the timing
rules are tested without sleeping.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

Key = tuple[str, str]  # (namespace, name)

DEFAULT_BASE_DELAY = 1.0
DEFAULT_MAX_DELAY = 300.0
# An API server that does not answer (restarting, overloaded) comes back on its own: a key that failed
# on that must not sleep 5 minutes past its return, as it would after a few failures at the full cap.
TRANSIENT_MAX_DELAY = 15.0
# At most this many urgent keys in a row while other keys wait: the others keep a quarter of the workers.
URGENT_RUN = 3
# The two lanes of the queue, as reported to `observe_wait`.
URGENT = "urgent"
NORMAL = "normal"


@dataclass(eq=False, repr=False)
class WorkQueue:
    base_delay: float = DEFAULT_BASE_DELAY
    max_delay: float = DEFAULT_MAX_DELAY
    clock: Callable[[], float] = time.monotonic
    observe_wait: Callable[[float, str], None] | None = None  # (seconds from add to get, lane), per key taken
    _queue: deque[Key] = field(default_factory=deque)
    _urgent: deque[Key] = field(default_factory=deque)  # taken before _queue
    _queued: set[Key] = field(default_factory=set)  # in _queue or _urgent, or dirty while processing
    _urgent_keys: set[Key] = field(default_factory=set)  # of _queued, the urgent ones
    _added_at: dict[Key, float] = field(default_factory=dict)  # of _queued, when first added
    _urgent_in_a_row: int = 0  # urgent keys taken since the last normal one
    _processing: set[Key] = field(default_factory=set)
    _waiting: list[tuple[float, int, Key]] = field(default_factory=list)  # heap of (ready at, seq, key)
    _failures: dict[Key, int] = field(default_factory=dict)
    _seq: int = 0
    _shutdown: bool = False
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def add(self, key: Key, *, urgent: bool = False) -> None:
        """Queue the key now, unless it is queued already (or dirty while a worker has it); `urgent`
        puts it before every key that is not (moving it up if it was already waiting)."""
        with self._cond:
            self._add_locked(key, urgent=urgent)

    def add_after(self, key: Key, delay: float) -> None:
        """Queue the key once `delay` seconds have passed."""
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            self._seq += 1
            heapq.heappush(self._waiting, (self.clock() + delay, self._seq, key))
            self._cond.notify()

    def add_rate_limited(self, key: Key, *, transient: bool = False) -> float:
        """Queue the key after its back-off: base * 2^(failures so far), capped (at TRANSIENT_MAX_DELAY
        when the failure was the API server's unavailability); returns the delay."""
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
        cap = min(self.max_delay, TRANSIENT_MAX_DELAY) if transient else self.max_delay
        delay: float = min(cap, self.base_delay * 2.0**failures)
        self.add_after(key, delay)
        return delay

    def forget(self, key: Key) -> None:
        """The key succeeded: its next failure starts the back-off from the base again."""
        with self._cond:
            self._failures.pop(key, None)

    def failures(self, key: Key) -> int:
        with self._cond:
            return self._failures.get(key, 0)

    def get(self, timeout: float | None = None) -> Key | None:
        """The next key to process (the caller must call `done`), or None on shutdown or timeout."""
        deadline = None if timeout is None else self.clock() + timeout
        with self._cond:
            while True:
                self._promote_ready_locked()
                if self._shutdown:
                    return None
                if self._urgent or self._queue:
                    urgent = bool(self._urgent) and not (self._queue and self._urgent_in_a_row >= URGENT_RUN)
                    self._urgent_in_a_row = self._urgent_in_a_row + 1 if urgent else 0
                    key = self._urgent.popleft() if urgent else self._queue.popleft()
                    self._queued.discard(key)
                    self._urgent_keys.discard(key)
                    self._processing.add(key)
                    added = self._added_at.pop(key, None)
                    if self.observe_wait is not None and added is not None:
                        self.observe_wait(max(0.0, self.clock() - added), URGENT if urgent else NORMAL)
                    return key
                wait = self._waiting[0][0] - self.clock() if self._waiting else None
                if deadline is not None:
                    remaining = deadline - self.clock()
                    if remaining <= 0:
                        return None
                    wait = remaining if wait is None else min(wait, remaining)
                self._cond.wait(wait)

    def done(self, key: Key) -> None:
        """The worker finished the key; if it was added meanwhile, it is queued again now."""
        with self._cond:
            self._processing.discard(key)
            if key in self._queued:
                (self._urgent if key in self._urgent_keys else self._queue).append(key)
                self._cond.notify()

    def shutdown(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()

    def __len__(self) -> int:
        """Keys ready to process now (waiting back-offs not counted)."""
        with self._cond:
            return len(self._urgent) + len(self._queue)

    def _add_locked(self, key: Key, *, urgent: bool = False) -> None:
        if self._shutdown:
            return
        if key in self._queued:
            if urgent and key not in self._urgent_keys:
                self._urgent_keys.add(key)
                if key not in self._processing:  # waiting in _queue: move it up
                    self._queue.remove(key)
                    self._urgent.append(key)
            return
        self._queued.add(key)
        self._added_at[key] = self.clock()
        if urgent:
            self._urgent_keys.add(key)
        if key not in self._processing:  # else: dirty; `done` queues it
            (self._urgent if urgent else self._queue).append(key)
            self._cond.notify()

    def _promote_ready_locked(self) -> None:
        now = self.clock()
        while self._waiting and self._waiting[0][0] <= now:
            _, _, key = heapq.heappop(self._waiting)
            self._add_locked(key)
