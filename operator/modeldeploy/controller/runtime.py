"""The operator's moving parts between kopf and the reconcile: cache, work queue, workers, resync.

kopf's watch events land in `on_event`, which only updates the cache and queues the key of the
ModelDeployment concerned (microseconds, on kopf's event loop). A ModelDeployment whose spec
changed (new, or a new metadata.generation) is queued as urgent: a user waits for that edit, and it
goes before the status events of children that are rolling out. A fixed pool of worker threads
takes keys from the queue and reconciles them from the cache; a failure requeues the key with
exponential back-off, a success forgets its failures. The periodic resync queues every key the
cache knows: it costs no request, and writes only where something drifted.

At start the cache is filled with one LIST per kind before any worker runs, so the first
reconciles see the children that exist (no needless re-apply after an operator restart). An
optional kind (kinds.py: HTTPRoute, from the Gateway API CRDs) is first looked up in discovery:
when the API server does not serve it, it is neither listed nor watched, and the reconciler is told
(`missing_kinds`) so that a ModelDeployment asking for it gets a condition instead of failed
requests retried forever. Installing the CRDs later takes an operator restart to be noticed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from modeldeploy.api import KIND
from modeldeploy.controller import metrics
from modeldeploy.controller.builders.labels import MODEL_DEPLOYMENT_LABEL
from modeldeploy.controller.cache import CLAIM, Cache, Key, owner_of
from modeldeploy.controller.config import OperatorConfig
from modeldeploy.controller.queue import WorkQueue
from modeldeploy.controller.reconcile import Reconciler
from modeldeploy.k8s.client import KubeClient, is_unavailable
from modeldeploy.k8s.kinds import KINDS, OPTIONAL_KINDS, WATCHED_KINDS, Kind

log = logging.getLogger("modeldeploy.runtime")
DELETED = "DELETED"


def server_side_selector(kind: Kind) -> str | None:
    """The label selector the API server applies to a kind's watch: only what we own, by label."""
    return MODEL_DEPLOYMENT_LABEL if kind.owned_by_label else None


