"""The cache: slim objects, indexes by owner and claim, newer versions win, events route to keys."""

from __future__ import annotations

from typing import Any

from modeldeploy.controller.cache import Cache, slim
from modeldeploy.controller.config import OperatorConfig
from modeldeploy.controller.runtime import Runtime

LABEL = "modeldeploy.io/model-deployment"


def obj(kind: str, name: str, rv: str = "1", owner: str | None = "digits", **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ml", "resourceVersion": rv}
    if owner:
        meta["labels"] = {LABEL: owner}
    return {"kind": kind, "metadata": meta, **extra}


def test_slim_drops_what_no_reconcile_reads() -> None:
    service = obj("Service", "digits", spec={"ports": []}, status={"loadBalancer": {}})
    service["metadata"]["managedFields"] = [{"manager": "x"} for _ in range(50)]
    kept = slim("Service", service)
    assert "managedFields" not in kept["metadata"] and "status" not in kept and kept["spec"] == {"ports": []}
    pod = obj(
        "Pod",
        "p",
        spec={"containers": [{"image": "big"}]},
        status={
            "containerStatuses": [{"name": "c", "state": {"running": {}}, "imageID": "sha", "ready": True}],
            "conditions": [{"type": "Ready"}, {"type": "PodScheduled", "status": "False"}],
        },
    )
    kept = slim("Pod", pod)
    assert "spec" not in kept
    assert kept["status"]["containerStatuses"] == [{"name": "c", "state": {"running": {}}}]
    assert kept["status"]["conditions"] == [{"type": "PodScheduled", "status": "False"}]
    assert slim("PersistentVolumeClaim", obj("PersistentVolumeClaim", "c", spec={"x": 1}, owner=None)).keys() == {
        "kind",
        "metadata",
    }


def test_an_older_version_never_replaces_a_newer_one() -> None:
    cache = Cache()
    assert cache.upsert("Service", obj("Service", "digits", rv="7", spec={"v": "ours"}))
    assert not cache.upsert("Service", obj("Service", "digits", rv="6", spec={"v": "late event"}))
    assert cache.get("Service", "ml", "digits")["spec"] == {"v": "ours"}  # type: ignore[index]


def test_children_are_found_by_their_owner_label_and_leave_with_deletion() -> None:
    cache = Cache()
    cache.upsert("ModelDeployment", obj("ModelDeployment", "digits", owner=None))
    cache.upsert("Deployment", obj("Deployment", "digits"))
    cache.upsert("Service", obj("Service", "other", owner="other"))
    snap = cache.snapshot("ml", "digits")
    assert snap.model_deployment is not None and [o["metadata"]["name"] for o in snap.of_kind("Deployment")] == [
        "digits"
    ]
    assert snap.of_kind("Service") == []
    cache.delete("Deployment", "ml", "digits")
    assert cache.snapshot("ml", "digits").of_kind("Deployment") == []


def test_relabelling_moves_a_child_between_owners() -> None:
    cache = Cache()
    cache.upsert("ConfigMap", obj("ConfigMap", "c", rv="1", owner="a"))
    cache.upsert("ConfigMap", obj("ConfigMap", "c", rv="2", owner="b"))
    assert cache.snapshot("ml", "a").of_kind("ConfigMap") == []
    assert len(cache.snapshot("ml", "b").of_kind("ConfigMap")) == 1


def test_a_fresh_list_drops_what_disappeared_while_not_watching() -> None:
    cache = Cache()
    cache.upsert("Job", obj("Job", "gone"))
    cache.replace_all("Job", "ml", [obj("Job", "kept")])
    assert [o["metadata"]["name"] for o in cache.snapshot("ml", "digits").of_kind("Job")] == ["kept"]


def test_events_route_to_the_model_deployment_they_concern() -> None:
    runtime = Runtime(kube=None, config=OperatorConfig())  # type: ignore[arg-type]
    runtime.on_event("ModelDeployment", None, obj("ModelDeployment", "digits", owner=None))
    runtime.on_event("Pod", "MODIFIED", obj("Pod", "digits-abc"))
    runtime.on_event("Pod", "MODIFIED", obj("Pod", "stranger", owner=None))
    assert runtime.queue.get(timeout=0) == ("ml", "digits")
    runtime.queue.done(("ml", "digits"))
    assert runtime.queue.get(timeout=0) is None, "one key for both events; nothing for the stranger"
    # A claim wakes the ModelDeployments that mount it, and only once they said so.
    claim = obj("PersistentVolumeClaim", "models", owner=None)
    runtime.on_event("PersistentVolumeClaim", None, claim)
    assert runtime.queue.get(timeout=0) is None
    runtime.cache.record_claims("ml", "digits", ["models"])
    runtime.on_event("PersistentVolumeClaim", "DELETED", claim)
    assert runtime.queue.get(timeout=0) == ("ml", "digits")
    assert "models" not in runtime.cache.snapshot("ml", "digits").claims
