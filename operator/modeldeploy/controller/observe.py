"""The gatherer: what a reconcile needs, from the cache, as typed views. Pure: no request.

`plan` and `status` then decide from the views alone. Children count as ours only when an
ownerReference names the ModelDeployment (the label alone could be set by anyone).
"""

from __future__ import annotations

from typing import Any

from modeldeploy.api import KIND, ModelDeployment
from modeldeploy.api.spec import pvc_parts, uri_scheme
from modeldeploy.controller.builders import desired_artifact, needs_job
from modeldeploy.controller.builders import names as child_names
from modeldeploy.controller.builders.artifacts import claims_read
from modeldeploy.controller.builders.deployment import VERIFY_CONTAINER
from modeldeploy.controller.builders.labels import (
    ARTIFACT_CLEANUP,
    CANARY,
    COMPONENT_LABEL,
    OPTIMIZER,
    SERVING,
    TRACK_LABEL,
)
from modeldeploy.controller.builders.traffic import TRACKS
from modeldeploy.controller.cache import Snapshot
from modeldeploy.controller.views import (
    Observed,
    canary_restarts,
    job_finished,
    pod_problems,
    refused_artifacts,
    view_deployment,
    view_job,
)

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


def child_names_by_kind(md_name: str) -> dict[str, tuple[str, ...]]:
    """The serving children a ModelDeployment may have, by kind (their names are deterministic)."""
    serving = child_names.serving_name(md_name)
    tracks = tuple(child_names.track_service_name(md_name, t) for t in TRACKS)
    return {
        "ConfigMap": (
            child_names.model_config_name(md_name),
            child_names.serving_config_name(md_name),
            child_names.canary_model_config_name(md_name),
            child_names.canary_serving_config_name(md_name),
        ),
        "Deployment": (serving, child_names.canary_name(md_name)),
        "Service": (serving, *tracks),
        "HorizontalPodAutoscaler": (serving,),
        "PodDisruptionBudget": (serving,),
        "NetworkPolicy": (serving,),
        "HTTPRoute": (serving,),
    }


def referenced_claims(md: ModelDeployment) -> list[str]:
    """Every PersistentVolumeClaim a pod of this ModelDeployment would mount."""
    spec = md.spec
    claims = set(claims_read(spec))
    if needs_job(spec):
        claims.add(pvc_parts(spec.artifacts_uri(md.name))[0])
    elif uri_scheme(desired_artifact(md.name, spec, md.namespace).location) == "pvc":
        claims.add(pvc_parts(spec.model.storage_uri)[0])
    return sorted(claims)


def owned_by(obj: dict[str, Any], md_name: str) -> bool:
    refs = obj["metadata"].get("ownerReferences", [])
    return any(r.get("kind") == KIND and r.get("name") == md_name for r in refs)


def observe(snapshot: Snapshot, md: ModelDeployment, *, missing_kinds: frozenset[str] = frozenset()) -> Observed:
    """The views of one ModelDeployment's children, pods and claims, from what the cache holds.
    `missing_kinds`: the optional kinds the API server does not serve (the runtime knows)."""
    md_name = md.name
    pods_by_job: dict[str, list[dict[str, Any]]] = {}
    serving_pods = []
    for pod in snapshot.of_kind("Pod"):
        labels = pod["metadata"].get("labels", {})
        if labels.get(COMPONENT_LABEL) == OPTIMIZER:
            pods_by_job.setdefault(labels.get(JOB_NAME_LABEL, ""), []).append(pod)
        elif labels.get(COMPONENT_LABEL) == SERVING:
            serving_pods.append(pod)
    # A canary's pods answer for the canary (its deadline, its restarts), not for the stable version,
    # which may run the same artifact.
    stable_pods = [p for p in serving_pods if p["metadata"].get("labels", {}).get(TRACK_LABEL) != CANARY]
    jobs = {}
    cleanup_jobs = {}
    for job in snapshot.of_kind("Job"):
        component = job["metadata"].get("labels", {}).get(COMPONENT_LABEL)
        if component == ARTIFACT_CLEANUP and owned_by(job, md_name):
            cleanup_jobs[job["metadata"]["name"]] = job_finished(job)
        if component != OPTIMIZER or not owned_by(job, md_name):
            continue
        view = view_job(job, pods_by_job.get(job["metadata"]["name"], []))
        jobs[view.artifact_hash] = view
    children: dict[tuple[str, str], dict[str, Any]] = {}
    for kind, names in child_names_by_kind(md_name).items():
        by_name = {obj["metadata"]["name"]: obj for obj in snapshot.of_kind(kind)}
        for name in names:
            obj = by_name.get(name)
            if obj is not None and owned_by(obj, md_name):
                children[(kind, name)] = obj
    deployment = children.get(("Deployment", child_names.serving_name(md_name)))
    canary = children.get(("Deployment", child_names.canary_name(md_name)))
    claims = referenced_claims(md)
    missing = tuple(c for c in claims if c not in snapshot.claims)
    pending = tuple(c for c in claims if c in snapshot.pending_claims)
    return Observed(
        refused_artifacts=refused_artifacts(stable_pods, VERIFY_CONTAINER),
        jobs=jobs,
        deployment=view_deployment(deployment) if deployment else None,
        children=children,
        missing_claims=missing,
        cleanup_jobs=cleanup_jobs,
        pod_problems=pod_problems(stable_pods),
        pending_claims=pending,
        canary=view_deployment(canary) if canary else None,
        canary_restarts=canary_restarts(serving_pods),
        missing_kinds=missing_kinds,
    )
