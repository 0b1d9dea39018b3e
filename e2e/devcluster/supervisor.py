"""Restart kube-controller-manager and kube-scheduler when they exit, as the kubelet restarts them on
a real control plane node.

Why it exists: on a real control plane (kubeadm and the like) both run with leader election, the
default, as static pods. When the API server or etcd is away for longer than the lease's renew
deadline (10 s), each loses its lease and exits on purpose ("leaderelection lost"), and the kubelet
starts it again with its crash-loop back-off. The fresh process lists everything as soon as the API
server answers. A process that is never restarted (leader election off, as this dev cluster ran before)
keeps its informers instead, and client-go's reflector waits up to a minute between watch attempts
after a long outage (back-off 0.8 s doubling to 30 s, times a jitter of up to 2, reset only after
2 quiet minutes), then again as long before the list that a restarted API server's "too old resource
version" forces: its controllers are blind for up to two minutes after the API server is back.
Measured on this dev cluster: a Deployment edited just before a 10 s API server outage was rolled
out 81 s after the API server returned (README, "Chaos and fuzz").

`CrashLoopBackOff` is the kubelet's restart policy as a pure object (pkg/kubelet: back-off 10 s
doubling to 300 s, the first restart at once, forgotten after 10 quiet minutes); `Supervisor` is the
thread that applies it to a ControlPlane's processes.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

#: The components that exit when they lose their leader lease, and that a kubelet would restart.
SUPERVISED = ("kube-controller-manager", "kube-scheduler")


@dataclass
class CrashLoopBackOff:
    """The kubelet's restart delays for one container: the first exit restarts at once, then 10 s,
    20 s, 40 s, ... up to 300 s; after 600 s without a restart the count starts over."""

    initial: float = 10.0
    maximum: float = 300.0
    _backoff: float | None = field(default=None, repr=False)
    _last_restart: float = field(default=0.0, repr=False)

    def delay(self, exited_at: float) -> float:
        """Seconds to wait after an exit at `exited_at` (monotonic) before the restart; records it."""
        if self._backoff is None or exited_at - self._last_restart > 2 * self.maximum:
            delay, self._backoff = 0.0, self.initial
        else:
            delay, self._backoff = self._backoff, min(2 * self._backoff, self.maximum)
        self._last_restart = exited_at + delay
        return delay


@dataclass
class _Pending:
    restart_at: float
    exit_code: int


class Supervisor:
    """A daemon thread that polls the supervised processes and restarts those that exited.

    `exited(names)` and `restart(name)` are callbacks into the ControlPlane, called under its lock:
    the first returns {name: exit code} of the supervised processes that exited (and forgets them),
    the second starts one again. `forget(name)` drops a pending restart (a deliberate stop or start).
    """

    def __init__(
        self,
        lock: threading.RLock,
        exited: Callable[[Sequence[str]], dict[str, int]],
        restart: Callable[[str], None],
        *,
        interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = lock
        self._exited = exited
        self._restart = restart
        self._interval = interval
        self._clock = clock
        self._backoffs = {name: CrashLoopBackOff() for name in SUPERVISED}
        self._pending: dict[str, _Pending] = {}
        self._stopping = threading.Event()
        # The thread that spawns a component must outlive it (the children die with their starting
        # thread, see processes.spawn), so this one lives as long as the control plane.
        self._thread = threading.Thread(target=self._run, name="devcluster-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)

    def forget(self, name: str) -> None:
        self._pending.pop(name, None)

    def forget_back_off(self) -> None:
        """Start every crash-loop count over, as a kubelet does after 10 quiet minutes."""
        with self._lock:
            self._backoffs = {name: CrashLoopBackOff() for name in SUPERVISED}

    def poll(self) -> None:
        """One pass: note the exits, restart what is due. Called by the thread; public for tests."""
        with self._lock:
            if self._stopping.is_set():
                return
            now = self._clock()
            for name, code in self._exited(SUPERVISED).items():
                delay = self._backoffs[name].delay(now)
                self._pending[name] = _Pending(now + delay, code)
                log.warning(
                    "%s exited with code %d (it does so on purpose when an outage costs it its leader lease; "
                    "its log says why); restarting it in %.0f s, as a kubelet would",
                    name,
                    code,
                    delay,
                )
            for name, pending in sorted(self._pending.items()):
                if now >= pending.restart_at:
                    self._restart(name)  # if it raises, the restart stays pending and is tried again
                    del self._pending[name]
                    log.info("restarted %s", name)

    def _run(self) -> None:
        # Leave SIGINT/SIGTERM/SIGHUP to the main thread: a process-directed signal goes to any thread
        # that does not block it, and one taken here would not interrupt the main thread's sleep, so
        # Ctrl-C would not stop the cluster. (Children unblock them again: processes._die_with_parent.)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
        while not self._stopping.wait(self._interval):
            try:
                self.poll()
            except Exception:  # retried at the next pass; the thread must not die
                log.exception("the control plane supervisor failed to restart a component")
