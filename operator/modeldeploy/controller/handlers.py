"""kopf wiring: every trigger calls the same reconcile; nothing else lives here.

Only `on.event` handlers are used: they keep no state on the objects, so kopf adds no finalizer and
writes no annotations, and deleting a ModelDeployment never waits for the operator. Retries and
the slow periodic pass come from the resync loop instead of kopf timers (which would force a
finalizer). The reconciler and the settings reach the handlers through kopf's memo.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import kopf

from modeldeploy.api import GROUP, PLURAL, VERSION
from modeldeploy.controller.builders.labels import MODEL_DEPLOYMENT_LABEL
from modeldeploy.controller.resync import reconcile_safely, resync_loop
from modeldeploy.k8s.kinds import WATCHED_KINDS

OWNED = {MODEL_DEPLOYMENT_LABEL: kopf.PRESENT}
# Our own registry, not kopf's global default: importing this module twice, or next to another
# operator in tests, cannot double the handlers.
REGISTRY = kopf.OperatorRegistry()


@kopf.on.login(registry=REGISTRY)
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """kopf's own connection uses the credentials our client uses (in-cluster, then KUBECONFIG)."""
    return kopf.login_via_client(**kwargs)


@kopf.on.startup(registry=REGISTRY)
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.posting.enabled = False  # we post our own, meaningful Events
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="modeldeploy.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="modeldeploy.io")
    settings.execution.max_workers = memo.config.workers
    memo.stop = threading.Event()
    args = (memo.reconciler, memo.config, memo.stop)
    threading.Thread(target=resync_loop, args=args, name="modeldeploy-resync", daemon=True).start()


@kopf.on.cleanup(registry=REGISTRY)
def stop(memo: kopf.Memo, **_: Any) -> None:
    memo.stop.set()


@kopf.on.event(GROUP, VERSION, PLURAL, registry=REGISTRY)
def on_model_deployment(type: str, namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
    if type != "DELETED":
        reconcile_safely(memo.reconciler, namespace, name)


def on_child(labels: Mapping[str, str], namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    reconcile_safely(memo.reconciler, namespace, labels.get(MODEL_DEPLOYMENT_LABEL))


for _kind in WATCHED_KINDS:
    kopf.on.event(_kind.api_version, _kind.plural, labels=OWNED, registry=REGISTRY)(on_child)
