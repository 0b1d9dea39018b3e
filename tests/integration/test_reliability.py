"""Reliability against the real control plane: refused children, drift the operator must repair or
leave alone, replicas under an HPA, and the reasons pods give when they cannot start.

Write counts come from the operator's own /metrics (requests by HTTP method): an object that
nothing changes must cost no write on a resync (every 5 s here).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from devcluster.controlplane import ControlPlane
from devcluster.stack import OperatorProcess, condition, make_claim, scrape, wait_for
from modeldeploy.k8s.client import KubeClient
from replica_watch import ReplicaWatch, replica_watch  # noqa: F401 (a fixture, used by name)

pytestmark = pytest.mark.integration

WRITES = ("POST", "PATCH", "PUT", "DELETE")


def md_manifest(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": {"name": "digits", "storageUri": "pvc://models/mlp.keras", "format": "keras", "version": 1},
        "optimization": {"quantization": "dynamic"},
        "autoscaling": {"enabled": False},
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


def wait_condition(
    kube: KubeClient, namespace: str, name: str, type_: str, reason: str, timeout: float = 180
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        md = get_md(kube, namespace, name)
        return md if condition(md, type_).get("reason") == reason else None

    found: dict[str, Any] = wait_for(f"{namespace}/{name} {type_} reason {reason}", check, timeout)
    return found


def wait_ready(kube: KubeClient, namespace: str, name: str, timeout: float = 180) -> dict[str, Any]:
    return wait_condition(kube, namespace, name, "Ready", "Ready", timeout)


def writes(operator: OperatorProcess) -> float:
    total = 0.0
    for line in scrape(operator.metrics_port).splitlines():
        if line.startswith("modeldeploy_api_requests_total{"):
            method = line.split('method="', 1)[1].split('"', 1)[0]
            if method in WRITES:
                total += float(line.rsplit(" ", 1)[1])
    return total


def assert_no_write_loop(operator: OperatorProcess, what: str) -> None:
    """Two windows in a row, each longer than a resync period, without a single write: other tests'
    objects may still settle first, an apply loop never stops."""
    quiet, before = 0, writes(operator)
    after = before
    for _ in range(10):
        time.sleep(6)
        after = writes(operator)
        quiet = quiet + 1 if after == before else 0
        if quiet == 2:
            return
        before = after
    raise AssertionError(f"{what}: the operator kept writing ({before} -> {after} writes)")


def warning_events(cp: ControlPlane, namespace: str, name: str, reason: str) -> list[dict[str, Any]]:
    events = json.loads(
        cp.kubectl(
            "get",
            "events",
            "-n",
            namespace,
            "--field-selector",
            f"involvedObject.name={name},reason={reason},type=Warning",
            "-o",
            "json",
        ).stdout
    )
    items: list[dict[str, Any]] = events["items"]
    return items


@pytest.fixture
def models_claim(control_plane: ControlPlane, storage_root: Path, namespace: str, reference_models: Path) -> Path:
    return make_claim(control_plane, storage_root, namespace, "models", reference_models)


# -- item 2: children the API server refuses ------------------------------------------------------------


def test_a_refused_child_is_a_condition_one_warning_and_no_retry_loop(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, models_claim: Path, operator_log: OperatorProcess
) -> None:
    apply(control_plane, md_manifest("refused", namespace))
    wait_ready(kube, namespace, "refused")
    # The schema passes tolerations through; the API server refuses the Deployment that carries this one.
    bad = md_manifest("refused", namespace, serving={"tolerations": [{"key": "gpu", "operator": "Sometimes"}]})
    apply(control_plane, bad)
    md = wait_condition(kube, namespace, "refused", "ServingReady", "ChildRejected", timeout=60)
    serving = condition(md, "ServingReady")
    assert serving["status"] == "False"
    assert "Deployment" in serving["message"] and "spec.template.spec.tolerations[0].operator" in serving["message"]
    # The old pods still serve: Ready says so, and says the new Deployment was refused.
    ready = condition(md, "Ready")
    assert ready["status"] == "True" and "refused" in ready["message"], ready
    assert condition(md, "Optimized")["status"] == "True"
    assert_no_write_loop(operator_log, "an unchanged refused Deployment")
    assert len(warning_events(control_plane, namespace, "refused", "ChildRejected")) == 1
    # Events carry eventTime: kubectl describe gives their age and lists them in order, the refusal last.
    described = control_plane.kubectl("describe", "md", "refused", "-n", namespace).stdout
    rows = [line.split() for line in described.split("Events:", 1)[1].splitlines()[3:] if line.strip()]
    assert all(row[2] != "<unknown>" for row in rows), described
    reasons = [row[1] for row in rows]
    # kubectl sorts by lastTimestamp, whole seconds: Events of the same second (Ready, then the refusal
    # of the next spec) may come in any order; seconds apart, they are in order.
    assert reasons.index("Optimizing") < reasons.index("ChildRejected"), described
    printed = control_plane.kubectl("get", "md", "refused", "-n", namespace).stdout
    assert "Degraded: v1 failed (ChildRejected)" in printed, printed
    log = operator_log.log()
    assert "Traceback" not in log, log[-3000:]
    # Fixing the spec clears it.
    apply(control_plane, md_manifest("refused", namespace))
    wait_ready(kube, namespace, "refused", timeout=60)


# -- item 3: drift ---------------------------------------------------------------------------------------


def test_service_port_edits_are_repaired_and_other_managers_fields_left_alone(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, models_claim: Path, operator_log: OperatorProcess
) -> None:
    cp = control_plane
    # Quantities in spellings the API server rewrites (0.5 -> 500m, 1000m -> 1) must not look drifted.
    resources = {"requests": {"cpu": "0.5", "memory": "512Mi"}, "limits": {"cpu": "1000m", "memory": "1Gi"}}
    apply(cp, md_manifest("ports", namespace, serving={"resources": resources}))
    wait_ready(kube, namespace, "ports")
    assert_no_write_loop(operator_log, "quantities in another spelling")

    # A user renumbers our REST port: apply alone would fail on the duplicate name "http" forever.
    service = kube.get("Service", namespace, "ports")
    assert service is not None
    index = next(i for i, p in enumerate(service["spec"]["ports"]) if p["name"] == "http")
    cp.kubectl(
        "patch",
        "service",
        "ports",
        "-n",
        namespace,
        "--type=json",
        "-p",
        json.dumps([{"op": "replace", "path": f"/spec/ports/{index}/port", "value": 9000}]),
    )

    def repaired() -> bool:
        ports = (kube.get("Service", namespace, "ports") or {}).get("spec", {}).get("ports", [])
        return {(p["name"], p["port"]) for p in ports} == {("http", 8501), ("grpc", 8500)}

    wait_for("the Service's ports repaired", repaired, timeout=20)

    # Another manager adds a port of its own: it stays, and the operator does not fight it.
    extra = {"spec": {"ports": [{"name": "metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP"}]}}
    cp.kubectl(
        "patch", "service", "ports", "-n", namespace, "--type=strategic", "--field-manager=sidecar-injector",
        "-p", json.dumps(extra),
    )  # fmt: skip
    assert_no_write_loop(operator_log, "another manager's extra port")
    ports = (kube.get("Service", namespace, "ports") or {})["spec"]["ports"]
    assert {p["name"] for p in ports} == {"http", "grpc", "metrics"}, ports
    # The CPU request spelt by another manager in yet another way is no drift either.
    cp.kubectl(
        "patch", "deployment", "ports", "-n", namespace, "--type=json", "--field-manager=tuner",
        "-p", json.dumps([{"op": "replace", "path": "/spec/template/spec/containers/0/resources/requests/cpu",
                           "value": "0.5"}]),
    )  # fmt: skip
    assert_no_write_loop(operator_log, "a quantity rewritten in another spelling")
    failures = [line for line in operator_log.log().splitlines() if f"{namespace}/ports: reconcile failed" in line]
    assert failures == [], failures


# -- item 4: replicas under an HPA ---------------------------------------------------------------------


def test_a_rollout_under_an_hpa_never_drops_below_min_replicas(
    control_plane: ControlPlane,
    kube: KubeClient,
    namespace: str,
    models_claim: Path,
    operator_log: OperatorProcess,
    replica_watch: ReplicaWatch,  # noqa: F811 (the imported fixture, by name)
) -> None:
    seen, start = replica_watch
    start(namespace, "hpa")
    auto = {"enabled": True, "minReplicas": 2, "maxReplicas": 4}
    apply(control_plane, md_manifest("hpa", namespace, autoscaling=auto))
    wait_ready(kube, namespace, "hpa")
    wait_for("the HPA's minimum", lambda: (kube.get("Deployment", namespace, "hpa") or {})["spec"]["replicas"] == 2)
    model = {"name": "digits", "storageUri": "pvc://models/mlp.keras", "format": "keras", "version": 2}
    apply(control_plane, md_manifest("hpa", namespace, autoscaling=auto, model=model))

    def served_2() -> bool:
        md = get_md(kube, namespace, "hpa") or {}
        return condition(md, "Ready").get("reason") == "Ready" and md["status"].get("servedVersion") == 2

    wait_for("version 2 served", served_2, timeout=180)
    time.sleep(2)
    assert seen and min(seen) >= 2, f"spec.replicas seen during the rollout: {seen}"

    # kubectl scale md is refused while the HPA owns replicas, with a message saying what to do.
    scaled = control_plane.kubectl("scale", "md", "hpa", "-n", namespace, "--replicas=3", check=False)
    assert scaled.returncode != 0 and "autoscaling" in scaled.stderr, scaled.stderr
    stored = control_plane.kubectl("get", "md", "hpa", "-n", namespace, "-o", "jsonpath={.spec.serving.replicas}")
    assert stored.stdout == "1"


# -- item 8: why serving pods do not start -------------------------------------------------------------


def test_unschedulable_and_unpullable_serving_pods_say_why(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, models_claim: Path, operator_log: OperatorProcess
) -> None:
    # The node selector holds for the optimization Job's pod too: it is the first that cannot start.
    apply(control_plane, md_manifest("nowhere", namespace, serving={"nodeSelector": {"gpu": "h100"}}))
    md = wait_condition(kube, namespace, "nowhere", "Ready", "Unschedulable")
    assert "didn't match Pod's node affinity/selector" in condition(md, "Ready")["message"]
    assert condition(md, "Optimized")["reason"] == "Unschedulable" and md["status"]["phase"] == "Pending"

    # Neither kwok nor the executor touches a pod with this label's value: the test is its kubelet.
    serving = {"image": "registry.invalid/tfserving:none", "podLabels": {"modeldeploy.io/local-kubelet": "off"}}
    apply(control_plane, md_manifest("nopull", namespace, serving=serving))

    def pod() -> dict[str, Any] | None:
        pods = kube.list("Pod", namespace, "modeldeploy.io/model-deployment=nopull,app.kubernetes.io/component=serving")
        return next((p for p in pods if p["spec"].get("nodeName")), None)

    found = wait_for("a scheduled serving pod", pod, timeout=180)
    status = {
        "status": {
            "phase": "Pending",
            "containerStatuses": [
                {
                    "name": "tfserving",
                    "image": serving["image"],
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {
                        "waiting": {
                            "reason": "ImagePullBackOff",
                            "message": 'Back-off pulling image "registry.invalid/tfserving:none"',
                        }
                    },
                }
            ],
        }
    }
    control_plane.kubectl(
        "patch", "pod", found["metadata"]["name"], "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps(status),
    )  # fmt: skip
    md = wait_condition(kube, namespace, "nopull", "ServingReady", "ImagePullBackOff", timeout=60)
    assert "registry.invalid/tfserving:none" in condition(md, "ServingReady")["message"]


def test_a_pending_claim_is_named(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, operator_log: OperatorProcess
) -> None:
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "models", "namespace": namespace},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "no-such-class",
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    apply(control_plane, claim)
    apply(control_plane, md_manifest("unbound", namespace))
    md = wait_condition(kube, namespace, "unbound", "Ready", "PersistentVolumeClaimPending", timeout=60)
    assert "models" in condition(md, "Ready")["message"]
    assert "bound" in condition(md, "Ready")["message"]
