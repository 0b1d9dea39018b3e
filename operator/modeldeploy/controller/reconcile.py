"""The one idempotent reconcile: observe -> plan -> apply what differs -> status on change.

Every trigger (the ModelDeployment changed, a child changed, the periodic resync) queues the key;
a worker calls `Reconciler.reconcile(namespace, name)`, which never assumes which event woke it.
It reads only the cache (no request), and writes only what differs: a child is applied when the
live object lacks a field we set or carries another applied digest (a field we no longer set),
status is patched when it changed, Events are posted on the transitions a user cares about. Every
write's answer goes into the cache at once.

A write the API server refuses (invalid, forbidden) is not an error to retry: the same manifest
gets the same answer. It becomes a `ChildRejected` condition with the API server's message, and
the reconciler remembers it: until the manifest we want or the live child changes, the next passes
send nothing (no write per resync for an object that cannot be stored).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modeldeploy.analysis import prometheus
from modeldeploy.api import KIND, InvalidModelDeployment, ModelDeployment, parse_model_deployment, parse_status
from modeldeploy.api.reasons import ConditionType, Reason
from modeldeploy.api.spec import PrometheusCheck
from modeldeploy.api.status import ConditionStatus, ModelDeploymentStatus, RolloutStatus
from modeldeploy.controller import metrics, ownership
from modeldeploy.controller.builders import Owner
from modeldeploy.controller.builders.artifacts import with_signing_default
from modeldeploy.controller.builders.cleanup import build_delete_cleanup_job
from modeldeploy.controller.cache import Cache
from modeldeploy.controller.drift import is_subset, service_ports_repair
from modeldeploy.controller.observe import observe, referenced_claims
from modeldeploy.controller.plan import plan
from modeldeploy.controller.rollout import stamp
from modeldeploy.controller.status import EventSpec, StatusUpdate, cancelled_event, failed_status, status_of
from modeldeploy.controller.views import Rejection
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
    rejected: list[str] = field(default_factory=list)  # children the API server refused (now or before)
    requeue_after: float | None = None  # seconds until a canary step is due (end of a pause, a check)

    @property
    def wrote(self) -> bool:
        return bool(self.created or self.applied or self.deleted or self.status_patched or self.events)


def _removed(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """`new`, plus null for every key of `old` it no longer has, at every depth: a merge patch merges
    nested objects, so a field unset inside one (status.rollout.stepReadyAt when a step starts)
    would otherwise keep its old value."""
    patch = dict(new)
    for key, before in old.items():
        if key not in new:
            patch[key] = None
        elif isinstance(before, dict) and isinstance(new[key], dict):
            patch[key] = _removed(new[key], before)
    return patch


def status_patch(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """A merge patch that also removes our fields that are no longer set, nested ones included."""
    ours = {f.alias or n for n, f in ModelDeploymentStatus.model_fields.items()}
    return _removed(new, {k: v for k, v in old.items() if k in ours})


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


ChildKey = tuple[str, str, str, str]  # (namespace, ModelDeployment, kind, child name)


@dataclass(frozen=True)
class RefusedWrite:
    """A write the API server refused, and what it was made from: sending the same manifest to the
    same live child again would be refused again."""

    manifest_digest: str
    live_version: str | None  # the live child's generation (resourceVersion for kinds without), None: absent
    rejection: Rejection


def manifest_digest(manifest: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def live_version(live: dict[str, Any] | None) -> str | None:
    if live is None:
        return None
    meta = live["metadata"]
    return str(meta.get("generation") or meta.get("resourceVersion") or "")


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
        # Refused writes, by child. Only the worker holding a ModelDeployment's key touches its entries.
        self.refused: dict[ChildKey, RefusedWrite] = {}
        # Optional kinds the API server does not serve (the runtime asks discovery at start).
        self.missing_kinds: frozenset[str] = frozenset()

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
            self._forget_refused(namespace, name, keep=set())
            return result  # gone or going: garbage collection removes the children
        now_dt = self.clock()
        now = stamp(now_dt)
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
        observed = observe(snapshot, md, missing_kinds=self.missing_kinds)
        owner = Owner(name=name, uid=raw["metadata"]["uid"])
        decided = plan(md, observed, previous, owner, now=now_dt)
        if decided.rollout is not None and decided.rollout.wants_analysis and decided.rollout.status is not None:
            samples = self._analyse(md, decided.rollout.status)
            decided = plan(md, observed, previous, owner, now=now_dt, samples=samples)
        if decided.rollout is not None:
            result.requeue_after = decided.rollout.requeue_after
        update = status_of(md, decided, observed, previous, now)

        rejected: list[Rejection] = []
        written: set[ChildKey] = set()
        for manifest in decided.create:
            # False from _create: its earlier create's event is not in yet
            create = functools.partial(self._create, namespace, name, manifest, result)
            rejected += self._guarded(namespace, name, manifest, None, create, written)
        conflicts: list[str] = []
        for manifest in decided.apply:
            key = (manifest["kind"], manifest["metadata"]["name"])
            live = observed.children.get(key)
            if live is None:
                # Never server-side apply a name we do not own: apply with force would take over
                # someone else's object (and garbage collection would delete it with ours).
                initial = decided.initial.get(key, manifest)
                create_child = functools.partial(self._create_or_conflict, namespace, name, initial, result, conflicts)
                rejected += self._guarded(namespace, name, manifest, None, create_child, written)
                continue
            if is_subset(manifest, live):
                continue
            created_with = decided.initial.get(key)
            update_child = functools.partial(self._update, namespace, name, manifest, live, result, created_with)
            rejected += self._guarded(namespace, name, manifest, live, update_child, written)
        self._forget_refused(namespace, name, keep=written)
        if result.applied:
            # Status tells what this pass did: an applied Deployment has a generation its controller has
            # not seen yet (the answer is in the cache), so an edit is RollingOut, never the Ready that
            # was observed before the apply.
            observed = observe(self.cache.snapshot(namespace, name), md, missing_kinds=self.missing_kinds)
        if conflicts or rejected:
            result.conflicts = conflicts
            result.rejected = [f"{r.kind}/{r.name}" for r in rejected]
            observed = dataclasses.replace(observed, conflicts=tuple(conflicts), rejected=tuple(rejected))
        if result.applied or conflicts or rejected:
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

    def _analyse(self, md: ModelDeployment, rollout: RolloutStatus) -> dict[str, prometheus.Sample]:
        """Run the canary's Prometheus checks (one instant query each), at once: the worker waits for
        the slowest query (timeoutSeconds), not for their sum. The client never raises by contract;
        anything it does raise still becomes a failed measurement, never a failed reconcile."""
        config = md.spec.rollout.analysis.prometheus
        if config is None:
            return {}

        def measure(check: PrometheusCheck) -> prometheus.Sample:
            promql = prometheus.render_query(
                check.query, md.namespace or "", md.name, rollout.version, rollout.revision
            )
            try:
                return prometheus.query(config.url, promql, config.timeout_seconds)
            except Exception as exc:  # a client defect must not stop the reconcile
                return prometheus.Sample(error=f"Prometheus at {config.url}: {exc!r}")

        with ThreadPoolExecutor(max_workers=len(config.checks), thread_name_prefix="modeldeploy-analysis") as pool:
            answers = list(pool.map(measure, config.checks))
        return {check.name: sample for check, sample in zip(config.checks, answers, strict=True)}

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

    def _update(
        self,
        namespace: str,
        md_name: str,
        manifest: dict[str, Any],
        live: dict[str, Any],
        result: ReconcileResult,
        created_with: dict[str, Any] | None = None,
    ) -> None:
        """Bring an owned child back to what we want: server-side apply, forced, since the object is
        ours; first, when our create still owns fields (`ownership`), those become our apply's, so that
        fields we no longer set go; when a Service port of another manager holds one of our ports'
        names (apply alone would be refused for the duplicate name), the port list is replaced whole.
        `created_with`: the manifest the child is created with, when it differs from the applied one."""
        kind, child = manifest["kind"], manifest["metadata"]["name"]
        if ownership.marked(live) and not self._take_over_fields(namespace, md_name, manifest, live, created_with):
            return  # gone meanwhile: an apply would create it; its watch event brings a reconcile that does
        if kind == "Service" and (ports := service_ports_repair(manifest, live)) is not None:
            live = self.kube.merge_patch(kind, namespace, child, {"spec": {"ports": ports}})
            self.cache.upsert(kind, {**live, "apiVersion": manifest["apiVersion"], "kind": kind})
            log.info(
                "%s/%s: repaired the ports of Service %s (a port of ours was renumbered)", namespace, md_name, child
            )
            if is_subset(manifest, live):
                result.applied.append(f"{kind}/{child}")
                return
        self.cache.upsert(kind, self.kube.apply(manifest))
        result.applied.append(f"{kind}/{child}")
        log.info("%s/%s: updated %s %s", namespace, md_name, kind, child)

    def _take_over_fields(
        self,
        namespace: str,
        md_name: str,
        manifest: dict[str, Any],
        live: dict[str, Any],
        created_with: dict[str, Any] | None,
    ) -> bool:
        """Move the fields our create owns into our apply's ownership. Once per child, and the apply
        that follows removes what the spec no longer sets. A child as its create left it (the cache
        knows where our entry is) costs one patch; otherwise, or when that patch finds the cache was
        behind, a read and a patch of the whole list if nobody wrote in between (a conflict is
        retried). False: the child is gone."""
        kind, child = manifest["kind"], manifest["metadata"]["name"]
        keep_out = ownership.left_out(created_with, manifest)
        index = ownership.cached_update_entry(live)
        if index is not None:
            patch = ownership.take_over_patch(index, manifest["apiVersion"], keep_out)
            try:
                taken = self.kube.patch_managed_fields(kind, namespace, child, patch)
            except ApiError as exc:
                if exc.status == 404:
                    return False
                raise
            if taken is not None:
                self._took_over(namespace, md_name, kind, child)
                return True
        current = self.kube.get(kind, namespace, child)
        if current is None:
            return False
        meta = current["metadata"]
        upgraded = ownership.upgraded_managed_fields(meta.get("managedFields"), manifest["apiVersion"], keep_out)
        if upgraded is None:
            return True  # the cache was behind: already taken over
        self.kube.replace_managed_fields(kind, namespace, child, meta["resourceVersion"], upgraded)
        self._took_over(namespace, md_name, kind, child)
        return True

    @staticmethod
    def _took_over(namespace: str, md_name: str, kind: str, child: str) -> None:
        log.info(
            "%s/%s: took over the fields of %s %s it created, so that fields removed from the spec are removed "
            "from it too",
            namespace,
            md_name,
            kind,
            child,
        )

    def _guarded(
        self,
        namespace: str,
        md_name: str,
        manifest: dict[str, Any],
        live: dict[str, Any] | None,
        write: Callable[[], object],
        written: set[ChildKey],
    ) -> list[Rejection]:
        """Run one child's write; a refusal becomes a Rejection, remembered so that the same write
        to the same live child is not sent again. Other errors propagate (the queue backs off)."""
        kind, child = manifest["kind"], manifest["metadata"]["name"]
        key: ChildKey = (namespace, md_name, kind, child)
        written.add(key)
        digest, version = manifest_digest(manifest), live_version(live)
        known = self.refused.get(key)
        if known is not None and known.manifest_digest == digest and known.live_version == version:
            return [known.rejection]
        try:
            write()
        except ApiError as exc:
            if not exc.refused:
                raise
            rejection = Rejection(kind, f"{namespace}/{child}", exc.message, exc.fields)
            self.refused[key] = RefusedWrite(digest, version, rejection)
            log.warning("%s/%s: %s", namespace, md_name, rejection.describe())
            return [rejection]
        self.refused.pop(key, None)
        return []

    def _forget_refused(self, namespace: str, md_name: str, keep: set[ChildKey]) -> None:
        """Drop the remembered refusals of a ModelDeployment's children not in `keep`."""
        for key in [k for k in self.refused if k[:2] == (namespace, md_name) and k not in keep]:
            del self.refused[key]

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

    def _create_or_conflict(
        self, namespace: str, md_name: str, manifest: dict[str, Any], result: ReconcileResult, conflicts: list[str]
    ) -> None:
        if not self._create_child(namespace, md_name, manifest, result):
            conflicts.append(f"{manifest['kind']} {namespace}/{manifest['metadata']['name']}")

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
