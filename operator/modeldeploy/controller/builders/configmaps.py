"""The ConfigMaps TF Serving reads: the model config (changes with every artifact) and the
serving config (batching and monitoring: tuning that changes rarely)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from modeldeploy.api import ModelDeployment
from modeldeploy.controller.builders import names, tfserving
from modeldeploy.controller.builders.artifacts import Artifact
from modeldeploy.controller.builders.labels import SERVING, Owner, child_labels, metadata
from modeldeploy.controller.builders.manifest import Manifest


def _configmap(md: ModelDeployment, name: str, data: dict[str, str], owner: Owner | None) -> Manifest:
    labels = child_labels(md.name, SERVING, md.spec.model.version)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(name, md.namespace, labels, owner),
        "data": data,
    }


def build_model_configmap(md: ModelDeployment, artifact: Artifact, owner: Owner | None) -> Manifest:
    data = {tfserving.MODEL_CONFIG_FILE: tfserving.model_config(artifact)}
    return _configmap(md, names.model_config_name(md.name), data, owner)


def build_serving_configmap(md: ModelDeployment, owner: Owner | None) -> Manifest:
    data = {
        tfserving.MONITORING_FILE: tfserving.monitoring_config(),
        tfserving.BATCHING_FILE: tfserving.batching_config(md.spec.serving),
    }
    return _configmap(md, names.serving_config_name(md.name), data, owner)


def config_checksum(*configmaps: dict[str, Any]) -> str:
    """Put on the pod template so a config change rolls the pods (TF Serving reads them once)."""
    blob = json.dumps([cm["data"] for cm in configmaps], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
