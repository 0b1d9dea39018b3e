"""Shared fixtures for the unit tests: example ModelDeployments as dicts and typed objects."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from modeldeploy.api import ModelDeployment, parse_model_deployment

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("digits-*.yaml"))

MINIMAL: dict[str, Any] = {
    "apiVersion": "modeldeploy.io/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "digits", "namespace": "ml"},
    "spec": {"model": {"name": "digits", "storageUri": "pvc://models/digits.keras"}},
}


@pytest.fixture
def minimal() -> dict[str, Any]:
    return copy.deepcopy(MINIMAL)


@pytest.fixture
def make_md() -> Callable[..., ModelDeployment]:
    """Build a ModelDeployment from MINIMAL with nested overrides: make_md(spec={"serving": {...}})."""

    def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(base)
        for key, value in extra.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        return out

    def make(**overrides: Any) -> ModelDeployment:
        return parse_model_deployment(merge(MINIMAL, overrides))

    return make


def load_example(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data
