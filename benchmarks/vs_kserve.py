"""Our operator against KServe's InferenceService controller on one local control plane, for the same N;
prints a Markdown table, asserts nothing.

Why it exists: scale.py says what the operator costs, not whether that is a lot. KServe v0.20.0's
controller (`cmd/manager`, controller-runtime) does the nearest job to ours: from one object, a serving
Deployment and Service, and a Ready condition that follows the Deployment. For each N, each controller
runs alone and fresh, as its own ServiceAccount (cluster-admin), on N objects in a namespace of its
own, and both are measured the same way: seconds from the first create until all are Ready, p50/p95 per
object (create to Ready), API requests per object by verb as the API server counted them (scale.py's
method: one APF FlowSchema per verb matching only that ServiceAccount), CPU seconds and RSS from /proc.
A third row per N, the control-plane floor, has no controller: the benchmark creates the N Deployments
and Services itself (2 writes per object) and times them to Ready the same way, which shows how much of
each controller's time is the control plane's (ReplicaSets, pods, scheduling) and not the controller's.
Progress is followed with watches opened before the first create, not by LISTing N objects again and
again (that load would slow down every row).

    python benchmarks/vs_kserve.py [--counts 100,500] [--nodes 50]

Ours: N ModelDeployments served as they are (no optimization Job, 1 replica, autoscaling off), as in
scale.py. KServe: N InferenceServices (`modelFormat: tensorflow`, a `pvc://` storageUri) in Standard
(raw Deployment) mode, which needs neither Knative nor Istio: the inferenceservice-config ConfigMap with
`deploy.defaultDeploymentMode: Standard` and Ingress creation off, the TensorFlow ClusterServingRuntime,
leader election, metrics and probes off. No admission webhook is registered, so KServe's defaulting,
validation and storage-initializer injection do not run; its webhook server still listens (on a random
port), because the manager will not start without it.

KServe's manager is built once from the Go module proxy into the modeldeploy cache (about five minutes
on two cores; needs Go). Its CRDs, ConfigMap and runtime are read from that module's folder in the Go
module cache and adjusted in memory: nothing of KServe is copied into this repository.

The table goes to stdout, progress and notes to stderr, and the notes again to stdout after the table.
Exits 1, with the log tail of the controller that ran last, when a phase fails or times out.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import importlib.metadata
import ipaddress
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from scale import (
    CLAIM,
    LOG_TAIL_LINES,
    MD_PATH,
    OPERATOR_NAMESPACE,
    OPERATOR_SA,
    REPO,
    Call,
    Operator,
    PhaseTimeout,
    Report,
    Requests,
    Watcher,
    cpu_seconds,
    delete_namespace,
    install_counted_identity,
    is_ready,
    list_version,
    make_namespace,
    memory_mb,
    model_deployment,
    parse_counts,
    percentile,
    progress,
    send_all,
    server_requests,
    wait_until,
)

from devcluster import cleanup, processes
from devcluster.assets import cache_root, read_versions
from devcluster.controlplane import ControlPlane
from devcluster.nodes import DEFAULT_NODE_CAPACITY
from devcluster.stack import free_port
from modeldeploy import __version__ as modeldeploy_version
from modeldeploy.api import GROUP, PLURAL
from modeldeploy.api.spec import DEFAULT_TF_SERVING_IMAGE
from modeldeploy.controller.config import DEFAULT_RESYNC_SECONDS, DEFAULT_WORKERS

KSERVE_VERSION = "v0.20.0"
KSERVE_MODULE = "github.com/kserve/kserve"
KSERVE_NAMESPACE = "kserve"  # POD_NAMESPACE: where the manager reads inferenceservice-config
KSERVE_SA = "kserve-controller-manager"  # the name KServe's own manifests give it
KSERVE_CRDS = (
    "config/crd/full/serving.kserve.io_inferenceservices.yaml",
    "config/crd/full/serving.kserve.io_servingruntimes.yaml",
    "config/crd/full/serving.kserve.io_clusterservingruntimes.yaml",
    "config/crd/full/serving.kserve.io_trainedmodels.yaml",
    "config/crd/full/serving.kserve.io_inferencegraphs.yaml",
    "config/crd/full/clusterstoragecontainer/serving.kserve.io_clusterstoragecontainers.yaml",
)
KSERVE_CONFIGMAP = "config/configmap/inferenceservice.yaml"
KSERVE_RUNTIME = "config/runtimes/kserve-tensorflow-serving.yaml"
KSERVE_RUNTIME_IMAGES = "config/runtimes/kustomization.yaml"  # kustomize fills the runtime's image from here
ISVC_PATH = "/apis/serving.kserve.io/v1beta1/namespaces/{ns}/inferenceservices"
# The TensorFlow runtime's requests per predictor pod: the kwok Nodes must have room for N of them.
PREDICTOR_CPUS = 1
PREDICTOR_MEMORY_GI = 2
GO_BIN_DIR = "/usr/local/go/bin"  # where the official tarball puts go; any go on PATH works too

# FlowSchema name prefixes: each controller's requests are counted apart.
OURS_PREFIX = "vs-modeldeploy-"
KSERVE_PREFIX = "vs-kserve-"
FIELD_MANAGER = "vs-kserve-bench"
POLL_SECONDS = 0.1  # how often the watched state is checked; the timings are those of the watch events
QUIET_SECONDS = 3.0  # a controller has settled when the server sees no request from it for this long


class BuildError(RuntimeError):
    """KServe's manager could not be downloaded or built (the message quotes go's stderr)."""


# -- pure: manifests -------------------------------------------------------------------------------------


def inference_service(name: str) -> dict[str, Any]:
    """The smallest InferenceService the TensorFlow runtime serves. No PVC needs to exist: only the
    pod-mutating webhook, which is not registered, would mount it."""
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {
            "predictor": {"model": {"modelFormat": {"name": "tensorflow"}, "storageUri": f"pvc://{CLAIM}/{name}"}}
        },
    }


def floor_deployment(name: str) -> dict[str, Any]:
    """The control-plane floor's Deployment: what a controller would make for one object, written by the
    benchmark itself (one replica of TF Serving mounting the claim, as ours does)."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "tfserving",
                            "image": DEFAULT_TF_SERVING_IMAGE,
                            "ports": [{"name": "grpc", "containerPort": 8500}, {"name": "http", "containerPort": 8501}],
                            "volumeMounts": [{"name": "models", "mountPath": "/models", "readOnly": True}],
                        }
                    ],
                    "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": CLAIM, "readOnly": True}}],
                },
            },
        },
    }


