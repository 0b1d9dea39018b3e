"""The scale benchmark's scenarios in small (benchmarks/scale.py runs them at 100 to 1,000 objects).

The session's operator (all namespaces, a resync every 5 s) is first let go quiet: it then sends no
request at all, so what it sends while these objects go to Ready is theirs: no GET or LIST, about
nine writes each; nothing at idle through several resyncs; and unrelated ConfigMaps never reach
its cache. (A second operator here would race the first for every create: both are correct, the
loser reads the winner's object once, and the counts would say nothing.)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from devcluster.controlplane import ControlPlane
from devcluster.stack import OperatorProcess, condition, make_claim, scrape, wait_for
from modeldeploy.k8s.client import KubeClient

pytestmark = pytest.mark.integration
COUNT = 10
METHODS = ("GET", "POST", "PATCH", "DELETE")


def counters(operator: OperatorProcess) -> dict[str, float]:
    """The operator's request counts by method, reconciles, and cached ConfigMaps (its /metrics)."""
    out: dict[str, float] = {}
    for line in scrape(operator.metrics_port).splitlines():
        if line.startswith("modeldeploy_api_requests_total{"):
            out[line.split('method="', 1)[1].split('"', 1)[0]] = float(line.rsplit(" ", 1)[1])
        elif line.startswith('modeldeploy_cache_objects{kind="ConfigMap"}'):
            out["cached ConfigMaps"] = float(line.rsplit(" ", 1)[1])
    return out


def wait_quiet(operator: OperatorProcess) -> dict[str, float]:
    """Two 6-second windows in a row (each longer than a resync period) without a request."""
    quiet, before = 0, counters(operator)
    for _ in range(20):
        time.sleep(6)
        now = counters(operator)
        same = all(now.get(m, 0) == before.get(m, 0) for m in METHODS)
        quiet, before = (quiet + 1 if same else 0), now
        if quiet == 2:
            return now
    raise AssertionError(f"the operator never went quiet: {before}")


def test_ten_objects_reach_ready_with_writes_only_and_idle_costs_nothing(
    control_plane: ControlPlane,
    kube: KubeClient,
    namespace: str,
    storage_root: Path,
    operator_log: OperatorProcess,
) -> None:
    make_claim(control_plane, storage_root, namespace, "models")
    before = wait_quiet(operator_log)
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
    after = counters(operator_log)
    sent = {m: after.get(m, 0) - before.get(m, 0) for m in METHODS}
    assert sent["GET"] == 0, f"a reconcile read from the API server instead of the cache: {sent}"
    # Per object: 5 creates (NetworkPolicy, 2 ConfigMaps, Deployment, Service: never an apply on a
    # name we do not hold), two Events (Ready=False when first seen, Ready=True when served), and a
    # status patch per step the Deployment's status takes (created, rolling out, replicas, ready):
    # how many steps coalesce depends on timing.
    assert sent["POST"] == 7 * COUNT, sent
    assert 2 * COUNT <= sent["PATCH"] <= 5 * COUNT, sent
    print(f"\nrequests for {COUNT} objects to Ready: {sent}")

    # Idle through several resyncs (every 5 s): not one request.
    time.sleep(12)
    idle = counters(operator_log)
    assert {m: idle.get(m, 0) for m in sent} == {m: after.get(m, 0) for m in sent}, "requests while idle"

    # Unrelated ConfigMaps in the watched namespace, without our label: never cached, never reconciled.
    # (Other tests' namespaces may be going away meanwhile: the count may drop, never rise by 20.)
    cached = counters(operator_log)["cached ConfigMaps"]
    for i in range(20):
        control_plane.kubectl("create", "configmap", f"noise-{i}", "-n", namespace)
    time.sleep(12)  # at least two resyncs publish the cache's counts
    now = counters(operator_log)
    assert now["cached ConfigMaps"] < cached + 20, (cached, now)
    assert {m: now.get(m, 0) for m in sent} == {m: after.get(m, 0) for m in sent}, "noise caused requests"
