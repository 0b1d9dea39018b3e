"""What the operator saw, as small typed views built by pure functions from API objects.

`observe` reads raw objects through `modeldeploy.k8s`; these functions turn them into the facts
the planner needs (is the Job done, what did the optimizer report, is the Deployment available),
so the planner never digs through raw dicts and every rule is unit-testable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from modeldeploy.api.reasons import POD_START_FAILURES, KubernetesReason, Reason
from modeldeploy.contract.summary import OptimizerSummary, parse_summary
from modeldeploy.controller.builders.labels import (
    ARTIFACT_LABEL,
    CANARY,
    MODEL_VERSION_ANNOTATION,
    REVISION_ANNOTATION,
    TRACK_LABEL,
)


class JobState(StrEnum):
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True)
class JobView:
    name: str
    artifact_hash: str
    state: JobState
    reason: str = ""
    message: str = ""
    summary: OptimizerSummary | None = None  # the optimizer's termination message
    version: str = ""  # the model version the Job builds (its modeldeploy.io/model-version annotation)


@dataclass(frozen=True)
class DeploymentView:
    name: str
    artifact_hash: str
    generation: int
    observed_generation: int
    replicas: int
    ready_replicas: int
    updated_replicas: int
    available: bool
    progressing_reason: str
    progressing_message: str
    unavailable_message: str
    available_replicas: int = 0
    spec_replicas: int = 1  # .spec.replicas: what it is asked to run (under an HPA, the HPA's choice)
    revision: str | None = None  # its modeldeploy.io/revision annotation (None: an older operator's)
    model_version: int | None = None  # its modeldeploy.io/model-version annotation

    @property
    def rolled(self) -> bool:
        """The Deployment controller has seen its last spec."""
        return self.observed_generation >= self.generation


@dataclass(frozen=True)
class Rejection:
    """A child the API server refused to store: its answer, and the fields it named."""

    kind: str
    name: str
    message: str
    fields: tuple[str, ...] = ()

    def describe(self) -> str:
        where = f" (field {', '.join(self.fields)})" if self.fields else ""
        return f"the API server refused {self.kind} {self.name}{where}: {self.message}"


@dataclass(frozen=True)
class PodProblem:
    """Why a pod cannot start, as the scheduler or its kubelet says it (Unschedulable, ImagePullBackOff...)."""

    reason: str
    message: str


@dataclass(frozen=True)
class Observed:
    """Everything the planner may look at besides the ModelDeployment itself."""

    jobs: dict[str, JobView] = field(default_factory=dict)
    deployment: DeploymentView | None = None
    # (kind, name) -> live object, for drift detection and removal of unwanted children
    children: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    missing_claims: tuple[str, ...] = ()
    # "Service ml/digits": objects with a child's name that this ModelDeployment does not own
    conflicts: tuple[str, ...] = ()
    # artifact hash -> why its serving pods refused it (the verify-model init container's message)
    refused_artifacts: dict[str, str] = field(default_factory=dict)
    # our artifact cleanup Jobs: name -> finished (Complete or Failed)
    cleanup_jobs: dict[str, bool] = field(default_factory=dict)
    # children the API server refused in this reconcile (or earlier, unchanged since)
    rejected: tuple[Rejection, ...] = ()
    # artifact hash -> why one of its serving pods cannot start
    pod_problems: dict[str, PodProblem] = field(default_factory=dict)
    # claims the pods mount that exist but are not bound to a volume
    pending_claims: tuple[str, ...] = ()
    # the canary Deployment of a rollout, and its pods' container restarts by revision
    canary: DeploymentView | None = None
    canary_restarts: dict[str, int] = field(default_factory=dict)
    # optional kinds (kinds.py) the API server does not serve, e.g. HTTPRoute without the Gateway API
    missing_kinds: frozenset[str] = frozenset()


def _conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in obj.get("status", {}).get("conditions", []) or []}


def _pod_report(pods: list[dict[str, Any]]) -> tuple[OptimizerSummary | None, str, str]:
    """(summary, waiting reason, waiting message) from the newest pod of a Job."""
    newest = sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")
    summary: OptimizerSummary | None = None
    waiting = ("", "")
    for pod in newest:
        for status in pod.get("status", {}).get("containerStatuses", []) or []:
            state = status.get("state", {})
            if "terminated" in state:
                summary = parse_summary(state["terminated"].get("message")) or summary
            elif "waiting" in state and state["waiting"].get("reason") not in (None, "ContainerCreating"):
                waiting = (state["waiting"].get("reason", ""), state["waiting"].get("message", ""))
        for condition in pod.get("status", {}).get("conditions", []) or []:
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                waiting = (condition.get("reason", KubernetesReason.UNSCHEDULABLE), condition.get("message", ""))
    return summary, waiting[0], waiting[1]


def pod_problem(pod: dict[str, Any]) -> PodProblem | None:
    """The reason a pod cannot start, if it is one of the start failures a user must act on."""
    status = pod.get("status", {})
    for condition in status.get("conditions", []) or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            reason = condition.get("reason") or KubernetesReason.UNSCHEDULABLE
            if reason == KubernetesReason.UNSCHEDULABLE:
                return PodProblem(reason, condition.get("message", ""))
    for key in ("initContainerStatuses", "containerStatuses"):
        for container in status.get(key, []) or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in POD_START_FAILURES:
                message = waiting.get("message") or waiting["reason"]
                return PodProblem(waiting["reason"], f"container {container.get('name')}: {message}")
    return None


def pod_problems(pods: list[dict[str, Any]]) -> dict[str, PodProblem]:
    """The first start failure among the pods of each artifact (by their artifact label)."""
    found: dict[str, PodProblem] = {}
    for pod in sorted(pods, key=lambda p: p["metadata"].get("name", "")):
        digest = pod["metadata"].get("labels", {}).get(ARTIFACT_LABEL, "")
        problem = pod_problem(pod) if digest not in found else None
        if problem is not None:
            found[digest] = problem
    return found


def view_job(job: dict[str, Any], pods: list[dict[str, Any]]) -> JobView:
    name = job["metadata"]["name"]
    digest = job["metadata"].get("labels", {}).get(ARTIFACT_LABEL, "")
    version = str(job["metadata"].get("annotations", {}).get(MODEL_VERSION_ANNOTATION, ""))
    conditions = _conditions(job)
    summary, waiting_reason, waiting_message = _pod_report(pods)
    complete = conditions.get("Complete", {}).get("status") == "True"
    failed = conditions.get("Failed", {}).get("status") == "True"
    if complete:
        return JobView(name, digest, JobState.SUCCEEDED, "Succeeded", "", summary, version)
    if failed:
        if summary is not None and not summary.succeeded:
            reason = summary.reason.value if summary.reason else Reason.OPTIMIZATION_FAILED
            return JobView(name, digest, JobState.FAILED, reason, summary.message or "", summary, version)
        job_reason = conditions["Failed"].get("reason") or Reason.JOB_FAILED
        message = conditions["Failed"].get("message", "")
        return JobView(name, digest, JobState.FAILED, job_reason, message, summary, version)
    return JobView(name, digest, JobState.RUNNING, waiting_reason, waiting_message, summary, version)


def job_finished(job: dict[str, Any]) -> bool:
    conditions = _conditions(job)
    return any(conditions.get(t, {}).get("status") == "True" for t in ("Complete", "Failed"))


def refused_artifacts(pods: list[dict[str, Any]], init_container: str) -> dict[str, str]:
    """Artifacts whose serving pods failed `init_container` (now or in the last attempt), with the
    container's termination message."""
    refused: dict[str, str] = {}
    for pod in pods:
        digest = pod["metadata"].get("labels", {}).get(ARTIFACT_LABEL, "")
        for status in pod.get("status", {}).get("initContainerStatuses", []) or []:
            if status.get("name") != init_container:
                continue
            for state in (status.get("state", {}), status.get("lastState", {})):
                terminated = state.get("terminated")
                if terminated and terminated.get("exitCode", 0) != 0:
                    refused[digest] = (terminated.get("message") or terminated.get("reason") or "failed").strip()
    return refused