def floor_service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "selector": {"app": name},
            "ports": [{"name": "grpc", "port": 8500}, {"name": "http", "port": 8501}],
        },
    }


def deployment_ready(deployment: Mapping[str, Any]) -> bool:
    """The floor's Ready: the Deployment's one replica is available for its current spec."""
    status = deployment.get("status") or {}
    generation: int = deployment.get("metadata", {}).get("generation", 0)
    observed: int = status.get("observedGeneration", 0)
    available: int = status.get("availableReplicas", 0)
    return observed >= generation and available >= 1


def standard_mode_config(upstream: Mapping[str, Any]) -> dict[str, Any]:
    """KServe's inferenceservice-config without its `_example` block, in Standard (raw Deployment) mode
    and without Ingress objects. The upstream default, Serverless, fails without Knative; no Istio
    VirtualService either, which would only raise a warning Event on every reconcile."""
    data = {key: value for key, value in upstream["data"].items() if not key.startswith("_")}
    deploy = json.loads(data["deploy"])
    deploy["defaultDeploymentMode"] = "Standard"
    ingress = json.loads(data["ingress"])
    ingress.update(disableIngressCreation=True, disableIstioVirtualHost=True)
    data["deploy"] = json.dumps(deploy, indent=2)
    data["ingress"] = json.dumps(ingress, indent=2)
    metadata = {"name": upstream["metadata"]["name"], "namespace": KSERVE_NAMESPACE}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def filled_runtime(runtime: Mapping[str, Any], kustomization: Mapping[str, Any]) -> dict[str, Any]:
    """The ClusterServingRuntime with the images its kustomization would set (kwok never pulls them,
    but the Deployment should name the image a real install runs)."""
    images = {image["name"]: image for image in kustomization.get("images") or []}
    filled = json.loads(json.dumps(runtime))  # a deep copy
    for container in filled["spec"]["containers"]:
        name = container["image"].split(":", 1)[0]
        if name in images:
            image = images[name]
            container["image"] = f"{image.get('newName', name)}:{image.get('newTag', 'latest')}"
    return dict(filled)


def node_capacity(count: int, nodes: int) -> dict[str, str]:
    """Room on `nodes` kwok Nodes for `count` KServe predictor pods (the runtime requests 1 CPU and 2Gi
    each) twice over, and never less than the default: scheduling must not be what is measured."""
    per_node = math.ceil(2 * count / max(nodes, 1))
    cpu = max(int(DEFAULT_NODE_CAPACITY["cpu"]), per_node * PREDICTOR_CPUS)
    memory = max(int(DEFAULT_NODE_CAPACITY["memory"].removesuffix("Gi")), per_node * PREDICTOR_MEMORY_GI)
    pods = max(int(DEFAULT_NODE_CAPACITY["pods"]), per_node)
    return {"cpu": str(cpu), "memory": f"{memory}Gi", "pods": str(pods)}


