"""The chart grants exactly what the kinds table says the operator does, no more, no less.

The rules live in the chart's `_helpers.tpl` as plain YAML (shared by the ClusterRole and the
per-namespace Roles); the helm-rendered RBAC is checked against a real API server in
tests/integration/test_chart.py.
"""

from __future__ import annotations

import yaml

from modeldeploy.k8s.kinds import rbac_rules
from repo_paths import CHART

HELPERS = CHART / "templates" / "_helpers.tpl"
START = '{{- define "modeldeploy-operator.namespacedRules" -}}'


def chart_rules() -> dict[tuple[str, str], frozenset[str]]:
    text = HELPERS.read_text()
    block = text[text.index(START) + len(START) :]
    block = block[: block.index("{{- end }}")]
    granted: dict[tuple[str, str], frozenset[str]] = {}
    for rule in yaml.safe_load(block):
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                key = (group, resource)
                granted[key] = granted.get(key, frozenset()) | frozenset(rule["verbs"])
    return granted


def test_the_chart_grants_exactly_the_verbs_of_the_kinds_table() -> None:
    assert chart_rules() == rbac_rules()
