"""A real Kubernetes control plane as plain local processes: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, and kwok playing the kubelet of N fake Nodes.

Why it exists: the operator must be proven against a real API server (RBAC, admission, CEL, the scale
subresource, garbage collection, scheduling), and this machine has no Docker for kind. The pytest
fixtures (tests/integration/conftest.py), `modeldeploy dev-cluster up` (cli.py) and the benchmark use
this class; nothing here is mocked.

Everything listens on 127.0.0.1 on free random ports and lives in one private folder, so several
clusters can run side by side. Every process gets its own process group; `stop()` (also run from
`atexit`, on SIGTERM/SIGHUP, and when `start()` fails or is interrupted) stops the groups with SIGTERM,
then SIGKILL, reaps them and removes the folder. In-process clusters also ask the kernel to SIGKILL
their processes if the Python process dies without cleaning up (PR_SET_PDEATHSIG), so not even a
`kill -9` of pytest leaves orphans; `dev-cluster up` clusters are detached on purpose and skip that.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import ctypes
import functools
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml

from modeldeploy.devcluster import certs
from modeldeploy.devcluster.assets import Assets, find_assets
from modeldeploy.devcluster.kubeapi import ApiError, KubeApi, tls_context

log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: The annotation kwok selects the Nodes it manages by (--manage-nodes-with-annotation-selector).
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
#: The label that keeps a pod away from kwok's pod stages (see stages/pod-ready.yaml).
UNMANAGED_POD_LABEL = ("app.kubernetes.io/component", "optimizer")
#: Service ClusterIPs come from here (the serving certificate names its first address, 10.96.0.1);
#: kwok hands out pod IPs from POD_CIDR. They must not overlap (kwok's default pod CIDR is 10.0.0.0/24).
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
STAGE_FILES = ("node-initialize", "node-heartbeat", "pod-ready", "pod-complete", "pod-delete")
DEFAULT_NODE_CAPACITY: Mapping[str, str] = {"cpu": "32", "memory": "256Gi", "pods": "250"}
#: Client rate limit of the controller-manager and the scheduler (defaults: 20 and 50 QPS).
CLIENT_QPS = 200
#: Start order; stop goes the other way.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
#: Stop order (see stop_process_groups).
STOP_STAGES = (("kwok", "kube-scheduler", "kube-controller-manager"), ("kube-apiserver",), ("etcd",))


class ControlPlaneError(RuntimeError):
    """The control plane could not start (the message names the component and quotes its log)."""


class _PortTaken(ControlPlaneError):
    """A component exited because its port was taken between free_ports() and its bind()."""


_START_ATTEMPTS = 3


class CommandError(subprocess.CalledProcessError):
    """A kubectl or helm call failed; unlike CalledProcessError, the message includes stderr."""

    def __str__(self) -> str:
        stderr = (self.stderr or "").strip()
        return f"{' '.join(map(str, self.cmd))} exited {self.returncode}: {stderr}"


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path


@dataclass(frozen=True)
class ProcessRecord:
    """What `dev-cluster up` records about a detached process, so `down` can find it again."""

    name: str
    pid: int
    log_path: Path


@dataclass
class Timings:
    """Seconds spent in each phase of the last start/stop, for logs and benchmarks/controlplane.py."""

    phases: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        return ", ".join(f"{name} {seconds:.1f}s" for name, seconds in self.phases.items())


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on 127.0.0.1 (all held open together, so none repeats)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


# --- process lifetime ---------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1
_libc: ctypes.CDLL | None = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(OSError):
        _libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGKILL me when the thread that started me dies."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _exited_unreaped(pid: int) -> bool:
    """True once `pid` (our child) has exited; it stays a zombie, so its process group id stays ours."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_process_groups(
    processes: Sequence[tuple[str, int]], *, grace: float = 5.0, reap: Callable[[int], object] | None = None
) -> None:
    """Stop processes by group (pid == pgid: each was started in a new session), in STOP_STAGES order.

    The API server's clients go first, then kube-apiserver, then etcd: stopped together, etcd would wait
    for the apiserver's watch streams and the apiserver for etcd, and both would need SIGKILL (5 s);
    in order it takes about a second. Each stage gets SIGTERM, `grace` seconds, then SIGKILL.

    `processes` are (name, pid) pairs. For our own children (`reap` given), exit is detected without
    reaping, so a group id cannot be recycled before the SIGKILL sweep; `reap` then collects the zombie.
    For another Python process's children (`dev-cluster down`), liveness is checked with signal 0.
    """
    rank = {name: index for index, stage in enumerate(STOP_STAGES) for name in stage}
    stages: dict[int, list[tuple[str, int]]] = {}
    for name, pid in processes:
        stages.setdefault(rank.get(name, -1), []).append((name, pid))
    for _, stage in sorted(stages.items()):
        _stop_stage(stage, grace=grace, own=reap is not None)
    if reap is not None:
        for _, pid in processes:
            reap(pid)


