"""The Pod Security "restricted" settings every pod we create carries.

Neither TF Serving's image nor ours needs root, extra capabilities or a writable root file
system; writable places are emptyDirs mounted where the programs write (/tmp).
"""

from __future__ import annotations

from typing import Any

# Above 10000 so it cannot collide with a user of the node (checkov CKV_K8S_40); the optimizer
# image's USER is the same, TF Serving's image sets none.
RUN_AS_USER = 10001


def pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
