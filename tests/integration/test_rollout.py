"""Canary rollouts (issue 12) against the real control plane: kube-apiserver, the Deployment
controller and the scheduler, with kwok making scheduled pods Ready.

A SavedModel served as is (no optimization Job) keeps every rollout to seconds: a new model version
is a new revision at once. What is checked is what a cluster admin sees: the canary Deployment's
replicas per step, the CANARY column of `kubectl get md`, status.rollout, Events, and a stable
Deployment that nothing touches until promotion (its generation).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chart_support import sole_operator
from devcluster.controlplane import ControlPlane
from devcluster.metrics_exporter import REQUEST_COUNT, MetricsExporter
from devcluster.prometheus import Prometheus
from devcluster.stack import OperatorProcess, condition, make_claim, wait_for
from modeldeploy.k8s.client import KubeClient

pytestmark = pytest.mark.integration
__all__ = ["sole_operator"]  # a fixture the restart test uses


def md_manifest(name: str, namespace: str, version: int = 1, **rollout: Any) -> dict[str, Any]:
    serving: dict[str, Any] = rollout.pop("serving", {})
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"name": name, "storageUri": f"pvc://models/{name}", "format": "savedmodel", "version": version},
            "optimization": {"enabled": False},
            "autoscaling": {"enabled": False},
            "serving": {"replicas": 3, **serving},
            "rollout": {
                "strategy": "Canary",
                "steps": [{"weight": 25, "pause": "3s"}, {"weight": 50, "pause": "3s"}],
                "progressDeadlineSeconds": 60,
                **rollout,
            },
        },
    }


def apply(cp: ControlPlane, manifest: dict[str, Any]) -> None:
    cp.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def rollout_of(kube: KubeClient, namespace: str, name: str) -> dict[str, Any]:
    md = kube.get("ModelDeployment", namespace, name) or {}
    found: dict[str, Any] = (md.get("status") or {}).get("rollout") or {}
    return found


def wait_rollout(
    kube: KubeClient, namespace: str, name: str, what: str, timeout: float = 120, **fields: Any
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        rollout = rollout_of(kube, namespace, name)
        return rollout if rollout and all(rollout.get(k) == v for k, v in fields.items()) else None

    found: dict[str, Any] = wait_for(f"{namespace}/{name}: {what}", check, timeout)
    return found


def wait_ready(kube: KubeClient, namespace: str, name: str, timeout: float = 120) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        md = kube.get("ModelDeployment", namespace, name)
        return md if condition(md, "Ready").get("reason") == "Ready" else None

    found: dict[str, Any] = wait_for(f"{namespace}/{name} Ready", check, timeout)
    return found


def columns(cp: ControlPlane, namespace: str, name: str) -> dict[str, str]:
    """`kubectl get md NAME` as column -> value (values have no spaces except STATUS's, kept last-split)."""
    header, row = cp.kubectl("get", "md", name, "-n", namespace).stdout.strip().splitlines()[:2]
    # Columns are aligned: cut the row where each header starts.
    starts = [i for i, ch in enumerate(header) if ch != " " and (i == 0 or header[i - 1] == " ")]
    bounds = [*starts[1:], len(row) + 1]
    return {header[s:e].strip(): row[s:e].strip() for s, e in zip(starts, bounds, strict=True)}


def deployment(kube: KubeClient, namespace: str, name: str) -> dict[str, Any] | None:
    return kube.get("Deployment", namespace, name)


def events(cp: ControlPlane, namespace: str, name: str, reason: str) -> list[str]:
    out = json.loads(
        cp.kubectl(
            "get",
            "events",
            "-n",
            namespace,
            "--field-selector",
            f"involvedObject.name={name},reason={reason}",
            "-o",
            "json",
        ).stdout
    )
    return [e.get("message") or e.get("note") or "" for e in out["items"]]


@pytest.fixture
def claim(control_plane: ControlPlane, storage_root: Path, namespace: str) -> Path:
    # kwok runs no container: the SavedModel folder need not exist for the pods to become Ready.
    return make_claim(control_plane, storage_root, namespace, "models")


def test_a_canary_is_promoted_through_two_steps(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, claim: Path, operator_log: OperatorProcess
) -> None:
    cp, name = control_plane, "promoted"
    apply(cp, md_manifest(name, namespace))
    wait_ready(kube, namespace, name)
    stable = deployment(kube, namespace, name)
    assert stable is not None
    assert stable["spec"]["template"]["metadata"]["labels"]["modeldeploy.io/track"] == "stable"
    generation = stable["metadata"]["generation"]
    assert columns(cp, namespace, name)["CANARY"] == "-"

    apply(cp, md_manifest(name, namespace, version=2))
    seen: set[tuple[int, str, int]] = set()  # (step, CANARY column, canary replicas)

    def promoted() -> bool:
        rollout = rollout_of(kube, namespace, name)
        if rollout.get("phase") == "Progressing":
            canary = deployment(kube, namespace, f"{name}-canary")
            replicas = canary["spec"]["replicas"] if canary else -1
            seen.add((rollout["step"], columns(cp, namespace, name)["CANARY"], replicas))
            held = deployment(kube, namespace, name)
            assert held is not None
            if held["metadata"]["generation"] != generation:
                # Only the promotion may touch it: its status write follows the apply in the same pass.
                time.sleep(2)
                phase = rollout_of(kube, namespace, name).get("phase")
                assert phase in ("Promoting", "Promoted"), f"the stable was touched during the canary ({phase})"
        return rollout.get("phase") == "Promoted"

    wait_for("promotion", promoted, timeout=180)
    # 3 stable pods: one canary pod is 25% of four, three are 50% of six.
    assert (0, "25%", 1) in seen and (1, "50%", 3) in seen, seen
    md = wait_ready(kube, namespace, name)
    rollout = md["status"]["rollout"]
    assert rollout["version"] == 2 and rollout["step"] == 2 and rollout["finishedAt"]
    assert md["status"]["servedVersion"] == 2 and md["status"]["canary"] == "-"
    wait_for("the canary Deployment to go", lambda: deployment(kube, namespace, f"{name}-canary") is None, 60)
    stable = deployment(kube, namespace, name)
    assert stable is not None and stable["metadata"]["annotations"]["modeldeploy.io/revision"] == rollout["revision"]
    assert stable["metadata"]["annotations"]["modeldeploy.io/model-version"] == "2"
    progressing = events(cp, namespace, name, "CanaryProgressing")
    assert any(m.startswith("step 1/2: canary v2 at 25% (achieved 25%)") for m in progressing), progressing
    assert any(m.startswith("step 2/2: canary v2 at 50% (achieved 50%)") for m in progressing), progressing
    assert events(cp, namespace, name, "Promoted")


def test_a_canary_that_cannot_become_ready_is_aborted_and_the_stable_untouched(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, claim: Path, operator_log: OperatorProcess
) -> None:
    cp, name = control_plane, "aborted"
    apply(cp, md_manifest(name, namespace, progressDeadlineSeconds=30))
    wait_ready(kube, namespace, name)
    stable = deployment(kube, namespace, name)
    assert stable is not None
    # A new revision whose pods no node can take: the canary never becomes ready.
    apply(cp, md_manifest(name, namespace, progressDeadlineSeconds=30, serving={"nodeSelector": {"gpu": "h100"}}))
    wait_rollout(kube, namespace, name, "a canary", phase="Progressing")
    assert columns(cp, namespace, name)["CANARY"] == "0%"
    rollout = wait_rollout(kube, namespace, name, "the abort", timeout=90, phase="Aborted")
    assert "check readiness: 0/1 canary pods ready within progressDeadlineSeconds (30s)" in rollout["message"]
    md = kube.get("ModelDeployment", namespace, name)
    ready = condition(md, "Ready")
    assert ready["status"] == "True" and ready["reason"] == "RolloutAborted", ready
    assert md is not None and md["status"]["phase"] == "Degraded" and md["status"]["canary"] == "-"
    after = deployment(kube, namespace, name)
    assert after is not None
    assert after["metadata"]["generation"] == stable["metadata"]["generation"]
    assert after["spec"]["template"] == stable["spec"]["template"]
    wait_for("the canary Deployment to go", lambda: deployment(kube, namespace, f"{name}-canary") is None, 60)
    warnings = events(cp, namespace, name, "RolloutAborted")
    assert any("check readiness" in w for w in warnings), warnings
    cols = columns(cp, namespace, name)
    assert cols["CANARY"] == "-" and cols["STATUS"].startswith("Degraded"), cols
    # `kubectl describe` tells the story: the rollout's status, the condition and the Warning.
    described = cp.kubectl("describe", "md", name, "-n", namespace).stdout
    print(described)
    for pattern in (r"Rollout:", r"Phase:\s+Aborted", r"RolloutAborted", r"check readiness", r"Stable Revision:"):
        assert re.search(pattern, described), pattern
    assert re.search(r"CanaryProgressing\s.*canary rollout of version 1 \(revision \w+\) started", described)


def test_a_canary_whose_container_restarts_is_aborted(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, claim: Path, operator_log: OperatorProcess
) -> None:
    """The kubelet reports a restart of a canary pod's TF Serving container (here written through the
    pods/status subresource, as a kubelet writes it): with maxRestarts 0 the canary is aborted."""
    cp, name = control_plane, "restarting"
    steps = [{"weight": 25, "pause": "10m"}]
    apply(cp, md_manifest(name, namespace, steps=steps))
    wait_ready(kube, namespace, name)
    apply(cp, md_manifest(name, namespace, version=2, steps=steps))
    wait_rollout(kube, namespace, name, "the canary's pods ready", phase="Progressing", achievedWeight=25)
    [pod] = [
        p["metadata"]["name"]
        for p in kube.list("Pod", namespace, label_selector="modeldeploy.io/track=canary")
        if not p["metadata"].get("deletionTimestamp")
    ]
    restarted = {"status": {"containerStatuses": [{"name": "tfserving", "restartCount": 1}]}}
    cp.kubectl(
        "patch", "pod", pod, "-n", namespace, "--subresource=status", "--type=strategic", "-p", json.dumps(restarted)
    )
    rollout = wait_rollout(kube, namespace, name, "the abort on a restart", timeout=60, phase="Aborted")
    assert "check restarts" in rollout["message"], rollout["message"]
    [result] = [r for r in rollout["analysis"] if r["name"] == "restarts"]
    assert not result["passed"] and result["value"] == 1, result
    warnings = events(cp, namespace, name, "RolloutAborted")
    assert any("check restarts" in w for w in warnings), warnings
    wait_for("the canary Deployment to go", lambda: deployment(kube, namespace, f"{name}-canary") is None, 60)
    stable = deployment(kube, namespace, name)
    assert stable is not None and stable["metadata"]["annotations"]["modeldeploy.io/model-version"] == "1"


def test_a_restarted_operator_resumes_at_the_same_step(
    control_plane: ControlPlane,
    kube: KubeClient,
    namespace: str,
    claim: Path,
    sole_operator: None,
    tmp_path: Path,
) -> None:
    cp, name = control_plane, "resumed"
    steps = [{"weight": 25, "pause": "2s"}, {"weight": 50, "pause": "20s"}]
    operator = OperatorProcess(cp.kubeconfig, tmp_path / "first.log")
    try:
        apply(cp, md_manifest(name, namespace, steps=steps))
        wait_ready(kube, namespace, name)
        apply(cp, md_manifest(name, namespace, version=2, steps=steps))

        def second_step_ready() -> dict[str, Any] | None:
            rollout = rollout_of(kube, namespace, name)
            return rollout if rollout.get("step") == 1 and rollout.get("stepReadyAt") else None

        before = wait_for("step 2 ready", second_step_ready, 120)
    finally:
        operator.stop()
    canary = deployment(kube, namespace, f"{name}-canary")
    assert canary is not None
    with OperatorProcess(cp.kubeconfig, tmp_path / "second.log") as second:
        # The new process picks the rollout up from status: same step, same clock, no new canary.
        wait_for("the new operator's first pass", lambda: "cache filled" in second.log(), 60)
        resumed = rollout_of(kube, namespace, name)
        for key in ("startedAt", "stepStartedAt", "stepReadyAt", "revision"):
            assert resumed[key] == before[key], key
        assert resumed["phase"] in ("Progressing", "Promoting", "Promoted") and resumed["step"] >= 1
        again = deployment(kube, namespace, f"{name}-canary")
        assert again is None or again["metadata"]["uid"] == canary["metadata"]["uid"]
        wait_rollout(kube, namespace, name, "promotion after the restart", timeout=120, phase="Promoted")
        firsts = [m for m in events(cp, namespace, name, "CanaryProgressing") if m.startswith("step 1/2")]
        assert len(firsts) == 1, firsts


def test_a_spec_change_mid_rollout_restarts_at_the_first_step(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, claim: Path, operator_log: OperatorProcess
) -> None:
    cp, name = control_plane, "respecified"
    steps = [{"weight": 25, "pause": "2s"}, {"weight": 50, "pause": "10m"}]
    apply(cp, md_manifest(name, namespace, steps=steps))
    wait_ready(kube, namespace, name)
    apply(cp, md_manifest(name, namespace, version=2, steps=steps))
    first = wait_rollout(kube, namespace, name, "step 2 of version 2", version=2, step=1)
    apply(cp, md_manifest(name, namespace, version=3, steps=steps))
    restarted = wait_rollout(kube, namespace, name, "version 3 at step 1", version=3, step=0)
    assert restarted["revision"] != first["revision"] and restarted["startedAt"] >= first["startedAt"]

    def canary_runs_version_3() -> bool:
        canary = deployment(kube, namespace, f"{name}-canary")
        return bool(canary) and canary["metadata"]["annotations"]["modeldeploy.io/model-version"] == "3"  # type: ignore[index]

    wait_for("the canary to take version 3", canary_runs_version_3, 60)
    canary = deployment(kube, namespace, f"{name}-canary")
    assert canary is not None and canary["spec"]["replicas"] == 1
    stable = deployment(kube, namespace, name)
    assert stable is not None and stable["metadata"]["annotations"]["modeldeploy.io/model-version"] == "1"
    # Back to the stable version: the canary goes, the rollout is cleared.
    apply(cp, md_manifest(name, namespace, steps=steps))
    wait_for("the canary Deployment to go", lambda: deployment(kube, namespace, f"{name}-canary") is None, 60)
    wait_for("the rollout cleared", lambda: not rollout_of(kube, namespace, name), 60)


def test_prometheus_checks_promote_a_good_canary_and_abort_a_bad_one(
    control_plane: ControlPlane,
    kube: KubeClient,
    namespace: str,
    claim: Path,
    operator_log: OperatorProcess,
    prometheus: Prometheus,
    metrics_exporter: MetricsExporter,
    request: pytest.FixtureRequest,
) -> None:
    """The operator queries a real Prometheus at every step: a clean canary passes, an error ratio
    over the threshold aborts it with the value in the Warning."""
    cp, name = control_plane, "analysed"
    series = f'{REQUEST_COUNT}{{test="{request.node.name[:100]}", model_name="${{name}}"'
    check = {
        "name": "error-ratio",
        "query": f'sum({series}, status!="OK"}}) / sum({series}}})',
        "threshold": 0.01,
        "mustBe": "Below",
        "failOnNoData": True,
    }
    analysis = {"prometheus": {"url": prometheus.url, "intervalSeconds": 5, "checks": [check]}}
    steps = [{"weight": 25, "pause": "2s"}, {"weight": 50, "pause": "2s"}]
    apply(cp, md_manifest(name, namespace, steps=steps, analysis=analysis))
    wait_ready(kube, namespace, name)

    metrics_exporter.metrics.set_request_count(name, "OK", 100)
    metrics_exporter.metrics.set_request_count(name, "INTERNAL", 0)
    prometheus.wait_for(f"sum({series.replace('${name}', name)}}})", lambda total: total == 100)
    apply(cp, md_manifest(name, namespace, version=2, steps=steps, analysis=analysis))
    promoted = wait_rollout(kube, namespace, name, "promotion with a clean error ratio", phase="Promoted", version=2)
    [result] = [r for r in promoted["analysis"] if r["name"] == "error-ratio"]
    assert result["passed"] and result["value"] == 0 and result["failures"] == 0, result

    metrics_exporter.metrics.set_request_count(name, "INTERNAL", 25)
    prometheus.wait_for(f"sum({series.replace('${name}', name)}}})", lambda total: total == 125)
    apply(cp, md_manifest(name, namespace, version=3, steps=steps, analysis=analysis))
    aborted = wait_rollout(kube, namespace, name, "the abort on the error ratio", phase="Aborted", version=3)
    assert "check error-ratio = 0.2 (0.2 not <= 0.01; 1 failures)" in aborted["message"], aborted["message"]
    assert aborted["step"] == 0
    warnings = events(cp, namespace, name, "RolloutAborted")
    assert any("check error-ratio = 0.2" in w for w in warnings), warnings
    stable = deployment(kube, namespace, name)
    assert stable is not None and stable["metadata"]["annotations"]["modeldeploy.io/model-version"] == "2"


@pytest.fixture(autouse=True)
def _no_leftovers(control_plane: ControlPlane, namespace: str) -> Iterator[None]:
    yield
    control_plane.kubectl("delete", "md", "--all", "-n", namespace, "--wait=false", check=False)
