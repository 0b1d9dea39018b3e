"""Instant rollback on the real control plane: the optimizer Job really runs (the executor) for
versions 1 and 2; when the spec goes back to version 1, its artifact is served again from
status.history with no new optimization Job, and the serving pods' verify-model init container
(run for real by the executor, the pods carry its label) still checks the folder's digest."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from devcluster.controlplane import ControlPlane
from devcluster.executor import LOCAL_KUBELET_LABEL, JobPodExecutor
from devcluster.stack import OperatorProcess, condition, make_claim, wait_for
from modeldeploy.k8s.client import KubeClient

pytestmark = pytest.mark.integration
NAME = "rb"


def manifest(namespace: str, version: int) -> dict[str, Any]:
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {
            "model": {"name": "digits", "storageUri": "pvc://models/mlp.keras", "version": version},
            "optimization": {"quantization": "dynamic"},
            "autoscaling": {"enabled": False},
            # the serving pods' init containers (verify-model) run for real, not kwok's fake start
            "serving": {"podLabels": {LOCAL_KUBELET_LABEL: "true"}},
        },
    }


def served_with_history(kube: KubeClient, namespace: str, version: int, entries: int) -> dict[str, Any] | None:
    """The ModelDeployment once `version` is Ready and status.history has `entries` entries."""
    md = kube.get("ModelDeployment", namespace, NAME)
    status = (md or {}).get("status") or {}
    if condition(md, "Ready").get("reason") != "Ready" or status.get("servedVersion") != version:
        return None
    return md if len(status.get("history") or []) == entries else None


def optimizer_jobs_created(kube: KubeClient, namespace: str) -> set[str]:
    """Every optimization Job that ever ran here, from the Job controller's Events (a Job deleted
    since, like version 1's once version 2 took over, still has them)."""
    return {
        e["involvedObject"]["name"]
        for e in kube.list("Event", namespace)
        if e["involvedObject"].get("kind") == "Job"
        and e.get("reason") == "SuccessfulCreate"
        and e["involvedObject"]["name"].startswith(f"{NAME}-opt-")
    }


def verified_pods(kube: KubeClient, namespace: str, artifact: str) -> list[str]:
    """Serving pods of `artifact` whose verify-model init container ran and exited 0."""
    pods = kube.list("Pod", namespace, f"modeldeploy.io/model-deployment={NAME},modeldeploy.io/artifact={artifact}")
    return [
        p["metadata"]["name"]
        for p in pods
        if any(
            s["name"] == "verify-model" and (s.get("state") or {}).get("terminated", {}).get("exitCode") == 0
            for s in (p.get("status") or {}).get("initContainerStatuses") or []
        )
    ]


def test_going_back_to_version_1_serves_it_from_history_without_a_job(
    control_plane: ControlPlane,
    kube: KubeClient,
    namespace: str,
    storage_root: Path,
    reference_models: Path,
    executor: JobPodExecutor,
    operator_log: OperatorProcess,
) -> None:
    claim = make_claim(control_plane, storage_root, namespace, "models", reference_models)

    def apply(version: int) -> None:
        control_plane.kubectl("apply", "-f", "-", input=json.dumps(manifest(namespace, version)))

    apply(1)
    md = wait_for("version 1 served, history 1", lambda: served_with_history(kube, namespace, 1, 1), timeout=300)
    (first,) = md["status"]["history"]
    h1 = md["status"]["servedArtifact"]
    assert (first["version"], first["artifactHash"], first["outcome"]) == (1, h1, "Promoted")
    assert first["manifestSha256"] == md["status"]["optimization"]["manifestSha256"]
    assert first["storageUri"] == f"pvc://models/modeldeploy/{NAME}/{h1}/1" and "to" not in first

    apply(2)
    md = wait_for("version 2 served, history 2", lambda: served_with_history(kube, namespace, 2, 2), timeout=300)
    h2 = md["status"]["servedArtifact"]
    assert [(e["version"], e["artifactHash"], e["outcome"]) for e in md["status"]["history"]] == [
        (2, h2, "Promoted"),
        (1, h1, "Superseded"),
    ]
    assert md["status"]["history"][1]["to"] == md["status"]["history"][0]["from"]
    wait_for(
        "version 1's optimization Job removed",
        lambda: kube.get("Job", namespace, f"{NAME}-opt-{h1[:10]}") is None,
        timeout=60,
    )
    jobs_before = optimizer_jobs_created(kube, namespace)
    assert len(jobs_before) == 2, jobs_before
    assert (claim / "modeldeploy" / NAME / h1 / "1").is_dir(), "version 1's folder is kept for the rollback"

    before = set(verified_pods(kube, namespace, h1))  # pods of the first life of version 1, if any left
    started = time.monotonic()
    apply(1)
    md = wait_for("version 1 served again, history 3", lambda: served_with_history(kube, namespace, 1, 3), timeout=180)
    elapsed = time.monotonic() - started
    print(f"\napply -> version 1 served again from history: {elapsed:.1f} s")

    assert md["status"]["servedArtifact"] == h1
    assert [(e["version"], e["artifactHash"], e["outcome"]) for e in md["status"]["history"]] == [
        (1, h1, "Promoted"),
        (2, h2, "Superseded"),
        (1, h1, "Superseded"),
    ]
    assert md["status"]["history"][0]["message"].startswith("rolled back")
    optimized = condition(md, "Optimized")
    assert (optimized["status"], optimized["reason"]) == ("True", "RolledBack"), optimized
    assert md["status"]["optimization"]["manifestSha256"] == first["manifestSha256"]
    assert optimizer_jobs_created(kube, namespace) == jobs_before, "no optimization Job for the rollback"
    assert kube.get("Job", namespace, f"{NAME}-opt-{h1[:10]}") is None

    events = [
        e for e in kube.list("Event", namespace) if e["involvedObject"]["name"] == NAME and e["reason"] == "RolledBack"
    ]
    assert len(events) == 1 and events[0]["type"] == "Normal", events
    assert events[0]["message"].startswith(f"serving version 1 again from history (artifact {h1}, optimized")

    # The pods of the rollback verified the folder against the digest the history recorded.
    dep = kube.get("Deployment", namespace, NAME)
    assert dep is not None
    init = {c["name"]: c for c in dep["spec"]["template"]["spec"]["initContainers"]}
    assert f"--manifest-sha256={first['manifestSha256']}" in init["verify-model"]["args"]
    assert wait_for(
        "a new pod of version 1 verified", lambda: set(verified_pods(kube, namespace, h1)) - before, timeout=60
    )
