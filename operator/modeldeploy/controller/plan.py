"""The planner: from a ModelDeployment and what was observed, decide which artifact serves and
which children should exist. Pure: no I/O. What the status says about it is `status`'s job.

Which artifact serves:
- the artifact the spec asks for, once its optimization Job succeeded (or at once for a SavedModel
  served as is, or when status.history says it served before: an instant rollback, no Job);
- otherwise the last artifact that served (status.servedArtifact/servedUri), untouched, while the
  new one is built or after it failed;
- otherwise nothing yet: no Deployment until the first artifact exists.

With strategy Canary, the pods we build (the desired revision) replace what the stable Deployment
runs only through `rollout.decide`: while a canary runs or after it was aborted, the stable
Deployment and its ConfigMaps are left untouched and a canary Deployment takes the step's share.

With spec.rollout.trafficRouting.gatewayAPI, the serving children also include the two track
Services and the HTTPRoute (builders/traffic.py), whose canary weight is the rollout's
(0 outside a rollout); when the API server does not serve HTTPRoute, they are not built and the
plan carries the problem (`routing_blocked`) for the Ready condition.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from modeldeploy.analysis.promql import Sample
from modeldeploy.api import ModelDeployment
from modeldeploy.api.reasons import Reason
from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.api.status import HistoryEntry, LayerSparsity, ModelDeploymentStatus, OptimizationResult, WorstSlice
from modeldeploy.controller.builders import (
    Owner,
    build_job,
    build_network_policy,
    build_serving_children,
    desired_artifact,
    needs_job,
)
from modeldeploy.controller.builders.artifacts import Artifact, signing_key_secret
from modeldeploy.controller.builders.cleanup import build_prune_job
from modeldeploy.controller.builders.deployment import (
    build_canary_configmaps,
    build_canary_deployment,
    revision_of,
    template_revision,
)
from modeldeploy.controller.builders.labels import REVISION_ANNOTATION, with_applied_digest
from modeldeploy.controller.builders.manifest import Manifest
from modeldeploy.controller.builders.names import (
    canary_model_config_name,
    canary_name,
    canary_serving_config_name,
    prune_job_name,
    serving_name,
)
from modeldeploy.controller.builders.traffic import build_traffic_children, traffic_child_keys
from modeldeploy.controller.drift import is_subset
from modeldeploy.controller.history import artifact_from_history, find_rollback, result_from_history
from modeldeploy.controller.rollout import CanaryView, RolloutDecision, RolloutInput, StableView, decide
from modeldeploy.controller.views import JobState, JobView, Observed
from modeldeploy.k8s.kinds import PRUNABLE_KINDS


@dataclass(frozen=True)
class Blocked:
    """A problem the schema cannot catch (a missing claim): nothing is created, what serves stays."""

    reason: str
    message: str


@dataclass
class Plan:
    desired: Artifact  # what the spec asks for
    serve: Artifact | None  # what the serving children run (desired, else the previous, else none)
    job: JobView | None  # the optimization Job of the desired artifact, if any
    result: OptimizationResult | None  # the optimizer's report for what is served or built
    blocked: Blocked | None = None
    create: list[Manifest] = field(default_factory=list)  # created once, never updated (Jobs)
    apply: list[Manifest] = field(default_factory=list)  # server-side applied
    delete: list[tuple[str, str]] = field(default_factory=list)  # (kind, name)
    # Running optimization Jobs of artifacts the spec no longer asks for: deleted, each with an Event.
    cancel: list[JobView] = field(default_factory=list)
    # (kind, name) -> the manifest to create the child with, when it differs from what is applied
    initial: dict[tuple[str, str], Manifest] = field(default_factory=dict)
    # strategy Canary with a stable Deployment: where the rollout stands and what it needs
    rollout: RolloutDecision | None = None
    # rollout.trafficRouting.gatewayAPI cannot be realised (no HTTPRoute kind): Ready says so
    routing_blocked: Blocked | None = None
    # The history entry the desired artifact is served from, without a Job (an instant rollback).
    rollback: HistoryEntry | None = None


def result_from_job(job: JobView) -> OptimizationResult:
    """The optimizer's summary of a succeeded Job, as the status records it."""
    s = job.summary
    if s is None:
        return OptimizationResult(job_name=job.name, artifact_hash=job.artifact_hash)
    return OptimizationResult(
        job_name=job.name,
        artifact_hash=job.artifact_hash,
        artifact_format=s.format,
        artifact_sha256=s.artifact_sha256,
        manifest_sha256=s.manifest_sha256,
        original_bytes=s.original_bytes,
        optimized_bytes=s.optimized_bytes,
        original_gzip_bytes=s.original_gzip_bytes,
        optimized_gzip_bytes=s.optimized_gzip_bytes,
        sparsity=LayerSparsity(dense=s.sparsity.dense, conv=s.sparsity.conv) if s.sparsity else None,
        accuracy_before=s.accuracy_before,
        accuracy_after=s.accuracy_after,
        latency_p50_ms=s.latency_p50_ms,
        latency_p95_ms=s.latency_p95_ms,
        duration_seconds=s.duration_seconds,
        signer=s.signer,
        signature_sha256=s.signature_sha256,
        source_signer=s.source_signer,
        metric=s.metric,
        worst_slice=WorstSlice.model_validate(s.worst_slice.model_dump()) if s.worst_slice else None,
    )


