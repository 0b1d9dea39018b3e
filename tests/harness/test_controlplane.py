"""The local control plane is a real cluster: scheduling, kwok nodes, controllers, RBAC, admission, helm,
and it cleans up after itself. These tests guard the devcluster package (e2e/devcluster), which every other
integration test stands on.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devcluster import processes
from devcluster.assets import read_versions
from devcluster.controlplane import CommandError, ControlPlane
from repo_paths import CHART

pytestmark = pytest.mark.integration


def wait_for(what: str, condition: Callable[[], bool], timeout: float = 90.0, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def get_json(cp: ControlPlane, *args: str) -> Any:
    return json.loads(cp.kubectl("get", *args, "-o", "json").stdout)


def processes_mentioning(text: str) -> list[str]:
    """Live processes whose command line contains `text`, from `ps` (not from the harness's own books)."""
    listing = subprocess.run(
        ["ps", "-ww", "-eo", "pid=,stat=,args="], capture_output=True, text=True, check=True
    ).stdout
    return [line.strip() for line in listing.splitlines() if text in line and not line.split()[1].startswith("Z")]


def pod_manifest(name: str, labels: dict[str, str] | None = None, **spec: Any) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10"}], **spec},
        }
    )


# --- it is the pinned Kubernetes ------------------------------------------------------------------------


def test_kubectl_and_server_report_the_pinned_version(control_plane: ControlPlane) -> None:
    version = json.loads(control_plane.kubectl("version", "-o", "json").stdout)
    client, server = version["clientVersion"]["gitVersion"], version["serverVersion"]["gitVersion"]
    if "KUBEBUILDER_ASSETS" in os.environ or any(k.startswith("TEST_ASSET_") for k in os.environ):
        # Someone else's binaries: at least they must be version-stamped (v0.0.0 confuses helm and kubectl).
        assert not server.startswith("v0.0.0"), version
    else:
        pinned = f"v{read_versions().kubernetes}"
        assert (client, server) == (pinned, pinned)


# --- scheduling, kwok, controllers ------------------------------------------------------------------------


def test_deployment_becomes_available_on_kwok_nodes(control_plane: ControlPlane, namespace: str) -> None:
    cp = control_plane
    cp.kubectl("-n", namespace, "create", "deployment", "web", "--image=registry.k8s.io/pause:3.10", "--replicas=3")
    cp.kubectl("-n", namespace, "wait", "deployment/web", "--for=condition=Available", "--timeout=120s")

    deployment = get_json(cp, "-n", namespace, "deployment/web")
    assert deployment["status"]["readyReplicas"] == 3
    pods = get_json(cp, "-n", namespace, "pods", "-l", "app=web")["items"]
    assert len(pods) == 3
    for pod in pods:
        # Bound by kube-scheduler (there is no other scheduler here) to one of the kwok nodes ...
        assert pod["spec"]["nodeName"] in cp.node_names
        # ... and made Running/Ready by kwok's pod-ready stage.
        assert pod["status"]["phase"] == "Running"
        assert {"type": "Ready", "status": "True"}.items() <= next(
            c for c in pod["status"]["conditions"] if c["type"] == "Ready"
        ).items()
    events = cp.kubectl("-n", namespace, "get", "events", "--field-selector=reason=Scheduled", "-o", "name").stdout
    assert events.strip(), "no Scheduled events: the pods were not bound by kube-scheduler"


def test_job_completes_through_kwok(control_plane: ControlPlane, namespace: str) -> None:
    cp = control_plane
    cp.kubectl("-n", namespace, "create", "job", "once", "--image=registry.k8s.io/pause:3.10")
    cp.kubectl("-n", namespace, "wait", "job/once", "--for=condition=Complete", "--timeout=120s")


def test_deleting_an_owner_garbage_collects_its_dependent(control_plane: ControlPlane, namespace: str) -> None:
    cp = control_plane
    cp.kubectl("-n", namespace, "create", "configmap", "owner")
    owner_uid = get_json(cp, "-n", namespace, "configmap/owner")["metadata"]["uid"]
    dependent = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "dependent",
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}],
        },
    }
    cp.kubectl("-n", namespace, "create", "configmap", "bystander")
    cp.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(dependent))

    cp.kubectl("-n", namespace, "delete", "configmap", "owner")

    def dependent_gone() -> bool:
        result = cp.kubectl("-n", namespace, "get", "configmap", "dependent", check=False)
        return result.returncode != 0 and "NotFound" in result.stderr

    wait_for("the garbage collector to delete configmap/dependent", dependent_gone)
    # The collector follows ownerReferences only: an unrelated object stays.
    cp.kubectl("-n", namespace, "get", "configmap", "bystander")


