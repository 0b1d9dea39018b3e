"""`python -m devcluster up|down|status|demo`: the local control plane for humans.

Why it exists: developers want a cluster that outlives one command (to run the operator, kubectl and
helm by hand) without Docker. `up` starts a `ControlPlane` detached from this process, records
its pids in a state folder (default ~/.cache/modeldeploy/dev-cluster/) and prints the lines to
`eval`; `down` stops exactly those processes (checked by pid *and* command line, so a recycled pid of
someone else's process is never signalled) and removes the folder; `status` reports; `demo` (demo.py)
runs the whole stack once. `make cluster-up`, `cluster-down`, `cluster-status` and `demo` call this.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STATE_FILE = "state.json"


def default_state_dir() -> Path:
    from devcluster.assets import cache_root

    return cache_root() / "dev-cluster"


def build_parser() -> argparse.ArgumentParser:
    """`devcluster` with its four actions; each sets `func`."""
    from devcluster import demo

    parser = argparse.ArgumentParser(
        prog="python -m devcluster",
        description="A local Kubernetes control plane (etcd, apiserver, controllers, kwok nodes) for modeldeploy.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where the running cluster is recorded (default: ~/.cache/modeldeploy/dev-cluster)",
    )
    up = actions.add_parser("up", parents=[common], help="start the cluster (detached) and print the KUBECONFIG line")
    up.add_argument("--nodes", type=int, default=3, help="number of kwok fake Nodes (default: 3)")
    up.set_defaults(func=cmd_up)
    down = actions.add_parser("down", parents=[common], help="stop the cluster started by `up` and remove its files")
    down.set_defaults(func=cmd_down)
    status = actions.add_parser("status", parents=[common], help="report whether the cluster is running and healthy")
    status.set_defaults(func=cmd_status)
    demo.register(actions)
    return parser


# --- state ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Recorded:
    name: str
    pid: int
    log: str


def _state_dir(args: argparse.Namespace) -> Path:
    state_dir: Path | None = args.state_dir
    return (state_dir or default_state_dir()).expanduser().resolve()


def _read_state(state_dir: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads((state_dir / STATE_FILE).read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        log.warning("%s is not valid JSON; treating the cluster as gone", state_dir / STATE_FILE)
        return None
    return state


def _recorded(state: dict[str, Any]) -> list[_Recorded]:
    return [_Recorded(p["name"], int(p["pid"]), p["log"]) for p in state.get("processes", [])]


def _ours(pid: int, workdir: str) -> bool:
    """Is `pid` alive and still the process `up` started? Its command line names the cluster's folder."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[1].split()[0] == "Z":
        return False
    return workdir in cmdline


def _exports(state: dict[str, Any]) -> str:
    return f"export KUBECONFIG={state['kubeconfig']}\nexport PATH={state['bin_dir']}:$PATH\n"


def _stop_recorded(state: dict[str, Any]) -> list[str]:
    from devcluster.processes import stop_process_groups

    workdir = str(state["workdir"])
    alive = [(p.name, p.pid) for p in _recorded(state) if _ours(p.pid, workdir)]
    stop_process_groups(alive)
    return [name for name, _ in alive]


def _remove(state_dir: Path) -> None:
    # Only what `up` made: never rmtree a folder we did not create (the state dir may be user-chosen).
    shutil.rmtree(state_dir / "cluster", ignore_errors=True)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty: the user keeps something there
        state_dir.rmdir()


