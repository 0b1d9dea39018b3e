"""kopf wiring: every trigger calls the same reconcile.

Only `on.event` handlers are used: they keep no state on the objects, so kopf adds no finalizer and
writes no annotations, and deleting a ModelDeployment never waits for the operator. Retries and
the slow periodic pass come from `resync` instead of kopf timers (which would force a finalizer).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, ClassVar

import kopf

from modeldeploy.api import GROUP, PLURAL, VERSION
from modeldeploy.builders.labels import MODEL_DEPLOYMENT_LABEL
from modeldeploy.k8s import KubeClient
from modeldeploy.reconcile import Reconciler

log = logging.getLogger("modeldeploy.handlers")
OWNED = {MODEL_DEPLOYMENT_LABEL: kopf.PRESENT}


class _State:
    reconciler: Reconciler | None = None
    namespaces: ClassVar[list[str]] = []
    resync_seconds: float = 60.0
    stop = threading.Event()


def install(reconciler: Reconciler, namespaces: list[str], resync_seconds: float) -> None:
    _State.reconciler, _State.namespaces, _State.resync_seconds = reconciler, namespaces, resync_seconds


def reconcile_safely(namespace: str | None, name: str | None) -> None:
    """Reconcile, and log (never raise) a failure: the next event or resync retries it."""
    if not namespace or not name or _State.reconciler is None:
        return
    try:
        _State.reconciler.reconcile(namespace, name)
    except Exception:
        log.exception("%s/%s: reconcile failed; it is retried on the next change or resync", namespace, name)


def resync_once(kube: KubeClient) -> int:
    """Reconcile every ModelDeployment we watch: the slow timer that catches anything missed."""
    count = 0
    scopes: list[str | None] = list(_State.namespaces) or [None]
    for namespace in scopes:
        for md in kube.list("ModelDeployment", namespace):
            reconcile_safely(md["metadata"]["namespace"], md["metadata"]["name"])
            count += 1
    return count


def _resync_loop() -> None:
    while not _State.stop.wait(_State.resync_seconds):
        if _State.reconciler is not None:
            try:
                resync_once(_State.reconciler.kube)
            except Exception:
                log.exception("periodic resync failed; trying again in %ss", _State.resync_seconds)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.enabled = False  # we post our own, meaningful Events
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="modeldeploy.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="modeldeploy.io")
    settings.execution.max_workers = 8
    _State.stop.clear()
    threading.Thread(target=_resync_loop, name="modeldeploy-resync", daemon=True).start()


@kopf.on.cleanup()
def stop(**_: Any) -> None:
    _State.stop.set()


@kopf.on.event(GROUP, VERSION, PLURAL)
def on_model_deployment(type: str, namespace: str | None, name: str, **_: Any) -> None:
    if type != "DELETED":
        reconcile_safely(namespace, name)


def on_child(labels: Mapping[str, str], namespace: str | None, **_: Any) -> None:
    reconcile_safely(namespace, labels.get(MODEL_DEPLOYMENT_LABEL))


for _resource in (
    ("batch", "v1", "jobs"),
    ("v1", "pods"),
    ("apps", "v1", "deployments"),
    ("v1", "services"),
    ("v1", "configmaps"),
    ("autoscaling", "v2", "horizontalpodautoscalers"),
    ("policy", "v1", "poddisruptionbudgets"),
    ("networking.k8s.io", "v1", "networkpolicies"),
):
    kopf.on.event(*_resource, labels=OWNED)(on_child)
