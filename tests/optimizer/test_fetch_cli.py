"""`modeldeploy fetch`, the serving pods' init container for remote SavedModels."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from modeldeploy.cli import main
from modeldeploy.contract.failures import Failure
from modeldeploy.contract.sums import sha256_tree

pytestmark = pytest.mark.optimizer


def saved_model(folder: Path) -> Path:
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"graph")
    (folder / "variables" / "variables.index").write_bytes(b"index")
    return folder


def test_a_folder_lands_in_the_version_directory(tmp_path: Path) -> None:
    source = saved_model(tmp_path / "src" / "digits")
    dest = tmp_path / "models" / "digits" / "1"
    dest.parent.mkdir(parents=True)
    assert main(["fetch", f"--source=file://{source}", f"--dest={dest}", f"--sha256={sha256_tree(source)}"]) == 0
    assert (dest / "saved_model.pb").read_bytes() == b"graph"
    assert (dest / "variables" / "variables.index").is_file()
    assert not list(dest.parent.glob(".*partial"))


def test_an_archive_is_unpacked(tmp_path: Path) -> None:
    source = saved_model(tmp_path / "src" / "export")
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname="export")
    dest = tmp_path / "1"
    assert main(["fetch", f"--source=file://{archive}", f"--dest={dest}"]) == 0
    assert (dest / "saved_model.pb").is_file()


def test_failures_are_one_line_with_the_optimizer_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = saved_model(tmp_path / "src")
    dest = tmp_path / "1"
    assert main(["fetch", f"--source=file://{source}", f"--dest={dest}", "--sha256=" + "0" * 64]) == (
        Failure.CHECKSUM_MISMATCH.exit_code
    )
    assert (
        main(["fetch", f"--source=file://{tmp_path / 'missing'}", f"--dest={dest}"]) == Failure.FETCH_FAILED.exit_code
    )
    (tmp_path / "empty").mkdir()
    assert main(["fetch", f"--source=file://{tmp_path / 'empty'}", f"--dest={dest}"]) == (
        Failure.MODEL_LOAD_FAILED.exit_code
    )
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all(line.startswith("modeldeploy fetch: ") for line in errors)
    assert not dest.exists()