def test_optimizer_pods_are_bound_but_left_to_the_test_executor(control_plane: ControlPlane, namespace: str) -> None:
    """kwok's pod stages skip app.kubernetes.io/component=optimizer: a test-side executor plays their kubelet."""
    cp = control_plane
    cp.kubectl("-n", namespace, "apply", "-f", "-", input=pod_manifest("control"))
    optimizer_labels = {"app.kubernetes.io/component": "optimizer"}
    cp.kubectl("-n", namespace, "apply", "-f", "-", input=pod_manifest("optimizer", optimizer_labels))

    # The unlabelled twin proves kwok is at work on this node set at the same time.
    cp.kubectl("-n", namespace, "wait", "pod/control", "--for=jsonpath={.status.phase}=Running", "--timeout=90s")
    wait_for(
        "pod/optimizer to be scheduled",
        lambda: bool(get_json(cp, "-n", namespace, "pod/optimizer")["spec"].get("nodeName")),
    )
    time.sleep(3)  # kwok acts within milliseconds; give it ample time to (wrongly) do so

    pod = get_json(cp, "-n", namespace, "pod/optimizer")
    assert pod["spec"]["nodeName"] in cp.node_names
    assert pod["status"]["phase"] == "Pending"
    conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
    assert conditions.get("PodScheduled") == "True"
    assert conditions.get("Ready") != "True"
    assert "containerStatuses" not in pod["status"]

    # Deleting it still completes (kwok's pod-delete stage applies to every pod), so cleanup never hangs.
    cp.kubectl("-n", namespace, "delete", "pod", "optimizer", "--timeout=60s")


# --- security: RBAC for ServiceAccounts, PodSecurity admission ------------------------------------------


