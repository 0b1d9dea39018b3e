"""The TF Serving Deployment for one artifact.

The artifact's version folder is mounted exactly where TF Serving looks for it
(`/models/NAME/VERSION`), read-only: from the artifacts claim for an optimized model, from the
source claim for a SavedModel served as is, or fetched into an emptyDir by an init container for
s3://, gs:// and https:// sources (TF Serving's own s3 support is broken in current images).
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from modeldeploy.api import ModelDeployment
from modeldeploy.api.spec import pvc_parts, uri_scheme
from modeldeploy.contract.layout import SIGNING_DIR, SIGNING_PUBLIC_KEY, TERMINATION_MESSAGE_PATH
from modeldeploy.controller.builders import names, tfserving
from modeldeploy.controller.builders.artifacts import MODELS_ROOT, Artifact
from modeldeploy.controller.builders.job import secret_env
from modeldeploy.controller.builders.labels import (
    ARTIFACT_LABEL,
    CANARY,
    REVISION_ANNOTATION,
    SERVING,
    STABLE,
    TRACK_LABEL,
    WORKLOAD_CHECKOV_SKIPS,
    Owner,
    child_labels,
    metadata,
    selector_labels,
)
from modeldeploy.controller.builders.manifest import Manifest
from modeldeploy.controller.builders.security import container_security_context, pod_security_context
from modeldeploy.controller.builders.volumes import empty_dir, host_path_volume, key_file_volume, mount, pvc_volume

CONFIG_CHECKSUM_ANNOTATION = "modeldeploy.io/config-checksum"
VERIFY_CONTAINER = "verify-model"
SIGNING_PUBLIC_KEY_VOLUME = "signing-public-key"


def _model_volumes(
    md: ModelDeployment, artifact: Artifact
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, TF Serving mounts, init containers) that put the version folder in place."""
    volumes = [empty_dir("models", "1Mi" if uri_scheme(artifact.location) in ("pvc", "file") else None)]
    # Writable on purpose: the runtime creates the nested mount point /models/NAME/VERSION inside
    # it, which fails under a read-only mount. TF Serving itself never writes there.
    mounts = [mount("models", MODELS_ROOT, read_only=False)]
    init: list[dict[str, Any]] = []
    scheme = uri_scheme(artifact.location)
    if scheme == "pvc":
        claim, path = pvc_parts(artifact.location)
        volume = pvc_volume(claim, read_only=True)
        volumes.append(volume)
        mounts.append(mount(volume["name"], artifact.version_dir, read_only=True, sub_path=path))
    elif scheme == "file":
        volume = host_path_volume(artifact.location.removeprefix("file://"))
        volumes.append(volume)
        mounts.append(mount(volume["name"], artifact.version_dir, read_only=True))
    else:
        fetch: dict[str, Any] = {
            "name": "fetch-model",
            "image": md.spec.optimization.image,
            "command": ["modeldeploy"],
            "args": ["fetch", f"--source={artifact.location}", f"--dest={artifact.version_dir}"],
            "env": [{"name": "HOME", "value": "/tmp"}],
            "securityContext": container_security_context(),
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
            "volumeMounts": [
                mount("models", MODELS_ROOT, read_only=False),
                mount("tmp", "/tmp", read_only=False),
            ],
        }
        if md.spec.model.credentials_secret:
            fetch["envFrom"] = secret_env(md.spec.model.credentials_secret)
        init.append(fetch)
    if artifact.manifest_sha256 and scheme == "pvc":
        verify = _verify_container(md, artifact, [m for m in mounts if m["mountPath"] != MODELS_ROOT])
        if artifact.signing_key_secret is not None:
            # Only the public half: the serving pods never see the private key.
            volumes.append(
                key_file_volume(
                    SIGNING_PUBLIC_KEY_VOLUME,
                    secret=artifact.signing_key_secret,
                    config_map=None,
                    key=SIGNING_PUBLIC_KEY,
                    path=SIGNING_PUBLIC_KEY,
                )
            )
            verify["args"].append(f"--public-key={SIGNING_DIR / SIGNING_PUBLIC_KEY}")
            verify["volumeMounts"].append(mount(SIGNING_PUBLIC_KEY_VOLUME, str(SIGNING_DIR), read_only=True))
        init.append(verify)
    return volumes, mounts, init


