"""The one idempotent reconcile: observe -> plan -> apply what differs -> status on change.

Every trigger (the ModelDeployment changed, a child changed, the periodic resync) queues the key;
a worker calls `Reconciler.reconcile(namespace, name)`, which never assumes which event woke it.
It reads only the cache (no request), and writes only what differs: a child is applied when the
live object lacks a field we set, status is patched when it changed, Events are posted on the
transitions a user cares about. Every write's answer goes into the cache at once.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modeldeploy.api import KIND, InvalidModelDeployment, parse_model_deployment, parse_status
from modeldeploy.api.reasons import ConditionType, Reason
from modeldeploy.api.status import ConditionStatus, ModelDeploymentStatus
from modeldeploy.controller import metrics
from modeldeploy.controller.builders import Owner
from modeldeploy.controller.builders.artifacts import with_signing_default
from modeldeploy.controller.builders.cleanup import build_delete_cleanup_job
from modeldeploy.controller.cache import Cache
from modeldeploy.controller.drift import is_subset
from modeldeploy.controller.observe import observe, referenced_claims
from modeldeploy.controller.plan import plan
from modeldeploy.controller.status import EventSpec, StatusUpdate, cancelled_event, failed_status, status_of
from modeldeploy.k8s.client import ApiError, KubeClient

log = logging.getLogger("modeldeploy.reconcile")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class ReconcileResult:
    """What one reconcile wrote (for logs, metrics and tests)."""

    created: list[str] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    status_patched: bool = False
    events: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)  # children not written: the name is someone else's

    @property
    def wrote(self) -> bool:
        return bool(self.created or self.applied or self.deleted or self.status_patched or self.events)


def status_patch(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """A merge patch that also removes our fields that are no longer set."""
    ours = {f.alias or n for n, f in ModelDeploymentStatus.model_fields.items()}
    patch = dict(new)
    for key in ours:
        if key not in new and key in old:
            patch[key] = None
    return patch


def record_status_metrics(namespace: str, name: str, status: ModelDeploymentStatus) -> None:
    ready = next((c for c in status.conditions if c.type == ConditionType.READY), None)
    metrics.READY.labels(namespace, name).set(1 if ready is not None and ready.status == ConditionStatus.TRUE else 0)
    if status.served_version is not None:
        metrics.SERVED_VERSION.labels(namespace, name).set(status.served_version)
    result = status.optimization
    if result is None:
        return
    for gauge, label, value in (
        (metrics.MODEL_BYTES, "original", result.original_bytes),
        (metrics.MODEL_BYTES, "optimized", result.optimized_bytes),
        (metrics.ACCURACY, "before", result.accuracy_before),
        (metrics.ACCURACY, "after", result.accuracy_after),
    ):
        if value is not None:
            gauge.labels(namespace, name, label).set(value)
    if result.duration_seconds is not None:
        metrics.OPTIMIZATION_SECONDS.labels(namespace, name).set(result.duration_seconds)


class Reconciler:
    """Reconciles ModelDeployments from the cache. The work queue guarantees that one object is
    never reconciled by two workers at once, so no lock is needed here."""

    def __init__(
        self,
        kube: KubeClient,
        cache: Cache,
        clock: Callable[[], datetime] = utc_now,
        *,
        default_signing_key_secret: str | None = None,
    ) -> None:
        self.kube = kube
        self.cache = cache
        self.clock = clock
        self.default_signing_key_secret = default_signing_key_secret

    def reconcile(self, namespace: str, name: str) -> ReconcileResult:
        with metrics.RECONCILE_SECONDS.time():
            try:
                result = self._reconcile(namespace, name)
            except Exception:
                metrics.RECONCILES.labels("error").inc()
                raise
        metrics.RECONCILES.labels("ok").inc()
        for write, count in (
            ("create", len(result.created)),
            ("apply", len(result.applied)),
            ("delete", len(result.deleted)),
            ("status", int(result.status_patched)),
            ("event", len(result.events)),
        ):
            if count:
                metrics.WRITES.labels(write).inc(count)
        return result

    def _reconcile(self, namespace: str, name: str) -> ReconcileResult:
        result = ReconcileResult()
        self._clean_up_after_delete(namespace, name, result)  # a deleted life of this name, if any
        snapshot = self.cache.snapshot(namespace, name)
        raw = snapshot.model_deployment
        if raw is None or raw["metadata"].get("deletionTimestamp"):
            metrics.forget(namespace, name)
            return result  # gone or going: garbage collection removes the children
        now_dt = self.clock()
        now = now_dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        previous = parse_status(raw)
        old_status = dict(raw.get("status") or {})
        try:
            md = with_signing_default(parse_model_deployment(raw), self.default_signing_key_secret)
        except InvalidModelDeployment as exc:
            generation = raw["metadata"].get("generation")
            update = failed_status(previous, Reason.INVALID_SPEC, "; ".join(exc.problems), generation, now)
            update.events = update.events[-1:]  # one Event for the whole problem, not one per condition
            self._write_status(raw, update, old_status, now_dt, result)
            return result

        self.cache.record_claims(namespace, name, referenced_claims(md))
        observed = observe(snapshot, md)
        decided = plan(md, observed, previous, Owner(name=name, uid=raw["metadata"]["uid"]))
        update = status_of(md, decided, observed, previous, now)

        for manifest in decided.create:
            self._create(namespace, name, manifest, result)  # False: its earlier create's event is not in yet
        conflicts: list[str] = []
        for manifest in decided.apply:
            key = (manifest["kind"], manifest["metadata"]["name"])
            live = observed.children.get(key)
            if live is None:
                # Never server-side apply a name we do not own: apply with force would take over
                # someone else's object (and garbage collection would delete it with ours).
                if not self._create_child(namespace, name, manifest, result):
                    conflicts.append(f"{key[0]} {namespace}/{key[1]}")
                continue
            if is_subset(manifest, live):
                continue
            self.cache.upsert(key[0], self.kube.apply(manifest))
            result.applied.append(f"{key[0]}/{key[1]}")
            log.info("%s/%s: updated %s %s", namespace, name, key[0], key[1])
        if conflicts:
            result.conflicts = conflicts
            observed = dataclasses.replace(observed, conflicts=tuple(conflicts))
            update = status_of(md, decided, observed, previous, now)
        for kind, child in decided.delete:
            deleted = self.kube.delete(kind, namespace, child)
            self.cache.delete(kind, namespace, child)
            if deleted:
                result.deleted.append(f"{kind}/{child}")
                log.info("%s/%s: deleted %s %s (no longer wanted)", namespace, name, kind, child)
        for job in decided.cancel:
            # Background propagation: the Job's pods go too (their processes get SIGTERM).
            deleted = self.kube.delete("Job", namespace, job.name)
            self.cache.delete("Job", namespace, job.name)
            if deleted:
                result.deleted.append(f"Job/{job.name}")
                self._cancelled_event(raw, cancelled_event(job, decided.desired), now_dt, result)

        self._write_status(raw, update, old_status, now_dt, result)
        record_status_metrics(namespace, name, update.status)
        return result

    def _clean_up_after_delete(self, namespace: str, name: str, result: ReconcileResult) -> None:
        """After a ModelDeployment was deleted: a Job (owned by nothing, removed by its TTL) deletes
        the artifact folders it built. No finalizer: a deletion never waits for the operator."""
        body = self.cache.take_deleted(namespace, name)
        if body is None:
            return
        try:
            md = parse_model_deployment(body)
        except InvalidModelDeployment:
            return  # never valid: it built nothing
        if not md.metadata.uid:
            return
        try:
            self._create(namespace, name, build_delete_cleanup_job(md), result)
        except ApiError as exc:
            if exc.status in (403, 404):  # the namespace is going away, and its claims with it
                log.info("%s/%s: no artifact cleanup Job: %s", namespace, name, exc.message)
                return
            self.cache.remember_deleted(body)  # retried with back-off
            raise

    def _create(self, namespace: str, md_name: str, manifest: dict[str, Any], result: ReconcileResult) -> bool:
        """POST the object and cache the answer; False when the name is taken (409)."""
        kind, child = manifest["kind"], manifest["metadata"]["name"]
        created = self.kube.create(manifest)
        if created is None:
            return False
        self.cache.upsert(kind, created)
        result.created.append(f"{kind}/{child}")
        log.info("%s/%s: created %s %s", namespace, md_name, kind, child)
        return True

    def _create_child(self, namespace: str, md_name: str, manifest: dict[str, Any], result: ReconcileResult) -> bool:
        """Create a child the cache does not hold; False when its name is taken by an object we do
        not own. A name taken by our own object (its watch event not in yet) is ours: cached, True."""
        kind, child = manifest["kind"], manifest["metadata"]["name"]
        if self._create(namespace, md_name, manifest, result):
            return True
        existing = self.kube.list(kind, namespace, field_selector=f"metadata.name={child}")
        uid = manifest["metadata"]["ownerReferences"][0]["uid"]  # the builders always set it in a reconcile
        if existing and any(r.get("uid") == uid for r in existing[0]["metadata"].get("ownerReferences", [])):
            self.cache.upsert(kind, {**existing[0], "apiVersion": manifest["apiVersion"], "kind": kind})
            return True
        log.warning("%s/%s: %s %s exists and is not ours: left untouched", namespace, md_name, kind, child)
        return False

    def _write_status(
        self, raw: dict[str, Any], update: StatusUpdate, old: dict[str, Any], now: datetime, result: ReconcileResult
    ) -> None:
        """Patch status when it changed, then post the Events of its transitions."""
        new = update.status.to_api()
        ours = {f.alias or n for n, f in ModelDeploymentStatus.model_fields.items()}
        meta = raw["metadata"]
        if {k: v for k, v in old.items() if k in ours} != new:
            try:
                patched = self.kube.patch_status(KIND, meta["namespace"], meta["name"], status_patch(new, old))
            except ApiError as exc:
                if exc.status == 404:
                    return  # deleted meanwhile
                raise
            self.cache.upsert(KIND, patched)
            result.status_patched = True
        for event in update.events:
            self._event(raw, event, now, result)

    def _cancelled_event(self, raw: dict[str, Any], event: EventSpec, now: datetime, result: ReconcileResult) -> None:
        """An Event that is no condition's transition (so no transition metric): a cancelled Job."""
        meta = raw["metadata"]
        log.info("%s/%s: %s: %s", meta["namespace"], meta["name"], event.reason, event.message)
        try:
            stamp = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            self.kube.emit_event(raw, event.type, event.reason, event.message, "Cancel", stamp)
        except ApiError as exc:  # best effort, like every Event
            log.warning("%s/%s: could not post Event %s: %s", meta["namespace"], meta["name"], event.reason, exc)
            return
        result.events.append(event.reason)

    def _event(self, raw: dict[str, Any], event: EventSpec, now: datetime, result: ReconcileResult) -> None:
        meta = raw["metadata"]
        level = logging.WARNING if event.type == "Warning" else logging.INFO
        log.log(level, "%s/%s: %s: %s", meta["namespace"], meta["name"], event.reason, event.message)
        try:
            self.kube.emit_event(
                raw, event.type, event.reason, event.message, "Reconcile", now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            )
            metrics.TRANSITIONS.labels(event.message.split("=", 1)[0], event.reason).inc()
        except ApiError as exc:  # an Event is best effort; never fail the reconcile for it
            log.warning("%s/%s: could not post Event %s: %s", meta["namespace"], meta["name"], event.reason, exc)
            return
        result.events.append(event.reason)
