"""A real Kubernetes control plane as plain local processes: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, and kwok playing the kubelet of N fake Nodes.

Why it exists: the operator must be proven against a real API server (RBAC, admission, CEL, the scale
subresource, garbage collection, scheduling), and this machine has no Docker for kind. The pytest
plugin (pytest_plugin.py), `python -m devcluster up` (cli.py), the demo and the benchmarks use this
class; nothing here is mocked.

Everything listens on 127.0.0.1 on free random ports and lives in one private folder, so several
clusters can run side by side. `stop()` (also run from `atexit`, on SIGTERM/SIGHUP, and when `start()`
fails or is interrupted) stops the process groups, reaps them and removes the folder. The pieces live
next door: processes.py (lifetime), components.py (flags), supervisor.py (restarts, as a kubelet),
kubeconfig.py, nodes.py, cleanup.py.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from devcluster import certs, cleanup, components, nodes, processes
from devcluster.assets import Assets, find_assets
from devcluster.components import COMPONENTS, Layout
from devcluster.kubeapi import ApiError, KubeApi, http_ok, tls_context
from devcluster.kubeconfig import admin_credentials, write_kubeconfig
from devcluster.nodes import DEFAULT_NODE_CAPACITY
from devcluster.processes import Process, ProcessRecord
from devcluster.supervisor import Supervisor

log = logging.getLogger(__name__)
_T = TypeVar("_T")

_START_ATTEMPTS = 3


class ControlPlaneError(RuntimeError):
    """The control plane could not start (the message names the component and quotes its log)."""


class _PortTaken(ControlPlaneError):
    """A component exited because its port was taken between free_ports() and its bind()."""


class CommandError(subprocess.CalledProcessError):
    """A kubectl or helm call failed; unlike CalledProcessError, the message includes stderr."""

    def __str__(self) -> str:
        stderr = (self.stderr or "").strip()
        return f"{' '.join(map(str, self.cmd))} exited {self.returncode}: {stderr}"


@dataclass
class Timings:
    """Seconds spent in each phase of the last start/stop, for logs and benchmarks/controlplane.py."""

    phases: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        return ", ".join(f"{name} {seconds:.1f}s" for name, seconds in self.phases.items())


class ControlPlane:
    """One local cluster. `with ControlPlane(nodes=3) as cp: cp.kubectl("get", "nodes")`.

    Keyword arguments:
      nodes: how many kwok Nodes to create (thousands work; kwok claims 1k nodes / 100k pods).
      workdir: the private folder (certificates, etcd data, logs, kubeconfigs). Default: a new temp
        folder. It is removed by stop() unless keep_workdir.
      assets: the binaries (default: assets.find_assets(), which builds them on first use).
      detach: for `python -m devcluster up`: processes outlive this Python process, no cleanup hooks.
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
        self._processes: list[Process] = []
        self._lock = threading.RLock()
        self._started = False
        self._workdir: Path | None = None
        self._bin_dir: Path | None = None
        self._layout: Layout | None = None
        self._supervisor: Supervisor | None = None
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
        return self._require(self._layout, "apiserver port").ports["kube-apiserver"]

    @property
    def apiserver_url(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def node_names(self) -> list[str]:
        return nodes.node_names(self.node_count)

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

    @property
    def supervised(self) -> bool:
        """True when kube-controller-manager and kube-scheduler run with leader election and are
        restarted when they exit, as on a real control plane node (supervisor.py); not when detached,
        since nothing would restart them once this process is gone."""
        return not self.detach

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
                cleanup.register(self)
            for attempt in range(1, _START_ATTEMPTS + 1):
                try:
                    self._start()
                    if self.supervised:
                        self._supervisor = Supervisor(self._lock, self._take_exited, self._restart_exited)
                        self._supervisor.start()
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
        self._stop_supervisor()
        with self._lock:
            cleanup.unregister(self)
            if not self._started:
                return
            started = time.monotonic()
            self._stop_processes()
            self._remove_workdir()
            self._started = False
            self.timings.phases["stop"] = time.monotonic() - started

    def _stop_supervisor(self) -> None:
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.stop()

    def _stop_processes(self) -> None:
        stopping = list(reversed(self._processes))
        if stopping:
            by_pid = {p.popen.pid: p for p in stopping}
            processes.stop_process_groups(
                [(p.name, p.popen.pid) for p in stopping], reap=lambda pid: by_pid[pid].popen.wait()
            )
            log.info("stopped %s", ", ".join(p.name for p in stopping))
        self._processes.clear()

    def _remove_workdir(self) -> None:
        if self._workdir is not None and not self._keep_workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def release(self) -> list[ProcessRecord]:
        """Hand the running processes over to the caller (`up`): this object forgets them, so neither
        stop() nor garbage collection touches them; `down` stops them by pid."""
        self._stop_supervisor()
        with self._lock:
            records = self.processes
            for process in self._processes:
                # Popen would warn "subprocess is still running" when collected; it is not ours any more.
                process.popen.returncode = 0
            self._processes.clear()
            self._started = False
            cleanup.unregister(self)
            return records

    # -- helpers for tests and humans -------------------------------------------------------------------

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl as the admin; raises CommandError (with stderr) when check and it fails."""
        return self._run(
            [str(self.bin_dir / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
            input,
            check=check,
            timeout=timeout,
        )

    def wait_established(self, *crds: str, timeout: float = 120.0) -> None:
        """Wait until each CustomResourceDefinition (by name) is Established. Polls instead of
        `kubectl wait --for=condition=Established`, which fails outright ("conditions accessor error")
        on a CRD whose status has no conditions yet, as it has for a moment after its creation."""
        path = '{.status.conditions[?(@.type=="Established")].status}'
        deadline = time.monotonic() + timeout
        for crd in crds:
            name = crd.rpartition("/")[2]  # "crd/NAME" and kubectl's "-o name" form too
            while True:
                done = self.kubectl("get", f"crd/{name}", "-o", f"jsonpath={path}", check=False)
                if done.returncode == 0 and done.stdout.strip() == "True":
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"CRD {name} not Established after {timeout:.0f}s: {done.stderr.strip()}")
                time.sleep(0.5)

    def helm(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 180.0
    ) -> subprocess.CompletedProcess[str]:
        """Run helm as the admin, with its cache/config/data inside the workdir."""
        return self._run(
            [str(self.bin_dir / "helm"), "--kubeconfig", str(self.kubeconfig), *args],
            input,
            check=check,
            timeout=timeout,
        )

    def admin_api(self, port: int | None = None) -> KubeApi:
        """A stdlib client of the API server (or a component's port) as the admin; close it when done."""
        pki = self._require(self._layout, "pki").pki
        return KubeApi(port or self.apiserver_port, tls_context(pki.ca_cert, pki.admin_cert, pki.admin_key))

    def serviceaccount_kubeconfig(self, namespace: str, name: str, *, expiration_seconds: int = 3600) -> Path:
        """A kubeconfig that authenticates as ServiceAccount namespace/name (a TokenRequest token), so
        code can run with exactly the RBAC a chart grants. The ServiceAccount must exist."""
        with self.admin_api() as api:
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
        write_kubeconfig(
            path,
            server=self.apiserver_url,
            ca_cert=self._require(self._layout, "pki").pki.ca_cert,
            user=f"system:serviceaccount:{namespace}:{name}",
            credentials={"token": token},
            namespace=namespace,
        )
        log.info("wrote a kubeconfig for ServiceAccount %s/%s to %s", namespace, name, path)
        return path

    def wait_for_serviceaccount(self, namespace: str, name: str = "default", *, timeout: float = 60.0) -> None:
        """Wait until the serviceaccount controller has created `name` in `namespace` (pods need it)."""
        with self.admin_api() as api:
            self._wait(
                f"ServiceAccount {namespace}/{name}",
                lambda: api.request("GET", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}")[0] == 200,
                timeout=timeout,
            )

    # -- outages, for the chaos suite ----------------------------------------------------------------------

    def stop_component(self, name: str, *, grace: float = 5.0) -> None:
        """Stop one running component (SIGTERM, then SIGKILL after `grace`; 0 kills at once) and keep
        it stopped: an outage. Its ports and data stay, so start_component brings it back as it was
        (etcd keeps its store: nothing is lost that a real restart would keep)."""
        with self._lock:
            if self._supervisor is not None:
                self._supervisor.forget(name)
            process = self._component(name)
            if grace <= 0:  # a crash, not a shutdown: no SIGTERM (and no warning that it was ignored)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.popen.pid, signal.SIGKILL)
                process.popen.wait()
            else:
                processes.stop_process_groups(
                    [(name, process.popen.pid)], grace=grace, reap=lambda _: process.popen.wait()
                )
            self._processes.remove(process)
            log.info("stopped %s for an outage", name)

    def start_component(self, name: str) -> None:
        """Start a component stopped by stop_component with its flags, ports and data, and return
        once it is healthy again (etcd /health, the API server /readyz, the others /healthz)."""
        if name not in COMPONENTS:
            raise ValueError(f"unknown component {name!r}; one of {sorted(COMPONENTS)}")
        with self._lock:
            if self._supervisor is not None:
                self._supervisor.forget(name)
            if any(p.name == name for p in self._processes):
                raise ControlPlaneError(f"{name} is already running")
            process = self._spawn_component(name)
        # Not under the lock: the supervisor must see kube-controller-manager or kube-scheduler exit,
        # and restart it, while the API server is still coming back (as a kubelet would).
        self._wait_healthy(name, process)
        log.info("%s is back", name)

    def restart_component(self, name: str, *, downtime: float = 0.0, grace: float = 5.0) -> None:
        """stop_component, `downtime` seconds without it, start_component."""
        self.stop_component(name, grace=grace)
        time.sleep(downtime)
        self.start_component(name)

    def forget_restart_back_off(self) -> None:
        """Forget how often kube-controller-manager and kube-scheduler were restarted, as a kubelet does
        after 10 quiet minutes: for a suite whose trials (outages) must not depend on the ones before."""
        if self._supervisor is not None:
            self._supervisor.forget_back_off()

    def _spawn_component(self, name: str) -> Process:
        """Start one component with the flags of this cluster's layout (not waiting for it)."""
        layout = self._require(self._layout, "layout")
        args: list[str]
        if name == "etcd":
            args = components.etcd_args(layout)
        elif name == "kube-apiserver":
            args = components.apiserver_args(layout)
        elif name == "kube-controller-manager":
            args = components.controller_manager_args(layout, leader_elect=self.supervised)
        elif name == "kube-scheduler":
            args = components.scheduler_args(layout, leader_elect=self.supervised)
        elif name == "kwok":
            args = components.kwok_args(layout, self.node_count)
        else:
            raise ValueError(f"unknown component {name!r}; one of {sorted(COMPONENTS)}")
        extra_env = {"KWOK_WORKDIR": str(self.workdir / "kwok")} if name == "kwok" else None
        return self._spawn(name, args, extra_env=extra_env)

    def _take_exited(self, names: Sequence[str]) -> dict[str, int]:
        """{name: exit code} of the components among `names` that exited on their own; they are
        forgotten here, so the supervisor can start them again (called under the lock)."""
        exited = {}
        for process in list(self._processes):
            code = process.popen.poll() if process.name in names else None
            if code is not None:
                self._processes.remove(process)
                exited[process.name] = code
        return exited

    def _restart_exited(self, name: str) -> None:
        """The supervisor's restart: like a kubelet, start it and let it find its own way back."""
        if self._started and not any(p.name == name for p in self._processes):
            self._spawn_component(name)

    def _component(self, name: str) -> Process:
        for process in self._processes:
            if process.name == name:
                return process
        raise ControlPlaneError(f"{name} is not running")

    def _wait_healthy(self, name: str, process: Process) -> None:
        layout = self._require(self._layout, "layout")
        if name == "etcd":
            self._wait("etcd /health", lambda: http_ok(layout.ports["etcd"], "/health"), watch=[process])
        elif name == "kwok":
            return  # no health endpoint of its own: its Nodes' heartbeats resume
        else:
            port = None if name == "kube-apiserver" else layout.ports[name]
            path = "/readyz" if name == "kube-apiserver" else "/healthz"
            with self.admin_api(port) as api:
                self._wait(f"{name} {path}", lambda: api.probe(path), watch=[process])

    # -- internals --------------------------------------------------------------------------------------

    @staticmethod
    def _require(value: _T | None, what: str) -> _T:
        if value is None:
            raise ControlPlaneError(f"the control plane is not started ({what} unknown)")
        return value

    def _run(
        self, argv: list[str], input: str | None, *, check: bool, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, env=self.env, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise CommandError(result.returncode, argv, result.stdout, result.stderr)
        return result

    def _phase(self, name: str, started: float) -> None:
        self.timings.phases[name] = time.monotonic() - started

    def _prepare(self) -> Layout:
        """The folder, binaries, PKI, ports, admin kubeconfig and kwok stages of one start attempt."""
        assets = self._assets or find_assets()
        if self._requested_workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="modeldeploy-cp-"))
        else:
            self._workdir = self._requested_workdir
            self._workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        shutil.rmtree(self.workdir / "etcd", ignore_errors=True)  # a fresh store on every start, retries too
        self._bin_dir = assets.bin_dir(self.workdir / "bin")
        pki = certs.write_pki(self.workdir / "pki")
        ports = dict(zip(components.PORT_NAMES, processes.free_ports(len(components.PORT_NAMES)), strict=True))
        layout = Layout(workdir=self.workdir, ports=ports, pki=pki)
        self._layout = layout
        write_kubeconfig(
            layout.kubeconfig,
            server=self.apiserver_url,
            ca_cert=pki.ca_cert,
            user=certs.ADMIN_USER,
            credentials=admin_credentials(pki),
        )
        components.write_kwok_stages(layout.kwok_config)
        return layout

    def _start(self) -> None:
        t0 = time.monotonic()
        self.timings = Timings()
        layout = self._prepare()
        self._phase("prepare", t0)
        log.info("starting a local control plane in %s (binaries: %s)", self.workdir, self.bin_dir)

        t = time.monotonic()
        etcd = self._spawn("etcd", components.etcd_args(layout))
        self._wait("etcd /health", lambda: http_ok(layout.ports["etcd"], "/health"), watch=[etcd])
        self._phase("etcd", t)

        t = time.monotonic()
        apiserver = self._spawn("kube-apiserver", components.apiserver_args(layout))
        with self.admin_api() as api:
            self._wait("kube-apiserver /readyz", lambda: api.probe("/readyz"), watch=[etcd, apiserver])
            self._phase("kube-apiserver", t)

            t = time.monotonic()
            kcm = self._spawn_component("kube-controller-manager")
            scheduler = self._spawn_component("kube-scheduler")
            kwok = self._spawn(
                "kwok",
                components.kwok_args(layout, self.node_count),
                extra_env={"KWOK_WORKDIR": str(self.workdir / "kwok")},
            )
            everything = [etcd, apiserver, kcm, scheduler, kwok]
            nodes.create_nodes(api, self.admin_api, self.node_names, self._node_capacity)
            with self.admin_api(layout.ports["kube-controller-manager"]) as kcm_api:
                self._wait("kube-controller-manager /healthz", lambda: kcm_api.probe("/healthz"), watch=everything)
            with self.admin_api(layout.ports["kube-scheduler"]) as scheduler_api:
                self._wait("kube-scheduler /healthz", lambda: scheduler_api.probe("/healthz"), watch=everything)
            self._wait(
                "ServiceAccount default/default",
                lambda: api.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
                watch=everything,
            )
            self._phase("controllers", t)

            t = time.monotonic()
            self._wait(
                f"{self.node_count} Nodes Ready", lambda: nodes.nodes_ready(api, self.node_count), watch=everything
            )
            self._phase("nodes", t)
        self._phase("start", t0)
        log.info(
            "local control plane ready at %s with %d nodes (%s)", self.apiserver_url, self.node_count, self.timings
        )

    def _spawn(self, name: str, args: list[str], *, extra_env: Mapping[str, str] | None = None) -> Process:
        process = processes.spawn(
            name,
            [str(self.bin_dir / name), *args, *self._extra_args.get(name, [])],
            log_path=self.log_path(name),
            cwd=self.workdir,
            extra_env=extra_env,
            detach=self.detach,
        )
        self._processes.append(process)
        return process

    def _wait(
        self,
        what: str,
        ready: Callable[[], bool],
        *,
        watch: Iterable[Process] = (),
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
                    tail = processes.tail(process.log_path)
                    error = _PortTaken if "address already in use" in tail else ControlPlaneError
                    raise error(
                        f"{process.name} exited with code {code} while waiting for {what}; "
                        f"its log ({process.log_path}) ends with:\n{tail}"
                    )
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {p.name} ({p.log_path}):\n{processes.tail(p.log_path, 15)}" for p in watched)
                raise ControlPlaneError(f"timed out waiting for {what}\n{logs}")
            time.sleep(interval)
