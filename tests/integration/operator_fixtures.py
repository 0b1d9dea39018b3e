"""Fixtures that run the operator for real against the local control plane.

`operator_process` is `modeldeploy run` as a subprocess (the same entry point the chart's Deployment
runs), `executor` plays the kubelet for optimizer pods so the real `modeldeploy optimize` runs,
and `reference_models` trains the reference models once per session. Imported by the integration
and e2e conftests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modeldeploy.devcluster.executor import JobPodExecutor
from modeldeploy.devcluster.harness import ControlPlane
from modeldeploy.k8s import KubeClient, load_client

REPO = Path(__file__).resolve().parents[2]


class OperatorProcess:
    """`modeldeploy run` in a subprocess, its log in a file (printed when a test fails)."""

    def __init__(self, kubeconfig: Path, log_path: Path, extra: list[str] | None = None) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONUNBUFFERED": "1"}
        argv = [sys.executable, "-m", "modeldeploy.cli", "run", "--liveness-port", "0", "--resync-seconds", "5"]
        self.popen = subprocess.Popen([*argv, *(extra or [])], env=env, stdout=self._log, stderr=self._log)

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


@pytest.fixture(scope="session")
def storage_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where PersistentVolumeClaims live on this machine: <root>/<namespace>/<claim>."""
    return tmp_path_factory.mktemp("storage")


@pytest.fixture(scope="session")
def reference_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped reference models and datasets, trained once (no download)."""
    out = tmp_path_factory.mktemp("reference")
    subprocess.run(
        [sys.executable, "-m", "modeldeploy.optimize.reference", "--out", str(out), "--epochs", "15"],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture(scope="session")
def kube(control_plane: ControlPlane) -> Iterator[KubeClient]:
    client = load_client(str(control_plane.kubeconfig))
    yield client
    client.close()


@pytest.fixture(scope="session")
def crd_installed(control_plane: ControlPlane) -> None:
    control_plane.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    control_plane.kubectl("wait", "--for=condition=Established", "crd/modeldeployments.modeldeploy.io")


@pytest.fixture(scope="session")
def executor(kube: KubeClient, storage_root: Path) -> Iterator[JobPodExecutor]:
    with JobPodExecutor(kube, storage_root) as running:
        yield running


@pytest.fixture(scope="session")
def operator_process(
    control_plane: ControlPlane, crd_installed: None, executor: JobPodExecutor, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(control_plane.kubeconfig, tmp_path_factory.mktemp("operator") / "operator.log")
    yield process
    process.stop()


@pytest.fixture
def operator_log(operator_process: OperatorProcess, request: pytest.FixtureRequest) -> Iterator[OperatorProcess]:
    """The running operator; its log is attached to the report of a failing test."""
    start = operator_process.log_path.stat().st_size
    yield operator_process
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        with operator_process.log_path.open("rb") as handle:
            handle.seek(start)
            print("---- operator log during the test ----\n" + handle.read().decode(errors="replace")[-20000:])


def make_claim(cp: ControlPlane, storage_root: Path, namespace: str, claim: str, files: Path | None = None) -> Path:
    """A PersistentVolumeClaim bound to a hostPath PersistentVolume at <root>/<namespace>/<claim>,
    optionally filled with the files of a folder. Returns that folder."""
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
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")


def condition(md: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for cond in ((md or {}).get("status") or {}).get("conditions", []):
        if cond["type"] == type_:
            return dict(cond)
    return {}
