"""The HorizontalPodAutoscaler (autoscaling/v2) and the PodDisruptionBudget of the serving pods."""

from __future__ import annotations

from typing import Any

from modeldeploy.api import ModelDeployment
from modeldeploy.controller.builders import names
from modeldeploy.controller.builders.labels import SERVING, Owner, selector_labels, serving_metadata
from modeldeploy.controller.builders.manifest import Manifest


def build_hpa(md: ModelDeployment, owner: Owner | None) -> Manifest | None:
    """None when autoscaling is off (the operator then deletes an HPA it made before)."""
    auto = md.spec.autoscaling
    if not auto.enabled:
        return None
    metrics = list(auto.metrics) or [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {
                    "type": "Utilization",
                    "averageUtilization": auto.target_cpu_utilization_percentage,
                },
            },
        }
    ]
    spec: dict[str, Any] = {
        "scaleTargetRef": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": names.serving_name(md.name),
        },
        "minReplicas": auto.min_replicas,
        "maxReplicas": auto.max_replicas,
        "metrics": metrics,
    }
    if auto.behavior:
        spec["behavior"] = dict(auto.behavior)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": serving_metadata(md, owner),
        "spec": spec,
    }


def may_run_several_replicas(md: ModelDeployment) -> bool:
    auto = md.spec.autoscaling
    return auto.max_replicas > 1 if auto.enabled else md.spec.serving.replicas > 1


def build_pdb(md: ModelDeployment, owner: Owner | None) -> Manifest | None:
    """A PDB only when there can be more than one replica: with one, it would block node drains."""
    if not may_run_several_replicas(md):
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": serving_metadata(md, owner),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector_labels(md.name, SERVING)},
        },
    }
