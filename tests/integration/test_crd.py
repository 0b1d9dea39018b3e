"""The committed CRD (crds/modeldeploy.io_modeldeployments.yaml) behaves as designed in a real API server:
it installs, prints its columns, rejects invalid objects with the CEL messages users will read, and
`kubectl scale` works through the scale subresource (which the HPA uses too).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from devcluster.controlplane import CommandError, ControlPlane
from repo_paths import REPO

pytestmark = pytest.mark.integration

CRD_NAME = "modeldeployments.modeldeploy.io"

MINIMAL: dict[str, Any] = {
    "apiVersion": "modeldeploy.io/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "digits-mlp"},
    "spec": {
        "model": {"name": "digits", "storageUri": "pvc://models/digits-mlp.keras", "format": "keras", "version": 1},
        "autoscaling": {"enabled": False},
    },
}


@pytest.fixture(scope="module")
def crd(control_plane: ControlPlane) -> str:
    """`kubectl apply -f crds/` exactly as the README tells users, then wait until it is served."""
    control_plane.kubectl("apply", "-f", str(REPO / "crds"))
    control_plane.wait_established(CRD_NAME, timeout=60)
    return CRD_NAME


def apply(cp: ControlPlane, namespace: str, obj: dict[str, Any]) -> None:
    cp.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(obj))


def with_spec(**spec: Any) -> dict[str, Any]:
    obj = copy.deepcopy(MINIMAL)
    obj["spec"].update(spec)
    return obj


def test_get_modeldeployments_shows_the_printer_columns(control_plane: ControlPlane, crd: str, namespace: str) -> None:
    apply(control_plane, namespace, MINIMAL)
    table = control_plane.kubectl("-n", namespace, "get", "modeldeployments").stdout.splitlines()
    assert table[0].split() == [
        "NAME", "READY", "MODEL", "SERVING", "VERSION", "STATUS", "CANARY", "OPTIMIZED", "SIZE", "REPLICAS", "AGE"
    ]  # fmt: skip
    row = table[1].split()
    assert row[0] == "digits-mlp"
    assert "digits" in row  # MODEL; READY, OPTIMIZED, SIZE, REPLICAS stay empty until the operator reports
    # The short name and the category work too.
    assert control_plane.kubectl("-n", namespace, "get", "md", "-o", "name").stdout.split() == [
        "modeldeployment.modeldeploy.io/digits-mlp"
    ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param(
            {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}},
            "minReplicas must be less than or equal to maxReplicas",
            id="min-above-max",
        ),
        pytest.param(
            {"model": {"name": "digits", "storageUri": "ftp://host/m.keras", "format": "keras", "version": 1}},
            "storageUri must start with one of",
            id="unknown-storage-scheme",
        ),
        pytest.param(
            {
                "model": {
                    "name": "digits",
                    "storageUri": "pvc://models/m.keras",
                    "signature": {
                        "publicKey": {"secretName": "k", "key": "k.pub"},
                        "keyless": {"identity": "a@example.com", "oidcIssuer": "https://issuer"},
                    },
                }
            },
            "give exactly one of publicKey, certificateChain and keyless",
            id="two-signature-anchors",
        ),
        pytest.param(
            {
                "model": {
                    "name": "digits",
                    "storageUri": "pvc://models/m.keras",
                    "signature": {"publicKey": {"key": "k"}},
                }
            },
            "give exactly one of secretName and configMapName",
            id="key-reference-without-object",
        ),
        pytest.param(
            {"optimization": {"evaluation": {"maxSliceAccuracyDrop": 0.05}}},
            "evaluation.maxSliceAccuracyDrop needs evaluation.datasetUri",
            id="slice-gate-without-data",
        ),
        pytest.param(
            {"serving": {"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1500m"}}}},
            "requests must not exceed limits",
            id="requests-above-limits",
        ),
        pytest.param(
            {"optimization": {"resources": {"requests": {"memory": "8Gi"}, "limits": {"memory": "4Gi"}}}},
            "requests must not exceed limits",
            id="optimizer-requests-above-limits",
        ),
        pytest.param(
            {"serving": {"env": [{"name": "A=B", "value": "x"}]}},
            "must consist of printable ASCII characters other than '='",
            id="env-name-with-equals",
        ),
        pytest.param(
            {"serving": {"image": "TensorFlow/Serving:latest"}},
            "is not a valid image reference",
            id="image-reference-upper-case",
        ),
        pytest.param(
            {"optimization": {"image": "ghcr.io/modeldeploy/optimizer:0.1.0 "}},
            "is not a valid image reference",
            id="image-reference-trailing-space",
        ),
        pytest.param(
            {"optimization": {"pruning": {"schedule": "PolynomialDecay"}}},
            "pruning.schedule PolynomialDecay ramps the sparsity during fine-tuning",
            id="gradual-pruning-without-fine-tuning",
        ),
        pytest.param(
            {"optimization": {"pruning": {"denseBlockSize": 8}}},
            "pruning.denseBlockSize must be 1, 4 or 16",
            id="dense-block-size",
        ),
    ],
)
def test_invalid_modeldeployment_is_rejected_with_the_cel_message(
    control_plane: ControlPlane, crd: str, namespace: str, spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(CommandError) as rejected:
        apply(control_plane, namespace, with_spec(**spec))
    assert message in rejected.value.stderr
    assert "Invalid value" in rejected.value.stderr or "is invalid" in rejected.value.stderr
    # Nothing was stored.
    assert control_plane.kubectl("-n", namespace, "get", "md", "-o", "name").stdout.strip() == ""


def test_kubectl_scale_changes_serving_replicas_through_the_scale_subresource(
    control_plane: ControlPlane, crd: str, namespace: str
) -> None:
    cp = control_plane
    apply(cp, namespace, MINIMAL)
    cp.kubectl("-n", namespace, "scale", "md", "digits-mlp", "--replicas=3")

    spec_replicas = cp.kubectl("-n", namespace, "get", "md", "digits-mlp", "-o", "jsonpath={.spec.serving.replicas}")
    assert spec_replicas.stdout == "3"
    scale = json.loads(
        cp.kubectl("-n", namespace, "get", "md", "digits-mlp", "--subresource=scale", "-o", "json").stdout
    )
    assert scale["kind"] == "Scale"
    assert scale["spec"]["replicas"] == 3


def test_a_name_children_cannot_carry_is_rejected_at_admission(
    control_plane: ControlPlane, crd: str, namespace: str
) -> None:
    """A dot is fine in a custom resource's name but not in a Service's or a label's: refused at once."""
    obj = copy.deepcopy(MINIMAL)
    obj["metadata"]["name"] = "digits.v2"
    with pytest.raises(CommandError) as rejected:
        apply(control_plane, namespace, obj)
    assert "metadata.name must be a lowercase DNS label" in rejected.value.stderr
    assert control_plane.kubectl("-n", namespace, "get", "md", "-o", "name").stdout.strip() == ""


def test_kubectl_scale_is_refused_while_autoscaling_owns_replicas(
    control_plane: ControlPlane, crd: str, namespace: str
) -> None:
    cp = control_plane
    apply(cp, namespace, with_spec(autoscaling={"enabled": True, "minReplicas": 1, "maxReplicas": 3}))
    scaled = cp.kubectl("-n", namespace, "scale", "md", "digits-mlp", "--replicas=3", check=False)
    assert scaled.returncode != 0
    assert "serving.replicas cannot change while autoscaling.enabled" in scaled.stderr, scaled.stderr
    stored = cp.kubectl("-n", namespace, "get", "md", "digits-mlp", "-o", "jsonpath={.spec.serving.replicas}")
    assert stored.stdout == "1"
    # Turning autoscaling off in the same change is allowed (the replicas then belong to the spec).
    apply(cp, namespace, with_spec(autoscaling={"enabled": False}, serving={"replicas": 2}))
