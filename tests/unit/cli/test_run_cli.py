"""`modeldeploy run` argument handling that needs no cluster."""

from __future__ import annotations

import pytest

from modeldeploy.cli import main
from modeldeploy.controller.config import peering_priority


def test_peering_priority_from_statefulset_ordinal() -> None:
    assert peering_priority("7", "") == 7
    assert peering_priority("ordinal", "modeldeploy-operator-0") == 100
    assert peering_priority("ordinal", "modeldeploy-operator-2") == 98
    with pytest.raises(ValueError, match="HOSTNAME"):
        peering_priority("ordinal", "laptop")


def test_run_without_credentials_is_one_clean_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert main(["run", "--metrics-port", "0", "--liveness-port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("modeldeploy run: cannot load Kubernetes credentials")


def test_ordinal_priority_from_the_environment_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    from modeldeploy.cli import build_parser

    monkeypatch.setenv("MODELDEPLOY_PRIORITY", "ordinal")
    assert build_parser().parse_args(["run"]).priority == "ordinal"
