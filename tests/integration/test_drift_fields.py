"""A field removed from the spec disappears from the children, on the real API server (issue 13, item 3).

Children are created with a POST, whose fields the API server records under an `Update` entry of
our field manager; a server-side apply never removes those. The operator notices a removed field by
its applied digest, takes the create's fields over into its apply's ownership once, and applies:
the field goes, the pods roll as for any template change, and under an HPA `spec.replicas` never
drops below minReplicas. Write counts come from the operator's own /metrics.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from devcluster.controlplane import ControlPlane
from devcluster.stack import OperatorProcess, condition, make_claim, scrape, wait_for
from modeldeploy.controller import ownership
from modeldeploy.controller.builders.labels import APPLIED_DIGEST_ANNOTATION
from modeldeploy.k8s.client import ApiError, KubeClient
from modeldeploy.k8s.kinds import FIELD_MANAGER
from replica_watch import ReplicaWatch, replica_watch  # noqa: F401 (a fixture, used by name)

pytestmark = pytest.mark.integration

WRITES = ("POST", "PATCH", "PUT", "DELETE")
TOLERATION = {"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}


def md_manifest(name: str, namespace: str, serving: dict[str, Any], service: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"name": "digits", "storageUri": "pvc://models/mlp.keras", "format": "keras", "version": 1},
            "optimization": {"quantization": "dynamic"},
            "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 4},
            "serving": serving,
            "service": service,
        },
    }


def apply(cp: ControlPlane, manifest: dict[str, Any]) -> None:
    cp.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def requests(operator: OperatorProcess, methods: tuple[str, ...]) -> float:
    total = 0.0
    for line in scrape(operator.metrics_port).splitlines():
        if line.startswith("modeldeploy_api_requests_total{"):
            method = line.split('method="', 1)[1].split('"', 1)[0]
            if method in methods:
                total += float(line.rsplit(" ", 1)[1])
    return total


def writes(operator: OperatorProcess) -> float:
    return requests(operator, WRITES)


def assert_no_write_loop(operator: OperatorProcess, what: str) -> None:
    """Two windows in a row, each longer than a resync period (5 s here), without a single write."""
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


def wait_served(kube: KubeClient, namespace: str, name: str, generation: int) -> None:
    def ready() -> bool:
        md = kube.get("ModelDeployment", namespace, name) or {}
        ready = condition(md, "Ready")
        return ready.get("reason") == "Ready" and ready.get("observedGeneration") == generation

    wait_for(f"{namespace}/{name} Ready at generation {generation}", ready, timeout=240)


def ours(obj: dict[str, Any], operation: str) -> list[dict[str, Any]]:
    return [
        e
        for e in obj["metadata"].get("managedFields", [])
        if e["manager"] == FIELD_MANAGER and e["operation"] == operation and not e.get("subresource")
    ]


def test_fields_removed_from_the_spec_are_removed_from_the_children(
    control_plane: ControlPlane,
    kube: KubeClient,
    namespace: str,
    storage_root: Path,
    reference_models: Path,
    operator_log: OperatorProcess,
    replica_watch: ReplicaWatch,  # noqa: F811 (the imported fixture, by name)
) -> None:
    cp = control_plane
    make_claim(cp, storage_root, namespace, "models", reference_models)
    seen, start = replica_watch
    start(namespace, "fields")
    serving = {"tolerations": [TOLERATION], "env": [{"name": "EXTRA_FLAG", "value": "1"}]}
    service = {"annotations": {"example.com/team": "ml"}}
    apply(cp, md_manifest("fields", namespace, serving, service))
    wait_served(kube, namespace, "fields", 1)
    wait_for("the HPA's minimum", lambda: (kube.get("Deployment", namespace, "fields") or {})["spec"]["replicas"] == 2)
    created = kube.get("Deployment", namespace, "fields")
    assert created is not None and ours(created, "Update"), "created by a POST: the create's entry owns its fields"
    assert created["spec"]["template"]["spec"]["tolerations"] == [TOLERATION]
    assert_no_write_loop(operator_log, "a converged ModelDeployment")
    reads = requests(operator_log, ("GET",))

    apply(cp, md_manifest("fields", namespace, {}, {}))

    def removed() -> bool:
        deployment = kube.get("Deployment", namespace, "fields") or {}
        pod = deployment.get("spec", {}).get("template", {}).get("spec", {})
        env = {e["name"] for c in pod.get("containers", []) for e in c.get("env", [])}
        annotations = (kube.get("Service", namespace, "fields") or {})["metadata"].get("annotations", {})
        return "tolerations" not in pod and "EXTRA_FLAG" not in env and "example.com/team" not in annotations

    wait_for("the removed fields gone from the Deployment and the Service", removed, timeout=60)
    # The template changed: a rollout like any other, to Ready at the new generation.
    wait_served(kube, namespace, "fields", 2)

    def rolled_out() -> dict[str, Any] | None:
        found = kube.get("Deployment", namespace, "fields") or {}
        status, wanted = found.get("status", {}), found.get("spec", {}).get("replicas")
        done = status.get("observedGeneration") == found["metadata"]["generation"] and wanted == status.get(
            "updatedReplicas"
        ) == status.get("availableReplicas") == status.get("replicas")
        return found if done else None

    deployment: dict[str, Any] = wait_for("the new pods rolled out", rolled_out, timeout=120)
    assert deployment["spec"]["replicas"] >= 2
    assert not ours(deployment, "Update"), "taken over: no field of ours left under the create's entry"
    (applied,) = ours(deployment, "Apply")
    assert "f:replicas" not in applied["fieldsV1"]["f:spec"], "the HPA's replicas are never ours to remove"
    # The Service lost its annotation the same way; the ConfigMaps did not change: not written, not read.
    service_now = kube.get("Service", namespace, "fields")
    assert service_now is not None and not ours(service_now, "Update") and ours(service_now, "Apply")
    log = operator_log.log()
    assert f"{namespace}/fields: took over the fields of Deployment fields it created" in log
    assert requests(operator_log, ("GET",)) == reads, "taken over from the cache, without reading the children"
    assert "Traceback" not in log, log[-3000:]
    assert_no_write_loop(operator_log, "after the take-over")
    time.sleep(2)
    assert seen and min(seen) >= 2, f"spec.replicas seen while fields were removed: {seen}"
    assert (kube.get("Deployment", namespace, "fields") or {})["spec"]["replicas"] >= 2


def test_a_stale_take_over_is_a_conflict_not_a_refusal(
    control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    """The API server answers a failed JSON patch `test` 422, like an invalid object: the client makes it
    a conflict (retried by the queue), never a refusal that would become ChildRejected."""
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": namespace}}
    created = kube.create({**configmap, "data": {"a": "1"}})
    assert created is not None
    entries = created["metadata"]["managedFields"]
    with pytest.raises(ApiError) as raised:
        kube.replace_managed_fields("ConfigMap", namespace, "cm", "1", entries)
    assert raised.value.status == 409 and not raised.value.refused, raised.value
    # At the current resourceVersion the same patch goes through.
    version = created["metadata"]["resourceVersion"]
    moved = [{**e, "operation": "Apply"} for e in entries]
    patched = kube.replace_managed_fields("ConfigMap", namespace, "cm", version, moved)
    assert [(e["manager"], e["operation"]) for e in patched["metadata"]["managedFields"]] == [(FIELD_MANAGER, "Apply")]
    # Owned through Apply now: an apply without the key removes it.
    assert "a" not in kube.apply({**configmap, "data": {"b": "2"}}).get("data", {})


def test_the_take_over_from_the_cache_is_checked_by_the_api_server(
    control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    """The JSON patch built from the cache's index of our create's entry: refused (None, not an error)
    when that index is stale, a 404 when the object is gone; else our entry becomes the apply's,
    without the fields kept out, and an apply without a field removes it."""
    base = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": namespace}}
    created = kube.create({**base, "data": {"a": "1", "keep": "2"}})
    assert created is not None
    index = ownership.update_entry_index(created["metadata"]["managedFields"])
    assert index == 0
    stale = ownership.take_over_patch(index + 1, "v1")
    assert kube.patch_managed_fields("ConfigMap", namespace, "cm", stale) is None
    with pytest.raises(ApiError) as gone:
        kube.patch_managed_fields("ConfigMap", namespace, "absent", ownership.take_over_patch(0, "v1"))
    assert gone.value.status == 404
    patch = ownership.take_over_patch(index, "v1", [("data", "keep"), ("data", "never-set")])
    taken = kube.patch_managed_fields("ConfigMap", namespace, "cm", patch)
    assert taken is not None
    (entry,) = taken["metadata"]["managedFields"]
    assert (entry["manager"], entry["operation"]) == (FIELD_MANAGER, "Apply")
    assert entry["fieldsV1"] == {"f:data": {".": {}, "f:a": {}}}
    applied = kube.apply({**base, "data": {"b": "3"}})
    assert applied["data"] == {"b": "3", "keep": "2"}, "a removed, keep left as it is (not ours any more)"


def test_a_child_of_an_older_operator_is_applied_once_without_a_rollout(
    control_plane: ControlPlane,
    kube: KubeClient,
    namespace: str,
    storage_root: Path,
    reference_models: Path,
    operator_log: OperatorProcess,
) -> None:
    """After an upgrade, children written by an operator without applied digests lack the annotation:
    each is taken over and applied once (the CHANGELOG's one-time cost), which changes metadata only:
    the same pod template, no new ReplicaSet, no pod restarted; then nothing more is written."""
    cp = control_plane
    make_claim(cp, storage_root, namespace, "models", reference_models)
    apply(cp, md_manifest("older", namespace, {}, {}))
    wait_served(kube, namespace, "older", 1)
    before = kube.get("Deployment", namespace, "older")
    assert before is not None and ours(before, "Update"), "created by a POST"
    assert_no_write_loop(operator_log, "a converged ModelDeployment")

    # What an older operator left: the same Deployment without the digest annotation.
    cp.kubectl("annotate", "-n", namespace, "deployment", "older", f"{APPLIED_DIGEST_ANNOTATION}-")

    def reapplied() -> dict[str, Any] | None:
        found = kube.get("Deployment", namespace, "older") or {}
        return found if APPLIED_DIGEST_ANNOTATION in found.get("metadata", {}).get("annotations", {}) else None

    after: dict[str, Any] = wait_for("the digest written back", reapplied, timeout=60)
    # (its generation may move: the HPA sets spec.replicas)
    assert after["spec"]["template"] == before["spec"]["template"], "metadata only: no rollout"
    assert not ours(after, "Update") and ours(after, "Apply"), "taken over once"
    replica_sets = cp.kubectl("get", "replicasets", "-n", namespace, "-o", "name").stdout.split()
    assert len(replica_sets) == 1, replica_sets
    assert_no_write_loop(operator_log, "after the one-time apply")
