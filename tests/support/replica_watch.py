"""A fixture that records every spec.replicas a Deployment ever had, from a kubectl watch (a poll
could miss a short drop): the integration tests that check replicas never fall below an HPA's
minimum share it."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Iterator

import pytest

from devcluster.controlplane import ControlPlane

ReplicaWatch = tuple[list[int], Callable[[str, str], None]]


@pytest.fixture
def replica_watch(control_plane: ControlPlane) -> Iterator[ReplicaWatch]:
    """(seen, start): `start(namespace, name)` begins watching that Deployment into `seen`."""
    seen: list[int] = []
    procs: list[subprocess.Popen[str]] = []

    def start(namespace: str, name: str) -> None:
        kubectl = [str(control_plane.bin_dir / "kubectl"), "--kubeconfig", str(control_plane.kubeconfig)]
        jsonpath = "jsonpath={.metadata.name} {.spec.replicas}{'\\n'}"
        watch = ["get", "deployment", "-n", namespace, "--watch", "--output-watch-events=false", "-o", jsonpath]
        proc = subprocess.Popen([*kubectl, *watch], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(proc)

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                parts = line.split()
                if len(parts) == 2 and parts[0] == name and parts[1].isdigit():
                    seen.append(int(parts[1]))

        threading.Thread(target=read, daemon=True).start()

    yield seen, start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
