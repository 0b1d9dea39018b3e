"""The operator against the real control plane: optimization Job -> TF Serving children -> status.

The optimizer really runs (the executor plays the kubelet for its pod); serving pods are made Ready
by kwok. Each test has its own namespace and claim.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from devcluster.controlplane import ControlPlane
from devcluster.stack import OperatorProcess, condition, make_claim, scrape, wait_for
from modeldeploy.k8s.client import KubeClient

pytestmark = pytest.mark.integration


def md_manifest(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": {"name": "digits", "storageUri": "pvc://models/mlp.keras", "format": "keras", "version": 1},
        "optimization": {
            "quantization": "dynamic",
            "evaluation": {"datasetUri": "pvc://models/mlp-eval.npz", "maxAccuracyDrop": 0.05},
        },
    }
    for key, value in spec.items():
        body[key] = {**body.get(key, {}), **value} if isinstance(value, dict) else value
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


def apply(cp: ControlPlane, manifest: dict[str, Any]) -> None:
    cp.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def get_md(kube: KubeClient, namespace: str, name: str) -> dict[str, Any] | None:
    return kube.get("ModelDeployment", namespace, name)


def wait_ready(kube: KubeClient, namespace: str, name: str, timeout: float = 180) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        md = get_md(kube, namespace, name)
        return (
            md
            if condition(md, "Ready").get("status") == "True" and condition(md, "Ready").get("reason") == "Ready"
            else None
        )

    md: dict[str, Any] = wait_for(f"ModelDeployment {namespace}/{name} Ready", ready, timeout)
    return md


@pytest.fixture
def models_claim(control_plane: ControlPlane, storage_root: Path, namespace: str, reference_models: Path) -> Path:
    return make_claim(control_plane, storage_root, namespace, "models", reference_models)


def test_model_deployment_goes_from_optimization_to_ready(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, models_claim: Path, operator_log: OperatorProcess
) -> None:
    started = time.monotonic()
    apply(control_plane, md_manifest("digits", namespace))
    md = wait_ready(kube, namespace, "digits")
    elapsed = time.monotonic() - started
    status = md["status"]
    assert status["observedGeneration"] == md["metadata"]["generation"]
    assert status["phase"] == "Ready" and status["servedVersion"] == 1
    result = status["optimization"]
    assert result["optimizedBytes"] < result["originalBytes"], result
    assert result["artifactFormat"].startswith("tflite"), result
    assert abs(result["accuracyBefore"] - result["accuracyAfter"]) <= 0.05
    # The worst class travels from the optimizer's termination message to status.
    assert result["metric"] == "accuracy" and result["worstSlice"]["name"].startswith("class="), result
    assert result["worstSlice"]["examples"] >= 30 and result["worstSlice"]["after"] <= 1.0, result
    assert status["optimizedSummary"] == "dynamic" and "MB/" in status["sizeSummary"]
    assert status["url"] == f"http://digits.{namespace}.svc:8501/v1/models/digits"
    # the artifact is really where the Deployment mounts it, in TF Serving's layout
    version_dir = models_claim / "modeldeploy" / "digits" / status["servedArtifact"] / "1"
    assert (version_dir / "model.tflite").is_file() and (version_dir / "saved_model.pb").is_file()
    dep = kube.get("Deployment", namespace, "digits")
    assert dep is not None
    mount = next(
        m
        for m in dep["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        if m["mountPath"] == "/models/digits/1"
    )
    assert mount["subPath"] == f"modeldeploy/digits/{status['servedArtifact']}/1"
    for kind in ("Deployment", "Service", "ConfigMap", "HorizontalPodAutoscaler", "Job"):
        for child in kube.list(kind, namespace, "modeldeploy.io/model-deployment=digits"):
            assert child["metadata"]["ownerReferences"][0]["uid"] == md["metadata"]["uid"]
    printed = control_plane.kubectl("get", "modeldeployments", "-n", namespace).stdout
    assert "True" in printed and "dynamic" in printed, printed
    events = control_plane.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=digits"
    ).stdout
    assert "Optimized" in events and "Ready" in events, events
    print(f"\nkubectl apply -> Ready: {elapsed:.1f}s")


def api_requests(operator: OperatorProcess) -> dict[str, float]:
    """The operator's own count of its API requests by HTTP method (its /metrics)."""
    counts: dict[str, float] = {}
    for line in scrape(operator.metrics_port).splitlines():
        if line.startswith("modeldeploy_api_requests_total{"):
            method = line.split('method="', 1)[1].split('"', 1)[0]
            counts[method] = float(line.rsplit(" ", 1)[1])
    return counts


