"""The one idempotent reconcile: observe -> pure plan -> apply -> status.

Every trigger (the ModelDeployment changed, a child changed, the periodic resync) calls
`Reconciler.reconcile(namespace, name)`; it never assumes which event woke it. Writes happen only
when something differs: a child is applied when the live object lacks a field we set, status is
patched when it changed, Events are posted on condition transitions.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modeldeploy import metrics
from modeldeploy.api import InvalidModelDeployment, parse_model_deployment, parse_status
from modeldeploy.api.spec import pvc_parts, uri_scheme
from modeldeploy.api.status import ModelDeploymentStatus, Phase
from modeldeploy.builders import Owner, desired_artifact, needs_job
from modeldeploy.builders import names as child_names
from modeldeploy.builders.artifacts import claims_read
from modeldeploy.builders.deployment import VERIFY_CONTAINER
from modeldeploy.builders.labels import COMPONENT_LABEL, MODEL_DEPLOYMENT_LABEL, OPTIMIZER, SERVING
from modeldeploy.conditions import OPTIMIZED, READY, SERVING_READY, condition, merge_conditions, transition_events
from modeldeploy.k8s import ApiError, KubeClient
from modeldeploy.observed import Observed, is_subset, refused_artifacts, view_deployment, view_job
from modeldeploy.plan import plan

log = logging.getLogger("modeldeploy.reconcile")
KIND = "ModelDeployment"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
SERVING_KINDS = ("ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Outcome:
    """What one reconcile did (for logs, metrics and tests)."""

    created: list[str] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    status_patched: bool = False
    events: list[str] = field(default_factory=list)

    @property
    def wrote(self) -> bool:
        return bool(self.created or self.applied or self.deleted or self.status_patched or self.events)


def observe(kube: KubeClient, namespace: str, md_name: str, spec_claims: list[str]) -> Observed:
    selector = f"{MODEL_DEPLOYMENT_LABEL}={md_name},{COMPONENT_LABEL}={OPTIMIZER}"
    pods_by_job: dict[str, list[dict[str, Any]]] = {}
    for pod in kube.list("Pod", namespace, selector):
        pods_by_job.setdefault(pod["metadata"].get("labels", {}).get(JOB_NAME_LABEL, ""), []).append(pod)
    jobs = {}
    for job in kube.list("Job", namespace, selector):
        view = view_job(job, pods_by_job.get(job["metadata"]["name"], []))
        jobs[view.artifact_hash] = view
    children: dict[tuple[str, str], dict[str, Any]] = {}
    serving = child_names.serving_name(md_name)
    wanted_names = {
        "ConfigMap": (child_names.model_config_name(md_name), child_names.serving_config_name(md_name)),
        "Deployment": (serving,),
        "Service": (serving,),
        "HorizontalPodAutoscaler": (serving,),
        "PodDisruptionBudget": (serving,),
        "NetworkPolicy": (serving,),
    }
    for kind, names in wanted_names.items():
        for name in names:
            obj = kube.get(kind, namespace, name)
            if obj is not None and _owned_by(obj, md_name):
                children[(kind, name)] = obj
    deployment = children.get(("Deployment", serving))
    missing = tuple(c for c in spec_claims if kube.get("PersistentVolumeClaim", namespace, c) is None)
    serving_pods = kube.list("Pod", namespace, f"{MODEL_DEPLOYMENT_LABEL}={md_name},{COMPONENT_LABEL}={SERVING}")
    return Observed(
        refused_artifacts=refused_artifacts(serving_pods, VERIFY_CONTAINER),
        jobs=jobs,
        deployment=view_deployment(deployment) if deployment else None,
        children=children,
        missing_claims=missing,
    )


def _owned_by(obj: dict[str, Any], md_name: str) -> bool:
    refs = obj["metadata"].get("ownerReferences", [])
    return any(r.get("kind") == KIND and r.get("name") == md_name for r in refs)


def referenced_claims(md_name: str, md: Any) -> list[str]:
    """Every PersistentVolumeClaim a pod of this ModelDeployment would mount."""
    spec = md.spec
    claims = set(claims_read(spec))
    if needs_job(spec):
        claims.add(pvc_parts(spec.artifacts_uri(md_name))[0])
    elif uri_scheme(desired_artifact(md_name, spec).location) == "pvc":
        claims.add(pvc_parts(spec.model.storage_uri)[0])
    return sorted(claims)


def _status_patch(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """A merge patch that also removes our fields that are no longer set."""
    ours = {f.alias or n for n, f in ModelDeploymentStatus.model_fields.items()}
    patch = dict(new)
    for key in ours:
        if key not in new and key in old:
            patch[key] = None
    return patch


def record_status_metrics(namespace: str, name: str, status: ModelDeploymentStatus) -> None:
    ready = next((c for c in status.conditions if c.type == READY), None)
    metrics.READY.labels(namespace, name).set(1 if ready is not None and ready.status.value == "True" else 0)
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
    """Reconciles ModelDeployments; one at a time per object (kopf may call from several threads)."""

    def __init__(self, kube: KubeClient, clock: Callable[[], datetime] = utc_now) -> None:
        self.kube = kube
        self.clock = clock
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, namespace: str, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault((namespace, name), threading.Lock())

    def reconcile(self, namespace: str, name: str) -> Outcome:
        with self._lock(namespace, name), metrics.RECONCILE_SECONDS.time():
            try:
                outcome = self._reconcile(namespace, name)
            except Exception:
                metrics.RECONCILES.labels("error").inc()
                raise
        metrics.RECONCILES.labels("ok").inc()
        for write, count in (
            ("create", len(outcome.created)),
            ("apply", len(outcome.applied)),
            ("delete", len(outcome.deleted)),
            ("status", int(outcome.status_patched)),
            ("event", len(outcome.events)),
        ):
            if count:
                metrics.WRITES.labels(write).inc(count)
        return outcome

    def _reconcile(self, namespace: str, name: str) -> Outcome:
        outcome = Outcome()
        raw = self.kube.get(KIND, namespace, name)
        if raw is None or raw["metadata"].get("deletionTimestamp"):
            metrics.forget(namespace, name)
            return outcome  # gone or going: garbage collection removes the children
        now_dt = self.clock()
        now = now_dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        previous = parse_status(raw)
        old_status = {k: v for k, v in (raw.get("status") or {}).items()}
        try:
            md = parse_model_deployment(raw)
        except InvalidModelDeployment as exc:
            self._report_invalid(raw, previous, old_status, exc.problems, now, now_dt, outcome)
            return outcome

        observed = observe(self.kube, namespace, name, referenced_claims(name, md))
        owner = Owner(name=name, uid=raw["metadata"]["uid"])
        decided = plan(md, observed, previous, owner, now)

        for manifest in decided.create:
            if self.kube.create(manifest) is not None:
                outcome.created.append(f"{manifest['kind']}/{manifest['metadata']['name']}")
                log.info("%s/%s: created %s %s", namespace, name, manifest["kind"], manifest["metadata"]["name"])
        for manifest in decided.apply:
            key = (manifest["kind"], manifest["metadata"]["name"])
            live = observed.children.get(key)
            if live is not None and is_subset(manifest, live):
                continue
            self.kube.apply(manifest)
            outcome.applied.append(f"{key[0]}/{key[1]}")
            verb = "created" if live is None else "updated"
            log.info("%s/%s: %s %s %s", namespace, name, verb, key[0], key[1])
        for kind, child in decided.delete:
            if self.kube.delete(kind, namespace, child):
                outcome.deleted.append(f"{kind}/{child}")
                log.info("%s/%s: deleted %s %s (no longer wanted)", namespace, name, kind, child)

        self._write_status(raw, decided.status.to_api(), old_status, outcome)
        record_status_metrics(namespace, name, decided.status)
        for event in decided.events:
            self._event(raw, event.type, event.reason, event.message, now_dt, outcome)
        return outcome

    def _write_status(self, raw: dict[str, Any], new: dict[str, Any], old: dict[str, Any], outcome: Outcome) -> None:
        ours = {f.alias or n for n, f in ModelDeploymentStatus.model_fields.items()}
        if {k: v for k, v in old.items() if k in ours} == new:
            return
        meta = raw["metadata"]
        try:
            self.kube.patch_status(KIND, meta["namespace"], meta["name"], _status_patch(new, old))
        except ApiError as exc:
            if exc.status == 404:
                return  # deleted meanwhile
            raise
        outcome.status_patched = True

    def _event(
        self, raw: dict[str, Any], kind: str, reason: str, message: str, now: datetime, outcome: Outcome
    ) -> None:
        meta = raw["metadata"]
        log.log(
            logging.WARNING if kind == "Warning" else logging.INFO,
            "%s/%s: %s: %s",
            meta["namespace"],
            meta["name"],
            reason,
            message,
        )
        try:
            self.kube.emit_event(raw, kind, reason, message, "Reconcile", now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
            metrics.TRANSITIONS.labels(message.split("=", 1)[0], reason).inc()
        except ApiError as exc:  # an Event is best effort; never fail the reconcile for it
            log.warning("%s/%s: could not post Event %s: %s", meta["namespace"], meta["name"], reason, exc)
            return
        outcome.events.append(reason)

    def _report_invalid(
        self,
        raw: dict[str, Any],
        previous: ModelDeploymentStatus,
        old: dict[str, Any],
        problems: list[str],
        now: str,
        now_dt: datetime,
        outcome: Outcome,
    ) -> None:
        generation = raw["metadata"].get("generation")
        message = "; ".join(problems)
        conds = [condition(t, False, "InvalidSpec", message, generation) for t in (OPTIMIZED, SERVING_READY, READY)]
        status = previous.model_copy(
            update={
                "observed_generation": generation,
                "phase": Phase.FAILED,
                "conditions": merge_conditions(previous.conditions, conds, now),
            }
        )
        self._write_status(raw, status.to_api(), old, outcome)
        for event in transition_events(previous.conditions, status.conditions)[-1:]:
            self._event(raw, event.type, event.reason, event.message, now_dt, outcome)
