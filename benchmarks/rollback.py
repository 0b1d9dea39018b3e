"""Instant rollback on the local control plane (prints a table; not a test).

Per run: version 1 served, then version 2 (a new optimization Job: apply -> served), then the spec
goes back to version 1: apply -> version 1 served again from status.history, and how many
optimization Jobs that created (goal: 0). The optimizer really runs (the executor); the serving
pods' verify-model init container runs for real too (the local-kubelet label), as in production
where it checks the folder's digest before TF Serving starts.

    python benchmarks/rollback.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from devcluster.controlplane import ControlPlane
from devcluster.executor import LOCAL_KUBELET_LABEL, JobPodExecutor
from devcluster.stack import OperatorProcess, condition, make_claim, make_reference_models, wait_for
from modeldeploy.k8s.client import KubeClient, load_client

REPO = Path(__file__).resolve().parents[1]
NAME = "rollback"


def manifest(ns: str, version: int) -> dict[str, Any]:
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME, "namespace": ns},
        "spec": {
            "model": {"name": "digits", "storageUri": "pvc://models/mlp.keras", "version": version},
            "optimization": {"quantization": "dynamic"},
            "autoscaling": {"enabled": False},
            "serving": {"podLabels": {LOCAL_KUBELET_LABEL: "true"}},
        },
    }


def optimizer_jobs(kube: KubeClient, ns: str) -> set[str]:
    """Optimization Jobs that ever ran in `ns` (the Job controller's Events outlive deleted Jobs)."""
    return {
        e["involvedObject"]["name"]
        for e in kube.list("Event", ns)
        if e["involvedObject"].get("kind") == "Job"
        and e.get("reason") == "SuccessfulCreate"
        and e["involvedObject"]["name"].startswith(f"{NAME}-opt-")
    }


def apply_and_wait(cp: ControlPlane, kube: KubeClient, ns: str, version: int, entries: int) -> float:
    """Seconds from kubectl apply to `version` Ready with `entries` history entries."""

    def served() -> bool:
        md = kube.get("ModelDeployment", ns, NAME)
        status = (md or {}).get("status") or {}
        return (
            condition(md, "Ready").get("reason") == "Ready"
            and status.get("servedVersion") == version
            and len(status.get("history") or []) == entries
        )

    started = time.monotonic()
    cp.kubectl("apply", "-f", "-", input=json.dumps(manifest(ns, version)))
    wait_for(f"{ns}/{NAME} serving version {version}", served, timeout=300, interval=0.05)
    return time.monotonic() - started


def one_run(cp: ControlPlane, kube: KubeClient, storage: Path, reference: Path, ns: str) -> dict[str, float]:
    cp.kubectl("create", "namespace", ns)
    cp.wait_for_serviceaccount(ns)
    make_claim(cp, storage, ns, "models", reference)
    first = apply_and_wait(cp, kube, ns, 1, 1)
    second = apply_and_wait(cp, kube, ns, 2, 2)
    wait_for("version 1's Job removed", lambda: len(kube.list("Job", ns, "app.kubernetes.io/component=optimizer")) == 1)
    jobs = optimizer_jobs(kube, ns)
    back = apply_and_wait(cp, kube, ns, 1, 3)
    return {"v1": first, "v2": second, "back": back, "jobs": float(len(optimizer_jobs(kube, ns) - jobs))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="modeldeploy-bench-"))
    reference = make_reference_models(work / "reference")
    storage = work / "storage"
    with ControlPlane(nodes=3) as cp:
        cp.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        cp.wait_established("modeldeployments.modeldeploy.io")
        kube = load_client(str(cp.kubeconfig))
        with cp.admin_api() as api, JobPodExecutor(api, storage), OperatorProcess(cp.kubeconfig, work / "operator.log"):
            print(
                "| run | apply->v1 served s (Job) | apply->v2 served s (Job) | apply->v1 served again s (history) "
                "| Jobs created by the rollback |"
            )
            print("| ---: | ---: | ---: | ---: | ---: |")
            for run in range(1, args.runs + 1):
                m = one_run(cp, kube, storage, reference, f"bench-rollback-{run}")
                print(
                    f"| {run} | {m['v1']:.2f} | {m['v2']:.2f} | {m['back']:.2f} | {m['jobs']:.0f} |",
                    flush=True,
                )
        kube.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
