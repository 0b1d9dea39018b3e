"""The planner: from a ModelDeployment and what was observed, decide what should exist and what
the status says. Pure: no I/O, the clock is an argument.

Which artifact serves:
- the artifact the spec asks for, once its optimization Job succeeded (or at once for a SavedModel
  served as is);
- otherwise the last artifact that served (status.servedArtifact/servedUri), untouched, while the
  new one is built or after it failed;
- otherwise nothing yet: no Deployment until the first artifact exists.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from modeldeploy.api import ModelDeployment
from modeldeploy.api.spec import Quantization
from modeldeploy.api.status import (
    Condition,
    LayerSparsity,
    ModelDeploymentStatus,
    OptimizationResult,
    Phase,
)
from modeldeploy.builders import (
    Owner,
    build_job,
    build_network_policy,
    build_serving_children,
    desired_artifact,
    needs_job,
)
from modeldeploy.builders.artifacts import Artifact
from modeldeploy.builders.labels import SERVING, selector_labels
from modeldeploy.builders.service import model_url
from modeldeploy.conditions import (
    OPTIMIZED,
    READY,
    SERVING_READY,
    EventSpec,
    condition,
    merge_conditions,
    transition_events,
)
from modeldeploy.observed import JobView, Observed

# Children whose absence from the desired set means "delete it" (Jobs are handled separately).
PRUNABLE_KINDS = ("HorizontalPodAutoscaler", "PodDisruptionBudget")


@dataclass
class Plan:
    create: list[dict[str, Any]] = field(default_factory=list)  # created once, never updated (Jobs)
    apply: list[dict[str, Any]] = field(default_factory=list)  # server-side applied
    delete: list[tuple[str, str]] = field(default_factory=list)  # (kind, name)
    status: ModelDeploymentStatus = field(default_factory=ModelDeploymentStatus)
    events: list[EventSpec] = field(default_factory=list)


def _mb(size: int | None) -> str:
    return "?" if size is None else f"{size / 1e6:.2f}MB"


def optimized_summary(md: ModelDeployment, result: OptimizationResult | None) -> str:
    """The OPTIMIZED column: 'int8, 80% pruned', 'float16', 'dense 80%/conv 50% pruned', 'none'."""
    opt = md.spec.optimization
    if not needs_job(md.spec):
        return "none (served as is)"
    if not opt.enabled:
        return "none"
    parts = [opt.quantization.value] if opt.quantization != Quantization.NONE else []
    sparsity = result.sparsity if result and result.sparsity else None
    dense = sparsity.dense if sparsity and sparsity.dense is not None else opt.pruning.dense_sparsity
    conv = sparsity.conv if sparsity and sparsity.conv is not None else opt.pruning.conv_sparsity
    if opt.pruning.dense_sparsity and opt.pruning.conv_sparsity:
        parts.append(f"dense {dense:.0%}/conv {conv:.0%} pruned")
    elif opt.pruning.dense_sparsity or opt.pruning.conv_sparsity:
        parts.append(f"{max(dense or 0, conv or 0):.0%} pruned")
    return ", ".join(parts) or "none"


def result_from_summary(job: JobView) -> OptimizationResult:
    s = job.summary or {}
    sparsity = s.get("sparsity") if isinstance(s.get("sparsity"), dict) else None
    return OptimizationResult(
        job_name=job.name,
        artifact_hash=job.artifact_hash,
        artifact_format=s.get("format"),
        artifact_sha256=s.get("artifactSha256"),
        manifest_sha256=s.get("manifestSha256"),
        original_bytes=s.get("originalBytes"),
        optimized_bytes=s.get("optimizedBytes"),
        original_gzip_bytes=s.get("originalGzipBytes"),
        optimized_gzip_bytes=s.get("optimizedGzipBytes"),
        sparsity=LayerSparsity(dense=sparsity.get("dense"), conv=sparsity.get("conv")) if sparsity else None,
        accuracy_before=s.get("accuracyBefore"),
        accuracy_after=s.get("accuracyAfter"),
        latency_p50_ms=s.get("latencyP50Ms"),
        latency_p95_ms=s.get("latencyP95Ms"),
        duration_seconds=s.get("durationSeconds"),
    )


def _previous_artifact(md: ModelDeployment, previous: ModelDeploymentStatus) -> Artifact | None:
    if previous.served_artifact and previous.served_uri and previous.served_version:
        manifest = previous.optimization.manifest_sha256 if previous.optimization else None
        return Artifact(
            previous.served_artifact,
            previous.served_version,
            True,
            previous.served_uri,
            md.spec.model.name,
            manifest_sha256=manifest,
        )
    return None


def _optimization_condition(
    md: ModelDeployment, desired: Artifact, job: JobView | None, generation: int | None
) -> Condition:
    if not needs_job(md.spec):
        return condition(OPTIMIZED, True, "NotRequired", "the SavedModel is served as it is", generation)
    version = md.spec.model.version
    if job is None:
        return condition(OPTIMIZED, False, "Optimizing", f"starting the optimization of version {version}", generation)
    if job.state == "Running":
        why = f" ({job.reason}: {job.message})" if job.reason else ""
        return condition(
            OPTIMIZED, False, "Optimizing", f"Job {job.name} is optimizing version {version}{why}", generation
        )
    if job.state == "Failed":
        return condition(
            OPTIMIZED,
            False,
            job.reason or "JobFailed",
            f"Job {job.name} failed: {job.message}".rstrip(": "),
            generation,
        )
    return condition(OPTIMIZED, True, "Optimized", f"Job {job.name} built artifact {desired.hash}", generation)


def plan(md: ModelDeployment, observed: Observed, previous: ModelDeploymentStatus, owner: Owner, now: str) -> Plan:
    out = Plan()
    spec = md.spec
    generation = md.metadata.generation
    desired = desired_artifact(md.name, spec)

    if observed.missing_claims:
        claims = ", ".join(observed.missing_claims)
        reason, message = "PersistentVolumeClaimNotFound", f"PersistentVolumeClaim {claims} not found in the namespace"
        return _blocked(md, previous, reason, message, now)

    job = observed.jobs.get(desired.hash)
    if needs_job(spec) and job is None:
        out.create.append(build_job(md, owner))
    optimized = _optimization_condition(md, desired, job, generation)

    desired_ready = not needs_job(spec) or (job is not None and job.state == "Succeeded")
    if job is not None and job.state == "Succeeded" and job.summary:
        desired = dataclasses.replace(desired, manifest_sha256=job.summary.get("manifestSha256"))
    serve = desired if desired_ready else _previous_artifact(md, previous)
    result = previous.optimization
    if job is not None and job.state == "Succeeded":
        result = result_from_summary(job)

    # Jobs of artifacts that are neither wanted nor serving are history: remove finished ones.
    keep = {desired.hash} | ({serve.hash} if serve else set())
    out.delete += [
        ("Job", j.name) for j in observed.jobs.values() if j.artifact_hash not in keep and j.state != "Running"
    ]

    policy = build_network_policy(md, owner)
    out.apply.append(policy)
    wanted: set[tuple[str, str]] = {(policy["kind"], policy["metadata"]["name"])}
    if serve is not None:
        for child in build_serving_children(md, serve, owner):
            out.apply.append(child)
            wanted.add((child["kind"], child["metadata"]["name"]))
    out.delete += [key for key in observed.children if key[0] in PRUNABLE_KINDS and key not in wanted]

    serving = _serving_condition(md, serve, observed, generation)
    still_serving = observed.deployment is not None and observed.deployment.available
    ready = _ready_condition(md, desired, serve, optimized, serving, generation, still_serving)
    deployment = observed.deployment
    status = ModelDeploymentStatus(
        observed_generation=generation,
        phase=_phase(desired, serve, optimized, serving, ready),
        served_version=serve.version if serve else None,
        served_artifact=serve.hash if serve else None,
        served_uri=serve.location if serve else None,
        optimization=result,
        optimized_summary=optimized_summary(md, result) if serve else None,
        size_summary=(
            f"{_mb(result.optimized_bytes)}/{_mb(result.original_bytes)}"
            if result and result.optimized_bytes is not None
            else None
        ),
        replicas=deployment.replicas if deployment else 0,
        ready_replicas=deployment.ready_replicas if deployment else 0,
        selector=",".join(f"{k}={v}" for k, v in selector_labels(md.name, SERVING).items()),
        url=model_url(md) if serve else None,
        conditions=merge_conditions(previous.conditions, [optimized, serving, ready], now),
    )
    out.status = status
    out.events = transition_events(previous.conditions, status.conditions)
    return out


def _serving_condition(
    md: ModelDeployment, serve: Artifact | None, observed: Observed, generation: int | None
) -> Condition:
    dep = observed.deployment
    if serve is None:
        return condition(SERVING_READY, False, "NoArtifact", "waiting for the first optimized artifact", generation)
    if serve.hash in observed.refused_artifacts:
        return condition(
            SERVING_READY,
            False,
            "ArtifactVerificationFailed",
            f"serving pods refused version {serve.version}: {observed.refused_artifacts[serve.hash]}",
            generation,
        )
    if dep is None:
        return condition(SERVING_READY, False, "Creating", "creating the TF Serving Deployment", generation)
    if dep.artifact_hash != serve.hash or dep.observed_generation < dep.generation:
        return condition(
            SERVING_READY, False, "RollingOut", f"rolling out version {serve.version} ({serve.hash})", generation
        )
    if dep.progressing_reason == "ProgressDeadlineExceeded":
        return condition(SERVING_READY, False, "ProgressDeadlineExceeded", dep.progressing_message, generation)
    if dep.updated_replicas < dep.replicas:
        return condition(
            SERVING_READY,
            False,
            "RollingOut",
            f"{dep.updated_replicas}/{dep.replicas} pods run version {serve.version}",
            generation,
        )
    if dep.available and (dep.ready_replicas > 0 or dep.replicas == 0):
        return condition(
            SERVING_READY,
            True,
            "Available",
            f"{dep.ready_replicas}/{dep.replicas} TF Serving pods ready with version {serve.version}",
            generation,
        )
    return condition(
        SERVING_READY,
        False,
        "Unavailable",
        dep.unavailable_message or f"{dep.ready_replicas}/{dep.replicas} TF Serving pods ready",
        generation,
    )


def _ready_condition(
    md: ModelDeployment,
    desired: Artifact,
    serve: Artifact | None,
    optimized: Condition,
    serving: Condition,
    generation: int | None,
    still_serving: bool = False,
) -> Condition:
    name = md.spec.model.name
    if serving.reason == "RollingOut" and still_serving and serve is not None:
        # maxUnavailable 0: the pods of the previous version answer until the new ones are ready.
        return condition(
            READY,
            True,
            "RollingOut",
            f"rolling out version {serve.version}; the previous pods keep serving",
            generation,
        )
    if serving.status.value != "True" or serve is None:
        failing = optimized if optimized.status.value == "False" and optimized.reason != "Optimizing" else serving
        if serve is None and optimized.reason == "Optimizing":
            failing = optimized
        return condition(READY, False, failing.reason, failing.message, generation)
    if serve.hash == desired.hash:
        return condition(READY, True, "Ready", f"model {name} version {serve.version} is served", generation)
    if optimized.reason == "Optimizing":
        return condition(
            READY,
            True,
            "Optimizing",
            f"serving version {serve.version} while version {desired.version} is optimized",
            generation,
        )
    return condition(
        READY,
        True,
        "ServingPreviousVersion",
        f"still serving version {serve.version}: version {desired.version} failed ({optimized.reason}: "
        f"{optimized.message})",
        generation,
    )


def _phase(
    desired: Artifact, serve: Artifact | None, optimized: Condition, serving: Condition, ready: Condition
) -> Phase:
    failed = optimized.status.value == "False" and optimized.reason != "Optimizing"
    if ready.status.value == "True":
        if ready.reason == "RollingOut":
            return Phase.ROLLING_OUT
        if serve is not None and serve.hash == desired.hash:
            return Phase.READY
        return Phase.DEGRADED if failed else Phase.OPTIMIZING
    if failed:
        return Phase.FAILED
    if optimized.reason == "Optimizing":
        return Phase.OPTIMIZING
    if serving.reason in ("RollingOut", "Creating"):
        return Phase.ROLLING_OUT
    return Phase.PENDING


def _blocked(md: ModelDeployment, previous: ModelDeploymentStatus, reason: str, message: str, now: str) -> Plan:
    """A problem the schema cannot catch: say so, create nothing, keep what serves."""
    generation = md.metadata.generation
    conds = [
        condition(OPTIMIZED, False, reason, message, generation),
        condition(SERVING_READY, False, reason, message, generation),
        condition(READY, False, reason, message, generation),
    ]
    status = previous.model_copy(
        update={
            "observed_generation": generation,
            "phase": Phase.FAILED,
            "conditions": merge_conditions(previous.conditions, conds, now),
        }
    )
    return Plan(status=status, events=transition_events(previous.conditions, status.conditions))


__all__ = ["Plan", "optimized_summary", "plan"]
