"""The Service in front of TF Serving: REST (and the Prometheus metrics path) and gRPC."""

from __future__ import annotations

from typing import Any

from modeldeploy.api import ModelDeployment
from modeldeploy.controller.builders import names
from modeldeploy.controller.builders.labels import SERVING, Owner, selector_labels, serving_metadata
from modeldeploy.controller.builders.manifest import Manifest


def service_ports(md: ModelDeployment) -> list[dict[str, Any]]:
    """REST and gRPC, by the serving container's port names; every Service of the pods has these."""
    svc = md.spec.service
    return [
        {"name": "http", "port": svc.rest_port, "targetPort": "http", "protocol": "TCP", "appProtocol": "http"},
        {"name": "grpc", "port": svc.grpc_port, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"},
    ]


def build_service(md: ModelDeployment, owner: Owner | None) -> Manifest:
    svc = md.spec.service
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": serving_metadata(md, owner, svc.annotations),
        "spec": {
            "type": svc.type.value,
            "selector": selector_labels(md.name, SERVING),
            "ports": service_ports(md),
        },
    }


def model_url(md: ModelDeployment) -> str:
    """Where in-cluster clients reach the model's REST API."""
    namespace = md.namespace or "default"
    host = f"{names.serving_name(md.name)}.{namespace}.svc"
    return f"http://{host}:{md.spec.service.rest_port}/v1/models/{md.spec.model.name}"