def test_an_idle_operator_sends_no_request_through_its_resyncs(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, models_claim: Path, operator_log: OperatorProcess
) -> None:
    """Reconciles read the cache: once nothing changes, a resync (every 5 s here) costs no request."""
    apply(control_plane, md_manifest("quiet", namespace))
    wait_ready(kube, namespace, "quiet")
    # Other tests' objects may still settle; then two windows in a row, each longer than a resync
    # period, must see no request at all (GET, LIST or write).
    quiet, before = 0, api_requests(operator_log)
    for _ in range(12):
        time.sleep(6)
        after = api_requests(operator_log)
        quiet = quiet + 1 if after == before else 0
        if quiet == 2:
            break
        before = after
    assert quiet == 2, f"the operator kept sending requests: {before} -> {after}"
    print(f"\nrequests so far, all objects: {after}")


def test_drift_is_restored_and_unwanted_children_removed(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, models_claim: Path, operator_log: OperatorProcess
) -> None:
    apply(control_plane, md_manifest("drift", namespace, autoscaling={"enabled": True, "maxReplicas": 3}))
    wait_ready(kube, namespace, "drift")
    image = kube.get("Deployment", namespace, "drift")["spec"]["template"]["spec"]["containers"][0]["image"]  # type: ignore[index]

    started = time.monotonic()
    control_plane.kubectl("delete", "service", "drift", "-n", namespace)
    wait_for("the Service to come back", lambda: kube.get("Service", namespace, "drift"), timeout=10)
    service_back = time.monotonic() - started

    started = time.monotonic()
    control_plane.kubectl("set", "image", "deployment/drift", "tfserving=evil/image:1", "-n", namespace)
    wait_for(
        "the Deployment's image to be restored",
        lambda: (
            (kube.get("Deployment", namespace, "drift") or {})["spec"]["template"]["spec"]["containers"][0]["image"]
            == image
        ),
        timeout=10,
    )
    image_back = time.monotonic() - started
    print(f"\ndrift restored: deleted Service {service_back:.2f}s, edited Deployment {image_back:.2f}s")

    # Autoscaling off: the HPA goes, replicas come from the spec and kubectl scale works.
    control_plane.kubectl(
        "patch",
        "md",
        "drift",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec": {"autoscaling": {"enabled": false}, "serving": {"replicas": 1}}}',
    )
    wait_for(
        "the HPA to be removed", lambda: kube.get("HorizontalPodAutoscaler", namespace, "drift") is None, timeout=20
    )
    control_plane.kubectl("scale", "md", "drift", "-n", namespace, "--replicas=3")
    wait_for(
        "3 replicas",
        lambda: (kube.get("Deployment", namespace, "drift") or {}).get("spec", {}).get("replicas") == 3,
        timeout=20,
    )
    wait_for("a PDB for 3 replicas", lambda: kube.get("PodDisruptionBudget", namespace, "drift"), timeout=20)
    wait_for(
        "readyReplicas 3 in status",
        lambda: (get_md(kube, namespace, "drift") or {}).get("status", {}).get("readyReplicas") == 3,
        timeout=60,
    )


def test_replicas_belong_to_the_hpa(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, models_claim: Path, operator_log: OperatorProcess
) -> None:
    apply(
        control_plane,
        md_manifest("scaled", namespace, autoscaling={"enabled": True, "minReplicas": 1, "maxReplicas": 5}),
    )
    wait_ready(kube, namespace, "scaled")
    # What the HPA controller does: set replicas through the scale subresource, as another manager.
    control_plane.kubectl("scale", "deployment", "scaled", "-n", namespace, "--replicas=4")
    time.sleep(7)  # the Deployment's watch event and a resync (every 5 s) have both been reconciled
    dep = kube.get("Deployment", namespace, "scaled")
    assert dep is not None and dep["spec"]["replicas"] == 4, "the operator took replicas back from the HPA"


