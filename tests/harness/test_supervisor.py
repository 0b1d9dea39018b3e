"""The dev cluster restarts kube-controller-manager and kube-scheduler when they exit, with the
kubelet's crash-loop back-off (supervisor.py says why: a controller-manager that never restarts was
blind for up to two minutes after an API server outage).

The back-off and one supervisor pass are pure and tested here without a cluster; the last test
kills the real controller-manager of a private control plane and watches it come back.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from devcluster.controlplane import ControlPlane
from devcluster.supervisor import CrashLoopBackOff, Supervisor


def test_the_first_exit_restarts_at_once_then_the_delay_doubles_to_five_minutes() -> None:
    backoff = CrashLoopBackOff()
    now, delays = 0.0, []
    for _ in range(8):
        delay = backoff.delay(now)
        delays.append(delay)
        now += delay + 1.0  # it runs one second, then exits again
    assert delays == [0.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0]


def test_the_back_off_is_forgotten_after_ten_quiet_minutes() -> None:
    backoff = CrashLoopBackOff()
    assert backoff.delay(0.0) == 0.0
    assert backoff.delay(5.0) == 10.0
    assert backoff.delay(15.0 + 599.0) == 20.0  # within 600 s of the last restart: still counting
    assert backoff.delay(634.0 + 601.0) == 0.0


class FakePlane:
    """What the supervisor sees of a ControlPlane: exits to take, restarts to make."""

    def __init__(self) -> None:
        self.exits: dict[str, int] = {}
        self.restarts: list[tuple[float, str]] = []
        self.now = 0.0

    def take(self, names: Sequence[str]) -> dict[str, int]:
        taken = {name: code for name, code in self.exits.items() if name in names}
        self.exits = {}
        return taken

    def restart(self, name: str) -> None:
        self.restarts.append((self.now, name))


def test_a_supervisor_restarts_an_exited_controller_manager_after_the_kubelets_delay() -> None:
    plane = FakePlane()
    supervisor = Supervisor(threading.RLock(), plane.take, plane.restart, clock=lambda: plane.now)
    plane.exits = {"kube-controller-manager": 1, "kwok": 2}  # kwok is not supervised
    supervisor.poll()
    assert plane.restarts == [(0.0, "kube-controller-manager")]
    plane.now = 30.0
    plane.exits = {"kube-controller-manager": 1}
    supervisor.poll()
    plane.now = 39.0
    supervisor.poll()
    assert len(plane.restarts) == 1  # within the 10 s back-off
    supervisor.forget("kube-scheduler")  # forgetting another component changes nothing
    plane.now = 40.0
    supervisor.poll()
    assert plane.restarts[-1] == (40.0, "kube-controller-manager")


def test_a_deliberate_stop_cancels_a_pending_restart() -> None:
    plane = FakePlane()
    supervisor = Supervisor(threading.RLock(), plane.take, plane.restart, clock=lambda: plane.now)
    supervisor.poll()
    plane.exits = {"kube-scheduler": 1}
    supervisor.poll()  # the first exit: restarted at once
    plane.now = 1.0
    plane.exits = {"kube-scheduler": 1}
    supervisor.poll()  # the second: pending for 10 s
    supervisor.forget("kube-scheduler")  # what stop_component/start_component do
    plane.now = 100.0
    supervisor.poll()
    assert plane.restarts == [(0.0, "kube-scheduler")]


def _blocked_signals(thread: threading.Thread) -> int:
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("SigBlk:")).split()[1], 16)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the thread's signal mask from /proc")
def test_the_supervisor_thread_leaves_ctrl_c_and_sigterm_to_the_main_thread() -> None:
    """A process-directed signal taken by the supervisor's thread would not interrupt the main
    thread's sleep: Ctrl-C on a script holding a cluster did nothing (seen in
    test_an_interrupted_owner_leaves_no_process_behind[SIGINT])."""
    supervisor = Supervisor(threading.RLock(), lambda names: {}, lambda name: None, interval=0.05)
    supervisor.start()
    try:
        thread = next(t for t in threading.enumerate() if t.name == "devcluster-supervisor")
        deadline = time.monotonic() + 5
        wanted = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
        while time.monotonic() < deadline:
            blocked = _blocked_signals(thread)
            if all(blocked & (1 << (sig - 1)) for sig in wanted):
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"the supervisor's thread does not block SIGINT/SIGTERM/SIGHUP (SigBlk {blocked:x})")
    finally:
        supervisor.stop()


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_controller_manager_that_exits_is_started_again_with_leader_election() -> None:
    with ControlPlane(nodes=0) as cp:
        assert cp.supervised
        before = next(p for p in cp.processes if p.name == "kube-controller-manager")
        os.killpg(before.pid, signal.SIGKILL)  # as if it had lost its lease and exited
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = [p for p in cp.processes if p.name == "kube-controller-manager"]
            if now and now[0].pid != before.pid:
                break
            time.sleep(0.2)
        else:
            pytest.fail("kube-controller-manager was not started again within 30 s")
        # Once it holds the lease again (the dead holder's lease must lapse first, 15 s), its
        # controllers work: the serviceaccount controller makes a new namespace's `default`.
        cp.kubectl("create", "namespace", "after-restart")
        cp.wait_for_serviceaccount("after-restart", timeout=90)
        holder = cp.kubectl(
            "get", "lease", "-n", "kube-system", "kube-controller-manager", "-o", "jsonpath={.spec.holderIdentity}"
        ).stdout
        assert holder, "the restarted controller-manager runs with leader election and holds the lease"
