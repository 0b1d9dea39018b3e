"""Which artifact a spec asks for, and where it lives.

An artifact is the result of optimizing one model with one optimization spec. Its hash covers
exactly what changes the result (the model source, version and checksum, and the pruning,
quantization and evaluation settings; not resources or deadlines), so the Job that builds it has
one deterministic name, and a spec change that does not alter the result does not re-run it.

It also covers who fetched the source: the ModelDeployment's namespace and name, the credentials
Secret it names, and the artifact store. Two ModelDeployments with the same URIs but different
credentials (or namespaces) must never share a folder: one would become Ready on a model fetched
with the other's credentials, and one's artifact cleanup would remove what the other serves.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from modeldeploy.api import ModelDeployment
from modeldeploy.api.spec import (
    DEFAULT_MIN_SLICE_EXAMPLES,
    DEFAULT_TOP_K,
    Artifacts,
    Evaluation,
    ModelDeploymentSpec,
    Pruning,
    pvc_parts,
    uri_scheme,
)
from modeldeploy.contract.formats import ModelFormat
from modeldeploy.contract.layout import SIGNATURE_SUFFIX, pvc_path

MODELS_ROOT = "/models"


@dataclass(frozen=True)
class Artifact:
    """A servable model version on storage."""

    hash: str
    version: int
    optimized: bool  # False: the source SavedModel itself is served, no Job
    # Where the version folder is: pvc://CLAIM/PATH of `<base>/<version>`, or the source URI.
    location: str
    model_name: str
    # sha256 of the artifact's SHA256SUMS, as the optimizer reported it; serving pods verify it.
    manifest_sha256: str | None = None
    # The Secret whose signing.pub the serving pods verify the folder's model.sig with; None: unsigned.
    signing_key_secret: str | None = None

    @property
    def version_dir(self) -> str:
        """Inside a serving pod: TF Serving's `<base_path>/<version>`."""
        return f"{self.base_path}/{self.version}"

    @property
    def base_path(self) -> str:
        return f"{MODELS_ROOT}/{self.model_name}"


def _pruning_defaults(pruning: Pruning) -> set[str]:
    """Pruning fields added after the first release, when left at their default: a spec that does
    not use them keeps its artifact (and Job) name, so an upgraded operator does not re-optimize."""
    later = {"schedule": None, "keep_classifier_dense": False, "dense_block_size": 1}
    return {name for name, default in later.items() if getattr(pruning, name) == default}


# Evaluation fields added after the first release count only when set away from their default,
# so upgrading the operator does not re-optimize every model whose spec did not change.
_ADDED_EVALUATION_DEFAULTS: dict[str, Any] = {
    "top_k": DEFAULT_TOP_K,
    "max_slice_accuracy_drop": None,
    "min_slice_examples": DEFAULT_MIN_SLICE_EXAMPLES,
}


def _evaluation_key(evaluation: Evaluation) -> dict[str, Any]:
    dumped = evaluation.model_dump(mode="json")
    return {
        key: value
        for key, value in dumped.items()
        if key not in _ADDED_EVALUATION_DEFAULTS or value != _ADDED_EVALUATION_DEFAULTS[key]
    }


def artifact_hash(spec: ModelDeploymentSpec, name: str = "", namespace: str | None = None) -> str:
    """sha256 (16 hex digits) of the canonical JSON of what makes the artifact: the source and its
    identity (namespace, name, credentials Secret, artifact store) and the optimization settings."""
    opt = spec.optimization
    relevant: dict[str, Any] = {
        "model": spec.model.model_dump(include={"storage_uri", "format", "version", "sha256"}, mode="json"),
        "source": {
            "namespace": namespace or "",
            "name": name,
            "credentialsSecret": spec.model.credentials_secret or "",
            "artifacts": spec.artifacts_uri(name) if name else "",
        },
        "optimization": {
            "enabled": opt.enabled,
            "pruning": opt.pruning.model_dump(mode="json", exclude=_pruning_defaults(opt.pruning)),
            "quantization": opt.quantization.value,
            "evaluation": _evaluation_key(opt.evaluation),
        }
        if opt.enabled
        else {"enabled": False},
    }
    # Only when set, so that the artifacts of unsigned specs keep their hash (and their Job).
    if spec.model.signature is not None:
        relevant["modelSignature"] = spec.model.signature.to_api()
    if signing_key_secret(spec) is not None:
        relevant["signingKeySecret"] = signing_key_secret(spec)
    canonical = json.dumps(relevant, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def signing_key_secret(spec: ModelDeploymentSpec) -> str | None:
    """The Secret the published folder is signed with (the operator's default already applied)."""
    return spec.artifacts.signing_key_secret if spec.artifacts is not None else None


def with_signing_default(md: ModelDeployment, default_secret: str | None) -> ModelDeployment:
    """The ModelDeployment with the operator-wide signing Secret filled in where its spec names none."""
    spec = md.spec
    if default_secret is None or signing_key_secret(spec) is not None:
        return md
    artifacts = spec.artifacts or Artifacts(uri=spec.artifacts_uri(md.name))
    artifacts = artifacts.model_copy(update={"signing_key_secret": default_secret})
    return md.model_copy(update={"spec": spec.model_copy(update={"artifacts": artifacts})})


def signature_uri(spec: ModelDeploymentSpec) -> str | None:
    """Where the source model's signature is, with the documented default applied."""
    signature = spec.model.signature
    if signature is None:
        return None
    return signature.uri or spec.model.storage_uri.rstrip("/") + SIGNATURE_SUFFIX


def needs_job(spec: ModelDeploymentSpec) -> bool:
    """TF Serving reads only SavedModels (and TFLite files): keras/h5 always need the Job. So does a
    SavedModel whose signature must be verified or whose served copy must be signed: only the Job
    does either, so such a model is never served as is."""
    signed = spec.model.signature is not None or signing_key_secret(spec) is not None
    return spec.optimization.enabled or spec.model.format != ModelFormat.SAVEDMODEL or signed


def desired_artifact(name: str, spec: ModelDeploymentSpec, namespace: str | None = None) -> Artifact:
    """The artifact the current spec asks for."""
    digest = artifact_hash(spec, name, namespace)
    if not needs_job(spec):
        return Artifact(
            digest, spec.model.version, optimized=False, location=spec.model.storage_uri, model_name=spec.model.name
        )
    store = spec.artifacts_uri(name)
    return Artifact(
        digest,
        spec.model.version,
        optimized=True,
        location=f"{store}/{digest}/{spec.model.version}",
        model_name=spec.model.name,
        signing_key_secret=signing_key_secret(spec),
    )


def output_base(name: str, spec: ModelDeploymentSpec, namespace: str | None = None) -> str:
    """Inside the Job's pod: the folder the optimizer writes `<version>/` into."""
    claim, prefix = pvc_parts(spec.artifacts_uri(name))
    return pvc_path(claim, prefix, artifact_hash(spec, name, namespace))


def pvc_mount_path(claim: str) -> str:
    return pvc_path(claim)


def claims_read(spec: ModelDeploymentSpec) -> list[str]:
    """PersistentVolumeClaims the optimizer reads from (model and datasets)."""
    uris = [
        spec.model.storage_uri,
        spec.optimization.pruning.train_data_uri,
        spec.optimization.evaluation.dataset_uri,
        signature_uri(spec),
    ]
    return sorted({pvc_parts(u)[0] for u in uris if u and uri_scheme(u) == "pvc"})
