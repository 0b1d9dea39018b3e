"""SHA256SUMS: the manifest of a published version folder, written by the optimizer and checked by
the serving pods' verifier (and by the optimizer itself before it publishes or reuses a folder).

One implementation for both sides, so they can never disagree on the format: one line per file,
`<sha256>  <relative path>` (what `sha256sum` prints and `sha256sum -c` checks), paths sorted
bytewise like `LC_ALL=C sort`, the SHA256SUMS file itself not listed. The digest of the SHA256SUMS
file (the "manifest sha256") names the whole folder: the operator passes it to the serving pods.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from modeldeploy.contract.layout import SUMS_FILE

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tree_manifest(root: Path, exclude: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """(relative path, sha256) of every file under root, sorted bytewise by path."""
    entries = []
    for path in root.rglob("*"):
        if path.is_file():
            relative = path.relative_to(root).as_posix()
            if relative not in exclude:
                entries.append((relative, sha256_file(path)))
    return sorted(entries, key=lambda entry: entry[0].encode())


def manifest_text(entries: list[tuple[str, str]]) -> str:
    """The lines `sha256sum` prints (and `sha256sum -c` checks)."""
    return "".join(f"{digest}  {relative}\n" for relative, digest in entries)


def sha256_tree(root: Path) -> str:
    """One digest for a whole folder: the sha256 of its manifest text (every file listed)."""
    return hashlib.sha256(manifest_text(tree_manifest(root)).encode()).hexdigest()


def write_sums(folder: Path) -> dict[str, str]:
    """Write SHA256SUMS for every file of the folder; returns relative path -> digest."""
    entries = tree_manifest(folder, exclude=frozenset({SUMS_FILE}))
    (folder / SUMS_FILE).write_text(manifest_text(entries), encoding="utf-8")
    return dict(entries)


def read_sums(folder: Path) -> dict[str, str]:
    """Relative path -> digest as listed in the folder's SHA256SUMS; ValueError on a malformed line."""
    listed: dict[str, str] = {}
    for number, line in enumerate((folder / SUMS_FILE).read_text(encoding="utf-8").splitlines(), 1):
        digest, separator, relative = line.partition("  ")
        if not separator or len(digest) != 64 or not relative:
            raise ValueError(f"{folder / SUMS_FILE} line {number} is not '<sha256>  <path>'")
        listed[relative] = digest
    return listed


def problems(folder: Path, manifest_sha256: str | None = None) -> list[str]:
    """What differs between the folder and its SHA256SUMS; empty when it is exactly what was published.

    With `manifest_sha256`, SHA256SUMS itself must also have that digest (a folder rewritten with a
    fresh, consistent SHA256SUMS is still refused).
    """
    sums = folder / SUMS_FILE
    if not sums.is_file():
        return [f"{sums} is missing"]
    if manifest_sha256 is not None and sha256_file(sums) != manifest_sha256:
        return [f"{sums} differs from the published digest {manifest_sha256[:12]}..."]
    try:
        listed = read_sums(folder)
    except (OSError, ValueError) as exc:
        return [str(exc)]
    found = dict(tree_manifest(folder, exclude=frozenset({SUMS_FILE})))
    out = [f"{name}: not in SHA256SUMS (added after publishing)" for name in sorted(set(found) - set(listed))]
    out += [f"{name}: missing" for name in sorted(set(listed) - set(found))]
    out += [f"{name}: content changed" for name in sorted(set(found) & set(listed)) if found[name] != listed[name]]
    return out
