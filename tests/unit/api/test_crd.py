"""The generated CRD: matches the committed copies, and is a structural schema that teaches."""

from __future__ import annotations

from typing import Any

import pytest
from scripts import generate_api

from modeldeploy.api import crd


def walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        out.append((path, node))
        for name, child in node.get("properties", {}).items():
            out += walk(child, f"{path}.{name}")
        if "items" in node:
            out += walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            out += walk(node["additionalProperties"], f"{path}{{}}")
    return out


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    built: dict[str, Any] = crd.build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return built


def test_committed_crds_match_the_generator() -> None:
    for path, text in generate_api.outputs(generate_api.REPO):
        assert path.exists(), f"{path} missing: run `make crds`"
        assert path.read_text() == text, f"{path} is stale: run `make crds`"


def test_docs_name_every_field_and_rule() -> None:
    docs = crd.render_docs()
    assert "| `spec.optimization.pruning.convSparsity` |" in docs
    assert "minReplicas must be less than or equal to maxReplicas" in docs


def test_check_mode_reports_drift(tmp_path: Any, capsys: Any) -> None:
    stale = tmp_path / "crds" / crd.CRD_FILENAME
    stale.parent.mkdir()
    stale.write_text("old")
    assert generate_api.main(["--check"], repo=tmp_path) == 1
    assert crd.CRD_FILENAME in capsys.readouterr().err
    assert generate_api.main(["--write"], repo=tmp_path) == 0
    assert generate_api.main(["--check"], repo=tmp_path) == 0


def test_docs_list_every_reason_with_its_event_type() -> None:
    docs = crd.render_docs()
    assert "| QualityGateFailed | Warning |" in docs and "| Optimizing | Normal |" in docs


def test_schema_is_structural(schema: dict[str, Any]) -> None:
    for path, node in walk(schema):
        assert "$ref" not in node and "title" not in node, path
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string"), f"{path}: anyOf only for int-or-string"
        else:
            assert "type" in node, f"{path}: no type"
        if node.get("type") == "object" and path not in ("", ".metadata"):
            assert (
                "properties" in node
                or "additionalProperties" in node
                or node.get("x-kubernetes-preserve-unknown-fields")
            ), f"{path}: object without properties"


def test_every_spec_and_status_field_has_a_description(schema: dict[str, Any]) -> None:
    missing = [
        p
        for p, n in walk(schema)
        if p.startswith((".spec.", ".status."))
        and "[]" not in p.split(".")[-1]
        and "{}" not in p
        and not n.get("description")
    ]
    assert missing == []


def test_defaults_enums_ranges_and_cel_rules(schema: dict[str, Any]) -> None:
    spec = schema["properties"]["spec"]["properties"]
    assert spec["optimization"]["properties"]["quantization"]["enum"] == [
        "none",
        "dynamic",
        "float16",
        "int8",
    ]
    pruning = spec["optimization"]["properties"]["pruning"]["properties"]
    assert pruning["denseSparsity"]["maximum"] == 0.95 and pruning["convSparsity"]["minimum"] == 0.0
    assert spec["serving"]["properties"]["image"]["default"].startswith("tensorflow/serving:")
    assert spec["serving"]["default"]["resources"]["limits"]["cpu"] == "1"
    rules = {r["message"] for _, n in walk(schema) for r in n.get("x-kubernetes-validations", [])}
    assert "minReplicas must be less than or equal to maxReplicas" in rules
    assert any(m.startswith("storageUri must start with one of") for m in rules)
    assert schema["properties"]["status"]["x-kubernetes-preserve-unknown-fields"] is True


def test_subresources_and_printer_columns() -> None:
    version = crd.build_crd()["spec"]["versions"][0]
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.serving.replicas"
    assert version["subresources"]["scale"]["labelSelectorPath"] == ".status.selector"
    columns = [c["name"].upper() for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == [
        "READY",
        "MODEL",
        "SERVING",
        "VERSION",
        "STATUS",
        "CANARY",
        "OPTIMIZED",
        "SIZE",
        "REPLICAS",
        "AGE",
    ]
