"""Property-based tests: any valid spec renders manifests the official Kubernetes 1.36 schemas
accept (strict), with valid names; any invalid spec yields a clean, field-named error."""

from __future__ import annotations

import copy
import re
from typing import Any

import kubernetes_validate
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modeldeploy.api import InvalidModelDeployment, parse_model_deployment
from modeldeploy.api.quantity import parse_quantity
from modeldeploy.cli import main
from modeldeploy.controller.builders import Owner, render_all
from modeldeploy.controller.builders.names import child_name, job_name

K8S_VERSION = "1.36.0"
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

md_names = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z", fullmatch=True)
claims = st.from_regex(r"\A[a-z][a-z0-9]{0,20}\Z", fullmatch=True)
paths = st.from_regex(r"\A[a-zA-Z0-9_][a-zA-Z0-9_./-]{0,40}\Z", fullmatch=True).filter(lambda p: "//" not in p)
cpus = st.sampled_from(["100m", "250m", "1", "2", "3500m", 4])
memory = st.sampled_from(["128Mi", "1Gi", "2G", 536870912])


def _within_limits(resources: dict[str, dict[str, Any]]) -> bool:
    """A valid spec asks for no more than its limits (the API server refuses the pod otherwise)."""
    requests, limits = resources.get("requests", {}), resources.get("limits", {})
    return all(parse_quantity(str(v)) <= parse_quantity(str(limits[k])) for k, v in requests.items() if k in limits)


resources = st.fixed_dictionaries(
    {},
    optional={
        "requests": st.fixed_dictionaries({"cpu": cpus, "memory": memory}),
        "limits": st.fixed_dictionaries({}, optional={"cpu": cpus, "memory": memory}),
    },
).filter(_within_limits)