def _stop_stage(stage: Sequence[tuple[str, int]], *, grace: float, own: bool) -> None:
    def gone(pid: int) -> bool:
        return _exited_unreaped(pid) if own else not _alive(pid)

    for name, pid in stage:
        log.debug("SIGTERM to %s (process group %d)", name, pid)
        _killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    pending = list(stage)
    while pending and time.monotonic() < deadline:
        pending = [(name, pid) for name, pid in pending if not gone(pid)]
        if pending:
            time.sleep(0.02)
    for name, pid in pending:
        log.warning("%s (pid %d) ignored SIGTERM for %.0f s; sending SIGKILL", name, pid, grace)
    for _, pid in stage:
        _killpg(pid, signal.SIGKILL)  # also sweeps anything a component might have forked
    if not own:
        deadline = time.monotonic() + 5.0
        while any(_alive(pid) for _, pid in stage) and time.monotonic() < deadline:
            time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers signal 0; /proc tells them apart.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# Every in-process cluster still running, stopped at interpreter exit or on SIGTERM/SIGHUP.
_live: set[ControlPlane] = set()
_live_lock = threading.RLock()  # re-entrant: a signal handler may run while the main thread holds it


def _stop_all_live() -> None:
    with _live_lock:
        planes = list(_live)
    for plane in planes:
        with contextlib.suppress(Exception):
            plane.stop()


def _on_fatal_signal(signum: int, frame: types.FrameType | None) -> None:
    log.warning("received %s: stopping local control planes", signal.Signals(signum).name)
    _stop_all_live()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


@functools.cache
def _install_cleanup_hooks() -> None:
    """Once: atexit always; SIGTERM/SIGHUP handlers only from the main thread and only where nobody
    else has installed one (pytest, kopf and friends keep theirs)."""
    atexit.register(_stop_all_live)
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, _on_fatal_signal)


# --- the control plane --------------------------------------------------------------------------------