def _verify_container(md: ModelDeployment, artifact: Artifact, model_mounts: list[dict[str, Any]]) -> dict[str, Any]:
    """Checks the version folder against the digest the optimizer reported before TF Serving may load
    it (the seed's "model verification"): a folder changed on the claim is refused; with a signing
    Secret, its model.sig must also verify with the Secret's public key."""
    return {
        "name": VERIFY_CONTAINER,
        "image": md.spec.optimization.image,
        "command": ["modeldeploy"],
        "args": [
            "verify",
            f"--dir={artifact.version_dir}",
            f"--manifest-sha256={artifact.manifest_sha256}",
            f"--termination-message-path={TERMINATION_MESSAGE_PATH}",
        ],
        "securityContext": container_security_context(),
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "volumeMounts": [mount("tmp", "/tmp", read_only=False), *model_mounts],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def _probe(path: str) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http"}}


def build_deployment(md: ModelDeployment, artifact: Artifact, config_checksum: str, owner: Owner | None) -> Manifest:
    spec = md.spec
    serving = spec.serving
    labels = child_labels(md.name, SERVING, artifact.version)
    pod_labels = {**serving.pod_labels, **labels, ARTIFACT_LABEL: artifact.hash, TRACK_LABEL: STABLE}
    metrics_port = str(tfserving.REST_PORT)
    pod_annotations = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": metrics_port,
        "prometheus.io/path": tfserving.METRICS_PATH,
        **serving.pod_annotations,
        CONFIG_CHECKSUM_ANNOTATION: config_checksum,
    }
    model_volumes, model_mounts, init_containers = _model_volumes(md, artifact)
    volumes = [
        {
            "name": "config",
            "projected": {
                "sources": [
                    {"configMap": {"name": names.model_config_name(md.name)}},
                    {"configMap": {"name": names.serving_config_name(md.name)}},
                ]
            },
        },
        empty_dir("tmp", "1Gi"),
        *model_volumes,
    ]
    metadata_path = f"/v1/models/{spec.model.name}/metadata"
    container: dict[str, Any] = {
        "name": "tfserving",
        "image": serving.image,
        "command": ["tensorflow_model_server"],
        "args": tfserving.server_args(serving),
        "ports": [
            {"name": "grpc", "containerPort": tfserving.GRPC_PORT, "protocol": "TCP"},
            {"name": "http", "containerPort": tfserving.REST_PORT, "protocol": "TCP"},
        ],
        "env": [e.to_api() for e in serving.env],
        "resources": serving.resources.to_api(),
        "securityContext": container_security_context(),
        "volumeMounts": [
            mount("config", tfserving.CONFIG_DIR, read_only=True),
            mount("tmp", "/tmp", read_only=False),
            *model_mounts,
        ],
        # The metadata endpoint answers 404 until a version is loaded (GET /v1/models/NAME says 200
        # while still LOADING), so it is what tells "ready to predict".
        "startupProbe": {**_probe(metadata_path), "periodSeconds": 5, "failureThreshold": 120},
        "readinessProbe": {**_probe(metadata_path), "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"tcpSocket": {"port": "grpc"}, "periodSeconds": 10, "failureThreshold": 3},
    }
    if not container["env"]:
        del container["env"]
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,  # TF Serving never talks to the API server
        "enableServiceLinks": False,
        "securityContext": pod_security_context(),
        "containers": [container],
        "volumes": volumes,
        "terminationGracePeriodSeconds": 30,
    }
    if init_containers:
        pod_spec["initContainers"] = init_containers
    if serving.node_selector:
        pod_spec["nodeSelector"] = dict(serving.node_selector)
    if serving.tolerations:
        pod_spec["tolerations"] = list(serving.tolerations)
    if serving.affinity:
        pod_spec["affinity"] = dict(serving.affinity)
    if serving.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in serving.image_pull_secrets]
    if serving.service_account_name:
        pod_spec["serviceAccountName"] = serving.service_account_name
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(md.name, SERVING)},
        "revisionHistoryLimit": 5,
        # Never drop below the current capacity while a new artifact rolls out.
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "template": {"metadata": {"labels": pod_labels, "annotations": pod_annotations}, "spec": pod_spec},
    }
    if not spec.autoscaling.enabled:
        # With autoscaling on, replicas belong to the HPA: leaving the field out of what we apply
        # means server-side apply never takes it back.
        deployment_spec["replicas"] = serving.replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(
            names.serving_name(md.name),
            md.namespace,
            labels,
            owner,
            {
                "modeldeploy.io/artifact": artifact.hash,
                "modeldeploy.io/model-version": str(artifact.version),
                REVISION_ANNOTATION: template_revision(deployment_spec["template"]),
                **WORKLOAD_CHECKOV_SKIPS,
            },
        ),
        "spec": deployment_spec,
    }