@st.composite
def model_deployments(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(md_names)
    scheme = draw(st.sampled_from(["pvc", "s3", "gs", "https", "file"]))
    fmt = draw(st.sampled_from(["keras", "h5", "savedmodel"]))
    uri = (
        f"pvc://{draw(claims)}/{draw(paths)}"
        if scheme == "pvc"
        else (f"file:///{draw(paths)}" if scheme == "file" else f"{scheme}://{draw(claims)}/{draw(paths)}")
    )
    spec: dict[str, Any] = {
        "model": {
            "name": draw(st.from_regex(r"\A[a-zA-Z0-9][a-zA-Z0-9_.-]{0,30}\Z", fullmatch=True)),
            "storageUri": uri,
            "format": fmt,
            "version": draw(st.integers(1, 2**31 - 1)),
        },
    }
    if draw(st.booleans()):
        spec["model"]["sha256"] = draw(st.from_regex(r"\A[a-f0-9]{64}\Z", fullmatch=True))
    if draw(st.booleans()):
        spec["model"]["credentialsSecret"] = draw(claims)
    if scheme != "pvc" or draw(st.booleans()):
        spec["artifacts"] = {"uri": f"pvc://{draw(claims)}" + draw(st.sampled_from(["", "/x", "/a/b"]))}
    epochs = draw(st.integers(0, 3))
    quantization = draw(st.sampled_from(["none", "dynamic", "float16", "int8"]))
    spec["optimization"] = {
        "enabled": draw(st.booleans()),
        "pruning": {
            "denseSparsity": draw(st.floats(0, 0.95)),
            "convSparsity": draw(st.floats(0, 0.95)),
            "fineTuneEpochs": epochs,
            **({"trainDataUri": "pvc://data/train.npz"} if epochs else {}),
        },
        "quantization": quantization,
        "evaluation": {
            "maxAccuracyDrop": draw(st.floats(0, 1)),
            **(
                {"datasetUri": draw(st.sampled_from(["pvc://data/e.npz", "s3://b/e.npz"]))}
                if draw(st.booleans()) or (quantization == "int8" and not epochs)
                else {}
            ),
        },
        "resources": draw(resources),
    }
    max_batch = draw(st.integers(1, 128))
    smaller = st.sets(st.integers(1, max_batch - 1), max_size=4) if max_batch > 1 else st.just(set[int]())
    sizes = [*sorted(draw(smaller)), max_batch] if draw(st.booleans()) else []
    spec["serving"] = {
        "replicas": draw(st.integers(0, 20)),
        "resources": draw(resources),
        "batching": {"enabled": draw(st.booleans()), "maxBatchSize": max_batch, "allowedBatchSizes": sizes},
        "preferTflite": draw(st.booleans()),
        "env": [{"name": "A", "value": "b"}] if draw(st.booleans()) else [],
        "nodeSelector": {"pool": "cpu"} if draw(st.booleans()) else {},
        "tolerations": [{"key": "ml", "operator": "Exists", "effect": "NoSchedule"}] if draw(st.booleans()) else [],
        "imagePullSecrets": ["regcred"] if draw(st.booleans()) else [],
        "podLabels": {"team": "a"} if draw(st.booleans()) else {},
    }
    low = draw(st.integers(1, 10))
    spec["autoscaling"] = {
        "enabled": draw(st.booleans()),
        "minReplicas": low,
        "maxReplicas": draw(st.integers(low, 20)),
    }
    spec["service"] = {
        "type": draw(st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer"])),
        "restPort": draw(st.integers(1, 65535)),
        "grpcPort": draw(st.integers(1, 65535)),
    }
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": "ml"},
        "spec": spec,
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model_deployments())
def test_any_valid_spec_renders_schema_valid_manifests(obj: dict[str, Any]) -> None:
    md = parse_model_deployment(obj)
    for manifest in render_all(md, Owner(name=md.name, uid="7d3c1f0e-1111-4222-8333-444455556666")):
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
        name = manifest["metadata"]["name"]
        assert DNS_1035.match(name) and len(name) <= 63, name
        for volume in manifest.get("spec", {}).get("template", {}).get("spec", {}).get("volumes", []):
            assert DNS_1035.match(volume["name"]) or re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", volume["name"])


@given(
    md_names,
    st.sampled_from(["", "model-config", "serving-config"]),
    st.text("0123456789abcdef", min_size=16, max_size=16),
)
def test_child_names_are_dns_1035_labels(name: str, suffix: str, digest: str) -> None:
    for child in (child_name(name, suffix), job_name(name, digest)):
        assert DNS_1035.match(child) and len(child) <= 63, child
    assert child_name(name, suffix) == child_name(name, suffix)


def test_names_at_the_edges() -> None:
    long = "a" * 63
    assert child_name(long) == long
    assert len(job_name(long, "0" * 16)) == 63
    assert child_name("1abc").startswith("md-1abc-")
    assert child_name("1abc") != child_name("md-1abc")
    assert job_name(long, "0" * 16) != job_name(long[:-1] + "b", "0" * 16)


_CORRUPTIONS: list[tuple[tuple[str, ...], Any]] = [
    (("spec", "model", "version"), 0),
    (("spec", "model", "version"), "one"),
    (("spec", "model", "storageUri"), "ftp://x/y"),
    (("spec", "model", "format"), "onnx"),
    (("spec", "optimization", "pruning", "denseSparsity"), 1.5),
    (("spec", "optimization", "quantization"), "int4"),
    (("spec", "serving", "replicas"), -1),
    (("spec", "serving", "resources", "limits", "cpu"), "many"),
    (("spec", "autoscaling", "maxReplicas"), 0),
    (("spec", "service", "type"), "Ingress"),
    (("spec", "service", "restPort"), 70000),
    (("spec", "serving", "unknownKnob"), True),
    (("metadata", "name"), "Not_A_Label"),
    (("spec", "model"), None),
]


@settings(max_examples=60, deadline=None)
@given(model_deployments(), st.sampled_from(_CORRUPTIONS))
def test_any_invalid_spec_yields_a_clean_error(obj: dict[str, Any], corruption: tuple[tuple[str, ...], Any]) -> None:
    path, value = corruption
    bad = copy.deepcopy(obj)
    node = bad
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    with pytest.raises(InvalidModelDeployment) as info:
        parse_model_deployment(bad)
    assert info.value.problems
    assert all(p.startswith(path[0]) for p in info.value.problems), info.value.problems


def test_cli_reports_every_problem_on_its_own_line(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: modeldeploy.io/v1alpha1\nkind: ModelDeployment\nmetadata: {name: x}\n"
        "spec:\n  model: {name: m, storageUri: pvc://c/m.keras, version: 0}\n  serving: {replicas: -1}\n"
    )
    assert main(["render", "-f", str(bad)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"error: {bad}: spec.model.version: Input should be greater than or equal to 1",
        f"error: {bad}: spec.serving.replicas: Input should be greater than or equal to 0",
    ]
