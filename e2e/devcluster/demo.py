"""`python -m devcluster demo` (`make demo`): the whole stack on this machine in one command, for a first look.

Starts the local control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok nodes),
installs the CRD, trains the reference models into a claim, runs the operator and the executor that
plays the kubelet for optimizer pods, applies an example, waits until it is Ready and prints what a
user would look at. Needs the optimizer extra (TensorFlow) and the control-plane binaries
(`make controlplane`). `--keep` leaves it running until Ctrl-C and prints the KUBECONFIG line.

The examples and the CRD are the repository's, not this package's: they are found relative to the
current folder (`make demo` runs from the repository root) or given with --examples and --crds.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the `demo` action to `python -m devcluster`."""
    parser = subparsers.add_parser("demo", help="run the whole stack locally on an example", description=__doc__)
    parser.add_argument("--example", default="digits-mlp", help="<examples>/<name>.yaml (digits-mlp, digits-cnn)")
    parser.add_argument(
        "--examples", type=Path, default=Path("examples"), help="the folder of examples (default: ./examples)"
    )
    parser.add_argument("--crds", type=Path, default=Path("crds"), help="the folder of CRD YAML (default: ./crds)")
    parser.add_argument("--keep", action="store_true", help="keep everything running until Ctrl-C")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for Ready")
    parser.set_defaults(func=run)


def _step(text: str) -> None:
    print(f"==> {text}", flush=True)


def run(args: argparse.Namespace) -> int:
    example = args.examples / f"{args.example}.yaml"
    if not example.is_file():
        print(
            f"devcluster demo: no example {example} (run from the repository root or pass --examples)", file=sys.stderr
        )
        return 2
    if not args.crds.is_dir():
        print(
            f"devcluster demo: no CRD folder {args.crds} (run from the repository root or pass --crds)", file=sys.stderr
        )
        return 2
    work = Path(tempfile.mkdtemp(prefix="modeldeploy-demo-"))
    try:
        return _demo(args, example, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _demo(args: argparse.Namespace, example: Path, work: Path) -> int:
    from devcluster.controlplane import ControlPlane
    from devcluster.executor import JobPodExecutor
    from devcluster.stack import OperatorProcess, condition, make_claim, make_reference_models, wait_for
    from modeldeploy.k8s.client import load_client

    name = args.example
    _step("starting the local control plane (etcd, kube-apiserver, controller-manager, scheduler, 3 kwok nodes)")
    with ControlPlane(nodes=3) as cp:
        cp.kubectl("apply", "--server-side", "-f", str(args.crds))
        cp.wait_established("modeldeployments.modeldeploy.io")
        _step("training the reference models (scikit-learn digits, no download)")
        reference = make_reference_models(work / "reference")
        storage = work / "storage"
        make_claim(cp, storage, "default", "models", reference)
        kube = load_client(str(cp.kubeconfig))
        _step("running the operator and the optimizer-pod executor")
        with (
            cp.admin_api() as api,
            JobPodExecutor(api, storage),
            OperatorProcess(cp.kubeconfig, work / "operator.log") as operator,
        ):
            started = time.monotonic()
            _step(f"kubectl apply -f {example}")
            print(cp.kubectl("apply", "-f", str(example)).stdout, end="")
            try:
                wait_for(
                    f"{name} to be Ready",
                    lambda: condition(kube.get("ModelDeployment", "default", name), "Ready").get("reason") == "Ready",
                    timeout=args.timeout,
                )
            except TimeoutError as exc:
                print(f"devcluster demo: {exc}\n--- operator log ---\n{operator.log()[-5000:]}", file=sys.stderr)
                return 1
            _step(f"Ready after {time.monotonic() - started:.1f}s")
            print(cp.kubectl("get", "modeldeployments", "-o", "wide").stdout)
            print(cp.kubectl("get", "jobs,deployments,services,hpa,pdb").stdout)
            print(
                cp.kubectl(
                    "get",
                    "events",
                    "--field-selector",
                    "involvedObject.kind=ModelDeployment",
                    "--sort-by=.metadata.creationTimestamp",
                ).stdout
            )
            if args.keep:
                print(f"export KUBECONFIG={cp.kubeconfig}\n(running; Ctrl-C stops everything)", flush=True)
                try:
                    while operator.popen.poll() is None:
                        time.sleep(1)
                except KeyboardInterrupt:
                    pass
        kube.close()
    return 0
