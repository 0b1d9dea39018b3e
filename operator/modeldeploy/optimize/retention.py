"""Removing old artifact folders from the claim: what `modeldeploy prune-artifacts` does.

The operator cannot see the claim's files, so it runs this in a small Job (the optimizer's image)
with the artifacts claim mounted: after a new artifact becomes served (keep what serves, what is
being built, and the `retain` newest others), and once after the ModelDeployment is deleted (keep
nothing of what that object built). Only folders whose owner file names the ModelDeployment are
candidates: a folder without one (written before owner files existed, or by hand) or of another
ModelDeployment sharing the store is never touched. `select_removals` decides, purely.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from modeldeploy.contract.owner import ArtifactOwner, read_owner


@dataclass(frozen=True)
class ArtifactFolder:
    """One `<store>/<hash>/` folder as the pruner sees it."""

    name: str  # the artifact hash
    owner: ArtifactOwner | None
    modified: float  # mtime: a version published into it, or its owner file rewritten


def select_removals(
    folders: Iterable[ArtifactFolder],
    owner: ArtifactOwner,
    keep: Sequence[str],
    retain: int,
    *,
    this_life_only: bool = False,
) -> list[str]:
    """The folders to remove: this ModelDeployment's (by namespace and name; with `this_life_only`,
    also by uid), not in `keep`, beyond the `retain` most recently modified. Sorted by name."""
    candidates = [
        f
        for f in folders
        if f.owner is not None
        and f.owner.same_object(owner)
        and (not this_life_only or f.owner.uid == owner.uid)
        and f.name not in keep
    ]
    candidates.sort(key=lambda f: (f.modified, f.name), reverse=True)
    return sorted(f.name for f in candidates[max(retain, 0) :])


def scan(root: Path) -> list[ArtifactFolder]:
    """The artifact folders under `root` (hidden and non-folder entries are not artifacts)."""
    if not root.is_dir():
        return []
    return [
        ArtifactFolder(entry.name, read_owner(entry), entry.stat().st_mtime)
        for entry in sorted(root.iterdir())
        if entry.is_dir() and not entry.is_symlink() and not entry.name.startswith(".")
    ]


def prune(
    root: Path,
    owner: ArtifactOwner,
    keep: Sequence[str],
    retain: int,
    *,
    this_life_only: bool = False,
    remove_empty_root: bool = False,
) -> list[str]:
    """Remove what `select_removals` picks; returns the removed folder names."""
    removed = []
    for name in select_removals(scan(root), owner, keep, retain, this_life_only=this_life_only):
        shutil.rmtree(root / name)
        removed.append(name)
    if remove_empty_root and root.is_dir() and not any(root.iterdir()):
        os.rmdir(root)
    return removed
