"""Starting and stopping the control plane's processes so that none outlives its owner.

Why it exists: a cluster is five long-running binaries, and a test session that leaves them behind
poisons the next one (ports, CPU, stale etcd). Every process gets its own session and process group,
so it can be signalled as a whole and Ctrl-C in the terminal does not reach it. In-process clusters
also ask the kernel to SIGKILL the process if its parent thread dies (PR_SET_PDEATHSIG), so not even a
`kill -9` of pytest leaves orphans; `python -m devcluster up` clusters are detached on purpose and
skip that. `stop_process_groups` is shared by `ControlPlane.stop()` and `python -m devcluster down`.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: Stop order: the API server's clients, then kube-apiserver, then etcd (see stop_process_groups).
STOP_STAGES = (("kwok", "kube-scheduler", "kube-controller-manager"), ("kube-apiserver",), ("etcd",))


@dataclass
class Process:
    """A component this Python process started (and will reap)."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path


@dataclass(frozen=True)
class ProcessRecord:
    """What `python -m devcluster up` records about a detached process, so `down` can find it again."""

    name: str
    pid: int
    log_path: Path


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on 127.0.0.1 (all held open together, so none repeats)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


_PR_SET_PDEATHSIG = 1
_libc: ctypes.CDLL | None = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(OSError):
        _libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGKILL me when the thread that started me dies, and
    receive every signal (a child inherits its starting thread's signal mask; the supervisor's thread
    blocks SIGINT/SIGTERM/SIGHUP, see supervisor.py, and its children must still stop on SIGTERM)."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    log_path: Path,
    cwd: Path,
    extra_env: Mapping[str, str] | None = None,
    detach: bool = False,
) -> Process:
    """Start one component in its own session, output appended to `log_path`; tied to our lifetime
    unless `detach`."""
    env = dict(os.environ)
    env.update(extra_env or {})
    with log_path.open("ab") as log_file:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,  # its own process group: stop() signals the group, Ctrl-C does not
            # preexec_fn is unsafe only for code that takes locks or imports between fork and exec;
            # _die_with_parent makes one prctl call through an already-loaded libc and one sigmask call.
            preexec_fn=None if detach else _die_with_parent,  # noqa: PLW1509
        )
    log.info("started %s (pid %d), log %s", name, popen.pid, log_path)
    log.debug("%s argv: %s", name, " ".join(argv))
    return Process(name, popen, log_path)


def _exited_unreaped(pid: int) -> bool:
    """True once `pid` (our child) has exited; it stays a zombie, so its process group id stays ours."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_process_groups(
    processes: Sequence[tuple[str, int]], *, grace: float = 5.0, reap: Callable[[int], object] | None = None
) -> None:
    """Stop processes by group (pid == pgid: each was started in a new session), in STOP_STAGES order.

    The API server's clients go first, then kube-apiserver, then etcd: stopped together, etcd would wait
    for the apiserver's watch streams and the apiserver for etcd, and both would need SIGKILL (5 s);
    in order it takes about a second. Each stage gets SIGTERM, `grace` seconds, then SIGKILL.

    `processes` are (name, pid) pairs. For our own children (`reap` given), exit is detected without
    reaping, so a group id cannot be recycled before the SIGKILL sweep; `reap` then collects the zombie.
    For another Python process's children (`down`), liveness is checked with signal 0.
    """
    rank = {name: index for index, stage in enumerate(STOP_STAGES) for name in stage}
    stages: dict[int, list[tuple[str, int]]] = {}
    for name, pid in processes:
        stages.setdefault(rank.get(name, -1), []).append((name, pid))
    for _, stage in sorted(stages.items()):
        _stop_stage(stage, grace=grace, own=reap is not None)
    if reap is not None:
        for _, pid in processes:
            reap(pid)


def _stop_stage(stage: Sequence[tuple[str, int]], *, grace: float, own: bool) -> None:
    def gone(pid: int) -> bool:
        return _exited_unreaped(pid) if own else not alive(pid)

    for name, pid in stage:
        log.debug("SIGTERM to %s (process group %d)", name, pid)
        _killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    pending = list(stage)
    while pending and time.monotonic() < deadline:
        pending = [(name, pid) for name, pid in pending if not gone(pid)]
        if pending:
            time.sleep(0.02)
    for name, pid in pending:
        log.warning("%s (pid %d) ignored SIGTERM for %.0f s; sending SIGKILL", name, pid, grace)
    for _, pid in stage:
        _killpg(pid, signal.SIGKILL)  # also sweeps anything a component might have forked
    if not own:
        deadline = time.monotonic() + 5.0
        while any(alive(pid) for _, pid in stage) and time.monotonic() < deadline:
            time.sleep(0.02)


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers signal 0; /proc tells them apart.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def tail(path: Path, lines: int = 40) -> str:
    """The end of a component's log, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"