def _health(state: dict[str, Any]) -> tuple[bool, list[str]]:
    """(healthy, report lines): every process alive, /readyz ok, Nodes Ready."""
    from devcluster.certs import Pki
    from devcluster.kubeapi import KubeApi, tls_context

    workdir = str(state["workdir"])
    lines = []
    healthy = True
    for process in _recorded(state):
        alive = _ours(process.pid, workdir)
        healthy &= alive
        lines.append(
            f"  {process.name:<24} pid {process.pid:<8} {'running' if alive else 'NOT RUNNING'}  log {process.log}"
        )
    pki = Pki.in_folder(Path(workdir) / "pki")
    try:
        context = tls_context(pki.ca_cert, pki.admin_cert, pki.admin_key)
    except OSError as exc:
        return False, [*lines, f"  cannot read the cluster's certificates: {exc}"]
    with KubeApi(int(state["apiserver_port"]), context, timeout=3) as api:
        ready = api.probe("/readyz")
        healthy &= ready
        lines.append(f"  kube-apiserver {state['apiserver_url']} /readyz: {'ok' if ready else 'NOT READY'}")
        if ready:
            nodes = api.get("/api/v1/nodes?labelSelector=type%3Dkwok")["items"]
            ready_nodes = sum(
                1
                for node in nodes
                for condition in node.get("status", {}).get("conditions", [])
                if condition["type"] == "Ready" and condition["status"] == "True"
            )
            lines.append(f"  nodes: {ready_nodes}/{len(nodes)} Ready")
    return healthy, lines


# --- actions ----------------------------------------------------------------------------------------


def _setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)


def cmd_up(args: argparse.Namespace) -> int:
    from devcluster.assets import AssetsError
    from devcluster.controlplane import ControlPlane, ControlPlaneError

    _setup_logging()
    state_dir = _state_dir(args)
    state = _read_state(state_dir)
    if state is not None:
        healthy, lines = _health(state)
        if healthy:
            print(f"dev cluster already running ({state_dir}):", *lines, sep="\n", file=sys.stderr)
            sys.stdout.write(_exports(state))
            return 0
        stopped = _stop_recorded(state)
        log.warning("found a broken dev cluster in %s; stopped %s and starting afresh", state_dir, stopped or "nothing")
        _remove(state_dir)

    state_dir.mkdir(parents=True, exist_ok=True)
    workdir = state_dir / "cluster"
    shutil.rmtree(workdir, ignore_errors=True)
    plane = ControlPlane(nodes=args.nodes, workdir=workdir, keep_workdir=True, detach=True)
    try:
        plane.start()
    except (ControlPlaneError, AssetsError) as exc:
        print(f"devcluster up failed: {exc}\n(logs kept in {workdir / 'logs'})", file=sys.stderr)
        return 1
    records = plane.release()
    state = {
        "apiserver_url": plane.apiserver_url,
        "apiserver_port": plane.apiserver_port,
        "kubeconfig": str(plane.kubeconfig),
        "bin_dir": str(plane.bin_dir),
        "workdir": str(workdir),
        "nodes": plane.node_count,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "processes": [{"name": r.name, "pid": r.pid, "log": str(r.log_path)} for r in records],
    }
    tmp = state_dir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, state_dir / STATE_FILE)
    print(
        f"dev cluster up in {plane.timings.phases.get('start', 0):.1f} s: {plane.apiserver_url}, "
        f"{plane.node_count} kwok nodes; stop it with `python -m devcluster down`. Use it with:",
        file=sys.stderr,
    )
    sys.stdout.write(_exports(state))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    _setup_logging()
    state_dir = _state_dir(args)
    state = _read_state(state_dir)
    if state is None:
        print(f"no dev cluster recorded in {state_dir}", file=sys.stderr)
        return 0
    stopped = _stop_recorded(state)
    _remove(state_dir)
    print(
        f"dev cluster stopped ({', '.join(stopped) or 'nothing was still running'}); removed {state_dir}",
        file=sys.stderr,
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    state_dir = _state_dir(args)
    state = _read_state(state_dir)
    if state is None:
        print(f"no dev cluster recorded in {state_dir}")
        return 1
    healthy, lines = _health(state)
    print(f"dev cluster {'running' if healthy else 'UNHEALTHY'} (started {state['started_at']}, state {state_dir})")
    print(*lines, sep="\n")
    print(f"export KUBECONFIG={state['kubeconfig']}")
    return 0 if healthy else 1


def main(argv: list[str] | None = None) -> int:
    """`python -m devcluster up|down|status|demo`."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        print("devcluster: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
