"""The API models: defaults, field-path errors, and the cross-field rules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from modeldeploy.api import InvalidModelDeployment, ModelDeployment, parse_model_deployment, parse_status
from modeldeploy.api.quantity import parse_quantity, whole_cpus
from modeldeploy.api.spec import DEFAULT_TF_SERVING_IMAGE, ModelDeploymentSpec


def problems(obj: Any) -> list[str]:
    with pytest.raises(InvalidModelDeployment) as info:
        parse_model_deployment(obj)
    return info.value.problems


def test_minimal_spec_gets_documented_defaults(minimal: dict[str, Any]) -> None:
    md = parse_model_deployment(minimal)
    spec = md.spec
    assert spec.model.format == "keras" and spec.model.version == 1
    assert spec.optimization.enabled and spec.optimization.quantization == "none"
    assert spec.optimization.evaluation.max_accuracy_drop == 0.01
    assert spec.serving.image == DEFAULT_TF_SERVING_IMAGE and ":" in spec.serving.image
    assert spec.serving.image.split(":")[1][0].isdigit(), "the default TF Serving tag must be pinned"
    assert spec.autoscaling.enabled and (spec.autoscaling.min_replicas, spec.autoscaling.max_replicas) == (
        1,
        3,
    )
    assert spec.service.rest_port == 8501 and spec.service.grpc_port == 8500
    assert spec.artifacts_uri(md.name) == "pvc://models/modeldeploy/digits"


def test_round_trip_uses_camel_case(minimal: dict[str, Any]) -> None:
    minimal["spec"]["autoscaling"] = {"targetCPUUtilizationPercentage": 50}
    md = parse_model_deployment(minimal)
    dumped = md.spec.to_api()
    assert dumped["autoscaling"]["targetCPUUtilizationPercentage"] == 50
    assert dumped["model"]["storageUri"] == "pvc://models/digits.keras"
    assert ModelDeploymentSpec.model_validate(dumped) == md.spec


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        (
            {"spec": {"model": {"name": "d", "storageUri": "ftp://h/m.keras"}}},
            "spec.model: storageUri must start with one of pvc://",
        ),
        (
            {"spec": {"model": {"name": "d", "storageUri": "pvc://no-path"}}},
            "spec.model: a pvc:// storageUri must name a claim and a path",
        ),
        (
            {"spec": {"model": {"name": "d", "storageUri": "s3://b/m.keras"}}},
            "spec: artifacts.uri is required when model.storageUri is not pvc://",
        ),
        (
            {"spec": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}},
            "spec.autoscaling: minReplicas must be less than or equal to maxReplicas",
        ),
        (
            {"spec": {"serving": {"batching": {"maxBatchSize": 16, "allowedBatchSizes": [4, 8]}}}},
            "spec.serving.batching: batching.allowedBatchSizes must end with maxBatchSize",
        ),
        (
            {"spec": {"optimization": {"pruning": {"fineTuneEpochs": 2}}}},
            "spec.optimization: pruning.fineTuneEpochs needs pruning.trainDataUri",
        ),
        (
            {"spec": {"optimization": {"quantization": "int8"}}},
            "spec.optimization: quantization int8 needs representative data",
        ),
        (
            {"spec": {"optimization": {"pruning": {"schedule": "PolynomialDecay"}}}},
            "spec.optimization.pruning: pruning.schedule PolynomialDecay ramps the sparsity during fine-tuning",
        ),
        (
            {"spec": {"optimization": {"pruning": {"schedule": "Linear"}}}},
            "spec.optimization.pruning.schedule: Input should be 'PolynomialDecay' or 'OneShot'",
        ),
        (
            {"spec": {"optimization": {"pruning": {"denseSparsity": 0.99}}}},
            "spec.optimization.pruning.denseSparsity: Input should be less than or equal to 0.95",
        ),
        (
            {"spec": {"optimization": {"quantization": "int4"}}},
            "spec.optimization.quantization: Input should be 'none', 'dynamic', 'float16' or 'int8'",
        ),
        (
            {"spec": {"serving": {"resources": {"limits": {"cpu": "lots"}}}}},
            "spec.serving.resources.limits.cpu: 'lots' is not a Kubernetes quantity",
        ),
        ({"spec": {"servng": {}}}, "spec.servng: unknown field"),
        ({"metadata": {"name": "Digits"}}, "metadata.name: must be a lowercase DNS label"),
        ({"apiVersion": "modeldeploy.io/v1"}, "apiVersion: must be 'modeldeploy.io/v1alpha1'"),
    ],
)
def test_invalid_specs_name_the_field(
    make_md: Callable[..., ModelDeployment], patch: dict[str, Any], expected: str
) -> None:
    with pytest.raises(InvalidModelDeployment) as info:
        make_md(**patch)
    assert any(p.startswith(expected) for p in info.value.problems), info.value.problems


def test_wrong_kind_and_non_mapping_are_clean_errors() -> None:
    assert problems({"kind": "Deployment"}) == ["kind: expected ModelDeployment, got 'Deployment'"]
    assert problems(["a"]) == ["expected a mapping (a Kubernetes object), got list"]


def test_quantities_accept_numbers_and_convert_to_cpus(make_md: Callable[..., ModelDeployment]) -> None:
    md = make_md(spec={"serving": {"resources": {"limits": {"cpu": 2, "memory": "1Gi"}}}})
    assert md.spec.serving.resources.limits == {"cpu": "2", "memory": "1Gi"}
    assert parse_quantity("1Gi") == 2**30
    assert [whole_cpus(q) for q in ("100m", "1", "1500m", "2", "3.5")] == [1, 1, 2, 2, 4]


def test_status_ignores_foreign_keys() -> None:
    status = parse_status({"status": {"phase": "Ready", "kopf": {"progress": {}}, "servedVersion": 2}})
    assert status.phase == "Ready" and status.served_version == 2


def test_the_status_the_api_server_keeps_is_ignored_when_parsing_specs(minimal: dict[str, Any]) -> None:
    minimal["status"] = {"anything": "the operator wrote"}
    minimal["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    assert parse_model_deployment(minimal).name == "digits"


def test_a_slice_gate_needs_evaluation_data(minimal: dict[str, Any]) -> None:
    minimal["spec"]["optimization"] = {"evaluation": {"maxSliceAccuracyDrop": 0.05}}
    assert problems(minimal) == [
        "spec.optimization.evaluation: evaluation.maxSliceAccuracyDrop needs evaluation.datasetUri"
    ]
    minimal["spec"]["optimization"]["evaluation"]["datasetUri"] = "pvc://models/eval.npz"
    evaluation = parse_model_deployment(minimal).spec.optimization.evaluation
    assert (evaluation.metric, evaluation.top_k, evaluation.min_slice_examples) == ("accuracy", 5, 30)
    minimal["spec"]["optimization"]["evaluation"].update(metric="f1", topK=1)
    found = problems(minimal)
    assert any(p.startswith("spec.optimization.evaluation.metric: Input should be 'accuracy'") for p in found), found
    assert "spec.optimization.evaluation.topK: Input should be greater than or equal to 2" in found
