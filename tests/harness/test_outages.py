"""Outages of the local control plane: a component stopped and started again comes back with its
data, and a Job whose optimizer pod finished while the API server and etcd were down still
completes (the test kubelet reports the exit once they are back, as a real kubelet would).

Each test stops components, so each runs on a control plane of its own, not the session's.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from devcluster.controlplane import ControlPlane
from devcluster.executor import JobPodExecutor

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def get_json(cp: ControlPlane, *args: str) -> Any:
    return json.loads(cp.kubectl("get", *args, "-o", "json").stdout)


def wait(what: str, check: Any, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception:  # the API server may still be coming back
            value = None
        if value:
            return value
        time.sleep(0.3)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def sleeper_job(seconds: float) -> str:
    key, value = "app.kubernetes.io/component", "optimizer"  # a pod the executor runs (SELECTOR)
    return json.dumps(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "sleeper", "namespace": "default"},
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "metadata": {"labels": {key: value}},
                    "spec": {
                        "restartPolicy": "Never",
                        "automountServiceAccountToken": False,
                        "containers": [{"name": "main", "image": "busybox", "command": ["sleep", str(seconds)]}],
                    },
                },
            },
        }
    )


def test_a_job_that_finishes_during_an_api_server_and_etcd_outage_still_completes(tmp_path: Path) -> None:
    with ControlPlane(nodes=1) as cp, cp.admin_api() as api, JobPodExecutor(api, tmp_path) as executor:
        cp.kubectl("apply", "-f", "-", input=sleeper_job(4))
        pod = wait(
            "the sleeper pod to run",
            lambda: next(
                (
                    p["metadata"]["name"]
                    for p in get_json(cp, "pods", "-n", "default", "-l", "job-name=sleeper")["items"]
                    if p["status"].get("phase") == "Running"
                ),
                None,
            ),
        )
        cp.stop_component("kube-apiserver", grace=0)
        cp.stop_component("etcd", grace=0)
        wait("the sleeper to exit while the API server is down", lambda: (pod, 0) in executor.runs, timeout=60)
        time.sleep(2)
        cp.start_component("etcd")
        cp.start_component("kube-apiserver")
        wait(
            "the Job to complete",
            lambda: get_json(cp, "job/sleeper", "-n", "default").get("status", {}).get("succeeded") == 1,
            timeout=60,
        )
        assert get_json(cp, f"pod/{pod}", "-n", "default")["status"]["phase"] == "Succeeded"


def test_a_pod_marked_not_ready_by_the_node_lifecycle_controller_is_ready_again(
    control_plane: ControlPlane, namespace: str
) -> None:
    """After an outage the node lifecycle controller marks pods of Nodes with stale leases NotReady
    (Ready False, ContainersReady untouched); a kubelet reports them Ready again, so kwok must too."""
    cp = control_plane
    cp.kubectl("-n", namespace, "create", "deployment", "web", "--image=registry.k8s.io/pause:3.10")
    cp.kubectl("-n", namespace, "rollout", "status", "deployment/web", "--timeout=90s")
    pod = get_json(cp, "pods", "-n", namespace, "-l", "app=web")["items"][0]
    conditions = [{**c, "status": "False"} if c["type"] == "Ready" else c for c in pod["status"]["conditions"]]
    cp.kubectl(
        "-n",
        namespace,
        "patch",
        "pod",
        pod["metadata"]["name"],
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"conditions": conditions}}),
    )

    def ready() -> bool:
        now = get_json(cp, f"pod/{pod['metadata']['name']}", "-n", namespace)
        return any(c["type"] == "Ready" and c["status"] == "True" for c in now["status"]["conditions"])

    wait("the pod to be Ready again", ready, timeout=30)
