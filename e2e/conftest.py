"""The e2e scenarios share the integration fixtures: one local control plane, the operator as a
subprocess, the executor that runs optimizer pods for real."""

from tests.integration.conftest import *  # noqa: F403
from tests.integration.conftest import control_plane, namespace, pytest_collection_finish, pytest_runtest_makereport

__all__ = ["control_plane", "namespace", "pytest_collection_finish", "pytest_runtest_makereport"]
