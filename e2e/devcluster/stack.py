"""The pieces that turn a bare local control plane into a working modeldeploy stack: the operator
as a subprocess, claims backed by local folders, and small waiting helpers.

Used by `python -m devcluster demo`, the pytest plugin, the integration and e2e tests, and the
benchmarks, so they all run the operator the same way the chart does: `modeldeploy run` as its own
process.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devcluster.controlplane import ControlPlane


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def scrape(port: int) -> str:
    """The operator's /metrics text."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text: str = response.read().decode()
        return text


class OperatorProcess:
    """`modeldeploy run` in a subprocess, its log in a file."""

    def __init__(self, kubeconfig: Path, log_path: Path, extra: list[str] | None = None) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONUNBUFFERED": "1"}
        self.metrics_port = free_port()
        argv = [sys.executable, "-m", "modeldeploy.cli", "run", "--liveness-port", "0", "--resync-seconds", "5"]
        argv += ["--metrics-port", str(self.metrics_port)]
        self.popen = subprocess.Popen([*argv, *(extra or [])], env=env, stdout=self._log, stderr=self._log)

    def __enter__(self) -> OperatorProcess:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def make_claim(cp: ControlPlane, storage_root: Path, namespace: str, claim: str, files: Path | None = None) -> Path:
    """A PersistentVolumeClaim bound to a hostPath PersistentVolume at <root>/<namespace>/<claim>
    (where the executor looks for it), optionally filled with a folder's files. Returns the folder."""
    folder = storage_root / namespace / claim
    folder.mkdir(parents=True, exist_ok=True)
    if files is not None:
        for item in files.iterdir():
            if item.is_file():
                shutil.copy2(item, folder / item.name)
    manifests = [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": f"{namespace}-{claim}"},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "hostPath": {"path": str(folder)},
                "claimRef": {"namespace": namespace, "name": claim},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim, "namespace": namespace},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    ]
    cp.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests}))
    return folder


def wait_for(what: str, check: Callable[[], Any], timeout: float = 120.0, interval: float = 0.25) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")


def condition(md: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    """One condition of a ModelDeployment's status, {} when absent."""
    for cond in ((md or {}).get("status") or {}).get("conditions", []):
        if cond["type"] == type_:
            return dict(cond)
    return {}


def make_reference_models(out: Path, epochs: int = 15) -> Path:
    """Train the reference models (needs the optimizer extra: TensorFlow)."""
    subprocess.run(
        [sys.executable, "-m", "modeldeploy.optimize.reference", "--out", str(out), "--epochs", str(epochs)],
        check=True,
        capture_output=True,
    )
    return out