REVISION_LENGTH = 10


def template_revision(template: dict[str, Any]) -> str:
    """A short hash of a serving pod template, whichever track it is labelled for: two templates with
    the same revision run the same pods."""
    labels = {k: v for k, v in template.get("metadata", {}).get("labels", {}).items() if k != TRACK_LABEL}
    untracked = {**template, "metadata": {**template.get("metadata", {}), "labels": labels}}
    blob = json.dumps(untracked, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:REVISION_LENGTH]


def revision_of(deployment: dict[str, Any]) -> str:
    """The revision of a serving Deployment manifest we build: a new model version, a new optimization
    or any other change of the serving pods (image, resources, env...) is a new revision."""
    return template_revision(deployment["spec"]["template"])


def _canary_config(name: str, md_name: str) -> str:
    if name == names.model_config_name(md_name):
        return names.canary_model_config_name(md_name)
    if name == names.serving_config_name(md_name):
        return names.canary_serving_config_name(md_name)
    return name


def build_canary_configmaps(md: ModelDeployment, configmaps: list[Manifest]) -> list[Manifest]:
    """Copies of the serving ConfigMaps under the canary's names: the stable ones stay as they are while
    the canary runs, since a stable pod that restarts reads them again."""
    out = []
    for cm in configmaps:
        copied = copy.deepcopy(cm)
        copied["metadata"]["name"] = _canary_config(cm["metadata"]["name"], md.name)
        out.append(copied)
    return out


def build_canary_deployment(md: ModelDeployment, stable: Manifest, replicas: int) -> Manifest:
    """The canary Deployment of a rollout, from the stable Deployment we would apply: the same pods
    (same revision) labelled track canary, selected by the stable selector plus that label (so the
    stable Deployment's ReplicaSets never count them), reading the canary's copies of the ConfigMaps,
    at `replicas` pods whatever the HPA does (the canary follows the step's weight)."""
    canary = copy.deepcopy(stable)
    revision = revision_of(stable)
    meta = canary["metadata"]
    meta["name"] = names.canary_name(md.name)
    meta.setdefault("annotations", {})[REVISION_ANNOTATION] = revision
    spec = canary["spec"]
    spec["replicas"] = replicas
    spec["selector"] = {"matchLabels": {**spec["selector"]["matchLabels"], TRACK_LABEL: CANARY}}
    template = spec["template"]
    template["metadata"]["labels"][TRACK_LABEL] = CANARY
    # On the pods too: their restarts count against the canary only while they run this revision.
    template["metadata"].setdefault("annotations", {})[REVISION_ANNOTATION] = revision
    for volume in template["spec"]["volumes"]:
        for source in volume.get("projected", {}).get("sources", []):
            if "configMap" in source:
                source["configMap"]["name"] = _canary_config(source["configMap"]["name"], md.name)
    return canary
