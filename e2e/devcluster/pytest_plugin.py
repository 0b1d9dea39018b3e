"""The dev cluster as pytest fixtures: one real local control plane per session, the operator as a
subprocess, the executor that runs optimizer pods for real, and the reference models.

Why it is a plugin (entry point `pytest11`, loaded in every session of the venv where
modeldeploy-devcluster is installed): tests/integration, tests/harness and e2e/ all need
the same fixtures, and no conftest should import another's. Nothing heavy happens at import: the
control plane, the product's client and TensorFlow are imported when a fixture first runs, so unit
test sessions pay nothing.

The tests must run against a real kube-apiserver, controller-manager, scheduler and kwok nodes, never
skip, and never hide a missing toolchain. The binaries are found (or built, once, which can take many
minutes) in `pytest_collection_finish`, outside any test's timeout, with output shown live; a failure
there makes every test that needs the cluster error with the command to run. Starting the cluster
takes about 10 s and happens once per session. Repository files (crds/) are found from the pytest
rootdir.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# Light (stdlib only): needed at import for the stash key.
from devcluster.assets import AssetsError

if TYPE_CHECKING:
    from devcluster.controlplane import ControlPlane
    from devcluster.executor import JobPodExecutor
    from devcluster.metrics_exporter import MetricsExporter
    from devcluster.prometheus import Prometheus
    from devcluster.stack import OperatorProcess
    from modeldeploy.k8s.client import KubeClient

_assets_error = pytest.StashKey[AssetsError]()
_prometheus_error = pytest.StashKey[AssetsError]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: needs the local control plane (built on first use)")


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the control plane's binaries before the first test if any integration test was selected,
    and Prometheus if a selected test uses it (outside any test's timeout: a cold build takes minutes)."""
    integration = any(item.get_closest_marker("integration") for item in session.items)
    prometheus = any("prometheus" in getattr(item, "fixturenames", ()) for item in session.items)
    if not (integration or prometheus):
        return
    from devcluster.assets import find_assets
    from devcluster.prometheus import find_binary

    capture = session.config.pluginmanager.getplugin("capturemanager")
    live_output = capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext()
    with live_output:
        if integration:
            try:
                find_assets(build_missing=True)
            except AssetsError as exc:
                session.config.stash[_assets_error] = exc
        if prometheus:
            try:
                find_binary(build_missing=True)
            except AssetsError as exc:
                session.config.stash[_prometheus_error] = exc


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the test item, so fixtures can attach logs to failures."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def control_plane(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok with 3 Ready fake Nodes."""
    from devcluster.controlplane import ControlPlane

    error = request.config.stash.get(_assets_error, None)
    if error is not None:
        pytest.fail(f"the local control plane is unavailable: {error}", pytrace=False)
    with ControlPlane(nodes=3) as plane:
        yield plane


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test (named after it), with its default ServiceAccount in place."""
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{base}-{uuid.uuid4().hex[:5]}"
    control_plane.kubectl("create", "namespace", name)
    control_plane.wait_for_serviceaccount(name)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


@pytest.fixture(scope="session")
def storage_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where PersistentVolumeClaims live on this machine: <root>/<namespace>/<claim>."""
    return tmp_path_factory.mktemp("storage")


@pytest.fixture(scope="session")
def reference_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped reference models and datasets, trained once (no download)."""
    from devcluster.stack import make_reference_models

    return make_reference_models(tmp_path_factory.mktemp("reference"))


@pytest.fixture(scope="session")
def kube(control_plane: ControlPlane) -> Iterator[KubeClient]:
    """The operator's own client, as the admin: what tests read ModelDeployments and children with."""
    from modeldeploy.k8s.client import load_client

    client = load_client(str(control_plane.kubeconfig))
    yield client
    client.close()


@pytest.fixture(scope="session")
def crd_installed(control_plane: ControlPlane, pytestconfig: pytest.Config) -> None:
    """The repository's CRD (crds/ under the pytest rootdir), applied and Established."""
    control_plane.kubectl("apply", "--server-side", "-f", str(pytestconfig.rootpath / "crds"))
    control_plane.wait_established("modeldeployments.modeldeploy.io")


@pytest.fixture(scope="session")
def gateway_api_crds(control_plane: ControlPlane) -> list[str]:
    """The Gateway API's standard-channel CRDs (pinned in versions.env, fetched on first use),
    applied server-side and Established, with HTTPRoute served; returns the CRD names."""
    from devcluster import gateway_api

    try:
        return gateway_api.install(control_plane)
    except AssetsError as exc:
        pytest.fail(f"the Gateway API CRDs are unavailable: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def executor(control_plane: ControlPlane, storage_root: Path) -> Iterator[JobPodExecutor]:
    """The test-side kubelet for optimizer pods (and pods labelled for it), for the whole session."""
    from devcluster.executor import JobPodExecutor

    with control_plane.admin_api() as api, JobPodExecutor(api, storage_root) as running:
        yield running


@pytest.fixture(scope="session")
def operator_process(
    control_plane: ControlPlane, crd_installed: None, executor: JobPodExecutor, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """`modeldeploy run` as a subprocess, the same entry point the chart's Deployment runs."""
    from devcluster.stack import OperatorProcess

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


@pytest.fixture(scope="session")
def prometheus(request: pytest.FixtureRequest) -> Iterator[Prometheus]:
    """A real Prometheus (built from its pinned Go module), scraping every second what tests add."""
    from devcluster.prometheus import Prometheus

    error = request.config.stash.get(_prometheus_error, None)
    if error is not None:
        pytest.fail(f"Prometheus is unavailable: {error}", pytrace=False)
    with Prometheus(scrape_interval=1.0) as server:
        yield server


@pytest.fixture
def metrics_exporter(prometheus: Prometheus, request: pytest.FixtureRequest) -> Iterator[MetricsExporter]:
    """A TF Serving look-alike metrics page for this test, scraped by `prometheus` (first scrape done);
    its series carry the label test="<test name>" so tests never see each other's."""
    from devcluster.metrics_exporter import MetricsExporter

    with MetricsExporter() as exporter:
        prometheus.add_target(exporter.address, {"test": request.node.name[:100]})
        try:
            yield exporter
        finally:
            prometheus.remove_target(exporter.address)
