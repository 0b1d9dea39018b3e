"""The fake Nodes kwok plays the kubelet for: their manifests, creating them fast, knowing they are Ready.

Why it exists: the scheduler needs Ready, untainted Nodes before any pod can run, and the scale
benchmark creates a thousand of them; creating them over several connections at once and checking
readiness with one list keeps a start measured in seconds.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from devcluster.kubeapi import KubeApi

log = logging.getLogger(__name__)

#: The annotation kwok selects the Nodes it manages by (--manage-nodes-with-annotation-selector).
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
DEFAULT_NODE_CAPACITY: Mapping[str, str] = {"cpu": "32", "memory": "256Gi", "pods": "250"}


def node_names(count: int) -> list[str]:
    return [f"kwok-node-{index}" for index in range(count)]


def node_manifest(name: str, capacity: Mapping[str, str]) -> dict[str, Any]:
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
        "status": {"capacity": dict(capacity), "allocatable": dict(capacity)},
    }


def create_nodes(
    api: KubeApi, connect: Callable[[], KubeApi], names: Sequence[str], capacity: Mapping[str, str]
) -> None:
    """POST the Nodes; beyond a handful, over several connections (from `connect`) at once."""
    started = time.monotonic()
    if len(names) <= 10:
        for name in names:
            api.post("/api/v1/nodes", node_manifest(name, capacity))
    else:
        workers = 8
        shards = [list(names[index::workers]) for index in range(workers)]

        def create(shard: list[str]) -> None:
            with connect() as own:
                for name in shard:
                    own.post("/api/v1/nodes", node_manifest(name, capacity))

        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            for future in [pool.submit(create, shard) for shard in shards]:
                future.result()
    log.info("created %d kwok Nodes in %.1f s", len(names), time.monotonic() - started)


def nodes_ready(api: KubeApi, count: int) -> bool:
    """True once `count` kwok Nodes are Ready and no longer carry the not-ready taint."""
    nodes = api.get("/api/v1/nodes?labelSelector=type%3Dkwok")["items"]
    ready = 0
    for node in nodes:
        conditions = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
        taints = {t["key"] for t in node.get("spec", {}).get("taints", [])}
        # The not-ready taint is put on at creation and removed by node-lifecycle once Ready:
        # until then the scheduler would refuse the node.
        if conditions.get("Ready") == "True" and "node.kubernetes.io/not-ready" not in taints:
            ready += 1
    return ready >= count
