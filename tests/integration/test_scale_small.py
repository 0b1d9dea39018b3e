"""The scale benchmark's scenarios in small (benchmarks/scale.py runs them at 100 to 1,000 objects).

A dedicated operator watches only this test's namespace (namespaced mode), so its request count is
exactly that of these objects: no GET or LIST from create to Ready, about ten writes each, nothing
at idle through several resyncs, and unrelated ConfigMaps and Pods never reach its cache.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devcluster.controlplane import ControlPlane
from devcluster.stack import OperatorProcess, condition, make_claim, scrape, wait_for
from modeldeploy.k8s.client import KubeClient

pytestmark = pytest.mark.integration
COUNT = 10


def counters(operator: OperatorProcess) -> dict[str, float]:
    """The operator's request counts by method, reconciles, and cached ConfigMaps (its /metrics)."""
    out: dict[str, float] = {}
    for line in scrape(operator.metrics_port).splitlines():
        if line.startswith("modeldeploy_api_requests_total{"):
            out[line.split('method="', 1)[1].split('"', 1)[0]] = float(line.rsplit(" ", 1)[1])
        elif line.startswith('modeldeploy_cache_objects{kind="ConfigMap"}'):
            out["cached ConfigMaps"] = float(line.rsplit(" ", 1)[1])
    return out


def serving_metrics(operator: OperatorProcess) -> bool:
    try:
        return "modeldeploy_cache_objects" in scrape(operator.metrics_port)
    except OSError:  # not listening yet
        return False


@pytest.fixture
def namespaced_operator(
    control_plane: ControlPlane, crd_installed: None, namespace: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    operator = OperatorProcess(
        control_plane.kubeconfig, tmp_path / "operator.log", ["--namespace", namespace, "--resync-seconds", "2"]
    )
    try:
        wait_for("the operator's /metrics", lambda: serving_metrics(operator))
        yield operator
    finally:
        operator.stop()
        print(f"\n--- operator log (tail) ---\n{operator.log()[-3000:]}")


def test_ten_objects_reach_ready_with_writes_only_and_idle_costs_nothing(
    control_plane: ControlPlane,
    kube: KubeClient,
    namespace: str,
    storage_root: Path,
    namespaced_operator: OperatorProcess,
) -> None:
    make_claim(control_plane, storage_root, namespace, "models")
    time.sleep(3)  # the claim's watch event is in; start counting from a settled operator
    before = counters(namespaced_operator)
    docs = [
        {
            "apiVersion": "modeldeploy.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": f"m{i}", "namespace": namespace},
            "spec": {
                "model": {"name": f"m{i}", "storageUri": f"pvc://models/m{i}", "format": "savedmodel"},
                "optimization": {"enabled": False},
                "serving": {"replicas": 1},
                "autoscaling": {"enabled": False},
            },
        }
        for i in range(COUNT)
    ]
    control_plane.kubectl("apply", "-f", "-", input="\n".join(json.dumps(d) for d in docs))

    def all_ready() -> bool:
        items = kube.list("ModelDeployment", namespace)
        return len(items) == COUNT and all(condition(md, "Ready").get("reason") == "Ready" for md in items)

    wait_for(f"{COUNT} ModelDeployments Ready", all_ready, timeout=120)
    time.sleep(3)  # the last status patches land
    after = counters(namespaced_operator)
    sent = {m: after.get(m, 0) - before.get(m, 0) for m in ("GET", "POST", "PATCH", "DELETE")}
    assert sent["GET"] == 0, f"a reconcile read from the API server instead of the cache: {sent}"
    # Per object: 5 creates (NetworkPolicy, 2 ConfigMaps, Deployment, Service: never an apply on a
    # name we do not hold), two Events (Ready=False when first seen, Ready=True when served), and a
    # status patch per step the Deployment's status takes (created, rolling out, replicas, ready):
    # how many steps coalesce depends on timing.
    assert sent["POST"] == 7 * COUNT, sent
    assert 2 * COUNT <= sent["PATCH"] <= 5 * COUNT, sent
    print(f"\nrequests for {COUNT} objects to Ready: {sent}")

    # Idle through several resyncs (every 2 s): not one request.
    time.sleep(7)
    idle = counters(namespaced_operator)
    assert {m: idle.get(m, 0) for m in sent} == {m: after.get(m, 0) for m in sent}, "requests while idle"

    # Unrelated ConfigMaps in the watched namespace, without our label: never cached, never reconciled.
    cached = counters(namespaced_operator)["cached ConfigMaps"]
    for i in range(20):
        control_plane.kubectl("create", "configmap", f"noise-{i}", "-n", namespace)
    time.sleep(5)  # at least two resyncs publish the cache's counts
    now = counters(namespaced_operator)
    assert now["cached ConfigMaps"] == cached == 2 * COUNT, now
    assert {m: now.get(m, 0) for m in sent} == {m: after.get(m, 0) for m in sent}, "noise caused requests"
