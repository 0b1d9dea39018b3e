"""`modeldeploy verify`: what the serving pods' init container accepts and refuses."""

from __future__ import annotations

import hashlib
from pathlib import Path

from modeldeploy.cli import main
from modeldeploy.cli.verify import EXIT_TAMPERED
from modeldeploy.contract.sums import problems


def published(folder: Path) -> str:
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"graph")
    (folder / "variables" / "variables.index").write_bytes(b"index")
    lines = "".join(
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(folder).as_posix()}\n"
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    )
    (folder / "SHA256SUMS").write_text(lines)
    return hashlib.sha256(lines.encode()).hexdigest()


def test_an_untouched_folder_passes(tmp_path: Path) -> None:
    digest = published(tmp_path / "1")
    assert problems(tmp_path / "1", digest) == []
    assert (
        main(
            [
                "verify",
                "--dir",
                str(tmp_path / "1"),
                "--manifest-sha256",
                digest,
                "--termination-message-path",
                str(tmp_path / "t"),
            ]
        )
        == 0
    )


def test_changed_added_and_missing_files_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "1"
    digest = published(folder)
    (folder / "saved_model.pb").write_bytes(b"evil graph")
    (folder / "extra.so").write_bytes(b"x")
    (folder / "variables" / "variables.index").unlink()
    assert problems(folder, digest) == [
        "extra.so: not in SHA256SUMS (added after publishing)",
        "variables/variables.index: missing",
        "saved_model.pb: content changed",
    ]
    term = tmp_path / "termination-log"
    assert (
        main(["verify", "--dir", str(folder), "--manifest-sha256", digest, "--termination-message-path", str(term)])
        == EXIT_TAMPERED
    )
    assert term.read_text().startswith("ArtifactTampered:")


def test_a_rewritten_manifest_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "1"
    digest = published(folder)
    (folder / "SHA256SUMS").write_text("0" * 64 + "  saved_model.pb\n")
    assert problems(folder, digest)[0].endswith(f"differs from the published digest {digest[:12]}...")
    assert problems(tmp_path / "nowhere", digest) == [f"{tmp_path / 'nowhere' / 'SHA256SUMS'} is missing"]
