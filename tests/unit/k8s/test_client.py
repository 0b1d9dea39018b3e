"""The API client's connection pool: as large as the operator's workers."""

from __future__ import annotations

from pathlib import Path

import yaml

from modeldeploy.controller.config import OperatorConfig
from modeldeploy.k8s.client import KubeClient, load_client


def kubeconfig(tmp_path: Path) -> str:
    path = tmp_path / "kubeconfig"
    cluster = {"name": "c", "cluster": {"server": "https://127.0.0.1:6443", "insecure-skip-tls-verify": True}}
    user = {"name": "u", "user": {"token": "t"}}
    context = {"name": "x", "context": {"cluster": "c", "user": "u"}}
    config = {"apiVersion": "v1", "kind": "Config", "clusters": [cluster], "users": [user], "contexts": [context]}
    path.write_text(yaml.safe_dump({**config, "current-context": "x"}))
    return str(path)


def pool_size(kube: KubeClient) -> int:
    size: int = kube.api.rest_client.pool_manager.connection_pool_kw["maxsize"]
    return size


def test_every_worker_keeps_its_connection(tmp_path: Path) -> None:
    """16 workers on a 2-CPU node got the library's 10 connections: urllib3 logged "Connection pool is
    full, discarding connection" 44 times in a 1,000-object run, and each discarded connection made a
    new TLS handshake. The pool now holds one per worker and the spares."""
    config = OperatorConfig(workers=16, kubeconfig=kubeconfig(tmp_path))
    assert config.api_connections == 18
    kube = load_client(config.kubeconfig, connections=config.api_connections)
    assert pool_size(kube) == 18
    assert pool_size(load_client(config.kubeconfig, connections=3)) == 3