def previous_artifact(md: ModelDeployment, previous: ModelDeploymentStatus) -> Artifact | None:
    """The artifact the status says was served last, to keep serving it."""
    if previous.served_artifact and previous.served_uri and previous.served_version:
        manifest = previous.optimization.manifest_sha256 if previous.optimization else None
        return Artifact(
            previous.served_artifact,
            previous.served_version,
            optimized=True,
            location=previous.served_uri,
            model_name=md.spec.model.name,
            manifest_sha256=manifest,
            # A signed artifact stays verified against the signing Secret the spec names now.
            signing_key_secret=signing_key_secret(md.spec)
            if previous.optimization and previous.optimization.signature_sha256
            else None,
        )
    return None


def _retention(
    md: ModelDeployment,
    observed: Observed,
    previous: ModelDeploymentStatus,
    desired: Artifact,
    serve: Artifact | None,
    owner: Owner,
    out: Plan,
) -> list[Manifest]:
    """Once an artifact of our store serves, one cleanup Job removes the older ones beyond
    spec.artifacts.retain; it stays (finished) while that artifact serves, so it runs once. Finished
    cleanup Jobs of artifacts served before are removed."""
    wanted = prune_job_name(md.name, serve.hash) if serve is not None and serve.optimized else None
    out.delete += [("Job", n) for n, finished in sorted(observed.cleanup_jobs.items()) if n != wanted and finished]
    if serve is None or wanted is None or wanted in observed.cleanup_jobs:
        return []
    # Never remove what the spec asks for, what served before, what the pods still run, or what
    # status.history lists (the audit trail names it, and an instant rollback serves it again).
    keep = {desired.hash, previous.served_artifact or ""} | {e.artifact_hash for e in previous.history}
    if observed.deployment is not None:
        keep.add(observed.deployment.artifact_hash)
    return [build_prune_job(md, serve.hash, keep, owner)]


def rollback_from_history(
    spec: ModelDeploymentSpec, desired: Artifact, previous: ModelDeploymentStatus, *, succeeded: bool
) -> HistoryEntry | None:
    """The history entry to serve the desired artifact from, when it would otherwise need a Job
    that has not succeeded: the spec went back to an artifact that served before."""
    if succeeded or not needs_job(spec):
        return None
    return find_rollback(previous.history, desired.hash)


def initial_deployment(md: ModelDeployment, deployment: Manifest) -> Manifest:
    """Under an HPA the applied Deployment has no replicas (the HPA owns them); created without, it
    would start at 1, below minReplicas, until the HPA's next pass."""
    return {**deployment, "spec": {**deployment["spec"], "replicas": md.spec.autoscaling.min_replicas}}


def stable_revision(desired: Manifest, live: dict[str, Any]) -> str:
    """What the live stable Deployment runs: its revision annotation; a Deployment of an older
    operator has none, and runs our revision when its template already has every field we set."""
    annotated = live["metadata"].get("annotations", {}).get(REVISION_ANNOTATION)
    if annotated:
        return str(annotated)
    if is_subset(desired["spec"]["template"], live.get("spec", {}).get("template", {})):
        return revision_of(desired)
    return template_revision(live.get("spec", {}).get("template", {}))


