"""Stop every in-process cluster when the interpreter exits or is told to stop (SIGTERM, SIGHUP).

Why it exists: a test session that ends by a signal or an uncaught error must still stop its clusters
and remove their folders. `ControlPlane.start()` registers itself here and `stop()` unregisters; a
detached cluster (`python -m devcluster up`) never registers, so it outlives its command.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import signal
import threading
import types
from typing import Protocol

log = logging.getLogger(__name__)


class Stoppable(Protocol):
    def stop(self) -> None: ...


# Every in-process cluster still running, stopped at interpreter exit or on SIGTERM/SIGHUP.
_live: set[Stoppable] = set()
_live_lock = threading.RLock()  # re-entrant: a signal handler may run while the main thread holds it


def register(plane: Stoppable) -> None:
    """Stop `plane` at exit or on SIGTERM/SIGHUP unless it was stopped (and unregistered) before."""
    _install_hooks()
    with _live_lock:
        _live.add(plane)


def unregister(plane: Stoppable) -> None:
    with _live_lock:
        _live.discard(plane)


def _stop_all_live() -> None:
    with _live_lock:
        planes = list(_live)
    for plane in planes:
        with contextlib.suppress(Exception):
            plane.stop()


def _on_fatal_signal(signum: int, frame: types.FrameType | None) -> None:
    log.warning("received %s: stopping local control planes", signal.Signals(signum).name)
    _stop_all_live()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


@functools.cache
def _install_hooks() -> None:
    """Once: atexit always; SIGTERM/SIGHUP handlers only from the main thread and only where nobody
    else has installed one (pytest, kopf and friends keep theirs)."""
    atexit.register(_stop_all_live)
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, _on_fatal_signal)
