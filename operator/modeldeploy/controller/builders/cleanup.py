"""The artifact cleanup Jobs: `modeldeploy prune-artifacts` with the artifacts claim mounted.

The operator never sees the claim's files, so a small Job in the optimizer's image removes old
artifact folders:
- the retention Job, owned by the ModelDeployment, once per served artifact: keeps what serves,
  what the spec asks for, what the Deployment still runs, and the `spec.artifacts.retain` newest
  others. It stays (finished) while that artifact serves, so it never runs twice.
- the cleanup after a delete: created when the operator sees the ModelDeployment's deletion, with
  no owner reference (one to the deleted object would have it garbage-collected before it runs)
  and a TTL, so it removes itself (and its pod) ten minutes after it finishes. No finalizer: a
  deletion is never held up by the operator; if the operator is not running when the object is
  deleted, its folders stay (README says how to remove them by hand).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from modeldeploy.api import ModelDeployment
from modeldeploy.api.spec import pvc_parts
from modeldeploy.contract.layout import pvc_path
from modeldeploy.contract.owner import owner_flag
from modeldeploy.controller.builders import names
from modeldeploy.controller.builders.artifacts import pvc_mount_path
from modeldeploy.controller.builders.job import artifact_owner
from modeldeploy.controller.builders.labels import (
    ARTIFACT_CLEANUP,
    WORKLOAD_CHECKOV_SKIPS,
    Owner,
    child_labels,
    metadata,
)
from modeldeploy.controller.builders.manifest import Manifest
from modeldeploy.controller.builders.security import container_security_context, pod_security_context
from modeldeploy.controller.builders.volumes import mount, pvc_volume

CLEANUP_DEADLINE_SECONDS = 600
CLEANUP_TTL_SECONDS = 600  # the delete cleanup removes itself this long after it finished
CLEANUP_RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}}


def _cleanup_job(md: ModelDeployment, name: str, args: list[str], owner: Owner | None) -> Manifest:
    claim, prefix = pvc_parts(md.spec.artifacts_uri(md.name))
    volume = pvc_volume(claim, read_only=False)
    labels = child_labels(md.name, ARTIFACT_CLEANUP, md.spec.model.version)
    container: dict[str, Any] = {
        "name": "prune-artifacts",
        "image": md.spec.optimization.image,
        "command": ["modeldeploy"],
        "args": ["prune-artifacts", f"--root={pvc_path(claim, prefix)}", *args],
        "resources": CLEANUP_RESOURCES,
        "securityContext": container_security_context(),
        "volumeMounts": [mount(volume["name"], pvc_mount_path(claim), read_only=False)],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(),
        "containers": [container],
        "volumes": [volume],
    }
    serving = md.spec.serving
    if serving.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in serving.image_pull_secrets]
    if serving.node_selector:
        pod_spec["nodeSelector"] = dict(serving.node_selector)
    if serving.tolerations:
        pod_spec["tolerations"] = list(serving.tolerations)
    spec: dict[str, Any] = {
        "backoffLimit": 2,
        "activeDeadlineSeconds": CLEANUP_DEADLINE_SECONDS,
        "template": {"metadata": {"labels": labels}, "spec": pod_spec},
    }
    if owner is None:
        spec["ttlSecondsAfterFinished"] = CLEANUP_TTL_SECONDS
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(name, md.namespace, labels, owner, dict(WORKLOAD_CHECKOV_SKIPS)),
        "spec": spec,
    }


def build_prune_job(md: ModelDeployment, served_hash: str, keep: Iterable[str], owner: Owner | None) -> Manifest:
    """The retention Job for the artifact that just became served."""
    kept = sorted({served_hash, *keep} - {""})
    args = [
        f"--owner={owner_flag(artifact_owner(md).model_copy(update={'uid': ''}))}",
        *(f"--keep={h}" for h in kept),
        f"--retain={md.spec.artifacts_retain}",
    ]
    return _cleanup_job(md, names.prune_job_name(md.name, served_hash), args, owner)


def build_delete_cleanup_job(md: ModelDeployment) -> Manifest:
    """The cleanup after the ModelDeployment was deleted: every folder this life of it built goes,
    and the store folder itself when nothing else is left in it. Owned by nothing (see above)."""
    uid = md.metadata.uid or ""
    args = [f"--owner={owner_flag(artifact_owner(md))}", "--retain=0", "--this-life-only", "--remove-empty-root"]
    return _cleanup_job(md, names.cleanup_job_name(md.name, uid), args, None)
