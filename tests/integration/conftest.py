"""Fixtures for the integration tests: one real local control plane per test session.

Why it is built this way: the tests must run against a real kube-apiserver, controller-manager,
scheduler and kwok nodes (modeldeploy.devcluster), never skip, and never hide a missing toolchain.
The binaries are found (or built, once, which can take many minutes) in `pytest_collection_finish`,
outside any test's 300 s timeout, with output shown live; a failure there makes every integration test
error with the command to run. Starting the cluster takes about 10 s and happens once per session.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from modeldeploy.devcluster.assets import AssetsError, find_assets
from modeldeploy.devcluster.harness import ControlPlane

REPO = Path(__file__).resolve().parents[2]

_assets_error = pytest.StashKey[AssetsError]()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the control plane's binaries before the first test if any integration test was selected."""
    if not any(item.get_closest_marker("integration") for item in session.items):
        return
    capture = session.config.pluginmanager.getplugin("capturemanager")
    live_output = capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext()
    with live_output:
        try:
            find_assets(build_missing=True)
        except AssetsError as exc:
            session.config.stash[_assets_error] = exc


@pytest.fixture(scope="session")
def control_plane(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok with 3 Ready fake Nodes."""
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


# -- the operator, the executor and the reference models (tests/integration/operator_fixtures.py) --------
from tests.integration.operator_fixtures import (  # noqa: E402
    crd_installed,
    executor,
    kube,
    operator_log,
    operator_process,
    reference_models,
    storage_root,
)

__all__ = [
    "crd_installed",
    "executor",
    "kube",
    "operator_log",
    "operator_process",
    "reference_models",
    "storage_root",
]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """Keep each phase's report on the test item, so fixtures can attach logs to failures."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
