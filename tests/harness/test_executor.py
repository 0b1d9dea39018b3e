"""The test-side kubelet's path mapping (no server needed: PVC and emptyDir volumes, no Secrets)."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any, cast

from devcluster.executor import JobPodExecutor
from devcluster.kubeapi import KubeApi
from modeldeploy.api import parse_model_deployment
from modeldeploy.controller.builders import build_job


def test_pod_paths_map_to_local_folders_but_the_interpreter_does_not(tmp_path: Path) -> None:
    minimal: dict[str, Any] = {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "digits", "namespace": "ml"},
        "spec": {"model": {"name": "digits", "storageUri": "pvc://models/digits.keras"}},
    }
    minimal["spec"]["optimization"] = {"evaluation": {"datasetUri": "pvc://data/eval.npz"}}
    job = build_job(parse_model_deployment(minimal), None)
    pod = {"metadata": {"name": "p", "namespace": "ml"}, "spec": job["spec"]["template"]["spec"]}
    # An interpreter under /tmp, like a CI checkout there: /tmp is also the pod's emptyDir mount.
    executor = JobPodExecutor(cast(KubeApi, None), tmp_path / "storage", python="/tmp/ci/.venv/bin/python3")
    prepared = executor._prepare(pod, pod["spec"]["containers"][0])
    assert prepared.argv[:3] == ["/tmp/ci/.venv/bin/python3", "-m", "modeldeploy.cli"]
    args = dict(a.split("=", 1) for a in prepared.argv[4:] if "=" in a)
    assert args["--source"] == f"file://{tmp_path}/storage/ml/models/digits.keras"
    assert args["--eval-data"] == f"file://{tmp_path}/storage/ml/data/eval.npz"
    assert args["--output"].startswith(f"{tmp_path}/storage/ml/models/modeldeploy/digits/")
    assert args["--termination-message-path"] == str(prepared.termination_file)
    assert prepared.env["HOME"].startswith(str(prepared.scratch)), "HOME=/tmp maps to the pod's emptyDir"


def test_a_deleted_pod_s_process_is_stopped_like_a_kubelet_would(tmp_path: Path) -> None:
    """SIGTERM to the process of a pod that is gone or being deleted; a live pod's process runs on."""
    executor = JobPodExecutor(cast(KubeApi, None), tmp_path / "storage")
    procs = {uid: subprocess.Popen(["sleep", "60"]) for uid in ("live", "deleting", "gone")}
    executor._procs.update(procs)
    pods = [
        {"metadata": {"uid": "live"}},
        {"metadata": {"uid": "deleting", "deletionTimestamp": "2026-12-01T20:00:00Z"}},
    ]
    try:
        executor._stop_deleted(pods)
        assert procs["deleting"].wait(timeout=10) == -signal.SIGTERM
        assert procs["gone"].wait(timeout=10) == -signal.SIGTERM
        assert procs["live"].poll() is None
        assert sorted(executor.stopped) == ["deleting", "gone"]
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait()


class _FlakyApi:
    """The API server as the executor sees it through an outage: refused, refused, then back."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.reported: list[dict[str, Any]] = []

    def patch_pod_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionRefusedError(111, "Connection refused")
        self.reported.append(status)


def test_a_pod_that_exits_while_the_api_server_is_away_is_reported_when_it_is_back(tmp_path: Path) -> None:
    api = _FlakyApi(failures=3)
    executor = JobPodExecutor(cast(KubeApi, api), tmp_path)
    pod = {"metadata": {"name": "p", "namespace": "ml"}}
    executor._patch(pod, {"phase": "Succeeded"}, final=True)
    assert api.reported == [{"phase": "Succeeded"}]


def test_a_progress_report_is_not_retried(tmp_path: Path) -> None:
    api = _FlakyApi(failures=1)
    executor = JobPodExecutor(cast(KubeApi, api), tmp_path)
    executor._patch({"metadata": {"name": "p", "namespace": "ml"}}, {"phase": "Running"})
    assert api.reported == []
