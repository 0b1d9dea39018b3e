"""Which artifact a spec asks for, and where it lives.

An artifact is the result of optimizing one model with one optimization spec. Its hash covers
exactly what changes the result (the model source, version and checksum, and the pruning,
quantization and evaluation settings; not resources or deadlines), so the Job that builds it has
one deterministic name, and a spec change that does not alter the result does not re-run it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from modeldeploy.api.spec import ModelDeploymentSpec, Pruning, pvc_parts, uri_scheme
from modeldeploy.contract.formats import ModelFormat
from modeldeploy.contract.layout import pvc_path

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


def artifact_hash(spec: ModelDeploymentSpec) -> str:
    opt = spec.optimization
    relevant: dict[str, Any] = {
        "model": spec.model.model_dump(include={"storage_uri", "format", "version", "sha256"}, mode="json"),
        "optimization": {
            "enabled": opt.enabled,
            "pruning": opt.pruning.model_dump(mode="json", exclude=_pruning_defaults(opt.pruning)),
            "quantization": opt.quantization.value,
            "evaluation": opt.evaluation.model_dump(mode="json"),
        }
        if opt.enabled
        else {"enabled": False},
    }
    canonical = json.dumps(relevant, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def needs_job(spec: ModelDeploymentSpec) -> bool:
    """TF Serving reads only SavedModels (and TFLite files): keras/h5 always need the Job."""
    return spec.optimization.enabled or spec.model.format != ModelFormat.SAVEDMODEL


def desired_artifact(name: str, spec: ModelDeploymentSpec) -> Artifact:
    """The artifact the current spec asks for."""
    digest = artifact_hash(spec)
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
    )


def output_base(name: str, spec: ModelDeploymentSpec) -> str:
    """Inside the Job's pod: the folder the optimizer writes `<version>/` into."""
    claim, prefix = pvc_parts(spec.artifacts_uri(name))
    return pvc_path(claim, prefix, artifact_hash(spec))


def pvc_mount_path(claim: str) -> str:
    return pvc_path(claim)


def claims_read(spec: ModelDeploymentSpec) -> list[str]:
    """PersistentVolumeClaims the optimizer reads from (model and datasets)."""
    uris = [
        spec.model.storage_uri,
        spec.optimization.pruning.train_data_uri,
        spec.optimization.evaluation.dataset_uri,
    ]
    return sorted({pvc_parts(u)[0] for u in uris if u and uri_scheme(u) == "pvc"})
