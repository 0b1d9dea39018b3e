"""Kubeconfig files for one local cluster: the admin's (client certificate) and ServiceAccounts' (token).

Why it exists: every component (controller-manager, scheduler, kwok), kubectl, helm and the operator
reach the API server through a kubeconfig; they all name the same server and CA, and differ only in
the user. The files are written with mode 0600: they hold keys and tokens.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path

import yaml

from devcluster import certs

CLUSTER_NAME = "modeldeploy-dev"


def b64(path: Path) -> str:
    """A PEM file as the base64 text kubeconfig's `*-data` fields want."""
    return base64.b64encode(path.read_bytes()).decode()


def admin_credentials(pki: certs.Pki) -> dict[str, str]:
    """The admin user's client certificate and key, inline."""
    return {"client-certificate-data": b64(pki.admin_cert), "client-key-data": b64(pki.admin_key)}


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    ca_cert: Path,
    user: str,
    credentials: Mapping[str, str],
    namespace: str | None = None,
) -> None:
    """Write a single-context kubeconfig for `user` at `server`."""
    context: dict[str, str] = {"cluster": CLUSTER_NAME, "user": user}
    if namespace:
        context["namespace"] = namespace
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CLUSTER_NAME, "cluster": {"server": server, "certificate-authority-data": b64(ca_cert)}}],
        "users": [{"name": user, "user": dict(credentials)}],
        "contexts": [{"name": CLUSTER_NAME, "context": context}],
        "current-context": CLUSTER_NAME,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
