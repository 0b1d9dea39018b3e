"""`modeldeploy prune-artifacts`: which artifact folders the cleanup Jobs keep (pure), and the
command on a real folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from modeldeploy.cli import main
from modeldeploy.contract.owner import ArtifactOwner, write_owner
from modeldeploy.optimize.retention import ArtifactFolder, select_removals

OURS = ArtifactOwner(namespace="ml", name="digits", uid="uid-2")
EARLIER_LIFE = ArtifactOwner(namespace="ml", name="digits", uid="uid-1")
OTHER = ArtifactOwner(namespace="ml", name="other", uid="uid-9")


def folder(name: str, owner: ArtifactOwner | None, modified: float) -> ArtifactFolder:
    return ArtifactFolder(name, owner, modified)


FOLDERS = [
    folder("a1", OURS, 1),
    folder("a2", OURS, 2),
    folder("a3", EARLIER_LIFE, 3),
    folder("a4", OURS, 4),
    folder("a5", OURS, 5),  # served
    folder("b1", OTHER, 0),  # another ModelDeployment sharing the store
    folder("legacy", None, 0),  # no owner file: never ours to remove
]


@pytest.mark.parametrize(
    ("keep", "retain", "removed"),
    [
        (["a5"], 3, ["a1"]),  # keep a5, then the 3 newest of a4, a3, a2, a1
        (["a5"], 0, ["a1", "a2", "a3", "a4"]),
        (["a5", "a1"], 1, ["a2", "a3"]),  # kept hashes never count against retain
        (["a5"], 10, []),
        ([], 0, ["a1", "a2", "a3", "a4", "a5"]),
    ],
)
def test_retention_keeps_what_serves_and_the_newest_others(keep: list[str], retain: int, removed: list[str]) -> None:
    assert select_removals(FOLDERS, OURS, keep, retain) == removed


def test_after_a_delete_only_that_life_s_folders_go() -> None:
    """A re-created ModelDeployment with the same name may reuse a folder: it rewrote the owner file."""
    assert select_removals(FOLDERS, EARLIER_LIFE, [], 0, this_life_only=True) == ["a3"]


def _artifact(root: Path, name: str, owner: ArtifactOwner | None, age: int) -> Path:
    path = root / name
    if owner is not None:
        write_owner(path, owner)
    (path / "1").mkdir(parents=True)
    (path / "1" / "saved_model.pb").write_bytes(b"x")
    os.utime(path, (1_700_000_000 + age, 1_700_000_000 + age))
    return path


def test_the_command_on_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "modeldeploy" / "digits"
    for index, name in enumerate(["h1", "h2", "h3", "h4"]):
        _artifact(root, name, OURS, index)
    _artifact(root, "theirs", OTHER, 0)
    _artifact(root, "legacy", None, 0)
    (root / ".1.partial-x").mkdir()  # a staging folder is not an artifact

    code = main(["prune-artifacts", f"--root={root}", "--owner=ml/digits", "--keep=h4", "--retain=1"])
    assert code == 0
    assert sorted(p.name for p in root.iterdir()) == [".1.partial-x", "h3", "h4", "legacy", "theirs"]
    assert "ml/digits: removed 2 artifact folder(s)" in capsys.readouterr().out
    assert json.loads((root / "h4" / "owner.json").read_text())["uid"] == "uid-2"

    # the cleanup after a delete: everything this life built, and the store when it is left empty
    code = main(
        [
            "prune-artifacts",
            f"--root={root}",
            "--owner=ml/digits/uid-2",
            "--retain=0",
            "--this-life-only",
            "--remove-empty-root",
        ]
    )
    assert code == 0
    assert sorted(p.name for p in root.iterdir()) == [".1.partial-x", "legacy", "theirs"]


def test_bad_flags_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prune-artifacts", f"--root={tmp_path}", "--owner=digits", "--retain=1"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--owner must be NAMESPACE/NAME" in err
    assert main(["prune-artifacts", f"--root={tmp_path}", "--owner=ml/digits", "--this-life-only"]) == 2
