"""Deterministic child names.

Every child name is a valid DNS-1035 label (the strictest rule, which Services impose: lower case,
starts with a letter, at most 63 characters) for every valid ModelDeployment name, including
63-character names and names that start with a digit. When a name has to be changed to fit, a
short hash of the original is appended so two different ModelDeployments never collide.
"""

from __future__ import annotations

import hashlib
import re

MAX_LEN = 63
_HASH_LEN = 8


def short_hash(text: str, length: int = _HASH_LEN) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def child_name(parent: str, suffix: str = "") -> str:
    """`parent-suffix` when that is already a valid DNS-1035 label, otherwise a shortened,
    prefixed form that keeps a hash of the parent name."""
    wanted = f"{parent}-{suffix}" if suffix else parent
    if re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", wanted) and len(wanted) <= MAX_LEN:
        return wanted
    base = re.sub(r"[^a-z0-9-]", "-", parent.lower())
    if not base[:1].isalpha():
        base = f"md-{base}"
    tail = f"-{short_hash(parent)}" + (f"-{suffix}" if suffix else "")
    base = base[: MAX_LEN - len(tail)].rstrip("-")
    return f"{base}{tail}"


def job_name(parent: str, artifact_hash: str) -> str:
    """One optimization Job per (ModelDeployment, artifact): a retry can never create a second."""
    return child_name(parent, f"opt-{artifact_hash[:10]}")


def prune_job_name(parent: str, artifact_hash: str) -> str:
    """One retention cleanup per (ModelDeployment, served artifact): it runs once when that artifact
    becomes served."""
    return child_name(parent, f"prune-{artifact_hash[:10]}")


def cleanup_job_name(parent: str, uid: str) -> str:
    """The cleanup after a delete: one per life of the ModelDeployment (its uid)."""
    return child_name(parent, f"cleanup-{uid[:8]}")


def serving_name(parent: str) -> str:
    """Deployment, Service, HPA and PDB share this name (they are different kinds)."""
    return child_name(parent)


def track_service_name(parent: str, track: str) -> str:
    """The Service of one rollout track (stable, canary), an HTTPRoute's backend."""
    return child_name(parent, track)


def model_config_name(parent: str) -> str:
    return child_name(parent, "model-config")


def serving_config_name(parent: str) -> str:
    return child_name(parent, "serving-config")


def canary_name(parent: str) -> str:
    """The canary Deployment of a rollout (issue 12)."""
    return child_name(parent, "canary")


def canary_model_config_name(parent: str) -> str:
    """The canary's own copy of the model config: the stable pods keep reading theirs (a stable pod
    that restarts mid-rollout must load the stable version, not the canary's)."""
    return child_name(parent, "canary-model-config")


def canary_serving_config_name(parent: str) -> str:
    return child_name(parent, "canary-serving-config")