@dataclass(eq=False)
class Runtime:
    kube: KubeClient
    config: OperatorConfig
    cache: Cache = field(default_factory=Cache)
    queue: WorkQueue = field(default_factory=lambda: WorkQueue(observe_wait=metrics.observe_queue_wait))
    _threads: list[threading.Thread] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    # Optional kinds the API server does not serve (found by `prime`): not listed, not watched.
    missing_kinds: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        self.reconciler = Reconciler(
            self.kube, self.cache, default_signing_key_secret=self.config.default_signing_key_secret
        )

    # -- events -----------------------------------------------------------------------------------------

    def on_event(self, kind: str, event_type: str | None, body: dict[str, Any]) -> None:
        """A watch event: update the cache, queue the ModelDeployment(s) it concerns."""
        meta = body.get("metadata", {})
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        urgent = kind == KIND and event_type != DELETED and self._spec_changed(namespace, name, meta)
        if event_type == DELETED:
            if kind == KIND:
                self.cache.remember_deleted(body)  # its artifacts are cleaned up by a Job
            self.cache.delete(kind, namespace, name)
        else:
            self.cache.upsert(kind, body)
        for key in self._keys_for(kind, namespace, name, body):
            self.queue.add(key, urgent=urgent)
        metrics.WORKQUEUE_DEPTH.set(len(self.queue))

    def _spec_changed(self, namespace: str, name: str, meta: dict[str, Any]) -> bool:
        """A ModelDeployment the cache does not hold yet, or one with a generation the cache has not
        seen: its spec changed (status and metadata writes keep the generation)."""
        cached = self.cache.get(KIND, namespace, name)
        return cached is None or cached["metadata"].get("generation") != meta.get("generation")

    def _keys_for(self, kind: str, namespace: str, name: str, body: dict[str, Any]) -> Iterable[Key]:
        if kind == KIND:
            return [(namespace, name)]
        if kind == CLAIM:
            return self.cache.users_of_claim(namespace, name)
        owner = owner_of(kind, body)
        return [(namespace, owner)] if owner else []

    # -- start and stop ---------------------------------------------------------------------------------

    def discover(self) -> frozenset[str]:
        """The optional kinds the API server does not serve; one discovery request per kind."""
        missing = set()
        for kind in OPTIONAL_KINDS:
            if not self.kube.served(kind.kind):
                missing.add(kind.kind)
                log.info(
                    "%s (%s) is not served by the API server: not watched; ModelDeployments that need it "
                    "report it in their Ready condition (install its CRDs, then restart the operator)",
                    kind.kind,
                    kind.api_version,
                )
        return frozenset(missing)

    def watched_kinds(self) -> tuple[Kind, ...]:
        """The kinds to list and watch: every watched kind the API server serves."""
        return tuple(k for k in WATCHED_KINDS if k.kind not in self.missing_kinds)

    def prime(self) -> None:
        """Look up the optional kinds, fill the cache with one LIST per watched kind and scope, then
        queue every ModelDeployment."""
        self.missing_kinds = self.discover()
        self.reconciler.missing_kinds = self.missing_kinds
        scopes: list[str | None] = list(self.config.namespaces) or [None]
        for kind in (KINDS[KIND], *self.watched_kinds()):
            for namespace in scopes:
                items = self.kube.list(kind.kind, namespace, server_side_selector(kind))
                # A LIST's items carry no apiVersion and kind (watch events do): without them every
                # child would look drifted and be re-applied after each restart.
                stamped = [{**item, "apiVersion": kind.api_version, "kind": kind.kind} for item in items]
                self.cache.replace_all(kind.kind, namespace, stamped)
        for key in self.cache.model_deployment_keys():
            self.queue.add(key)
        counts = self.cache.counts()
        log.info("cache filled: %s", ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "empty")

    def start(self) -> None:
        self._stop.clear()
        for index in range(self.config.workers):
            thread = threading.Thread(target=self._work, name=f"modeldeploy-worker-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        resync = threading.Thread(target=self._resync_loop, name="modeldeploy-resync", daemon=True)
        resync.start()
        self._threads.append(resync)

    def stop(self) -> None:
        self._stop.set()
        self.queue.shutdown()

    # -- workers ----------------------------------------------------------------------------------------

    def _work(self) -> None:
        while (key := self.queue.get()) is not None:
            try:
                self.process(key)
            finally:
                self.queue.done(key)
                metrics.WORKQUEUE_DEPTH.set(len(self.queue))

    def process(self, key: Key) -> None:
        """Reconcile one key; on failure, log one line and requeue it with back-off."""
        namespace, name = key
        try:
            result = self.reconciler.reconcile(namespace, name)
        except Exception as exc:
            delay = self.queue.add_rate_limited(key, transient=is_unavailable(exc))
            failures = self.queue.failures(key)
            log.error(
                "%s/%s: reconcile failed (attempt %d), retrying in %.0fs: %s: %s",
                namespace,
                name,
                failures,
                delay,
                type(exc).__name__,
                exc,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            return
        if result.conflicts:
            # Someone else's object holds a child's name; we cannot watch it (no label): look again later.
            self.queue.add_rate_limited(key)
            return
        self.queue.forget(key)
        if result.requeue_after is not None:
            # A canary step's pause or its next check is due then; nothing else would wake us.
            self.queue.add_after(key, result.requeue_after)

    def resync_once(self) -> int:
        """Queue every ModelDeployment the cache knows; returns how many."""
        keys = self.cache.model_deployment_keys()
        for key in keys:
            self.queue.add(key)
        for kind, count in self.cache.counts().items():
            metrics.CACHE_OBJECTS.labels(kind).set(count)
        return len(keys)

    def _resync_loop(self) -> None:
        while not self._stop.wait(self.config.resync_seconds):
            self.resync_once()
