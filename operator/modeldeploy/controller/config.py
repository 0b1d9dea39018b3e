"""The operator's settings, in one frozen value built once by `modeldeploy run`.

Everything downstream (the kopf wiring, the resync loop, the metrics endpoint) reads it from here
instead of from flags, environment variables or module globals.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# A resync reads only the cache: it catches what the watches missed, at no request, so it can be rare.
DEFAULT_RESYNC_SECONDS = 300.0
# Reconciles wait on the API server's answers to their writes; a few threads keep it busy.
DEFAULT_WORKERS = 8
# Connections kept open to the API server beyond one per worker (the start-up's listing thread).
SPARE_CONNECTIONS = 2
MAX_PEERING_PRIORITY = 100


class LogFormat(StrEnum):
    PLAIN = "plain"
    JSON = "json"


@dataclass(frozen=True)
class OperatorConfig:
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    resync_seconds: float = DEFAULT_RESYNC_SECONDS  # reconcile everything this often, whatever happened
    workers: int = DEFAULT_WORKERS
    liveness_port: int = 8080  # 0 = off
    metrics_port: int = 9090  # 0 = off
    log_format: LogFormat = LogFormat.PLAIN
    verbose: bool = False
    kubeconfig: str | None = None  # None: in-cluster, then KUBECONFIG
    peering: str | None = None  # kopf peering name for several replicas; None: standalone
    priority: int = 0  # peering priority; replicas need distinct ones
    # spec.artifacts.signingKeySecret of every ModelDeployment that names none; None: no default
    default_signing_key_secret: str | None = None

    @property
    def api_connections(self) -> int:
        """How many connections the client keeps open: one per worker, so that none waits for one
        and none is dropped after its request (the client library's default is 5 per CPU: 10 on 2
        CPUs, fewer than 16 workers, and each dropped connection is a new TLS handshake)."""
        return self.workers + SPARE_CONNECTIONS

    @property
    def scope(self) -> str:
        return "namespaces " + ", ".join(self.namespaces) if self.namespaces else "all namespaces"


def peering_priority(value: str, hostname: str) -> int:
    """kopf freezes replicas of equal priority, so each needs its own: 'ordinal' turns a StatefulSet
    pod name (modeldeploy-operator-2) into 100 - 2; the first pod is the preferred leader."""
    if value != "ordinal":
        return int(value)
    _, _, ordinal = hostname.rpartition("-")
    if not ordinal.isdigit():
        raise ValueError(f"'ordinal' needs a StatefulSet pod name ending in -N, got HOSTNAME={hostname!r}")
    return MAX_PEERING_PRIORITY - int(ordinal)