def test_serviceaccount_kubeconfig_is_subject_to_rbac(control_plane: ControlPlane, namespace: str) -> None:
    cp = control_plane
    cp.kubectl("-n", namespace, "create", "serviceaccount", "robot")
    kubeconfig = cp.serviceaccount_kubeconfig(namespace, "robot")

    def as_robot(*args: str) -> subprocess.CompletedProcess[str]:
        return cp.kubectl("--kubeconfig", str(kubeconfig), "-n", namespace, *args, check=False)

    whoami = json.loads(as_robot("auth", "whoami", "-o", "json").stdout)
    assert whoami["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:robot"

    denied = as_robot("auth", "can-i", "list", "secrets")
    assert (denied.returncode, denied.stdout.strip()) == (1, "no")
    forbidden = as_robot("get", "secrets")
    assert forbidden.returncode != 0 and "Forbidden" in forbidden.stderr

    # Granting the permission flips the answer: it is RBAC deciding, not a broken token.
    cp.kubectl("-n", namespace, "create", "role", "secret-reader", "--verb=list", "--resource=secrets")
    cp.kubectl(
        "-n",
        namespace,
        "create",
        "rolebinding",
        "robot-reads",
        "--role=secret-reader",
        f"--serviceaccount={namespace}:robot",
    )
    wait_for(
        "RBAC to allow the robot to list secrets",
        lambda: as_robot("auth", "can-i", "list", "secrets").stdout.strip() == "yes",
        timeout=30,
    )
    assert as_robot("auth", "can-i", "list", "secrets", "-n", "kube-system").stdout.strip() == "no"


def test_podsecurity_admission_enforces_the_restricted_profile(control_plane: ControlPlane, namespace: str) -> None:
    cp = control_plane
    cp.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    privileged = {"name": "main", "image": "registry.k8s.io/pause:3.10", "securityContext": {"privileged": True}}
    with pytest.raises(CommandError) as rejected:
        cp.kubectl("-n", namespace, "apply", "-f", "-", input=pod_manifest("root", containers=[privileged]))
    assert "violates PodSecurity" in rejected.value.stderr


# --- helm -------------------------------------------------------------------------------------------------


def test_helm_lint_and_install_the_chart(control_plane: ControlPlane, namespace: str) -> None:
    cp = control_plane
    lint = cp.helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in lint.stdout

    release = ["-n", namespace, "-l", "app.kubernetes.io/instance=modeldeploy"]
    cp.helm("install", "modeldeploy", str(CHART), "-n", namespace, "--wait", "--timeout=120s")
    status = json.loads(cp.helm("status", "modeldeploy", "-n", namespace, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    accounts = get_json(cp, *release, "serviceaccounts")["items"]
    assert accounts, "the chart installed no ServiceAccount"
    assert {sa["metadata"]["labels"]["app.kubernetes.io/managed-by"] for sa in accounts} == {"Helm"}

    cp.helm("uninstall", "modeldeploy", "-n", namespace, "--wait")
    assert get_json(cp, *release, "serviceaccounts")["items"] == []


# --- lifecycle: nothing is left behind -------------------------------------------------------------------


def test_stop_leaves_no_process_and_no_file_behind() -> None:
    plane = ControlPlane(nodes=1)
    plane.start()
    try:
        workdir = plane.workdir
        pids = [p.pid for p in plane.processes]
        names = {p.name for p in plane.processes}
        assert names == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}
        assert len(processes_mentioning(str(workdir))) == 5
    finally:
        plane.stop()

    assert processes_mentioning(str(workdir)) == []
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists(), f"pid {pid} still exists (not even a zombie may stay)"
    assert not workdir.exists()
    plane.stop()  # idempotent


def test_a_port_taken_before_bind_is_retried_on_other_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    """free_ports() must close its sockets before etcd binds them; if someone grabs one meanwhile, start
    again rather than fail (concurrent test sessions on one machine make this real)."""
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    real_free_ports = processes.free_ports
    calls: list[list[int]] = []

    def first_with_a_taken_port(count: int) -> list[int]:
        ports = real_free_ports(count)
        if not calls:
            ports[0] = taken  # etcd's client port
        calls.append(ports)
        return ports

    monkeypatch.setattr(processes, "free_ports", first_with_a_taken_port)
    try:
        with ControlPlane(nodes=1) as plane:
            assert len(calls) == 2
            assert plane.kubectl("get", "nodes", "-o", "name").stdout.split() == ["node/kwok-node-0"]
    finally:
        squatter.close()


# The child takes Ctrl-C like a program started from a terminal: a shell starts background jobs with
# SIGINT ignored, and a process inherits that (Python then installs no KeyboardInterrupt handler), so
# a test run in the background (`make test &`, `nohup`) would otherwise send SIGINT to a child that
# ignores it and wait in vain.
_CHILD = textwrap.dedent(
    """
    import signal, sys, time
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from devcluster.controlplane import ControlPlane
    with ControlPlane(nodes=1) as plane:
        print(plane.workdir, flush=True)
        time.sleep(600)
    """
)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_an_interrupted_owner_leaves_no_process_behind(sig: signal.Signals, tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) and SIGTERM run stop(); after SIGKILL the kernel kills the children (PDEATHSIG)."""
    log = tmp_path / "child.log"
    with (
        log.open("w") as stderr,
        subprocess.Popen([sys.executable, "-c", _CHILD], stdout=subprocess.PIPE, stderr=stderr, text=True) as child,
    ):
        try:
            assert child.stdout is not None
            line = child.stdout.readline().strip()
            assert line, f"the child did not start a cluster: {log.read_text()}"
            workdir = Path(line)
            assert len(processes_mentioning(str(workdir))) == 5
            child.send_signal(sig)
            # stop() gives each component 5 s to exit before SIGKILL: a minute is plenty.
            child.wait(timeout=60)
        finally:
            if child.poll() is None:  # a failed assertion above: do not leave the child (and its cluster) running
                child.terminate()
                child.wait(timeout=60)

    wait_for(
        "the cluster's processes to go", lambda: processes_mentioning(str(workdir)) == [], timeout=15, interval=0.2
    )
    if sig == signal.SIGKILL:
        shutil.rmtree(workdir, ignore_errors=True)  # nobody was left to remove it; the kernel only kills
    else:
        assert not workdir.exists()


def test_dev_cluster_up_status_down(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"

    def dev_cluster(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "devcluster", *args, "--state-dir", str(state_dir)],
            capture_output=True, text=True, timeout=240, check=False,
        )  # fmt: skip

    up = dev_cluster("up", "--nodes", "2")
    assert up.returncode == 0, up.stderr
    exports = dict(line.removeprefix("export ").split("=", 1) for line in up.stdout.splitlines())
    kubeconfig = exports["KUBECONFIG"]
    try:
        # Detached: the processes outlive the `up` command.
        assert len(processes_mentioning(str(state_dir))) == 5
        kubectl = str(Path(exports["PATH"].split(":")[0]) / "kubectl")
        nodes = subprocess.run(
            [kubectl, "--kubeconfig", kubeconfig, "get", "nodes", "-o", "name"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert nodes.stdout.split() == ["node/kwok-node-0", "node/kwok-node-1"]

        status = dev_cluster("status")
        assert status.returncode == 0, status.stdout
        assert "2/2 Ready" in status.stdout

        again = dev_cluster("up")  # idempotent: the healthy cluster is reused
        assert again.returncode == 0 and f"export KUBECONFIG={kubeconfig}" in again.stdout
    finally:
        down = dev_cluster("down")
    assert down.returncode == 0, down.stderr
    assert processes_mentioning(str(state_dir)) == []
    assert not state_dir.exists()
    assert dev_cluster("status").returncode == 1
