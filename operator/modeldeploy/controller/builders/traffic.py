"""Exact canary percentages through the Gateway API (spec.rollout.trafficRouting.gatewayAPI).

Without a mesh, the one Service splits traffic by replica counts. With a Gateway, an HTTPRoute
named like the serving children sends `100 - w` percent of the REST requests to the stable
track's Service and `w` percent to the canary track's; both Services select the serving pods by
their `modeldeploy.io/track` label. Outside a rollout the weights are 100/0. The planner calls
these builders only when the API server serves HTTPRoute (the kind is optional: kinds.py).
"""

from __future__ import annotations

from typing import Any

from modeldeploy.api import ModelDeployment
from modeldeploy.controller.builders.labels import (
    CANARY,
    SERVING,
    STABLE,
    TRACK_LABEL,
    Owner,
    child_labels,
    metadata,
    selector_labels,
    serving_metadata,
)
from modeldeploy.controller.builders.manifest import Manifest
from modeldeploy.controller.builders.names import serving_name, track_service_name
from modeldeploy.controller.builders.service import service_ports

TRACKS = (STABLE, CANARY)
HTTP_ROUTE_API_VERSION = "gateway.networking.k8s.io/v1"
MAX_WEIGHT = 100


def build_track_service(md: ModelDeployment, track: str, owner: Owner | None) -> Manifest:
    """The Service of one track: the main Service's pods and ports, narrowed to the track's pods.
    ClusterIP whatever the main Service's type: only the Gateway reaches it."""
    if track not in TRACKS:
        raise ValueError(f"unknown track {track!r} (expected one of {', '.join(TRACKS)})")
    labels = {**child_labels(md.name, SERVING, md.spec.model.version), TRACK_LABEL: track}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(track_service_name(md.name, track), md.namespace, labels, owner),
        "spec": {
            "type": "ClusterIP",
            "selector": {**selector_labels(md.name, SERVING), TRACK_LABEL: track},
            "ports": service_ports(md),
        },
    }


def _parent_ref(name: str, namespace: str | None, section_name: str | None) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": name}
    if namespace:
        ref["namespace"] = namespace
    if section_name:
        ref["sectionName"] = section_name
    return ref


def build_http_route(md: ModelDeployment, canary_weight: int, owner: Owner | None) -> Manifest:
    """The HTTPRoute: the spec's Gateways and host names, one rule whose two backends (the track
    Services, REST port) carry `100 - canary_weight` and `canary_weight`."""
    routing = md.spec.rollout.traffic_routing.gateway_api
    if routing is None:
        raise ValueError("rollout.trafficRouting.gatewayAPI is not set: no HTTPRoute to build")
    if not 0 <= canary_weight <= MAX_WEIGHT:
        raise ValueError(f"canary weight {canary_weight} is not a percentage (0..100)")
    port = md.spec.service.rest_port
    spec: dict[str, Any] = {
        "parentRefs": [_parent_ref(p.name, p.namespace, p.section_name) for p in routing.parent_refs],
    }
    if routing.hostnames:
        spec["hostnames"] = list(routing.hostnames)
    spec["rules"] = [
        {
            "backendRefs": [
                {"name": track_service_name(md.name, STABLE), "port": port, "weight": MAX_WEIGHT - canary_weight},
                {"name": track_service_name(md.name, CANARY), "port": port, "weight": canary_weight},
            ]
        }
    ]
    return {
        "apiVersion": HTTP_ROUTE_API_VERSION,
        "kind": "HTTPRoute",
        "metadata": serving_metadata(md, owner),
        "spec": spec,
    }


def build_traffic_children(md: ModelDeployment, canary_weight: int, owner: Owner | None) -> list[Manifest]:
    """The two track Services and the HTTPRoute, in the order they are created (backends first)."""
    return [*(build_track_service(md, t, owner) for t in TRACKS), build_http_route(md, canary_weight, owner)]


def traffic_child_keys(md_name: str) -> frozenset[tuple[str, str]]:
    """(kind, name) of every child this module builds, to remove them when gatewayAPI is turned off."""
    return frozenset(
        {*(("Service", track_service_name(md_name, t)) for t in TRACKS), ("HTTPRoute", serving_name(md_name))}
    )
