"""The NetworkPolicy every ModelDeployment gets: its pods (TF Serving and the optimizer) accept
connections only on TF Serving's gRPC and REST ports. Nothing else listens there, so clients lose
nothing; a compromised pod gains no other way in. Egress stays open: the optimizer fetches from
s3 or https."""

from __future__ import annotations

from modeldeploy.api import ModelDeployment
from modeldeploy.controller.builders import tfserving
from modeldeploy.controller.builders.labels import MODEL_DEPLOYMENT_LABEL, Owner, serving_metadata
from modeldeploy.controller.builders.manifest import Manifest


def build_network_policy(md: ModelDeployment, owner: Owner | None) -> Manifest:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": serving_metadata(md, owner),
        "spec": {
            "podSelector": {"matchLabels": {MODEL_DEPLOYMENT_LABEL: md.name}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "ports": [
                        {"protocol": "TCP", "port": tfserving.GRPC_PORT},
                        {"protocol": "TCP", "port": tfserving.REST_PORT},
                    ]
                }
            ],
        },
    }
