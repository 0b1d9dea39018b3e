"""Operator timings on the local control plane (prints a table; not a test).

For each example: kubectl apply -> Job created -> optimizer finished (Job Complete) -> Deployment
created -> Ready, split into the optimization and the operator's own share; then the API requests
and wall time of a reconcile from the cache when nothing changed (goal: no request at all), and how fast drift is undone
(goal: within 10 s).

    python benchmarks/operator_timings.py [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from devcluster.controlplane import ControlPlane
from devcluster.executor import JobPodExecutor
from devcluster.stack import OperatorProcess, condition, make_claim, make_reference_models, wait_for
from modeldeploy.controller.config import OperatorConfig
from modeldeploy.controller.runtime import Runtime
from modeldeploy.k8s.client import KubeClient, load_client

REPO = Path(__file__).resolve().parents[1]


def _first(kube: KubeClient, ns: str, kind: str) -> dict[str, Any] | None:
    items = kube.list(kind, ns)
    return items[0] if items else None


def one_run(
    cp: ControlPlane, kube: KubeClient, storage: Path, reference: Path, example: str, ns: str
) -> dict[str, float]:
    cp.kubectl("create", "namespace", ns)
    cp.wait_for_serviceaccount(ns)
    make_claim(cp, storage, ns, "models", reference)
    t0 = time.monotonic()
    cp.kubectl("apply", "-n", ns, "-f", str(REPO / "examples" / f"{example}.yaml"))
    marks: dict[str, float] = {}
    while "ready" not in marks:
        now = time.monotonic() - t0
        if now > 300:
            raise TimeoutError(f"{example} not Ready after 300 s")
        job = _first(kube, ns, "Job")
        if job and "job" not in marks:
            marks["job"] = now
        if (
            job
            and "complete" not in marks
            and any(
                c["type"] == "Complete" and c["status"] == "True" for c in job.get("status", {}).get("conditions", [])
            )
        ):
            marks["complete"] = now
        if "deployment" not in marks and kube.get("Deployment", ns, example):
            marks["deployment"] = now
        md = kube.get("ModelDeployment", ns, example)
        if condition(md, "Ready").get("reason") == "Ready":
            marks["ready"] = now
            marks["optimizer"] = float((md or {})["status"]["optimization"].get("durationSeconds") or 0)
        time.sleep(0.05)
    return marks


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
            print("| example | run | apply->Job s | Job s | optimizer s | Job done->Deployment s | apply->Ready s |")
            print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
            totals: dict[str, list[float]] = {}
            for example in ("digits-mlp", "digits-cnn"):
                for run in range(1, args.runs + 1):
                    m = one_run(cp, kube, storage, reference, example, f"bench-{example}-{run}")
                    totals.setdefault(example, []).append(m["ready"])
                    print(
                        f"| {example} | {run} | {m['job']:.2f} | {m['complete'] - m['job']:.2f} | {m['optimizer']:.2f} "
                        f"| {m['deployment'] - m['complete']:.2f} | {m['ready']:.2f} |",
                        flush=True,
                    )
            ns = f"bench-digits-mlp-{args.runs}"
            time.sleep(2)
            counting = load_client(str(cp.kubeconfig))
            # A second, in-process runtime over the same objects: its cache is filled by LISTs, then
            # a reconcile of a Ready object must send nothing at all.
            runtime = Runtime(counting, OperatorConfig(namespaces=(ns,)))
            runtime.prime()
            durations, requests = [], {}
            for _ in range(10):
                counting.requests.clear()
                started = time.perf_counter()
                outcome = runtime.reconciler.reconcile(ns, "digits-mlp")
                durations.append(time.perf_counter() - started)
                requests = dict(counting.requests)
                if outcome.wrote:
                    print(f"note: a reconcile wrote: {outcome}")
            print(
                f"\nno-op reconcile: requests {requests}, median {statistics.median(durations) * 1000:.1f} ms "
                f"(min {min(durations) * 1000:.1f}, max {max(durations) * 1000:.1f}) over {len(durations)}"
            )
            drift = []
            for _ in range(3):
                started = time.monotonic()
                cp.kubectl("delete", "service", "digits-mlp", "-n", ns)
                wait_for("the Service back", lambda: kube.get("Service", ns, "digits-mlp"), timeout=30, interval=0.05)
                drift.append(time.monotonic() - started)
            print(
                f"drift: deleted Service restored in median {statistics.median(drift):.2f} s "
                f"(max {max(drift):.2f} s; goal 10 s)"
            )
            counting.close()
        kube.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
