"""Labels and owner references every child carries.

The standard app.kubernetes.io labels make children findable by ordinary tools; the
modeldeploy.io labels are what the operator selects on (they never change for a ModelDeployment,
so a Deployment selector built from them stays valid forever).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from modeldeploy.api import API_VERSION, KIND, ModelDeployment
from modeldeploy.controller.builders.names import serving_name

MODEL_DEPLOYMENT_LABEL = "modeldeploy.io/model-deployment"
ARTIFACT_LABEL = "modeldeploy.io/artifact"
MODEL_VERSION_ANNOTATION = "modeldeploy.io/model-version"
# On a serving Deployment (and a canary's pods): the revision its pod template is, see `revision_of`.
REVISION_ANNOTATION = "modeldeploy.io/revision"
# On every child the operator writes (in its metadata, never in a pod template: a new value must not
# restart pods): a short hash of the manifest as applied, see `applied_digest`.
APPLIED_DIGEST_ANNOTATION = "modeldeploy.io/applied-digest"
APPLIED_DIGEST_LENGTH = 16
COMPONENT_LABEL = "app.kubernetes.io/component"
MANAGED_BY = "modeldeploy-operator"
SERVING = "serving"
OPTIMIZER = "optimizer"
ARTIFACT_CLEANUP = "artifact-cleanup"
# Which side of a rollout a serving pod belongs to: the stable Deployment's or a canary's (issue 12);
# the track Services of rollout.trafficRouting select on it (the main Service selects both tracks).
# Stable pods carry it whatever the strategy, so that switching strategy never rolls the pods.
TRACK_LABEL = "modeldeploy.io/track"
STABLE = "stable"
CANARY = "canary"


@dataclass(frozen=True)
class Owner:
    """The ModelDeployment children point at, for garbage collection."""

    name: str
    uid: str
    api_version: str = API_VERSION
    kind: str = KIND

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


# checkov reads suppressions from these annotations; each says why the check does not apply.
WORKLOAD_CHECKOV_SKIPS = {
    "checkov.io/skip1": "CKV_K8S_43=the image comes from the ModelDeployment (serving.image, optimization.image); "
    "pin a digest there",
    "checkov.io/skip2": "CKV_K8S_15=imagePullPolicy is left to the cluster default (IfNotPresent for a tag, Always "
    "for :latest); see CKV_K8S_43",
}


def selector_labels(name: str, component: str) -> dict[str, str]:
    return {MODEL_DEPLOYMENT_LABEL: name, COMPONENT_LABEL: component}


def child_labels(name: str, component: str, model_version: int) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "tensorflow-serving" if component == SERVING else "modeldeploy-optimizer",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/version": str(model_version),
        "app.kubernetes.io/part-of": "modeldeploy",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        **selector_labels(name, component),
    }


def metadata(
    name: str,
    namespace: str | None,
    labels: dict[str, str],
    owner: Owner | None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    meta["labels"] = dict(labels)
    if annotations:
        meta["annotations"] = dict(annotations)
    if owner is not None:
        meta["ownerReferences"] = [owner.reference()]
    return meta


def serving_metadata(
    md: ModelDeployment, owner: Owner | None, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    """Metadata of the children named after the ModelDeployment (Service, HPA, PDB, NetworkPolicy)."""
    labels = child_labels(md.name, SERVING, md.spec.model.version)
    return metadata(serving_name(md.name), md.namespace, labels, owner, annotations)


def applied_digest(manifest: dict[str, Any]) -> str:
    """A short stable hash of a manifest, computed without its own annotation. The drift check only
    asks whether every field we set is live; a field we no longer set (removed from the spec) changes
    this digest instead, so the child is applied again and the field removed."""
    meta = dict(manifest.get("metadata", {}))
    annotations = {k: v for k, v in meta.get("annotations", {}).items() if k != APPLIED_DIGEST_ANNOTATION}
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    blob = json.dumps({**manifest, "metadata": meta}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:APPLIED_DIGEST_LENGTH]


def with_applied_digest(manifest: dict[str, Any], applied: dict[str, Any] | None = None) -> dict[str, Any]:
    """`manifest` annotated with the digest of `applied` (itself by default): a child created from
    another manifest than the one applied later (a Deployment created with the HPA's minimum of
    replicas) carries the applied one's digest, so the create is not followed by an apply."""
    digest = applied_digest(manifest if applied is None else applied)
    meta = manifest["metadata"]
    annotations = {**meta.get("annotations", {}), APPLIED_DIGEST_ANNOTATION: digest}
    return {**manifest, "metadata": {**meta, "annotations": annotations}}
