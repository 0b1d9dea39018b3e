"""Pure builders: a ModelDeployment (and the artifact to serve) in, Kubernetes manifests out.

No I/O and no kopf or kubernetes-client import here (an import-linter contract holds it), so every
builder is tested directly and `modeldeploy render` works offline.
"""

from __future__ import annotations

from modeldeploy.api import ModelDeployment
from modeldeploy.controller.builders.artifacts import Artifact, desired_artifact, needs_job
from modeldeploy.controller.builders.autoscaling import build_hpa, build_pdb
from modeldeploy.controller.builders.configmaps import (
    build_model_configmap,
    build_serving_configmap,
    config_checksum,
)
from modeldeploy.controller.builders.deployment import build_deployment
from modeldeploy.controller.builders.job import build_job
from modeldeploy.controller.builders.labels import Owner
from modeldeploy.controller.builders.manifest import Manifest
from modeldeploy.controller.builders.network import build_network_policy
from modeldeploy.controller.builders.service import build_service
from modeldeploy.controller.builders.traffic import build_traffic_children

__all__ = [
    "Artifact",
    "Owner",
    "build_deployment",
    "build_hpa",
    "build_job",
    "build_model_configmap",
    "build_network_policy",
    "build_pdb",
    "build_service",
    "build_serving_children",
    "desired_artifact",
    "needs_job",
    "render_all",
]


def build_serving_children(md: ModelDeployment, artifact: Artifact, owner: Owner | None) -> list[Manifest]:
    """ConfigMaps, Deployment, Service, and HPA/PDB when wanted, serving `artifact`."""
    model_cm = build_model_configmap(md, artifact, owner)
    serving_cm = build_serving_configmap(md, owner)
    children = [
        model_cm,
        serving_cm,
        build_deployment(md, artifact, config_checksum(model_cm, serving_cm), owner),
        build_service(md, owner),
    ]
    children += [c for c in (build_hpa(md, owner), build_pdb(md, owner)) if c is not None]
    return children


def render_all(md: ModelDeployment, owner: Owner | None = None) -> list[Manifest]:
    """Every child of the current spec, as `modeldeploy render` prints them: the optimization Job
    (when one is needed) and the serving children for the artifact it will produce."""
    artifact = desired_artifact(md.name, md.spec, md.namespace)
    jobs = [build_job(md, owner)] if needs_job(md.spec) else []
    # Outside a rollout the route sends everything to the stable track.
    routing = build_traffic_children(md, 0, owner) if md.spec.rollout.traffic_routing.gateway_api else []
    return [build_network_policy(md, owner), *jobs, *build_serving_children(md, artifact, owner), *routing]
