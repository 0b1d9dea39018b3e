"""The slow periodic pass that reconciles every ModelDeployment, whatever happened, and the
error boundary around a reconcile: a failure is logged, never raised into kopf (which would retry
it on its own schedule); the next event or resync retries it.
"""

from __future__ import annotations

import logging
import threading

from modeldeploy.api import KIND
from modeldeploy.controller.config import OperatorConfig
from modeldeploy.controller.reconcile import Reconciler

log = logging.getLogger("modeldeploy.resync")


def reconcile_safely(reconciler: Reconciler, namespace: str | None, name: str | None) -> None:
    """Reconcile, and log (never raise) a failure."""
    if not namespace or not name:
        return
    try:
        reconciler.reconcile(namespace, name)
    except Exception:
        log.exception("%s/%s: reconcile failed; it is retried on the next change or resync", namespace, name)


def resync_once(reconciler: Reconciler, config: OperatorConfig) -> int:
    """Reconcile every ModelDeployment we watch; returns how many."""
    count = 0
    scopes: list[str | None] = list(config.namespaces) or [None]
    for namespace in scopes:
        for md in reconciler.kube.list(KIND, namespace):
            reconcile_safely(reconciler, md["metadata"]["namespace"], md["metadata"]["name"])
            count += 1
    return count


def resync_loop(reconciler: Reconciler, config: OperatorConfig, stop: threading.Event) -> None:
    while not stop.wait(config.resync_seconds):
        try:
            resync_once(reconciler, config)
        except Exception:
            log.exception("periodic resync failed; trying again in %ss", config.resync_seconds)