def test_missing_claim_gives_a_clear_reason_and_no_children(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, operator_log: OperatorProcess
) -> None:
    apply(control_plane, md_manifest("noclaim", namespace))
    md = wait_for(
        "Ready=False with a reason",
        lambda: (m := get_md(kube, namespace, "noclaim")) and condition(m, "Ready").get("reason") and m,
    )
    ready = condition(md, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "PersistentVolumeClaimNotFound", ready
    assert "models" in ready["message"]
    assert kube.list("Job", namespace) == [] and kube.list("Deployment", namespace) == []


def test_invalid_spec_the_schema_cannot_catch(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, models_claim: Path, operator_log: OperatorProcess
) -> None:
    # CEL accepts it (the last size equals maxBatchSize); the Python model also wants ascending sizes.
    apply(
        control_plane,
        md_manifest(
            "unsorted",
            namespace,
            serving={"batching": {"enabled": True, "maxBatchSize": 32, "allowedBatchSizes": [16, 8, 32]}},
        ),
    )
    md = wait_for(
        "Ready=False InvalidSpec",
        lambda: (
            (m := get_md(kube, namespace, "unsorted")) and condition(m, "Ready").get("reason") == "InvalidSpec" and m
        ),
    )
    assert "allowedBatchSizes must be strictly ascending" in condition(md, "Ready")["message"]
    assert kube.list("Job", namespace) == []


def test_missing_secret_is_reported_without_a_crash_loop(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, models_claim: Path, operator_log: OperatorProcess
) -> None:
    apply(
        control_plane,
        md_manifest(
            "nosecret",
            namespace,
            model={"name": "digits", "storageUri": "pvc://models/mlp.keras", "credentialsSecret": "s3-credentials"},
        ),
    )
    md = wait_for(
        "the missing Secret in Ready",
        lambda: (
            (m := get_md(kube, namespace, "nosecret"))
            and "s3-credentials" in condition(m, "Ready").get("message", "")
            and m
        ),
        timeout=60,
    )
    assert condition(md, "Ready")["status"] == "False"
    assert "CreateContainerConfigError" in condition(md, "Optimized")["message"]
    assert operator_log.popen.poll() is None, "the operator must keep running"
    # Creating the Secret lets the same Job go on: nothing to restart by hand.
    control_plane.kubectl(
        "create", "secret", "generic", "s3-credentials", "-n", namespace, "--from-literal=AWS_ACCESS_KEY_ID=x"
    )
    wait_ready(kube, namespace, "nosecret")


def test_deletion_collects_children_without_a_finalizer(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, models_claim: Path, operator_log: OperatorProcess
) -> None:
    apply(control_plane, md_manifest("gone", namespace))
    md = wait_ready(kube, namespace, "gone")
    assert not md["metadata"].get("finalizers"), "no finalizer: deletion never waits for the operator"
    control_plane.kubectl("delete", "md", "gone", "-n", namespace, "--timeout=20s")
    wait_for(
        "garbage collection of the children",
        lambda: (
            not kube.list("Deployment", namespace)
            and not kube.list("Service", namespace)
            # what remains is the artifact cleanup, owned by nothing so that it outlives the object
            and all(not j["metadata"].get("ownerReferences") for j in kube.list("Job", namespace))
        ),
        timeout=60,
    )
    (cleanup,) = wait_for("the artifact cleanup Job", lambda: kube.list("Job", namespace), timeout=30)
    assert cleanup["metadata"]["name"].startswith("gone-cleanup-") and cleanup["spec"]["ttlSecondsAfterFinished"]


def test_optimization_off_serves_the_original_savedmodel(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, models_claim: Path, operator_log: OperatorProcess
) -> None:
    # A SavedModel on the claim: the optimizer's plain conversion, as a user would export it.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "modeldeploy.cli",
            "optimize",
            f"--source=file://{models_claim / 'mlp.keras'}",
            f"--output={models_claim / 'exported'}",
            "--version=1",
            "--quantization=none",
            "--termination-message-path=",
        ],
        check=True,
        capture_output=True,
        timeout=240,
    )
    apply(
        control_plane,
        md_manifest(
            "asis",
            namespace,
            model={"name": "digits", "storageUri": "pvc://models/exported/1", "format": "savedmodel"},
            optimization={"enabled": False},
        ),
    )
    md = wait_ready(kube, namespace, "asis")
    assert condition(md, "Optimized")["reason"] == "NotRequired"
    assert kube.list("Job", namespace) == [], "a SavedModel served as is needs no Job"
    dep = kube.get("Deployment", namespace, "asis")
    assert dep is not None
    mounts = dep["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "pvc-models", "mountPath": "/models/digits/1", "readOnly": True, "subPath": "exported/1"} in mounts
    assert md["status"]["optimizedSummary"] == "none (served as is)"


def test_a_users_object_with_a_childs_name_is_never_adopted_nor_deleted(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, models_claim: Path, operator_log: OperatorProcess
) -> None:
    control_plane.kubectl("create", "service", "clusterip", "taken", "--tcp=80:8080", "-n", namespace)
    before = kube.get("Service", namespace, "taken")
    assert before is not None
    apply(control_plane, md_manifest("taken", namespace))

    def conflict() -> dict[str, Any] | None:
        md = get_md(kube, namespace, "taken")
        return md if condition(md, "Ready").get("reason") == "NameConflict" else None

    md = wait_for("Ready=False NameConflict", conflict, timeout=180)
    assert "Service" in condition(md, "Ready")["message"] and md["status"]["phase"] == "Failed"
    assert kube.get("Deployment", namespace, "taken") is not None, "the other children exist"
    after = kube.get("Service", namespace, "taken")
    assert after is not None and after["spec"]["ports"] == before["spec"]["ports"]
    assert not after["metadata"].get("ownerReferences"), "adopted: deleting the ModelDeployment would delete it"
    assert "modeldeploy.io/model-deployment" not in after["metadata"].get("labels", {})
    events = control_plane.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=taken,reason=NameConflict"
    ).stdout
    assert "NameConflict" in events, events

    control_plane.kubectl("delete", "md", "taken", "-n", namespace, "--timeout=20s")
    wait_for("the Deployment collected", lambda: kube.get("Deployment", namespace, "taken") is None, timeout=60)
    assert kube.get("Service", namespace, "taken") is not None, "the user's Service survives"