def local_replaces(go_mod_json: str) -> list[str]:
    """The `replace` directives of a go.mod (as `go mod edit -json` prints it) that point at a local
    path, which a copy of the module outside its repository cannot resolve; as -dropreplace arguments."""
    dropped = []
    for replace in json.loads(go_mod_json).get("Replace") or []:
        if "Version" not in replace["New"]:
            old = replace["Old"]
            dropped.append(old["Path"] + (f"@{old['Version']}" if old.get("Version") else ""))
    return dropped


def build_info(go_version_m: str, modules: tuple[str, ...]) -> str:
    """The Go toolchain and the versions of `modules` a binary was built with, from `go version -m`
    (a replace directive's `=>` line wins over the `dep` line it follows)."""
    lines = go_version_m.splitlines()
    toolchain = lines[0].split(":", 1)[-1].strip() if lines else "?"
    found: dict[str, str] = {}
    for line in lines[1:]:
        fields = line.split()
        if len(fields) >= 3 and fields[0] in ("dep", "=>") and fields[1] in modules:
            found[fields[1]] = fields[2]
    return ", ".join([f"{toolchain}", *(f"{m.rsplit('/', 1)[-1]} {found.get(m, '?')}" for m in modules)])


def isvc_ready(isvc: Mapping[str, Any]) -> bool:
    conditions = (isvc.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


# -- KServe's manager: download, build, install ----------------------------------------------------------


@dataclass(frozen=True)
class KServeModule:
    """KServe's Go module as the module cache holds it (read-only), and its checksum."""

    dir: Path
    sum: str

    def read_yaml(self, relative: str) -> dict[str, Any]:
        loaded: dict[str, Any] = yaml.safe_load((self.dir / relative).read_text())
        return loaded


def go_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([GO_BIN_DIR, env.get("PATH", "")])
    env["GOFLAGS"] = "-mod=mod"  # as build.sh upstream-less copies need; -buildvcs is moot outside git
    env["CGO_ENABLED"] = "0"  # a static binary, like KServe's image
    return env


def run_go(args: list[str], cwd: Path, timeout: float = 1800) -> str:
    env = go_env()
    go = shutil.which("go", path=env["PATH"])
    if go is None:
        raise BuildError(f"go not found in {GO_BIN_DIR} or on PATH: KServe's manager is built from source")
    result = subprocess.run([go, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        stderr = "\n".join((result.stderr or result.stdout).strip().splitlines()[-20:])
        raise BuildError(f"go {' '.join(args)} exited {result.returncode}:\n{stderr}")
    return result.stdout


def download_module() -> KServeModule:
    """`go mod download -json` of KServe: a no-op once the module cache holds it."""
    out = run_go(["mod", "download", "-json", f"{KSERVE_MODULE}@{KSERVE_VERSION}"], cwd=Path(tempfile.gettempdir()))
    info = json.loads(out)
    if info.get("Error") or not info.get("Dir"):
        raise BuildError(f"go mod download {KSERVE_MODULE}@{KSERVE_VERSION}: {info.get('Error', 'no Dir')}")
    return KServeModule(Path(info["Dir"]), str(info.get("Sum", "?")))


def manager_binary() -> Path:
    return cache_root() / f"kserve-{KSERVE_VERSION}" / "bin" / "manager"


def ensure_manager(module: KServeModule, binary: Path) -> None:
    """Build `cmd/manager` of the module into `binary` unless it is there. `go install` refuses the
    module (its go.mod has replace directives), so: copy the read-only module folder, make it writable,
    drop replaces to local paths (v0.20.0 has none), download the dependencies, build. A file lock next
    to the binary (flock(1)-compatible, for a shell build) keeps two builds from racing."""
    binary.parent.mkdir(parents=True, exist_ok=True)
    with (binary.parent / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.is_file() and os.access(binary, os.X_OK):
            return
        progress(f"building KServe {KSERVE_VERSION}'s manager into {binary} (about 5 minutes on two cores, once)")
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="kserve-src-") as tmp:
            src = Path(tmp) / "src"
            shutil.copytree(module.dir, src, symlinks=True)
            for folder, _, files in os.walk(src):
                for path in (folder, *(os.path.join(folder, name) for name in files)):
                    os.chmod(path, os.stat(path).st_mode | 0o200)
            for old in local_replaces(run_go(["mod", "edit", "-json"], cwd=src)):
                progress(f"dropping the local replace of {old}")
                run_go(["mod", "edit", f"-dropreplace={old}"], cwd=src)
            run_go(["mod", "download"], cwd=src)
            partial = binary.with_name(binary.name + ".tmp")
            jobs = str(os.cpu_count() or 1)
            run_go(
                ["build", "-p", jobs, "-trimpath", "-ldflags", "-s -w", "-o", str(partial), "./cmd/manager"], cwd=src
            )
            partial.replace(binary)
        progress(f"built KServe's manager in {time.monotonic() - started:.0f} s")


def write_webhook_cert(folder: Path) -> None:
    """A throw-away self-signed serving certificate: the manager's webhook server will not start without
    one, though no webhook configuration points at it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"kserve-webhook-server-service.{KSERVE_NAMESPACE}.svc")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    key_path = folder / "tls.key"
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    (folder / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


# -- the two controllers, seen from outside ----------------------------------------------------------------


class Controller(Protocol):
    label: str
    pid: int

    def check_alive(self) -> None: ...

    def ready_to_work(self) -> bool:
        """Its log says its caches are filled and its workers run."""
        ...

    def stop(self) -> None: ...

    def tail(self, lines: int = LOG_TAIL_LINES) -> str: ...


class OurOperator:
    """`modeldeploy run` as modeldeploy-system/operator (scale.py's Operator)."""

    def __init__(self, cp: ControlPlane, log_dir: Path, label: str, resync_seconds: float, workers: int) -> None:
        self.operator = Operator(cp, log_dir, label, resync_seconds, workers)
        self.label = label
        self.pid = self.operator.pid

    def check_alive(self) -> None:
        self.operator.check_alive()

    def ready_to_work(self) -> bool:
        return "cache filled" in self.operator.process.log()

    def stop(self) -> None:
        self.operator.stop()

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return self.operator.tail(lines)


class KServeManager:
    """KServe's manager as ServiceAccount kserve/kserve-controller-manager, in its own session (devcluster's
    spawn: killed with us even on SIGKILL, and stopped at exit or on SIGTERM through devcluster.cleanup)."""

    def __init__(self, cp: ControlPlane, binary: Path, workdir: Path, log_dir: Path, label: str) -> None:
        kubeconfig = cp.serviceaccount_kubeconfig(KSERVE_NAMESPACE, KSERVE_SA, expiration_seconds=4 * 3600)
        tmp = workdir / label
        # No flag sets the webhook cert folder; controller-runtime's default is under $TMPDIR.
        write_webhook_cert(tmp / "k8s-webhook-server" / "serving-certs")
        self.argv = [
            str(binary),
            f"--kubeconfig={kubeconfig}",
            "--metrics-addr=0",
            "--health-probe-addr=0",
            f"--webhook-port={free_port()}",  # it listens on every interface; no flag binds it to loopback
            "--leader-elect=false",
            "--zap-log-level=info",
        ]
        env = {
            "TMPDIR": str(tmp),
            "POD_NAMESPACE": KSERVE_NAMESPACE,
            "SYSTEM_NAMESPACE": KSERVE_NAMESPACE,
            "KUBECONFIG": str(kubeconfig),
        }
        self.label = label
        self.log_path = log_dir / f"{label}.log"
        self.process = processes.spawn("kserve-manager", self.argv, log_path=self.log_path, cwd=tmp, extra_env=env)
        cleanup.register(self)
        self.pid = self.process.popen.pid

    def check_alive(self) -> None:
        code = self.process.popen.poll()
        if code is not None:
            raise RuntimeError(f"KServe's manager ({self.label}) exited with code {code}")

    def ready_to_work(self) -> bool:
        return any(
            '"Starting workers"' in line and '"controller":"inferenceservice"' in line
            for line in self.log_path.read_text(errors="replace").splitlines()
        )

    def stop(self) -> None:
        cleanup.unregister(self)
        popen = self.process.popen
        if popen.poll() is None:
            processes.stop_process_groups([("kserve-manager", popen.pid)], reap=lambda _: popen.wait())

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return processes.tail(self.log_path, lines)


class NoController:
    """The floor has no controller: the benchmark writes every object itself."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.pid = os.getpid()  # not measured: its row shows no CPU or RSS

    def check_alive(self) -> None:
        return None

    def ready_to_work(self) -> bool:
        return True

    def stop(self) -> None:
        return None

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return "(no controller: the benchmark created the Deployments and Services itself)"


# -- the comparison -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    at: float
    server: Requests
    rejected: float  # requests APF refused (429): none, or the measurement slowed the controller
    cpu: float
    rss: float
    hwm: float


@dataclass(frozen=True)
class Side:
    """What differs between the two runs; everything measured is measured the same way."""

    name: str  # in the table
    namespace: str  # prefix of the per-N namespace
    prefix: str  # of its FlowSchemas
    path: str  # collection path, {ns} to fill
    manifest: Callable[[str], dict[str, Any]]
    ready: Callable[[Mapping[str, Any]], bool]
    start: Callable[[str], Controller]
    teardown: Callable[[str, Controller], None]
    with_claim: bool
    # More objects created per name beside `manifest`, in the same burst: (collection path, manifest).
    companions: tuple[tuple[str, Callable[[str], dict[str, Any]]], ...] = ()
    controlled: bool = True  # False: the floor, no controller (nothing to count, no CPU or RSS)


TABLE_HEADER = (
    "| N | controller | all Deployments s | all Ready s | p50 s | p95 s | requests/object (GET/LIST/WATCH/writes) "
    "| CPU s to Ready | RSS MB at Ready (peak) |\n"
    "| ---: | --- | ---: | ---: | ---: | ---: | --- | ---: | --- |"
)
CHILD_KINDS = (
    ("Deployments", "/apis/apps/v1/namespaces/{ns}/deployments"),
    ("Services", "/api/v1/namespaces/{ns}/services"),
    ("HPAs", "/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers"),
    ("Ingresses", "/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses"),
    ("ConfigMaps", "/api/v1/namespaces/{ns}/configmaps"),
)
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"  # every namespace has it; no controller's child


class Versus:
    def __init__(
        self, cp: ControlPlane, workdir: Path, args: argparse.Namespace, report: Report, module: KServeModule
    ) -> None:
        self.cp = cp
        self.workdir = workdir
        self.args = args
        self.report = report
        self.module = module
        self.log_dir: Path = args.log_dir or workdir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.api = cp.admin_api()  # polling and metrics; creation threads open their own
        self.running: Controller | None = None
        self.last: Controller | None = None  # for the log tail after a failure
        self.printed_header = False
        self.sides = (
            Side(
                name="control-plane floor (no controller)",
                namespace="floor",
                prefix="vs-floor-",  # no FlowSchema has it: nothing is counted, the settle is immediate
                path="/apis/apps/v1/namespaces/{ns}/deployments",
                manifest=floor_deployment,
                ready=deployment_ready,
                start=NoController,
                teardown=self.stop_then_delete,
                with_claim=True,
                companions=(("/api/v1/namespaces/{ns}/services", floor_service),),
                controlled=False,
            ),
            Side(
                name=f"modeldeploy ({args.workers} workers)",
                namespace="md",
                prefix=OURS_PREFIX,
                path=MD_PATH,
                manifest=model_deployment,
                ready=is_ready,
                start=self.start_ours,
                teardown=self.stop_then_delete,
                with_claim=True,
            ),
            Side(
                name=f"KServe {KSERVE_VERSION} (1 worker)",
                namespace="isvc",
                prefix=KSERVE_PREFIX,
                path=ISVC_PATH,
                manifest=inference_service,
                ready=isvc_ready,
                start=self.start_kserve,
                teardown=self.delete_then_stop,
                with_claim=False,
            ),
        )

    def close(self) -> None:
        self.stop_running()
        self.api.close()

    # -- set-up ---------------------------------------------------------------------------------------------

    def prepare_cluster(self) -> None:
        cp, module = self.cp, self.module
        t0 = time.monotonic()
        cp.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        cp.wait_established(f"{PLURAL}.{GROUP}", timeout=60)
        install_counted_identity(cp, OPERATOR_NAMESPACE, OPERATOR_SA, OURS_PREFIX)

        names: list[str] = []
        for relative in KSERVE_CRDS:
            # Server-side: the InferenceService CRD (2 MB) is too big for client-side apply's annotation.
            crd = str(module.dir / relative)
            applied = cp.kubectl(
                "apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "-o", "name", "-f", crd, timeout=300
            )
            names += applied.stdout.split()
        cp.wait_established(*names, timeout=120)
        install_counted_identity(cp, KSERVE_NAMESPACE, KSERVE_SA, KSERVE_PREFIX)  # also creates the namespace
        config = standard_mode_config(module.read_yaml(KSERVE_CONFIGMAP))
        runtime = filled_runtime(module.read_yaml(KSERVE_RUNTIME), module.read_yaml(KSERVE_RUNTIME_IMAGES))
        items = {"apiVersion": "v1", "kind": "List", "items": [config, runtime]}
        cp.kubectl("apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "-f", "-", input=json.dumps(items))
        image = runtime["spec"]["containers"][0]["image"]
        progress(f"CRDs, identities, FlowSchemas and KServe's config installed in {time.monotonic() - t0:.1f} s")
        self.report.note(
            f"KServe's config: {KSERVE_CONFIGMAP} without `_example`, deploy.defaultDeploymentMode=Standard, "
            f"ingress.disableIngressCreation=true, ingress.disableIstioVirtualHost=true; ClusterServingRuntime "
            f"{runtime['metadata']['name']} ({KSERVE_RUNTIME}, image {image} from {KSERVE_RUNTIME_IMAGES}); "
            f"CRDs from config/crd/full (server-side apply)"
        )

    def make_namespace(self, namespace: str, *, with_claim: bool) -> None:
        make_namespace(self.cp, self.workdir, namespace, with_claim=with_claim)

    def delete_namespace(self, namespace: str) -> None:
        delete_namespace(self.cp, self.api, namespace, timeout=self.args.phase_timeout)

    # -- the controllers --------------------------------------------------------------------------------------

    def start_ours(self, label: str) -> Controller:
        return OurOperator(self.cp, self.log_dir, f"ours-{label}", self.args.resync_seconds, self.args.workers)

    def start_kserve(self, label: str) -> Controller:
        return KServeManager(self.cp, manager_binary(), self.workdir, self.log_dir, f"kserve-{label}")

    def stop_running(self) -> None:
        if self.running is not None:
            self.running.stop()
            progress(f"{self.running.label} stopped")
            self.running = None

    def stop_then_delete(self, namespace: str, controller: Controller) -> None:
        """Ours: ModelDeployments carry no finalizer, so the namespace goes without the operator."""
        self.stop_running()
        self.delete_namespace(namespace)

    def delete_then_stop(self, namespace: str, controller: Controller) -> None:
        """KServe: InferenceServices carry its finalizer, so they are deleted while the manager runs."""
        path = ISVC_PATH.format(ns=namespace)
        try:
            status, text = self.api.request("DELETE", path)
        except TimeoutError:  # a collection DELETE of hundreds answers slowly; it still proceeds
            status, text = 200, ""
        if status != 200:
            raise RuntimeError(f"DELETE {path} answered {status}: {text[:300]}")

        def all_gone() -> bool:
            controller.check_alive()
            try:
                return not self.list_items(path)
            except TimeoutError:  # the API server is busy with the deletions: ask again
                return False

        took = wait_until("KServe to release its InferenceServices", all_gone, self.args.phase_timeout, interval=0.5)
        progress(f"{namespace}: KServe released every InferenceService in {took:.1f} s")
        self.stop_running()
        self.delete_namespace(namespace)

    # -- measuring --------------------------------------------------------------------------------------------

    def server_counts(self, prefix: str) -> tuple[Requests, float]:
        status, text = self.api.request("GET", "/metrics")
        if status != 200:
            raise RuntimeError(f"GET /metrics of the API server answered {status}")
        return server_requests(text, prefix)

    def read(self, side: Side, controller: Controller) -> Reading:
        controller.check_alive()
        server, rejected = self.server_counts(side.prefix)
        rss, hwm = memory_mb(controller.pid)
        return Reading(time.monotonic(), server, rejected, cpu_seconds(controller.pid), rss, hwm)

    def settle(self, side: Side, controller: Controller, what: str, timeout: float) -> Reading:
        """Wait until the server sees no request from the controller for QUIET_SECONDS. The same rule for
        both: KServe's metrics are off, so our operator's own queue depth is not consulted either."""
        last = self.read(side, controller)
        quiet_since = started = time.monotonic()
        while True:
            time.sleep(0.5)
            now = self.read(side, controller)
            if now.server.total != last.server.total:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= QUIET_SECONDS:
                return now
            if time.monotonic() - started > timeout:
                raise PhaseTimeout(f"timed out after {timeout:.0f} s waiting for {what} to settle")
            last = now

    def list_items(self, path: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.api.get(path)["items"]
        return items

    def children(self, namespace: str, count: int) -> str:
        counts = []
        for kind, path in CHILD_KINDS:
            items = self.list_items(path.format(ns=namespace))
            mine = [item for item in items if item["metadata"]["name"] != ROOT_CA_CONFIGMAP]
            if mine:
                counts.append(f"{kind} {len(mine) / count:g}")
        return ", ".join(counts) or "none"

    def run(self, side: Side, count: int) -> None:
        """One controller, fresh and alone, on `count` new objects: one table row and a few notes."""
        namespace = f"{side.namespace}-{count}"
        self.make_namespace(namespace, with_claim=side.with_claim)
        before, _ = self.server_counts(side.prefix)
        controller = side.start(f"n{count}")
        self.running = self.last = controller
        progress(f"{side.name}: started (pid {controller.pid})")

        def ready_to_work() -> bool:
            controller.check_alive()
            return controller.ready_to_work()

        wait_until(f"{side.name} to start", ready_to_work, timeout=120, interval=0.5)
        start = self.settle(side, controller, f"{side.name}'s start-up", timeout=300)
        startup = start.server - before

        path = side.path.format(ns=namespace)
        # Followed with watches opened before the first create, not LISTs of N objects twice a second:
        # the measurement must not load the API server that every row waits on.
        ready_at: dict[str, float] = {}
        # The controller's own share: when every object has its Deployment. What follows (ReplicaSets,
        # pods, scheduling, kwok's readiness) is the control plane's, the same for both controllers.
        deployments: set[str] = set()
        deployments_at: list[float] = []
        deployments_path = f"/apis/apps/v1/namespaces/{namespace}/deployments"

        def on_deployment(event: dict[str, Any]) -> None:
            deployments.add(event["object"]["metadata"]["name"])
            if len(deployments) >= count and not deployments_at:
                deployments_at.append(time.monotonic())

        def on_object(event: dict[str, Any]) -> None:
            obj = event["object"]
            name = obj["metadata"]["name"]
            if name not in ready_at and event["type"] != "DELETED" and side.ready(obj):
                ready_at[name] = time.monotonic()

        timeout = self.args.ready_timeout + self.args.phase_timeout
        watches = [
            Watcher(self.cp, deployments_path, list_version(self.api, deployments_path), timeout, on_deployment),
            Watcher(self.cp, path, list_version(self.api, path), timeout, on_object),
        ]
        t0 = time.monotonic()
        calls = []
        for i in range(count):
            name = f"m{i}"
            calls.append(Call(name, "POST", path, side.manifest(name)))
            calls += [Call(f"{name} {p}", "POST", p.format(ns=namespace), m(name)) for p, m in side.companions]
        answered = send_all(self.cp, calls)
        created = {f"m{i}": answered[f"m{i}"][0] for i in range(count)}
        progress(f"{side.name}, N={count}: created {count} objects in {time.monotonic() - t0:.1f} s")
        deadline = t0 + self.args.ready_timeout
        try:
            while len(ready_at) < count:
                time.sleep(POLL_SECONDS)
                controller.check_alive()
                for watch in watches:
                    if watch.failed is not None:
                        raise RuntimeError(f"the benchmark's watch of {watch.path} failed: {watch.failed}")
                if time.monotonic() > deadline:
                    limit = self.args.ready_timeout
                    raise PhaseTimeout(
                        f"{side.name}, N={count}: only {len(ready_at)} of {count} Ready after {limit:.0f} s"
                    )
        finally:
            for watch in watches:
                watch.stop()
        ready = self.read(side, controller)
        all_ready = max(ready_at.values()) - t0
        all_deployments = (deployments_at[0] if deployments_at else max(ready_at.values())) - t0
        latencies = [ready_at[name] - created[name] for name in created]
        progress(f"{side.name}, N={count}: all Ready after {all_ready:.1f} s")
        settled = self.settle(side, controller, f"{side.name} after Ready", timeout=self.args.phase_timeout)

        to_ready = ready.server - start.server
        after = settled.server - ready.server
        if side.controlled:
            requests, cpu, rss = (
                to_ready.per(count),
                f"{ready.cpu - start.cpu:.1f}",
                f"{ready.rss:.0f} ({ready.hwm:.0f})",
            )
        else:
            writes = (1 + len(side.companions)) * count
            requests, cpu, rss = f"{writes / count:.2f} creates, by the benchmark", "-", "-"
        row = (
            f"| {count} | {side.name} | {all_deployments:.1f} | {all_ready:.1f} | {percentile(latencies, 50):.1f} "
            f"| {percentile(latencies, 95):.1f} | {requests} | {cpu} | {rss} |"
        )
        if not self.printed_header:
            print(TABLE_HEADER, flush=True)
            self.printed_header = True
        print(row, flush=True)
        self.report.rows.append(row)
        if side.controlled:
            self.report.note(
                f"{side.name}, N={count}: to all Ready {to_ready.describe()}; after Ready until quiet "
                f"({settled.at - ready.at:.0f} s) {after.describe()}; start-up (not in the row) {startup.describe()}; "
                f"children per object: {self.children(namespace, count)}"
            )
        if settled.rejected > start.rejected:
            self.report.note(f"{side.name}, N={count}: APF rejected {settled.rejected - start.rejected:.0f} requests")
        side.teardown(namespace, controller)


def describe_capacity(capacity: Mapping[str, str]) -> str:
    return ", ".join(f"{key} {value}" for key, value in capacity.items())


def versions_note(args: argparse.Namespace, module: KServeModule) -> list[str]:
    k8s = read_versions()
    try:
        built = build_info(
            run_go(["version", "-m", str(manager_binary())], cwd=Path(tempfile.gettempdir()), timeout=60),
            ("sigs.k8s.io/controller-runtime", "k8s.io/client-go"),
        )
    except (BuildError, subprocess.TimeoutExpired) as exc:
        built = f"build info unknown: {exc}"
    commit = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return [
        f"modeldeploy {modeldeploy_version} ({commit or 'no git'}), kopf {importlib.metadata.version('kopf')}, "
        f"Python {platform.python_version()}: `modeldeploy run --workers {args.workers} --resync-seconds "
        f"{args.resync_seconds:g}` (all namespaces) as ServiceAccount {OPERATOR_NAMESPACE}/{OPERATOR_SA}; "
        f"{args.workers} reconcile workers",
        f"KServe {KSERVE_VERSION}: cmd/manager of {KSERVE_MODULE}@{KSERVE_VERSION} ({module.sum}) from the Go module "
        f"proxy, built with CGO_ENABLED=0 -trimpath -ldflags '-s -w' into {manager_binary()} ({built}); flags "
        "--metrics-addr=0 --health-probe-addr=0 --webhook-port=<random> --leader-elect=false, env "
        f"POD_NAMESPACE=SYSTEM_NAMESPACE={KSERVE_NAMESPACE}; as ServiceAccount {KSERVE_NAMESPACE}/{KSERVE_SA}; "
        "1 reconcile worker per controller (controller-runtime's default; main.go has no flag for it), no "
        "client-side rate limit (controller-runtime's GetConfig sets QPS -1); Standard mode; no admission webhook "
        "registered, so no defaulting, validation or storage-initializer injection; predictor pods request the "
        "runtime's 1 CPU / 2Gi",
        f"control plane: Kubernetes {k8s.kubernetes}, etcd {k8s.etcd}, kwok {k8s.kwok}; {args.nodes} kwok Nodes of "
        f"{describe_capacity(node_capacity(max(args.counts), args.nodes))} each",
        "each row: a fresh controller alone, in a fresh namespace; counted from the end of its start-up (no request "
        f"for {QUIET_SECONDS:g} s) until all are Ready (two watches of the admin's, opened before the first create: "
        "the objects and their Deployments); requests "
        "are those the API server dispatched for the controller's ServiceAccount (its own FlowSchemas), writes = "
        "create + patch + update + delete, Events included; p50/p95 from each object's create to Ready. Ready: "
        "ours, condition Ready with reason Ready; KServe, condition Ready True. Objects: ours served as is (no "
        "optimization Job), 1 replica, autoscaling off; KServe's as its defaults make them (in Standard mode, an "
        "HPA of min 1 = max 1 per object)",
        "control-plane floor: no controller; the benchmark itself creates one Deployment (1 replica of TF Serving "
        "mounting the claim) and one Service per object, 2 writes per object, and the row is timed the same way "
        "(Ready: the Deployment's replica available). A controller's all Ready cannot go below it on this control "
        "plane: what is above it is the controller's own share",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--counts", type=parse_counts, default=[100, 500], help="objects per run, each controller")
    parser.add_argument("--nodes", type=int, default=50, help="kwok Nodes (their capacity grows with N)")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="our operator's reconcile workers")
    parser.add_argument(
        "--resync-seconds", type=float, default=DEFAULT_RESYNC_SECONDS, help="our operator's resync (its default)"
    )
    parser.add_argument("--ready-timeout", type=float, default=900.0, help="seconds for all N to be Ready")
    parser.add_argument("--phase-timeout", type=float, default=600.0, help="seconds for other phases")
    parser.add_argument("--log-dir", type=Path, default=None, help="keep the controllers' logs here (default: dropped)")
    args = parser.parse_args(argv)
    if args.nodes < 1:
        parser.error("--nodes must be at least 1")
    counts: list[int] = args.counts

    report = Report()
    failed = False
    try:
        module = download_module()
        ensure_manager(module, manager_binary())
    except (BuildError, subprocess.TimeoutExpired, OSError) as exc:
        print(f"\nFAILED: {type(exc).__name__}: {exc}", flush=True)
        return 1
    capacity = node_capacity(max(counts), args.nodes)
    with tempfile.TemporaryDirectory(prefix="modeldeploy-vs-kserve-") as tmp:
        progress(f"starting a control plane with {args.nodes} kwok Nodes of {describe_capacity(capacity)}")
        with ControlPlane(nodes=args.nodes, node_capacity=capacity) as cp:
            versus = Versus(cp, Path(tmp), args, report, module)
            try:
                versus.prepare_cluster()
                for count in counts:
                    for side in versus.sides:
                        versus.run(side, count)
            except Exception as exc:
                failed = True
                print(f"\nFAILED: {type(exc).__name__}: {exc}", flush=True)
                last = versus.last
                tail = last.tail() if last is not None else "(no controller was started)"
                print(f"--- {last.label if last else 'controller'} log tail:\n{tail}\n---", flush=True)
            finally:
                versus.close()
    notes = versions_note(args, module)
    for note in notes:
        progress(f"note: {note}")
    report.notes[:0] = notes
    print("\nNotes\n\n" + "\n".join(f"- {note}" for note in report.notes), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