def decide_rollout(
    md: ModelDeployment,
    observed: Observed,
    previous: ModelDeploymentStatus,
    serve: Artifact,
    deployment: Manifest,
    now: datetime,
    samples: dict[str, Sample] | None,
    promote_directly: str | None = None,
) -> RolloutDecision | None:
    """The step machine's input from what was observed; None without a live stable Deployment (the
    first Deployment is created directly). `promote_directly`: why this revision skips the canary
    steps (a rollback to a revision that served before), if it does."""
    live = observed.children.get(("Deployment", serving_name(md.name)))
    stable = observed.deployment
    if live is None or stable is None:
        return None
    revision = revision_of(deployment)
    canary = observed.canary
    return decide(
        RolloutInput(
            rollout=md.spec.rollout,
            previous=previous.rollout,
            revision=revision,
            version=serve.version,
            artifact_hash=serve.hash,
            stable=StableView(
                revision=stable_revision(deployment, live),
                replicas=stable.spec_replicas,
                ready=stable.ready_replicas,
                available=stable.available_replicas,
                updated=stable.updated_replicas,
                rolled=stable.rolled,
            ),
            canary=CanaryView(
                revision=canary.revision,
                replicas=canary.spec_replicas,
                ready=canary.ready_replicas,
                available=canary.available_replicas,
                updated=canary.updated_replicas,
                rolled=canary.rolled,
            )
            if canary is not None
            else None,
            canary_restarts=observed.canary_restarts.get(revision, 0),
            now=now,
            samples=samples,
            exact_weights=md.spec.rollout.traffic_routing.gateway_api is not None,
            promote_directly=promote_directly,
        )
    )


def _serving(
    md: ModelDeployment,
    observed: Observed,
    previous: ModelDeploymentStatus,
    serve: Artifact,
    owner: Owner,
    out: Plan,
    rollout: tuple[datetime, dict[str, Sample] | None] | None,
) -> set[tuple[str, str]]:
    """The serving children to apply, as the rollout allows; returns every (kind, name) wanted."""
    children = build_serving_children(md, serve, owner)
    deployment = next(c for c in children if c["kind"] == "Deployment")
    rolled_back = out.rollback is not None and out.rollback.artifact_hash == serve.hash
    # A revision that served all traffic before (status.history) is trusted: no canary steps.
    direct = f"version {serve.version} served before (status.history): promoted without canary steps"
    decision = (
        decide_rollout(md, observed, previous, serve, deployment, *rollout, direct if rolled_back else None)
        if rollout
        else None
    )
    out.rollout = decision
    hold = decision is not None and decision.holds_stable
    wanted: set[tuple[str, str]] = set()
    for child in children:
        key = (child["kind"], child["metadata"]["name"])
        wanted.add(key)
        if hold and child["kind"] in ("Deployment", "ConfigMap"):
            continue  # the stable pods and what they read stay as they are until promotion
        out.apply.append(child)
        if child["kind"] == "Deployment" and md.spec.autoscaling.enabled:
            out.initial[key] = initial_deployment(md, child)
    canary_keys = [
        ("Deployment", canary_name(md.name)),
        ("ConfigMap", canary_model_config_name(md.name)),
        ("ConfigMap", canary_serving_config_name(md.name)),
    ]
    if decision is not None and decision.canary_replicas > 0:
        configmaps = [c for c in children if c["kind"] == "ConfigMap"]
        out.apply += build_canary_configmaps(md, configmaps)
        out.apply.append(build_canary_deployment(md, deployment, decision.canary_replicas))
        wanted.update(canary_keys)
    else:
        out.delete += [key for key in canary_keys if key in observed.children]
    return wanted


HTTP_ROUTE = "HTTPRoute"


def gateway_api_missing(md: ModelDeployment, observed: Observed) -> Blocked | None:
    """The spec asks for an HTTPRoute the API server cannot store."""
    if md.spec.rollout.traffic_routing.gateway_api is None or HTTP_ROUTE not in observed.missing_kinds:
        return None
    message = (
        "rollout.trafficRouting.gatewayAPI is set, but the API server does not serve HTTPRoute "
        "(gateway.networking.k8s.io/v1): install the Gateway API CRDs, then restart the operator; "
        "no HTTPRoute or track Service is created until then"
    )
    return Blocked(Reason.GATEWAY_API_NOT_INSTALLED, message)


