"""Fixtures that run the operator for real against the local control plane.

`operator_process` is `modeldeploy run` as a subprocess (the same entry point the chart's Deployment
runs), `executor` plays the kubelet for optimizer pods so the real `modeldeploy optimize` runs,
and `reference_models` trains the reference models once per session. Imported by the integration
and e2e conftests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modeldeploy.devcluster.executor import JobPodExecutor
from modeldeploy.devcluster.harness import ControlPlane
from modeldeploy.devcluster.stack import OperatorProcess, condition, make_claim, make_reference_models, wait_for
from modeldeploy.k8s.client import KubeClient, load_client

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def storage_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where PersistentVolumeClaims live on this machine: <root>/<namespace>/<claim>."""
    return tmp_path_factory.mktemp("storage")


@pytest.fixture(scope="session")
def reference_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped reference models and datasets, trained once (no download)."""
    return make_reference_models(tmp_path_factory.mktemp("reference"))


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


__all__ = ["OperatorProcess", "condition", "make_claim", "wait_for"]
