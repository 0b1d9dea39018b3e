"""The example ModelDeployments the unit tests start from: the shipped examples and a minimal one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from repo_paths import EXAMPLES_DIR

EXAMPLES = sorted(EXAMPLES_DIR.glob("digits-*.yaml"))

MINIMAL: dict[str, Any] = {
    "apiVersion": "modeldeploy.io/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "digits", "namespace": "ml"},
    "spec": {"model": {"name": "digits", "storageUri": "pvc://models/digits.keras"}},
}


def load_example(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data
