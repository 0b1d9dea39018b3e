"""Volumes shared by the Job and the serving pods: how a storage URI becomes a mount."""

from __future__ import annotations

from typing import Any

from modeldeploy.controller.builders.names import child_name


def volume_name(kind: str, ident: str) -> str:
    """A valid volume name (DNS-1123 label) for any claim or path."""
    return child_name(f"{kind}-{ident}"[:40].lower().strip("-") or kind)


def pvc_volume(claim: str, *, read_only: bool) -> dict[str, Any]:
    return {
        "name": volume_name("pvc", claim),
        "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only},
    }


def host_path_volume(path: str) -> dict[str, Any]:
    """file:// URIs (local development only: hostPath is not allowed by the restricted level)."""
    return {"name": volume_name("host", path.replace("/", "-")), "hostPath": {"path": path}}


# Read by the pod's group only (fsGroup): keys are no business of other users of the node.
KEY_FILE_MODE = 0o440


def key_file_volume(name: str, *, secret: str | None, config_map: str | None, key: str, path: str) -> dict[str, Any]:
    """One key of a Secret (or ConfigMap) as the file `path` of a read-only volume: only that key,
    so a pod that needs a public key never sees the private key beside it."""
    items = [{"key": key, "path": path}]
    if secret is not None:
        return {"name": name, "secret": {"secretName": secret, "items": items, "defaultMode": KEY_FILE_MODE}}
    return {"name": name, "configMap": {"name": config_map, "items": items, "defaultMode": KEY_FILE_MODE}}


def empty_dir(name: str, size_limit: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if size_limit:
        spec["sizeLimit"] = size_limit
    return {"name": name, "emptyDir": spec}


def mount(name: str, path: str, *, read_only: bool, sub_path: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "mountPath": path}
    if read_only:  # the API server drops readOnly: false, so writing it would look like drift forever
        out["readOnly"] = True
    if sub_path:
        out["subPath"] = sub_path
    return out
