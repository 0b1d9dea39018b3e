"""Model verification (the seed's security point): serving pods load only the artifact whose
SHA256SUMS digest the optimizer reported; a folder changed on the claim is refused, and the
ModelDeployment says so. The executor runs the serving pods' init containers for real."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devcluster.controlplane import ControlPlane
from devcluster.stack import OperatorProcess, condition, make_claim, wait_for
from modeldeploy.k8s.client import KubeClient

pytestmark = pytest.mark.integration


def test_a_tampered_artifact_is_refused(
    control_plane: ControlPlane,
    kube: KubeClient,
    namespace: str,
    storage_root: Path,
    reference_models: Path,
    operator_log: OperatorProcess,
) -> None:
    folder = make_claim(control_plane, storage_root, namespace, "models", reference_models)
    md = {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "guarded", "namespace": namespace},
        "spec": {
            "model": {"name": "digits", "storageUri": "pvc://models/mlp.keras"},
            "optimization": {"quantization": "dynamic"},
            "autoscaling": {"enabled": False},
            # run this pod's init containers for real (the executor), not kwok's fake start
            "serving": {"podLabels": {"modeldeploy.io/local-kubelet": "true"}},
        },
    }
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(md))
    ready = wait_for(
        "guarded Ready",
        lambda: (
            (m := kube.get("ModelDeployment", namespace, "guarded"))
            and condition(m, "Ready").get("reason") == "Ready"
            and m
        ),
        timeout=180,
    )
    manifest = ready["status"]["optimization"]["manifestSha256"]
    dep = kube.get("Deployment", namespace, "guarded")
    assert dep is not None
    (verify,) = dep["spec"]["template"]["spec"]["initContainers"]
    assert verify["name"] == "verify-model" and f"--manifest-sha256={manifest}" in verify["args"]
    pods = kube.list("Pod", namespace, "modeldeploy.io/model-deployment=guarded,app.kubernetes.io/component=serving")
    assert [s["state"]["terminated"]["exitCode"] for s in pods[0]["status"]["initContainerStatuses"]] == [0]

    # Someone swaps the model on the claim; the next pod must refuse to serve it.
    tflite = folder / "modeldeploy" / "guarded" / ready["status"]["servedArtifact"] / "1" / "model.tflite"
    tflite.write_bytes(tflite.read_bytes() + b"tampered")
    control_plane.kubectl("delete", "pod", "-n", namespace, "-l", "modeldeploy.io/model-deployment=guarded")
    refused = wait_for(
        "the tampered artifact to be refused",
        lambda: (
            (m := kube.get("ModelDeployment", namespace, "guarded"))
            and condition(m, "ServingReady").get("reason") == "ArtifactVerificationFailed"
            and m
        ),
        timeout=60,
    )
    message = condition(refused, "ServingReady")["message"]
    assert "model.tflite: content changed" in message, message
    assert condition(refused, "Ready")["status"] == "False"
    assert condition(refused, "Ready")["reason"] == "ArtifactVerificationFailed"
