"""The chaos suite's private control plane: the scenarios stop the API server and etcd, SIGKILL
operators and flood the API server with invalid objects, so they get a cluster of their own (the
session's stays healthy for every other test). Started once for the whole folder (about 10 s)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos_harness import ChaosStack
from devcluster.controlplane import ControlPlane


@pytest.fixture(scope="session")
def chaos_stack(
    reference_models: Path,
    tmp_path_factory: pytest.TempPathFactory,
    pytestconfig: pytest.Config,
) -> Iterator[ChaosStack]:
    with ControlPlane(nodes=3) as plane:
        stack = ChaosStack(
            plane,
            storage_root=tmp_path_factory.mktemp("chaos-storage"),
            reference_models=reference_models,
            log_dir=tmp_path_factory.mktemp("chaos-logs"),
            crds=pytestconfig.rootpath / "crds",
        )
        try:
            yield stack
        finally:
            stack.close()
