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