class ControlPlane:
    """One local cluster. `with ControlPlane(nodes=3) as cp: cp.kubectl("get", "nodes")`.

    Keyword arguments:
      nodes: how many kwok Nodes to create (thousands work; kwok claims 1k nodes / 100k pods).
      workdir: the private folder (certificates, etcd data, logs, kubeconfigs). Default: a new temp
        folder. It is removed by stop() unless keep_workdir.
      assets: the binaries (default: assets.find_assets(), which builds them on first use).
      detach: for `dev-cluster up`: processes outlive this Python process, no cleanup hooks.
      extra_args: more flags per component, e.g.
        {"kube-controller-manager": ["--horizontal-pod-autoscaler-sync-period=5s"]}.
      node_capacity: the fake Nodes' capacity/allocatable.
      startup_timeout: seconds for each wait of start(), after which it fails with the logs
        (default 120 s + 0.2 s per node).
    """

    def __init__(
        self,
        *,
        nodes: int = 3,
        workdir: Path | None = None,
        keep_workdir: bool = False,
        assets: Assets | None = None,
        detach: bool = False,
        extra_args: Mapping[str, Sequence[str]] | None = None,
        node_capacity: Mapping[str, str] | None = None,
        startup_timeout: float | None = None,
    ) -> None:
        if nodes < 0:
            raise ValueError("nodes must be >= 0")
        unknown = set(extra_args or {}) - set(COMPONENTS)
        if unknown:
            raise ValueError(f"extra_args for unknown components: {sorted(unknown)}")
        self.node_count = nodes
        self._requested_workdir = workdir
        self._keep_workdir = keep_workdir
        self._assets = assets
        self.detach = detach
        self._extra_args = {name: list(args) for name, args in (extra_args or {}).items()}
        self._node_capacity = dict(node_capacity or DEFAULT_NODE_CAPACITY)
        # Three nodes start in ~4 s; a thousand in ~30 s on two cores (benchmarks/controlplane.py).
        self._startup_timeout = startup_timeout if startup_timeout is not None else 120.0 + 0.2 * nodes
        self._processes: list[_Process] = []
        self._lock = threading.RLock()
        self._started = False
        self._workdir: Path | None = None
        self._bin_dir: Path | None = None
        self._pki: certs.Pki | None = None
        self._ports: dict[str, int] = {}
        self.timings = Timings()

    # -- public read-only view ------------------------------------------------------------------------

    @property
    def workdir(self) -> Path:
        return self._require(self._workdir, "workdir")

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (client certificate in group system:masters)."""
        return self.workdir / "kubeconfig"

    @property
    def bin_dir(self) -> Path:
        """The folder holding kubectl, helm, kube-apiserver, ... (put it first on PATH)."""
        return self._require(self._bin_dir, "bin_dir")

    @property
    def apiserver_port(self) -> int:
        return self._require(self._ports.get("kube-apiserver"), "apiserver port")

    @property
    def apiserver_url(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def node_names(self) -> list[str]:
        return [f"kwok-node-{index}" for index in range(self.node_count)]

    @property
    def env(self) -> dict[str, str]:
        """A complete environment for subprocesses: ours, plus KUBECONFIG, PATH with bin_dir first, and
        helm's folders inside the workdir (so helm never touches the user's own config or cache)."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        for var, sub in (("HELM_CACHE_HOME", "cache"), ("HELM_CONFIG_HOME", "config"), ("HELM_DATA_HOME", "data")):
            env[var] = str(self.workdir / "helm" / sub)
        return env

    @property
    def processes(self) -> list[ProcessRecord]:
        return [ProcessRecord(p.name, p.popen.pid, p.log_path) for p in self._processes]

    @property
    def running(self) -> bool:
        return self._started

    def log_path(self, component: str) -> Path:
        return self.workdir / "logs" / f"{component}.log"

    # -- lifecycle ------------------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> ControlPlane:
        """Start every component and return once /readyz is ok, the controller-manager and scheduler
        are healthy, the `default` ServiceAccount exists and every Node is Ready and schedulable."""
        with self._lock:
            if self._started:
                return self
            self._started = True
            if not self.detach:
                _install_cleanup_hooks()
                with _live_lock:
                    _live.add(self)
            for attempt in range(1, _START_ATTEMPTS + 1):
                try:
                    self._start()
                    break
                except _PortTaken as exc:
                    if attempt == _START_ATTEMPTS:
                        self.stop()
                        raise
                    # free_ports() closes its sockets before the components bind them; rarely, another
                    # process takes one in between. Start again from scratch on other ports.
                    log.warning("%s; starting again on other ports (attempt %d)", exc, attempt + 1)
                    self._stop_processes()
                    self._remove_workdir()
                except BaseException:
                    self.stop()
                    raise
        return self

    def stop(self) -> None:
        """Stop every process this object started (SIGTERM, then SIGKILL), reap them, remove the workdir.
        Idempotent, and safe to call from signal handlers and atexit."""
        with self._lock:
            with _live_lock:
                _live.discard(self)
            if not self._started:
                return
            started = time.monotonic()
            self._stop_processes()
            self._remove_workdir()
            self._started = False
            self.timings.phases["stop"] = time.monotonic() - started

    def _stop_processes(self) -> None:
        processes = list(reversed(self._processes))
        if processes:
            by_pid = {p.popen.pid: p for p in processes}
            stop_process_groups([(p.name, p.popen.pid) for p in processes], reap=lambda pid: by_pid[pid].popen.wait())
            log.info("stopped %s", ", ".join(p.name for p in processes))
        self._processes.clear()

    def _remove_workdir(self) -> None:
        if self._workdir is not None and not self._keep_workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def release(self) -> list[ProcessRecord]:
        """Hand the running processes over to the caller (`dev-cluster up`): this object forgets them,
        so neither stop() nor garbage collection touches them; `dev-cluster down` stops them by pid."""
        with self._lock:
            records = self.processes
            for process in self._processes:
                # Popen would warn "subprocess is still running" when collected; it is not ours any more.
                process.popen.returncode = 0
            self._processes.clear()
            self._started = False
            with _live_lock:
                _live.discard(self)
            return records

    # -- helpers for tests and humans -------------------------------------------------------------------

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl as the admin; raises CommandError (with stderr) when check and it fails."""
        return self._run(
            [str(self.bin_dir / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args], input, check, timeout
        )

    def helm(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 180.0
    ) -> subprocess.CompletedProcess[str]:
        """Run helm as the admin, with its cache/config/data inside the workdir."""
        return self._run(
            [str(self.bin_dir / "helm"), "--kubeconfig", str(self.kubeconfig), *args], input, check, timeout
        )

    def serviceaccount_kubeconfig(self, namespace: str, name: str, *, expiration_seconds: int = 3600) -> Path:
        """A kubeconfig that authenticates as ServiceAccount namespace/name (a TokenRequest token), so
        code can run with exactly the RBAC a chart grants. The ServiceAccount must exist."""
        with self._admin_api() as api:
            try:
                answer = api.post(
                    f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
                    {
                        "apiVersion": "authentication.k8s.io/v1",
                        "kind": "TokenRequest",
                        "spec": {"expirationSeconds": expiration_seconds},
                    },
                )
            except ApiError as exc:
                raise ControlPlaneError(f"TokenRequest for ServiceAccount {namespace}/{name} failed: {exc}") from exc
        token = str(answer["status"]["token"])
        path = self.workdir / "serviceaccounts" / f"{namespace}.{name}.kubeconfig"
        path.parent.mkdir(exist_ok=True)
        self._write_kubeconfig(
            path, user=f"system:serviceaccount:{namespace}:{name}", credentials={"token": token}, namespace=namespace
        )
        log.info("wrote a kubeconfig for ServiceAccount %s/%s to %s", namespace, name, path)
        return path

    def wait_for_serviceaccount(self, namespace: str, name: str = "default", *, timeout: float = 60.0) -> None:
        """Wait until the serviceaccount controller has created `name` in `namespace` (pods need it)."""
        with self._admin_api() as api:
            self._wait(
                f"ServiceAccount {namespace}/{name}",
                lambda: api.request("GET", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}")[0] == 200,
                timeout=timeout,
            )

    # -- internals --------------------------------------------------------------------------------------

    @staticmethod
    def _require(value: _T | None, what: str) -> _T:
        if value is None:
            raise ControlPlaneError(f"the control plane is not started ({what} unknown)")
        return value

    def _run(self, argv: list[str], input: str | None, check: bool, timeout: float) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, env=self.env, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise CommandError(result.returncode, argv, result.stdout, result.stderr)
        return result

    def _admin_api(self, port: int | None = None) -> KubeApi:
        pki = self._require(self._pki, "pki")
        return KubeApi(port or self.apiserver_port, tls_context(pki.ca_cert, pki.admin_cert, pki.admin_key))

    def _phase(self, name: str, started: float) -> None:
        self.timings.phases[name] = time.monotonic() - started

    def _start(self) -> None:
        t0 = time.monotonic()
        self.timings = Timings()
        assets = self._assets or find_assets()
        if self._requested_workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="modeldeploy-cp-"))
        else:
            self._workdir = self._requested_workdir
            self._workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        shutil.rmtree(self.workdir / "etcd", ignore_errors=True)  # a fresh store on every start, retries too
        self._bin_dir = assets.bin_dir(self.workdir / "bin")
        self._pki = certs.write_pki(self.workdir / "pki")
        self._ports = dict(
            zip(
                ("etcd", "etcd-peer", "kube-apiserver", "kube-controller-manager", "kube-scheduler"),
                free_ports(5),
                strict=True,
            )
        )
        self._write_kubeconfig(
            self.kubeconfig,
            user=certs.ADMIN_USER,
            credentials={
                "client-certificate-data": _b64(self._pki.admin_cert),
                "client-key-data": _b64(self._pki.admin_key),
            },
        )
        stages = self.workdir / "kwok-stages.yaml"
        stages.write_text(
            "".join(
                "---\n" + resources.files("modeldeploy.devcluster").joinpath(f"stages/{name}.yaml").read_text()
                for name in STAGE_FILES
            )
        )
        self._phase("prepare", t0)
        log.info("starting a local control plane in %s (binaries: %s)", self.workdir, self.bin_dir)

        t = time.monotonic()
        etcd = self._spawn("etcd", self._etcd_args())
        self._wait("etcd /health", lambda: _http_ok(self._ports["etcd"], "/health"), watch=[etcd])
        self._phase("etcd", t)

        t = time.monotonic()
        apiserver = self._spawn("kube-apiserver", self._apiserver_args())
        with self._admin_api() as api:
            self._wait("kube-apiserver /readyz", lambda: api.probe("/readyz"), watch=[etcd, apiserver])
            self._phase("kube-apiserver", t)

            t = time.monotonic()
            kcm = self._spawn("kube-controller-manager", self._controller_manager_args())
            scheduler = self._spawn("kube-scheduler", self._scheduler_args())
            kwok = self._spawn("kwok", self._kwok_args(), extra_env={"KWOK_WORKDIR": str(self.workdir / "kwok")})
            everything = [etcd, apiserver, kcm, scheduler, kwok]
            self._create_nodes(api)
            with self._admin_api(self._ports["kube-controller-manager"]) as kcm_api:
                self._wait("kube-controller-manager /healthz", lambda: kcm_api.probe("/healthz"), watch=everything)
            with self._admin_api(self._ports["kube-scheduler"]) as scheduler_api:
                self._wait("kube-scheduler /healthz", lambda: scheduler_api.probe("/healthz"), watch=everything)
            self._wait(
                "ServiceAccount default/default",
                lambda: api.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
                watch=everything,
            )
            self._phase("controllers", t)

            t = time.monotonic()
            self._wait(f"{self.node_count} Nodes Ready", lambda: self._nodes_ready(api), watch=everything)
            self._phase("nodes", t)
        self._phase("start", t0)
        log.info(
            "local control plane ready at %s with %d nodes (%s)", self.apiserver_url, self.node_count, self.timings
        )

    def _spawn(self, name: str, args: list[str], *, extra_env: Mapping[str, str] | None = None) -> _Process:
        argv = [str(self.bin_dir / name), *args, *self._extra_args.get(name, [])]
        log_path = self.log_path(name)
        env = dict(os.environ)
        env.update(extra_env or {})
        with log_path.open("ab") as log_file:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=env,
                start_new_session=True,  # its own process group: stop() signals the group, Ctrl-C does not
                # preexec_fn is unsafe only for code that takes locks or imports between fork and exec;
                # _die_with_parent makes one prctl call through an already-loaded libc.
                preexec_fn=None if self.detach else _die_with_parent,  # noqa: PLW1509
            )
        process = _Process(name, popen, log_path)
        self._processes.append(process)
        log.info("started %s (pid %d), log %s", name, popen.pid, log_path)
        log.debug("%s argv: %s", name, " ".join(argv))
        return process

    def _wait(
        self,
        what: str,
        ready: Callable[[], bool],
        *,
        watch: Iterable[_Process] = (),
        timeout: float | None = None,
        interval: float = 0.1,
    ) -> None:
        """Poll `ready` until true; fail early, with its log, if a watched process exits."""
        deadline = time.monotonic() + (timeout if timeout is not None else self._startup_timeout)
        watched = list(watch)
        while True:
            if ready():
                return
            for process in watched:
                code = process.popen.poll()
                if code is not None:
                    tail = _tail(process.log_path)
                    error = _PortTaken if "address already in use" in tail else ControlPlaneError
                    raise error(
                        f"{process.name} exited with code {code} while waiting for {what}; "
                        f"its log ({process.log_path}) ends with:\n{tail}"
                    )
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {p.name} ({p.log_path}):\n{_tail(p.log_path, 15)}" for p in watched)
                raise ControlPlaneError(f"timed out waiting for {what}\n{logs}")
            time.sleep(interval)

    def _write_kubeconfig(
        self, path: Path, *, user: str, credentials: Mapping[str, str], namespace: str | None = None
    ) -> None:
        pki = self._require(self._pki, "pki")
        context: dict[str, str] = {"cluster": "modeldeploy-dev", "user": user}
        if namespace:
            context["namespace"] = namespace
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "modeldeploy-dev",
                    "cluster": {"server": self.apiserver_url, "certificate-authority-data": _b64(pki.ca_cert)},
                }
            ],
            "users": [{"name": user, "user": dict(credentials)}],
            "contexts": [{"name": "modeldeploy-dev", "context": context}],
            "current-context": "modeldeploy-dev",
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)

    # -- component flags --------------------------------------------------------------------------------

    def _etcd_args(self) -> list[str]:
        client = f"http://127.0.0.1:{self._ports['etcd']}"
        peer = f"http://127.0.0.1:{self._ports['etcd-peer']}"
        return [
            "--name=modeldeploy-dev",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=modeldeploy-dev={peer}",
            "--unsafe-no-fsync=true",  # a throw-away test store: durability buys nothing, fsync costs start time
            "--log-level=warn",
        ]

    def _apiserver_args(self) -> list[str]:
        pki = self._require(self._pki, "pki")
        return [
            f"--etcd-servers=http://127.0.0.1:{self._ports['etcd']}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self._ports['kube-apiserver']}",
            f"--cert-dir={self.workdir / 'apiserver'}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            "--authorization-mode=Node,RBAC",
            # Default admission plugins (NamespaceLifecycle, ServiceAccount, PodSecurity, ...) plus NodeRestriction.
            "--enable-admission-plugins=NodeRestriction",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--allow-privileged=true",
            "--profiling=false",
            # The aggregation layer (front proxy), so aggregated APIs such as metrics.k8s.io can be added.
            f"--requestheader-client-ca-file={pki.ca_cert}",
            f"--requestheader-allowed-names={certs.FRONT_PROXY_USER}",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki.front_proxy_cert}",
            f"--proxy-client-key-file={pki.front_proxy_key}",
            "--enable-aggregator-routing=true",  # no kube-proxy here: reach aggregated servers by endpoint
            # 127.0.0.1 cannot be published as the `kubernetes` Service endpoint (loopback is invalid there).
            "--endpoint-reconciler-type=none",
        ]

    def _serving_args(self, name: str) -> list[str]:
        """/healthz on a free loopback port with our certificate; callers authenticated via the apiserver."""
        pki = self._require(self._pki, "pki")
        return [
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self._ports[name]}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
        ]

    def _controller_manager_args(self) -> list[str]:
        pki = self._require(self._pki, "pki")
        return [
            f"--kubeconfig={self.kubeconfig}",
            *self._serving_args("kube-controller-manager"),
            "--leader-elect=false",
            "--profiling=false",
            # The default 20 QPS makes node-lifecycle lift the not-ready taint of ~5 Nodes a second:
            # minutes for a thousand. A test cluster has no other tenant to protect.
            f"--kube-api-qps={CLIENT_QPS}",
            f"--kube-api-burst={2 * CLIENT_QPS}",
            # Every on-by-default controller: deployment, replicaset, job, garbage-collector,
            # horizontal-pod-autoscaler, namespace, serviceaccount(-token), node-lifecycle, ...
            "--controllers=*",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki.sa_key}",
            f"--root-ca-file={pki.ca_cert}",
            f"--cluster-signing-cert-file={pki.ca_cert}",
            f"--cluster-signing-key-file={pki.ca_key}",
            "--cluster-name=modeldeploy-dev",
        ]

    def _scheduler_args(self) -> list[str]:
        # The scheduler takes its client settings from a config file only (the flags are deprecated).
        config = self.workdir / "kube-scheduler.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kubescheduler.config.k8s.io/v1",
                    "kind": "KubeSchedulerConfiguration",
                    "clientConnection": {
                        "kubeconfig": str(self.kubeconfig),
                        "qps": CLIENT_QPS,
                        "burst": 2 * CLIENT_QPS,
                    },
                    "leaderElection": {"leaderElect": False},
                    "enableProfiling": False,
                }
            )
        )
        return [f"--config={config}", *self._serving_args("kube-scheduler")]

    def _kwok_args(self) -> list[str]:
        return [
            f"--kubeconfig={self.kubeconfig}",
            f"--config={self.workdir / 'kwok-stages.yaml'}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
            "--node-lease-duration-seconds=40",
            f"--cidr={POD_CIDR}",
            "--node-ip=127.0.0.1",
            # kwok logs every lease renewal at INFO (a line per node every ~10 s); at scale, warnings only.
            f"-v={'INFO' if self.node_count <= 100 else 'WARN'}",
        ]

    # -- nodes ------------------------------------------------------------------------------------------

    def _node_manifest(self, name: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {KWOK_NODE_ANNOTATION: "fake"},
                "labels": {
                    "type": "kwok",
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                },
            },
            "status": {"capacity": dict(self._node_capacity), "allocatable": dict(self._node_capacity)},
        }

    def _create_nodes(self, api: KubeApi) -> None:
        """POST the Nodes; beyond a handful, over several connections at once (a thousand in seconds)."""
        started = time.monotonic()
        names = self.node_names
        if len(names) <= 10:
            for name in names:
                api.post("/api/v1/nodes", self._node_manifest(name))
        else:
            workers = 8
            shards = [names[index::workers] for index in range(workers)]

            def create(shard: list[str]) -> None:
                with self._admin_api() as own:
                    for name in shard:
                        own.post("/api/v1/nodes", self._node_manifest(name))

            with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
                for future in [pool.submit(create, shard) for shard in shards]:
                    future.result()
        log.info("created %d kwok Nodes in %.1f s", self.node_count, time.monotonic() - started)

    def _nodes_ready(self, api: KubeApi) -> bool:
        nodes = api.get("/api/v1/nodes?labelSelector=type%3Dkwok")["items"]
        ready = 0
        for node in nodes:
            conditions = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
            taints = {t["key"] for t in node.get("spec", {}).get("taints", [])}
            # The not-ready taint is put on at creation and removed by node-lifecycle once Ready:
            # until then the scheduler would refuse the node.
            if conditions.get("Ready") == "True" and "node.kubernetes.io/not-ready" not in taints:
                ready += 1
        return ready >= self.node_count


def _b64(path: Path) -> str:
    import base64

    return base64.b64encode(path.read_bytes()).decode()


def _http_ok(port: int, path: str) -> bool:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"
