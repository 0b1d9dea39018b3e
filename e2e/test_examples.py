"""Whole-stack scenarios a user goes through, with the shipped examples as they are.

`kubectl apply -f examples/...` -> the optimizer really prunes and quantizes -> `kubectl get
modeldeployments` says READY True with the optimized size; a new model version -> a new Job and a
rolling update; a corrupt model -> the old version keeps serving and the status says why.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from devcluster.controlplane import ControlPlane
from devcluster.stack import OperatorProcess, condition, make_claim, wait_for
from modeldeploy.k8s.client import KubeClient

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[1]


def ready_on(kube: KubeClient, namespace: str, name: str, version: int, timeout: float = 240) -> dict:  # type: ignore[type-arg]
    def check() -> dict | None:  # type: ignore[type-arg]
        md = kube.get("ModelDeployment", namespace, name)
        ready = condition(md, "Ready")
        if md and ready.get("reason") == "Ready" and md["status"].get("servedVersion") == version:
            return md
        return None

    md: dict = wait_for(f"{name} Ready on version {version}", check, timeout)  # type: ignore[type-arg]
    return md


@pytest.mark.parametrize("example", ["digits-mlp", "digits-cnn"])
def test_example_becomes_ready_with_an_optimized_model(
    example: str,
    control_plane: ControlPlane,
    kube: KubeClient,
    namespace: str,
    storage_root: Path,
    reference_models: Path,
    operator_log: OperatorProcess,
) -> None:
    make_claim(control_plane, storage_root, namespace, "models", reference_models)
    started = time.monotonic()
    control_plane.kubectl("apply", "-n", namespace, "-f", str(REPO / "examples" / f"{example}.yaml"))
    md = ready_on(kube, namespace, example, 1)
    elapsed = time.monotonic() - started
    result = md["status"]["optimization"]
    assert result["artifactFormat"] == "tflite-int8", result
    assert result["accuracyBefore"] - result["accuracyAfter"] <= 0.01, result
    assert result["optimizedBytes"] * 3 < result["originalBytes"], result
    printed = control_plane.kubectl("get", "modeldeployments", "-n", namespace, "-o", "wide").stdout
    print(
        f"\n{printed}\n{example}: kubectl apply -> Ready in {elapsed:.1f}s "
        f"(optimization {result.get('durationSeconds')}s)"
    )
    header, row = printed.splitlines()[:2]
    assert header.split()[:10] == [
        "NAME", "READY", "MODEL", "SERVING", "VERSION", "STATUS", "CANARY", "OPTIMIZED", "SIZE", "REPLICAS", "AGE"
    ]  # fmt: skip
    assert row.split()[1] == "True" and "int8," in row and "pruned" in row and "MB/" in row


def test_new_version_rolls_out_and_a_corrupt_model_keeps_the_old_one(
    control_plane: ControlPlane,
    kube: KubeClient,
    namespace: str,
    storage_root: Path,
    reference_models: Path,
    operator_log: OperatorProcess,
) -> None:
    folder = make_claim(control_plane, storage_root, namespace, "models", reference_models)
    control_plane.kubectl("apply", "-n", namespace, "-f", str(REPO / "examples" / "digits-mlp.yaml"))
    v1 = ready_on(kube, namespace, "digits-mlp", 1)

    # A new version: a new Job, then the Deployment rolls to the new artifact.
    control_plane.kubectl(
        "patch", "md", "digits-mlp", "-n", namespace, "--type=merge", "-p", '{"spec": {"model": {"version": 2}}}'
    )
    v2 = ready_on(kube, namespace, "digits-mlp", 2)
    assert v2["status"]["servedArtifact"] != v1["status"]["servedArtifact"]
    jobs = {j["metadata"]["name"] for j in kube.list("Job", namespace)}
    assert v2["status"]["optimization"]["jobName"] in jobs
    dep = kube.get("Deployment", namespace, "digits-mlp")
    assert (
        dep is not None and dep["metadata"]["annotations"]["modeldeploy.io/artifact"] == v2["status"]["servedArtifact"]
    )
    assert any(
        m["mountPath"] == "/models/digits-mlp/2"
        for m in dep["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    )

    # A corrupt model as version 3: the optimizer refuses it, version 2 keeps serving, status says why.
    (folder / "corrupt.keras").write_bytes(b"this is not a keras file")
    control_plane.kubectl(
        "patch",
        "md",
        "digits-mlp",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec": {"model": {"version": 3, "storageUri": "pvc://models/corrupt.keras"}}}',
    )
    md = wait_for(
        "the corrupt model to be refused",
        lambda: (
            (m := kube.get("ModelDeployment", namespace, "digits-mlp"))
            and condition(m, "Optimized").get("reason") == "ModelLoadFailed"
            and m
        ),
        timeout=180,
    )
    ready = condition(md, "Ready")
    assert ready["status"] == "True" and ready["reason"] == "ServingPreviousVersion", ready
    assert "version 3 failed" in ready["message"] and "ModelLoadFailed" in ready["message"]
    assert md["status"]["servedVersion"] == 2 and md["status"]["phase"] == "Degraded"
    dep = kube.get("Deployment", namespace, "digits-mlp")
    assert (
        dep is not None and dep["metadata"]["annotations"]["modeldeploy.io/artifact"] == v2["status"]["servedArtifact"]
    )
    assert list((folder / "modeldeploy" / "digits-mlp").glob("*/3")) == [], (
        "no partial artifact for the refused version"
    )
    described = control_plane.kubectl("describe", "md", "digits-mlp", "-n", namespace).stdout
    assert "ModelLoadFailed" in described, described
