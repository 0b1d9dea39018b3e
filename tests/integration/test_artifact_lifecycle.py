"""The life of artifacts on the real control plane: superseded optimization Jobs are cancelled, old
artifact folders are pruned beyond `spec.artifacts.retain`, and deleting a ModelDeployment leaves
no artifact folder on the claim. The optimizer and the cleanup Jobs really run (the executor)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from devcluster.controlplane import ControlPlane
from devcluster.executor import JobPodExecutor
from devcluster.stack import OperatorProcess, condition, make_claim, wait_for
from modeldeploy.k8s.client import KubeClient

pytestmark = pytest.mark.integration


def md_manifest(name: str, namespace: str, version: int, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": {"name": "digits", "storageUri": "pvc://models/mlp.keras", "version": version},
        "optimization": {"quantization": "dynamic"},
        "autoscaling": {"enabled": False},
        **spec,
    }
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


def running_jobs(kube: KubeClient, namespace: str, name: str) -> list[str]:
    running = []
    for job in kube.list(
        "Job", namespace, f"modeldeploy.io/model-deployment={name},app.kubernetes.io/component=optimizer"
    ):
        done = {c["type"] for c in job.get("status", {}).get("conditions", []) or [] if c.get("status") == "True"}
        if not done & {"Complete", "Failed"} and not job["metadata"].get("deletionTimestamp"):
            running.append(job["metadata"]["name"])
    return running


def wait_served(kube: KubeClient, namespace: str, name: str, version: int, timeout: float = 240) -> dict[str, Any]:
    def served() -> dict[str, Any] | None:
        md = kube.get("ModelDeployment", namespace, name)
        ready = condition(md, "Ready")
        if md and ready.get("reason") == "Ready" and md["status"].get("servedVersion") == version:
            return md
        return None

    md: dict[str, Any] = wait_for(f"{namespace}/{name} serving version {version}", served, timeout)
    return md


def test_quick_edits_leave_one_running_job_and_serve_the_last_version(
    control_plane: ControlPlane,
    kube: KubeClient,
    namespace: str,
    storage_root: Path,
    reference_models: Path,
    executor: JobPodExecutor,
    operator_log: OperatorProcess,
) -> None:
    make_claim(control_plane, storage_root, namespace, "models", reference_models)
    stopped_before = len(executor.stopped)
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(md_manifest("edits", namespace, 1)))
    wait_for("the first Job", lambda: running_jobs(kube, namespace, "edits"), timeout=60)
    for version in range(2, 8):  # six quick version bumps while version 1 is being optimized
        patch = {"spec": {"model": {"version": version}}}
        control_plane.kubectl("patch", "md", "edits", "-n", namespace, "--type=merge", "-p", json.dumps(patch))
    last_edit = time.monotonic()
    wait_for("at most one running Job", lambda: len(running_jobs(kube, namespace, "edits")) <= 1, timeout=30)
    settled = time.monotonic() - last_edit
    md = wait_served(kube, namespace, "edits", 7)
    print(
        f"\n6 edits: one running Job {settled:.1f}s after the last edit; version 7 served after "
        f"{time.monotonic() - last_edit:.1f}s"
    )
    assert len(running_jobs(kube, namespace, "edits")) == 0, "the last Job finished: none runs"
    events = kube.list("Event", namespace)
    cancelled = [
        e["message"]
        for e in events
        if e.get("reason") == "OptimizationCancelled" and e["involvedObject"]["name"] == "edits"
    ]
    assert cancelled, "each cancelled Job gets a Normal Event"
    assert all("cancelled Job edits-opt-" in note and "was building version" in note for note in cancelled), cancelled
    assert len(executor.stopped) > stopped_before, "the cancelled Jobs' processes were stopped"
    assert md["status"]["servedVersion"] == 7


def test_old_artifacts_are_pruned_and_a_deleted_model_deployment_leaves_none(
    control_plane: ControlPlane,
    kube: KubeClient,
    namespace: str,
    storage_root: Path,
    reference_models: Path,
    operator_log: OperatorProcess,
) -> None:
    claim = make_claim(control_plane, storage_root, namespace, "models", reference_models)
    store = claim / "modeldeploy" / "kept"
    # historyLimit 1: status.history (whose artifacts are never pruned) names only what serves.
    manifest = md_manifest("kept", namespace, 1, artifacts={"retain": 0}, rollout={"historyLimit": 1})
    served: list[str] = []
    for version in (1, 2, 3):
        manifest["spec"]["model"]["version"] = version
        control_plane.kubectl("apply", "-f", "-", input=json.dumps(manifest))
        served.append(wait_served(kube, namespace, "kept", version)["status"]["servedArtifact"])
        assert (store / served[-1] / str(version) / "saved_model.pb").is_file()
        assert json.loads((store / served[-1] / "owner.json").read_text())["name"] == "kept"
    # retain 0: once version 3 serves, version 1 goes; version 2 (served until just now) stays
    wait_for("version 1's folder to be pruned", lambda: not (store / served[0]).exists(), timeout=60)
    assert (store / served[1]).is_dir() and (store / served[2]).is_dir()
    # someone else's folder in the same store (no owner file) is never touched
    foreign = store / "not-ours"
    foreign.mkdir()

    control_plane.kubectl("delete", "md", "kept", "-n", namespace, "--wait=true")
    wait_for("every artifact folder of kept to be removed", lambda: not (store / served[2]).exists(), timeout=90)
    assert sorted(p.name for p in store.iterdir()) == ["not-ours"], "only the foreign folder is left"
    foreign.rmdir()
    jobs = kube.list(
        "Job", namespace, "modeldeploy.io/model-deployment=kept,app.kubernetes.io/component=artifact-cleanup"
    )
    assert [j["metadata"].get("ownerReferences") for j in jobs if "-cleanup-" in j["metadata"]["name"]] == [None]
