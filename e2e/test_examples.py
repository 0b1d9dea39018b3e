"""Whole-stack scenarios a user goes through, with the shipped examples as they are.

`kubectl apply -f examples/...` -> the optimizer really prunes and quantizes -> `kubectl get
modeldeployments` says READY True with the optimized size; a new model version -> a new Job and a
rolling update; a corrupt model -> the old version keeps serving and the status says why.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from devcluster.controlplane import ControlPlane
from devcluster.metrics_exporter import MetricsExporter
from devcluster.prometheus import Prometheus
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
    assert header.split()[:11] == [
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


def _patch(control_plane: ControlPlane, namespace: str, name: str, patch: str) -> None:
    control_plane.kubectl("patch", "md", name, "-n", namespace, "--type=merge", "-p", patch)


def _rollout(kube: KubeClient, namespace: str, name: str, **fields: object) -> dict:  # type: ignore[type-arg]
    def check() -> dict | None:  # type: ignore[type-arg]
        md = kube.get("ModelDeployment", namespace, name)
        rollout = ((md or {}).get("status") or {}).get("rollout") or {}
        return md if rollout and all(rollout.get(k) == v for k, v in fields.items()) else None

    md: dict = wait_for(f"{name}: rollout {fields}", check, 300)  # type: ignore[type-arg]
    return md


def test_the_canary_example_aborts_a_version_it_cannot_analyse_and_keeps_the_stable_one(
    control_plane: ControlPlane,
    kube: KubeClient,
    namespace: str,
    storage_root: Path,
    reference_models: Path,
    operator_log: OperatorProcess,
) -> None:
    """examples/digits-mlp-canary.yaml as shipped: its Prometheus (prometheus.monitoring) does not exist
    here, so every measurement of the version 2 canary is an error; after failureLimit (1) the canary is
    removed and version 1 keeps serving, untouched."""
    make_claim(control_plane, storage_root, namespace, "models", reference_models)
    name = "digits-mlp-canary"
    control_plane.kubectl("apply", "-n", namespace, "-f", str(REPO / "examples" / f"{name}.yaml"))
    v1 = ready_on(kube, namespace, name, 1)
    assert "rollout" not in v1["status"], "the first version is deployed directly, without a canary"
    stable_before = kube.get("Deployment", namespace, name)
    assert stable_before is not None

    _patch(control_plane, namespace, name, '{"spec": {"model": {"version": 2}}}')
    # 4 stable pods: 10 % asks for one canary pod, which is 20 % of the pods (status says so).
    progressing = _rollout(kube, namespace, name, phase="Progressing", version=2, canaryReplicas=1)
    assert progressing["status"]["servedVersion"] == 1
    md = _rollout(kube, namespace, name, phase="Aborted", version=2)
    rollout = md["status"]["rollout"]
    assert "error-ratio" in rollout["message"] and "prometheus.monitoring" in rollout["message"], rollout
    ready = condition(md, "Ready")
    assert ready["status"] == "True" and ready["reason"] == "RolloutAborted", ready
    assert md["status"]["phase"] == "Degraded" and md["status"]["servedVersion"] == 1
    wait_for("the canary Deployment to go", lambda: kube.get("Deployment", namespace, f"{name}-canary") is None, 60)
    stable = kube.get("Deployment", namespace, name)
    assert stable is not None
    assert stable["metadata"]["generation"] == stable_before["metadata"]["generation"], "the stable one was touched"
    outcomes = [(h["version"], h["outcome"]) for h in md["status"]["history"]]
    assert outcomes == [(2, "Aborted"), (1, "Promoted")], outcomes
    warnings = control_plane.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "reason=RolloutAborted", "-o", "name"
    ).stdout.split()
    assert len(warnings) == 1, warnings
    printed = control_plane.kubectl("get", "md", name, "-n", namespace).stdout
    print(f"\n{printed}\n{control_plane.kubectl('describe', 'md', name, '-n', namespace).stdout}")


def test_the_canary_example_promotes_a_good_version_step_by_step(
    control_plane: ControlPlane,
    kube: KubeClient,
    namespace: str,
    storage_root: Path,
    reference_models: Path,
    operator_log: OperatorProcess,
    prometheus: Prometheus,
    metrics_exporter: MetricsExporter,
) -> None:
    """The shipped canary example with two changes a test needs: short pauses, and the URL of a real
    Prometheus that scrapes TF Serving's metric names (a stand-in exporter, 0 errors). Version 2 is
    optimized, goes through both steps and is promoted; the history has both versions."""
    make_claim(control_plane, storage_root, namespace, "models", reference_models)
    name = "digits-mlp-canary"
    control_plane.kubectl("apply", "-n", namespace, "-f", str(REPO / "examples" / f"{name}.yaml"))
    ready_on(kube, namespace, name, 1)
    # The example's query selects the canary's series by namespace and track label, as Prometheus's
    # Kubernetes relabelling names them; the stand-in publishes exactly those.
    metrics_exporter.metrics.simulate_traffic("digits-mlp", ok=10, errors=0)
    canary_series = {"namespace": namespace, "modeldeploy_io_model_deployment": name, "modeldeploy_io_track": "canary"}
    prometheus.add_target(metrics_exporter.address, canary_series)
    patch = {
        "spec": {
            "model": {"version": 2},
            "rollout": {
                "steps": [{"weight": 10, "pause": "3s"}, {"weight": 50, "pause": "3s"}],
                "analysis": {"prometheus": {"url": prometheus.url, "intervalSeconds": 5}},
            },
        }
    }
    control_plane.kubectl("patch", "md", name, "-n", namespace, "--type=merge", "-p", json.dumps(patch))
    step2 = _rollout(kube, namespace, name, phase="Progressing", version=2, step=1)
    assert step2["status"]["rollout"]["canaryReplicas"] == 4, step2["status"]["rollout"]  # 50 %: 4 next to 4
    _rollout(kube, namespace, name, phase="Promoted", version=2)
    md = ready_on(kube, namespace, name, 2)  # once the old stable pods are gone too
    assert md["status"]["rollout"]["phase"] == "Promoted"
    [check] = [r for r in md["status"]["rollout"]["analysis"] if r["name"] == "error-ratio"]
    assert check["passed"] and check["value"] == 0, check
    outcomes = [(h["version"], h["outcome"]) for h in md["status"]["history"]]
    assert outcomes == [(2, "Promoted"), (1, "Superseded")], outcomes
    wait_for("the canary Deployment to go", lambda: kube.get("Deployment", namespace, f"{name}-canary") is None, 60)
    stable = kube.get("Deployment", namespace, name)
    assert stable is not None and stable["metadata"]["annotations"]["modeldeploy.io/model-version"] == "2"
