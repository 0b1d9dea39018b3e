"""Who an artifact folder belongs to: written by the optimizer, read by the artifact cleanup.

The artifact store may be shared (several ModelDeployments can name the same artifacts.uri), and the
cleanup runs in a pod that cannot ask the API server, so each `<store>/<hash>/` folder says whose it
is in `OWNER_FILE`. The uid tells two lives of one name apart: the cleanup after a delete removes
only what the deleted object built, never what a re-created one with the same name reuses.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from modeldeploy.contract.layout import OWNER_FILE


class ArtifactOwner(BaseModel):
    model_config = ConfigDict(frozen=True)

    namespace: str
    name: str
    uid: str = ""

    def same_object(self, other: ArtifactOwner) -> bool:
        """The same ModelDeployment name (any life of it)."""
        return (self.namespace, self.name) == (other.namespace, other.name)


def parse_owner_flag(value: str) -> ArtifactOwner | None:
    """`NAMESPACE/NAME[/UID]` (the flag the operator passes) -> the owner; None when malformed."""
    parts = value.split("/")
    if len(parts) not in (2, 3) or not all(parts[:2]):
        return None
    return ArtifactOwner(namespace=parts[0], name=parts[1], uid=parts[2] if len(parts) == 3 else "")


def owner_flag(owner: ArtifactOwner) -> str:
    return f"{owner.namespace}/{owner.name}" + (f"/{owner.uid}" if owner.uid else "")


def write_owner(folder: Path, owner: ArtifactOwner) -> None:
    """Create `folder` if needed and (re)write its owner file; the newest writer owns it."""
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / f".{OWNER_FILE}.partial"
    staging.write_text(owner.model_dump_json() + "\n", encoding="utf-8")
    staging.replace(folder / OWNER_FILE)


def read_owner(folder: Path) -> ArtifactOwner | None:
    """The owner a folder declares; None when it has no (readable, valid) owner file."""
    try:
        return ArtifactOwner.model_validate(json.loads((folder / OWNER_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, ValidationError):
        return None
