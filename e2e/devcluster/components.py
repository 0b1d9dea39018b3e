"""The command-line flags of each control plane component, as pure functions of one cluster's layout.

Why it exists: the flags are where the cluster's behaviour is decided (RBAC, admission, the aggregation
layer, client rate limits, which Nodes kwok plays) and they deserve to be read on their own, apart
from starting and stopping processes. `ControlPlane` builds a `Layout` once per start and passes it here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from devcluster import certs
from devcluster.nodes import KWOK_NODE_ANNOTATION

#: Start order; stop goes the other way.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
#: The ports each start allocates (free_ports), by name.
PORT_NAMES = ("etcd", "etcd-peer", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
#: Service ClusterIPs come from here (the serving certificate names its first address, 10.96.0.1);
#: kwok hands out pod IPs from POD_CIDR. They must not overlap (kwok's default pod CIDR is 10.0.0.0/24).
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
#: kwok's behaviour for Nodes and pods, in the package's stages/ folder (see pod-ready.yaml for which
#: pods it leaves to the executor).
STAGE_FILES = ("node-initialize", "node-heartbeat", "pod-ready", "pod-ready-again", "pod-complete", "pod-delete")
#: Client rate limit of the controller-manager and the scheduler (defaults: 20 and 50 QPS).
CLIENT_QPS = 200


@dataclass(frozen=True)
class Layout:
    """Where one started cluster keeps its files and which ports it listens on."""

    workdir: Path
    ports: Mapping[str, int]
    pki: certs.Pki

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def kwok_config(self) -> Path:
        return self.workdir / "kwok-stages.yaml"


def write_kwok_stages(path: Path) -> None:
    """Concatenate the stage files shipped with this package into kwok's --config."""
    stages = resources.files("devcluster") / "stages"
    path.write_text("".join("---\n" + stages.joinpath(f"{name}.yaml").read_text() for name in STAGE_FILES))


def etcd_args(layout: Layout) -> list[str]:
    client = f"http://127.0.0.1:{layout.ports['etcd']}"
    peer = f"http://127.0.0.1:{layout.ports['etcd-peer']}"
    return [
        "--name=modeldeploy-dev",
        f"--data-dir={layout.workdir / 'etcd'}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=modeldeploy-dev={peer}",
        "--unsafe-no-fsync=true",  # a throw-away test store: durability buys nothing, fsync costs start time
        "--log-level=warn",
    ]


def apiserver_args(layout: Layout) -> list[str]:
    pki = layout.pki
    return [
        f"--etcd-servers=http://127.0.0.1:{layout.ports['etcd']}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={layout.ports['kube-apiserver']}",
        f"--cert-dir={layout.workdir / 'apiserver'}",
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


def _serving_args(layout: Layout, name: str) -> list[str]:
    """/healthz on a free loopback port with our certificate; callers authenticated via the apiserver."""
    return [
        f"--authentication-kubeconfig={layout.kubeconfig}",
        f"--authorization-kubeconfig={layout.kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={layout.ports[name]}",
        f"--tls-cert-file={layout.pki.serving_cert}",
        f"--tls-private-key-file={layout.pki.serving_key}",
    ]


def controller_manager_args(layout: Layout, *, leader_elect: bool) -> list[str]:
    """`leader_elect` as on a real control plane (the default there): the process exits when an outage
    outlasts its lease's renew deadline and is restarted afresh (supervisor.py says why that matters);
    off only where nothing would restart it (`devcluster up`, whose processes outlive us)."""
    pki = layout.pki
    return [
        f"--kubeconfig={layout.kubeconfig}",
        *_serving_args(layout, "kube-controller-manager"),
        f"--leader-elect={str(leader_elect).lower()}",
        # The CAs as files, as kubeadm passes them: without them the controller-manager reads them from
        # the API server at start and exits when it is away, so a restart during an outage would fail.
        f"--client-ca-file={pki.ca_cert}",
        f"--requestheader-client-ca-file={pki.ca_cert}",
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


def scheduler_args(layout: Layout, *, leader_elect: bool) -> list[str]:
    """The scheduler's flags; writes its config file, the only place it takes client settings from
    (the client flags are deprecated). `leader_elect` as for the controller-manager."""
    config = layout.workdir / "kube-scheduler.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kubescheduler.config.k8s.io/v1",
                "kind": "KubeSchedulerConfiguration",
                "clientConnection": {
                    "kubeconfig": str(layout.kubeconfig),
                    "qps": CLIENT_QPS,
                    "burst": 2 * CLIENT_QPS,
                },
                "leaderElection": {"leaderElect": leader_elect},
                "enableProfiling": False,
            }
        )
    )
    return [f"--config={config}", *_serving_args(layout, "kube-scheduler")]


def kwok_args(layout: Layout, node_count: int) -> list[str]:
    return [
        f"--kubeconfig={layout.kubeconfig}",
        f"--config={layout.kwok_config}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
        "--node-lease-duration-seconds=40",
        f"--cidr={POD_CIDR}",
        "--node-ip=127.0.0.1",
        # kwok logs every lease renewal at INFO (a line per node every ~10 s); at scale, warnings only.
        f"-v={'INFO' if node_count <= 100 else 'WARN'}",
    ]
