"""Signed models on the real control plane: the Job verifies the source model's OpenSSF signature
before any work and signs what it publishes; the serving pods' verify-model init container (run for
real by the executor) loads only a folder whose signature verifies with the signing Secret's public
key. Keys are made in the test (ECDSA P-256) and reach the pods as Secret and ConfigMap volumes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from devcluster.controlplane import ControlPlane
from devcluster.stack import OperatorProcess, condition, make_claim, wait_for
from modeldeploy.contract.layout import OWNER_FILE, SIGNATURE_FILE
from modeldeploy.contract.sums import write_sums
from modeldeploy.k8s.client import KubeClient
from modeldeploy.optimize.signing import key_fingerprint, sign_folder
from testkeys import key_pair, sign_with_key

pytestmark = pytest.mark.integration
SERVING_PODS = "modeldeploy.io/model-deployment={},app.kubernetes.io/component=serving"


def model_deployment(namespace: str, name: str, model: str) -> dict[str, Any]:
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {
                "name": "digits",
                "storageUri": f"pvc://models/{model}",
                "signature": {"publicKey": {"configMapName": "approvers", "key": "producer.pub"}},
            },
            "optimization": {"quantization": "dynamic"},
            "artifacts": {"uri": f"pvc://models/modeldeploy/{name}", "signingKeySecret": "model-signing"},
            "autoscaling": {"enabled": False},
            # run this pod's init containers for real (the executor), not kwok's fake start
            "serving": {"podLabels": {"modeldeploy.io/local-kubelet": "true"}},
        },
    }


def refused_with(kube: KubeClient, namespace: str, name: str, text: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        md = kube.get("ModelDeployment", namespace, name)
        serving = condition(md, "ServingReady")
        if serving.get("reason") == "ArtifactVerificationFailed" and text in serving.get("message", ""):
            return md
        return None

    found: dict[str, Any] = wait_for(f"{name} refused with {text!r}", check, timeout=90)
    return found


def test_a_signed_model_serves_and_a_tampered_or_re_signed_folder_is_refused(
    control_plane: ControlPlane,
    kube: KubeClient,
    namespace: str,
    storage_root: Path,
    reference_models: Path,
    operator_log: OperatorProcess,
    tmp_path: Path,
) -> None:
    folder = make_claim(control_plane, storage_root, namespace, "models", reference_models)
    producer, ours, foreign = (key_pair(tmp_path / n, n) for n in ("producer", "ours", "foreign"))
    sign_with_key(folder / "mlp.keras", folder / "mlp.keras.sig", producer.private)
    kubectl = control_plane.kubectl
    kubectl("create", "configmap", "approvers", "-n", namespace, f"--from-file=producer.pub={producer.public}")
    kubectl(
        "create", "secret", "generic", "model-signing", "-n", namespace,
        f"--from-file=signing.key={ours.private}", f"--from-file=signing.pub={ours.public}",
    )  # fmt: skip

    kubectl("apply", "-f", "-", input=json.dumps(model_deployment(namespace, "signed", "mlp.keras")))
    ready = wait_for(
        "signed Ready",
        lambda: (
            (m := kube.get("ModelDeployment", namespace, "signed"))
            and condition(m, "Ready").get("reason") == "Ready"
            and m
        ),
        timeout=180,
    )
    version = folder / "modeldeploy" / "signed" / ready["status"]["servedArtifact"] / "1"
    result = ready["status"]["optimization"]
    assert result["signer"] == key_fingerprint(ours.public.read_bytes())
    assert result["sourceSigner"] == key_fingerprint(producer.public.read_bytes())
    assert result["signatureSha256"] == hashlib.sha256((version / SIGNATURE_FILE).read_bytes()).hexdigest()
    assert f"signed by {result['signer']}" in condition(ready, "Ready")["message"]
    events = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    assert any(f"signed by {result['signer']}" in e.get("message", "") for e in events), "an Event says who signed"

    dep = kube.get("Deployment", namespace, "signed")
    assert dep is not None
    (verify,) = dep["spec"]["template"]["spec"]["initContainers"]
    assert "--public-key=/etc/modeldeploy/signing/signing.pub" in verify["args"]
    pods = kube.list("Pod", namespace, SERVING_PODS.format("signed"))
    assert [s["state"]["terminated"]["exitCode"] for s in pods[0]["status"]["initContainerStatuses"]] == [0]

    # Tampered after signing: the model changes on the claim.
    tflite = version / "model.tflite"
    original = tflite.read_bytes()
    tflite.write_bytes(original + b"tampered")
    kubectl("delete", "pod", "-n", namespace, "-l", SERVING_PODS.format("signed"))
    refused = refused_with(kube, namespace, "signed", "model.tflite: content changed")
    assert condition(refused, "Ready")["reason"] == "ArtifactVerificationFailed"

    # Re-signed with a foreign key, SHA256SUMS rewritten to match: the signature names the key.
    (version / SIGNATURE_FILE).unlink()
    sign_folder(version, foreign.private, version / SIGNATURE_FILE)
    (version / "SHA256SUMS").unlink()
    write_sums(version)
    kubectl("delete", "pod", "-n", namespace, "-l", SERVING_PODS.format("signed"))
    refused_with(kube, namespace, "signed", "not made with the public key signing.pub")


def test_an_unsigned_source_fails_the_job_and_publishes_nothing(
    control_plane: ControlPlane,
    kube: KubeClient,
    namespace: str,
    storage_root: Path,
    reference_models: Path,
    operator_log: OperatorProcess,
    tmp_path: Path,
) -> None:
    folder = make_claim(control_plane, storage_root, namespace, "models", reference_models)
    producer, ours = key_pair(tmp_path / "producer", "producer"), key_pair(tmp_path / "ours", "ours")
    kubectl = control_plane.kubectl
    kubectl("create", "configmap", "approvers", "-n", namespace, f"--from-file=producer.pub={producer.public}")
    kubectl(
        "create", "secret", "generic", "model-signing", "-n", namespace,
        f"--from-file=signing.key={ours.private}", f"--from-file=signing.pub={ours.public}",
    )  # fmt: skip
    kubectl("apply", "-f", "-", input=json.dumps(model_deployment(namespace, "unsigned", "cnn.keras")))
    failed = wait_for(
        "unsigned fails with SignatureMissing",
        lambda: (
            (m := kube.get("ModelDeployment", namespace, "unsigned"))
            and condition(m, "Optimized").get("reason") == "SignatureMissing"
            and m
        ),
        timeout=180,
    )
    assert "cnn.keras.sig" in condition(failed, "Optimized")["message"]
    assert condition(failed, "Ready")["status"] == "False"
    published = folder / "modeldeploy" / "unsigned"
    # owner.json (who may clean the folder up) is written before any work; no model file is.
    files = [p.name for p in published.rglob("*") if p.is_file()] if published.exists() else []
    assert set(files) <= {OWNER_FILE}, f"nothing is published, found {files}"
