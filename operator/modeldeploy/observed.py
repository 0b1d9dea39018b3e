"""What the operator saw, as small typed views built by pure functions from API objects.

`reconcile` reads raw objects through `modeldeploy.k8s`; these functions turn them into the facts
the planner needs (is the Job done, what did the optimizer report, is the Deployment available),
so the planner never digs through raw dicts and every rule is unit-testable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from modeldeploy.builders.labels import ARTIFACT_LABEL

JobState = Literal["Running", "Succeeded", "Failed"]


@dataclass(frozen=True)
class JobView:
    name: str
    artifact_hash: str
    state: JobState
    reason: str = ""
    message: str = ""
    summary: dict[str, Any] | None = None  # the optimizer's termination message


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


@dataclass(frozen=True)
class Observed:
    """Everything the planner may look at besides the ModelDeployment itself."""

    jobs: dict[str, JobView] = field(default_factory=dict)
    deployment: DeploymentView | None = None
    # (kind, name) -> live object, for drift detection and removal of unwanted children
    children: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    missing_claims: tuple[str, ...] = ()
    # artifact hash -> why its serving pods refused it (the verify-model init container's message)
    refused_artifacts: dict[str, str] = field(default_factory=dict)


def _conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in obj.get("status", {}).get("conditions", []) or []}


def parse_summary(text: str | None) -> dict[str, Any] | None:
    """The optimizer's one-line JSON termination message; None when absent or not ours."""
    if not text:
        return None
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and value.get("result") in ("Succeeded", "Failed"):
            return value
    return None


def _pod_report(pods: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, str, str]:
    """(summary, waiting reason, waiting message) from the newest pod of a Job."""
    newest = sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")
    summary: dict[str, Any] | None = None
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
                waiting = (condition.get("reason", "Unschedulable"), condition.get("message", ""))
    return summary, waiting[0], waiting[1]


def view_job(job: dict[str, Any], pods: list[dict[str, Any]]) -> JobView:
    name = job["metadata"]["name"]
    digest = job["metadata"].get("labels", {}).get(ARTIFACT_LABEL, "")
    conditions = _conditions(job)
    summary, waiting_reason, waiting_message = _pod_report(pods)
    complete = conditions.get("Complete", {}).get("status") == "True"
    failed = conditions.get("Failed", {}).get("status") == "True"
    if complete:
        return JobView(name, digest, "Succeeded", "Succeeded", "", summary)
    if failed:
        if summary and summary.get("result") == "Failed":
            return JobView(
                name,
                digest,
                "Failed",
                str(summary.get("reason", "OptimizationFailed")),
                str(summary.get("message", "")),
                summary,
            )
        job_reason = conditions["Failed"].get("reason") or "JobFailed"
        return JobView(name, digest, "Failed", job_reason, conditions["Failed"].get("message", ""), summary)
    return JobView(name, digest, "Running", waiting_reason, waiting_message, summary)


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


def view_deployment(deployment: dict[str, Any]) -> DeploymentView:
    meta = deployment["metadata"]
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
    )


def is_subset(desired: Any, live: Any) -> bool:
    """True when every field we set has that value on the live object (the server adds defaults,
    so equality would always differ). Lists compare element-wise and must have the same length."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(k in live and is_subset(v, live[k]) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(live, list) and len(desired) == len(live) and all(map(is_subset, desired, live))
    if isinstance(desired, bool) or isinstance(live, bool):
        return desired is live
    if isinstance(desired, int | float) and isinstance(live, int | float):
        return float(desired) == float(live)
    return bool(desired == live or str(desired) == str(live))