def plan(
    md: ModelDeployment,
    observed: Observed,
    previous: ModelDeploymentStatus,
    owner: Owner,
    *,
    now: datetime | None = None,
    samples: dict[str, Sample] | None = None,
    canary_weight: int | None = None,
) -> Plan:
    """`now` drives a canary rollout (strategy Canary); without it the serving children are applied
    as with RollingUpdate. `samples`: the Prometheus answers when `plan(...).rollout.wants_analysis`.
    `canary_weight`: the HTTPRoute's canary percentage (gatewayAPI only) when given; by default the
    rollout's (0 outside a rollout)."""
    spec = md.spec
    desired = desired_artifact(md.name, spec, md.namespace)
    job = observed.jobs.get(desired.hash)

    if observed.missing_claims:
        claims = ", ".join(observed.missing_claims)
        blocked = Blocked(
            Reason.PERSISTENT_VOLUME_CLAIM_NOT_FOUND, f"PersistentVolumeClaim {claims} not found in the namespace"
        )
        return Plan(desired, None, job, previous.optimization, blocked)

    succeeded = job is not None and job.state == JobState.SUCCEEDED
    # The optimizer pod's termination message is gone once its pod is (deleted by hand, evicted,
    # garbage-collected): the status recorded it when the Job finished. Without it the serving pods
    # would lose their verify-model init container and serve the artifact unverified.
    recorded = previous.optimization if succeeded and job is not None and job.summary is None else None
    if recorded is not None and recorded.artifact_hash != desired.hash:
        recorded = None
    if succeeded and job is not None and job.summary is not None:
        desired = dataclasses.replace(desired, manifest_sha256=job.summary.manifest_sha256)
    elif recorded is not None:
        desired = dataclasses.replace(desired, manifest_sha256=recorded.manifest_sha256)
    rollback = rollback_from_history(spec, desired, previous, succeeded=succeeded)
    if rollback is not None:
        desired = artifact_from_history(desired, rollback)
    desired_ready = not needs_job(spec) or succeeded or rollback is not None
    serve = desired if desired_ready else previous_artifact(md, previous)
    result = result_from_job(job) if succeeded and job is not None and recorded is None else previous.optimization
    if rollback is not None and (result is None or result.artifact_hash != rollback.artifact_hash):
        result = result_from_history(rollback)  # the report of the Job that built it, as far as kept
    out = Plan(desired, serve, job, result, rollback=rollback)

    if needs_job(spec) and job is None and rollback is None:
        out.create.append(build_job(md, owner))
    # Jobs of artifacts that are neither wanted nor serving are history: remove finished ones, and
    # cancel running ones (only the newest wanted artifact may hold a CPU and a few GiB; quick edits
    # would otherwise run one Job per edit at once and delay the version finally asked for).
    keep = {desired.hash} | ({serve.hash} if serve else set())
    superseded = [j for j in observed.jobs.values() if j.artifact_hash not in keep]
    out.delete += [("Job", j.name) for j in superseded if j.state != JobState.RUNNING]
    out.cancel += [j for j in superseded if j.state == JobState.RUNNING]

    out.create += _retention(md, observed, previous, desired, serve, owner, out)

    policy = build_network_policy(md, owner)
    out.apply.append(policy)
    wanted: set[tuple[str, str]] = {(policy["kind"], policy["metadata"]["name"])}
    out.routing_blocked = gateway_api_missing(md, observed)
    if serve is not None:
        wanted |= _serving(md, observed, previous, serve, owner, out, (now, samples) if now is not None else None)
        if spec.rollout.traffic_routing.gateway_api is not None and out.routing_blocked is None:
            weight = canary_weight if canary_weight is not None else (out.rollout.weight if out.rollout else 0)
            for child in build_traffic_children(md, weight, owner):
                out.apply.append(child)
                wanted.add((child["kind"], child["metadata"]["name"]))
    # The track Services are Services like the main one: only their names say they may go.
    removable = traffic_child_keys(md.name)
    out.delete += [
        key for key in observed.children if key not in wanted and (key[0] in PRUNABLE_KINDS or key in removable)
    ]
    return with_digests(out)


def with_digests(out: Plan) -> Plan:
    """Every manifest that leaves the planner carries its applied digest (see `applied_digest`); the
    manifest a child is created with carries the digest of the one applied later, so that creating it
    costs no apply afterwards."""
    applied = {(m["kind"], m["metadata"]["name"]): m for m in out.apply}
    out.initial = {key: with_applied_digest(m, applied.get(key, m)) for key, m in out.initial.items()}
    out.apply = [with_applied_digest(m) for m in out.apply]
    out.create = [with_applied_digest(m) for m in out.create]
    return out


__all__ = [
    "Blocked",
    "Plan",
    "decide_rollout",
    "initial_deployment",
    "plan",
    "previous_artifact",
    "result_from_job",
    "rollback_from_history",
    "stable_revision",
    "with_digests",
]
