"""Publishing a finished version folder atomically into TF Serving's layout, `<output>/<version>/`.

TF Serving polls the base path and loads any all-digit folder it finds, so a half-copied folder
must never carry the version's name. The bundle is copied into a hidden staging folder next to
the target (`.<version>.partial-XXXX`, same filesystem, ignored by TF Serving), checked against its
SHA256SUMS, flushed to disk, made readable to the serving user, and only then renamed to
`<version>` in one rename. On any failure the staging folder is removed.

An existing version folder is never replaced: a version TF Serving may be serving is immutable,
and replacing a folder cannot be atomic (the old one would have to vanish first). The run fails
with VersionExists instead; pick a new version. Two runs publishing the same version at once both
pass the early checks; the final rename claims the name without replacing anything
(renameat2 RENAME_NOREPLACE on Linux; elsewhere rename(2), which refuses a non-empty target), so
exactly one wins and the other fails with VersionExists, its staging folder removed. Staging
folders left by a killed run of the same version are removed before starting; a running run's are
not (each run holds a flock on its staging folder while it publishes).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

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


def check_output(output: Path) -> None:
    """Fail early when --output cannot be created or written: a file in its path, no permission."""
    existing = output
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OptimizeError(Failure.EXPORT_FAILED, f"--output {output}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OptimizeError(Failure.EXPORT_FAILED, f"--output {output}: {existing} is not writable by this user")


_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_TAKEN = (errno.EEXIST, errno.ENOTEMPTY)


def _renameat2() -> Any:
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # not glibc >= 2.28, or not Linux
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def _rename_no_replace(source: Path, target: Path) -> None:
    """Rename, failing with EEXIST/ENOTEMPTY when the target exists, never replacing it."""
    renameat2 = _renameat2()
    if renameat2 is not None:
        if renameat2(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS):  # EINVAL: this filesystem lacks the flag
            raise OSError(code, os.strerror(code), str(source), None, str(target))
    os.rename(source, target)


def _claim(staging: Path, target: Path) -> None:
    try:
        _rename_no_replace(staging, target)
    except OSError as exc:
        if exc.errno in _TAKEN:
            raise OptimizeError(
                Failure.VERSION_EXISTS,
                f"{target} appeared while this run was publishing it (another run of the same version); "
                "versions are immutable: choose another --version",
            ) from None
        raise


def _in_use(folder: Path) -> bool:
    """Whether a live run holds the staging folder's lock (a killed run's lock died with it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # no flock on this filesystem: a leftover, as before
        return False
    finally:
        os.close(fd)
    return False


def remove_stale_staging(output: Path, version: int) -> list[Path]:
    """Remove staging folders of this version left by killed runs; a running run's are left alone."""
    removed = []
    if output.is_dir():
        for stale in output.glob(f"{staging_prefix(version)}*"):
            if _in_use(stale):
                continue
            shutil.rmtree(stale, ignore_errors=True)
            removed.append(stale)
    return removed


def _lock(folder: Path) -> int:
    """Hold an exclusive flock on the folder until the fd is closed, so `remove_stale_staging` of a
    concurrent run of the same version leaves it alone; -1 when the filesystem has no flock."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return -1
    return fd


def publish(bundle: Path, output: Path, version: int) -> Path:
    """Copy the bundle (with its SHA256SUMS) to `<output>/<version>` atomically; return that path."""
    target = check_target(output, version)
    staging: Path | None = None
    lock = -1
    try:
        output.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=staging_prefix(version), dir=output))
        lock = _lock(staging)
        shutil.copytree(bundle, staging, dirs_exist_ok=True, copy_function=_copy_file)
        verify_sums(staging)
        _make_readable(staging)
        _fsync_tree(staging)
        check_target(output, version)  # someone may have published meanwhile: the usual message
        _claim(staging, target)  # and if that happens right now, exactly one run gets the name
        staging = None
        _fsync_dir(output)
    except OptimizeError:
        raise
    except OSError as exc:
        raise OptimizeError(Failure.EXPORT_FAILED, f"cannot write {target}: {exc}") from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if lock >= 0:
            os.close(lock)
    return target
