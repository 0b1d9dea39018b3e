"""Publishing a finished version folder atomically into TF Serving's layout, `<output>/<version>/`.

TF Serving polls the base path and loads any all-digit folder it finds, so a half-copied folder
must never carry the version's name. The bundle is copied into a hidden staging folder next to
the target (`.<version>.partial-XXXX`, same filesystem, ignored by TF Serving), checked against its
SHA256SUMS, flushed to disk, made readable to the serving user, and only then renamed to
`<version>` in one rename(2). On any failure the staging folder is removed.

An existing version folder is never replaced: a version TF Serving may be serving is immutable,
and replacing a folder cannot be atomic (the old one would have to vanish first). The run fails
with VersionExists instead; pick a new version. Staging folders left by a killed run of the same
version are removed before starting.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from modeldeploy.contract import sums
from modeldeploy.contract.failures import Failure
from modeldeploy.optimize.errors import OptimizeError


def staging_prefix(version: int) -> str:
    return f".{version}.partial-"


def verify_sums(folder: Path) -> None:
    """Raise OSError naming the files that differ from the folder's SHA256SUMS."""
    found = sums.problems(folder)
    if found:
        raise OSError(f"copy differs from SHA256SUMS: {'; '.join(found)[:300]}")


def _fsync_tree(root: Path) -> None:
    for directory, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(directory, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(directory))


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_readable(root: Path) -> None:
    # mkdtemp makes the folder 0700; TF Serving often runs as another user.
    for directory, _, files in os.walk(root):
        os.chmod(directory, 0o755)
        for name in files:
            os.chmod(os.path.join(directory, name), 0o644)


def _copy_file(source: str, destination: str) -> object:
    return shutil.copy2(source, destination)


def check_target(output: Path, version: int) -> Path:
    """Fail early (before any heavy work) when the version folder exists already."""
    target = output / str(version)
    if target.exists() or target.is_symlink():
        raise OptimizeError(
            Failure.VERSION_EXISTS,
            f"{target} exists already; versions are immutable: choose another --version or remove it",
        )
    if output.exists() and not output.is_dir():
        raise OptimizeError(Failure.EXPORT_FAILED, f"--output {output} is not a folder")
    return target


def remove_stale_staging(output: Path, version: int) -> list[Path]:
    removed = []
    if output.is_dir():
        for stale in output.glob(f"{staging_prefix(version)}*"):
            shutil.rmtree(stale, ignore_errors=True)
            removed.append(stale)
    return removed


def publish(bundle: Path, output: Path, version: int) -> Path:
    """Copy the bundle (with its SHA256SUMS) to `<output>/<version>` atomically; return that path."""
    target = check_target(output, version)
    staging: Path | None = None
    try:
        output.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=staging_prefix(version), dir=output))
        shutil.copytree(bundle, staging, dirs_exist_ok=True, copy_function=_copy_file)
        verify_sums(staging)
        _make_readable(staging)
        _fsync_tree(staging)
        check_target(output, version)  # someone may have published meanwhile
        os.rename(staging, target)
        staging = None
        _fsync_dir(output)
    except OptimizeError:
        raise
    except OSError as exc:
        raise OptimizeError(Failure.EXPORT_FAILED, f"cannot write {target}: {exc}") from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return target