def canary_restarts(pods: list[dict[str, Any]]) -> dict[str, int]:
    """Container restarts of canary pods, summed by the revision they run."""
    restarts: dict[str, int] = {}
    for pod in pods:
        meta = pod["metadata"]
        if meta.get("labels", {}).get(TRACK_LABEL) != CANARY:
            continue
        revision = meta.get("annotations", {}).get(REVISION_ANNOTATION, "")
        statuses = pod.get("status", {}).get("containerStatuses", []) or []
        restarts[revision] = restarts.get(revision, 0) + sum(int(s.get("restartCount", 0)) for s in statuses)
    return restarts


def view_deployment(deployment: dict[str, Any]) -> DeploymentView:
    meta = deployment["metadata"]
    annotations = meta.get("annotations", {})
    version = str(annotations.get(MODEL_VERSION_ANNOTATION, ""))
    status = deployment.get("status", {})
    conditions = _conditions(deployment)
    available = conditions.get("Available", {})
    progressing = conditions.get("Progressing", {})
    return DeploymentView(
        name=meta["name"],
        artifact_hash=meta.get("annotations", {}).get(ARTIFACT_LABEL, ""),
        generation=int(meta.get("generation", 0)),
        observed_generation=int(status.get("observedGeneration", 0)),
        replicas=int(status.get("replicas", 0)),
        ready_replicas=int(status.get("readyReplicas", 0)),
        updated_replicas=int(status.get("updatedReplicas", 0)),
        available=available.get("status") == "True",
        progressing_reason=str(progressing.get("reason", "")),
        progressing_message=str(progressing.get("message", "")),
        unavailable_message=str(available.get("message", "")) if available.get("status") != "True" else "",
        available_replicas=int(status.get("availableReplicas", 0)),
        spec_replicas=int(deployment.get("spec", {}).get("replicas", 1)),
        revision=annotations.get(REVISION_ANNOTATION),
        model_version=int(version) if version.isdigit() else None,
    )
