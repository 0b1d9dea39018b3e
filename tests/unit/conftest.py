"""Shared fixtures for the unit tests: example ModelDeployments as dicts and typed objects."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from md_examples import MINIMAL
from modeldeploy.api import ModelDeployment, parse_model_deployment


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
