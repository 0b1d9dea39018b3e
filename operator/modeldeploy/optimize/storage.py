"""Fetching the model and the datasets from where the user keeps them, and checking their sha256.

Schemes: `file://PATH` (or a bare path), `pvc://CLAIM/PATH` (a PersistentVolumeClaim the Job mounts at
`<pvc-root>/CLAIM`), `https://` (and plain `http://` for in-cluster or local servers: prefer https, or
set a sha256), and `s3://BUCKET/KEY` through boto3, which honours the usual AWS_* variables
including AWS_ENDPOINT_URL for S3-compatible stores. A SavedModel is a folder: on S3 a key prefix,
over HTTP an archive (.tar, .tar.gz or .zip) that `unpack_archive` opens.

The sha256 of a single file is that of its bytes. The sha256 of a folder is that of its manifest,
the `sha256sum` lines of all its files sorted by relative path, i.e. what
`(cd DIR && find . -type f -printf '%P\\n' | LC_ALL=C sort | xargs -d '\\n' sha256sum) | sha256sum`
prints. Every failure is an OptimizeError(FetchFailed / ChecksumMismatch) naming the URI.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from modeldeploy.contract.failures import Failure
from modeldeploy.contract.sums import sha256_file, sha256_tree
from modeldeploy.optimize.errors import OptimizeError

_CHUNK = 1 << 20
HTTP_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class Fetched:
    """A local copy (or, for file:// and pvc://, the original) of what a URI names."""

    uri: str
    path: Path
    sha256: str
    size_bytes: int

    @property
    def is_dir(self) -> bool:
        return self.path.is_dir()


def display_uri(uri: str) -> str:
    """The URI without user info or query string (presigned URLs carry secrets there)."""
    parts = urllib.parse.urlsplit(uri)
    if not parts.scheme:
        return uri
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    if parts.scheme in ("s3", "pvc"):
        netloc = parts.netloc.rsplit("@", 1)[-1]
    query = "?..." if parts.query else ""
    return f"{parts.scheme}://{netloc}{parts.path}{query}"


def _fetch_failed(what: str, uri: str, problem: str) -> OptimizeError:
    return OptimizeError(Failure.FETCH_FAILED, f"{what} {display_uri(uri)}: {problem}")


def total_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def resolve_pvc(uri: str, pvc_root: Path) -> Path:
    """pvc://CLAIM/PATH -> <pvc_root>/CLAIM/PATH, refusing anything that would leave the claim."""
    parts = urllib.parse.urlsplit(uri)
    claim = parts.netloc
    relative = urllib.parse.unquote(parts.path).lstrip("/")
    segments = PurePosixPath(relative).parts
    if not claim or "/" in claim or claim in (".", ".."):
        raise OptimizeError(Failure.INVALID_ARGUMENTS, f"{uri}: expected pvc://CLAIM/PATH")
    if ".." in segments:
        raise OptimizeError(Failure.INVALID_ARGUMENTS, f"{uri}: '..' may not leave the claim")
    return pvc_root / claim / Path(*segments) if segments else pvc_root / claim


def _local(uri: str, what: str, pvc_root: Path) -> Path:
    if uri.startswith("pvc://"):
        path = resolve_pvc(uri, pvc_root)
    elif uri.startswith("file://"):
        parts = urllib.parse.urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise OptimizeError(Failure.INVALID_ARGUMENTS, f"{uri}: file:// URIs name a local path")
        path = Path(urllib.parse.unquote(parts.path))
    else:
        path = Path(uri)
    try:
        exists, readable = path.exists(), os.access(path, os.R_OK)
    except OSError as exc:  # a name too long, a broken mount...
        raise _fetch_failed(what, uri, f"cannot access {path} ({exc.strerror or exc})") from None
    if not exists:
        raise _fetch_failed(what, uri, f"not found ({path})")
    if not readable:
        raise _fetch_failed(what, uri, f"not readable ({path})")
    return path


def _download_name(uri: str) -> str:
    name = PurePosixPath(urllib.parse.unquote(urllib.parse.urlsplit(uri).path)).name
    return name or "download"


def _fetch_http(uri: str, dest: Path, what: str) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / _download_name(uri)
    request = urllib.request.Request(uri, headers={"User-Agent": "modeldeploy-optimize"})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response, target.open("wb") as out:
            shutil.copyfileobj(response, out, _CHUNK)
    except urllib.error.HTTPError as exc:
        raise _fetch_failed(what, uri, f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise _fetch_failed(what, uri, f"unreachable ({exc.reason})") from None
    except (TimeoutError, OSError) as exc:
        raise _fetch_failed(what, uri, f"download failed ({exc})") from None
    return target


def _s3_client() -> Any:
    import boto3
    from botocore.config import Config

    config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=60)
    return boto3.session.Session().client("s3", config=config)


def _safe_relative(key: str, prefix: str) -> PurePosixPath | None:
    relative = PurePosixPath(key[len(prefix) :])
    if not relative.parts or ".." in relative.parts or relative.is_absolute():
        return None
    return relative


def _fetch_s3(uri: str, dest: Path, what: str) -> Path:
    """s3://BUCKET/KEY: the object KEY, or when there is none, every object under the prefix KEY/."""
    try:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            NoCredentialsError,
            PartialCredentialsError,
        )
    except ImportError:
        raise _fetch_failed(what, uri, "s3:// needs boto3 (install modeldeploy[optimize])") from None

    parts = urllib.parse.urlsplit(uri)
    bucket, key = parts.netloc, urllib.parse.unquote(parts.path).lstrip("/")
    if not bucket:
        raise OptimizeError(Failure.INVALID_ARGUMENTS, f"{uri}: expected s3://BUCKET/KEY")
    try:
        client = _s3_client()
        if key and not key.endswith("/"):
            try:
                client.head_object(Bucket=bucket, Key=key)
            except ClientError as exc:
                if _s3_code(exc) not in ("404", "NoSuchKey", "NotFound"):
                    raise
            else:
                dest.mkdir(parents=True, exist_ok=True)
                target = dest / PurePosixPath(key).name
                client.download_file(bucket, key, str(target))
                return target
        prefix = f"{key.rstrip('/')}/" if key else ""
        root = dest / (PurePosixPath(key).name or bucket)
        count = 0
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                relative = _safe_relative(str(item["Key"]), prefix)
                if relative is None or str(item["Key"]).endswith("/"):
                    continue
                target = root / Path(*relative.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(bucket, str(item["Key"]), str(target))
                count += 1
        if count == 0:
            raise _fetch_failed(what, uri, f"no object {key!r} and nothing under {prefix!r} in bucket {bucket}")
        return root
    except (NoCredentialsError, PartialCredentialsError):
        raise _fetch_failed(
            what, uri, "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a profile)"
        ) from None
    except ClientError as exc:
        code = _s3_code(exc)
        if code == "NoSuchBucket":
            problem = f"bucket {bucket!r} does not exist"
        elif code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            problem = f"access denied ({code})"
        else:
            problem = f"S3 error {code}: {exc.response.get('Error', {}).get('Message', '')}".rstrip(": ")
        raise _fetch_failed(what, uri, problem) from None
    except BotoCoreError as exc:
        raise _fetch_failed(what, uri, f"unreachable ({exc})") from None


GCS_DEFAULT_ENDPOINT = "https://storage.googleapis.com"


def _gcs_get(url: str, what: str, uri: str) -> Any:
    """One GCS JSON API request; STORAGE_EMULATOR_HOST and GOOGLE_OAUTH_ACCESS_TOKEN as the Google
    client libraries read them. Returns the open response."""
    headers = {"User-Agent": "modeldeploy-optimize"}
    token = os.environ.get("GOOGLE_OAUTH_ACCESS_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=HTTP_TIMEOUT_SECONDS)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code in (401, 403):
            hint = "" if token else "; set GOOGLE_OAUTH_ACCESS_TOKEN for a private bucket"
            raise _fetch_failed(what, uri, f"access denied (HTTP {exc.code}){hint}") from None
        raise
    except urllib.error.URLError as exc:
        raise _fetch_failed(what, uri, f"unreachable ({exc.reason})") from None


def _fetch_gcs(uri: str, dest: Path, what: str) -> Path:
    """gs://BUCKET/OBJECT: the object, or when there is none, every object under OBJECT/ (a SavedModel
    folder). Through the GCS JSON API over HTTPS: a bearer token from GOOGLE_OAUTH_ACCESS_TOKEN (e.g.
    `gcloud auth print-access-token`, or a Workload Identity sidecar), anonymous for public buckets."""
    parts = urllib.parse.urlsplit(uri)
    bucket, name = parts.netloc, urllib.parse.unquote(parts.path).lstrip("/")
    if not bucket:
        raise OptimizeError(Failure.INVALID_ARGUMENTS, f"{uri}: expected gs://BUCKET/OBJECT")
    endpoint = os.environ.get("STORAGE_EMULATOR_HOST", GCS_DEFAULT_ENDPOINT).rstrip("/")
    base = f"{endpoint}/storage/v1/b/{urllib.parse.quote(bucket, safe='')}/o"

    def download(object_name: str, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        url = f"{base}/{urllib.parse.quote(object_name, safe='')}?alt=media"
        with _gcs_get(url, what, uri) as response, target.open("wb") as out:
            shutil.copyfileobj(response, out, _CHUNK)

    try:
        if name and not name.endswith("/"):
            try:
                download(name, dest / PurePosixPath(name).name)
                return dest / PurePosixPath(name).name
            except urllib.error.HTTPError as exc:
                if exc.code != 404:
                    raise
        prefix = f"{name.rstrip('/')}/" if name else ""
        root = dest / (PurePosixPath(name).name or bucket)
        count, page_token = 0, ""
        while True:
            query = urllib.parse.urlencode({"prefix": prefix, **({"pageToken": page_token} if page_token else {})})
            with _gcs_get(f"{base}?{query}", what, uri) as response:
                listing = json.loads(response.read())
            for item in listing.get("items", []):
                relative = _safe_relative(str(item["name"]), prefix)
                if relative is None or str(item["name"]).endswith("/"):
                    continue
                download(str(item["name"]), root / Path(*relative.parts))
                count += 1
            page_token = listing.get("nextPageToken", "")
            if not page_token:
                break
        if count == 0:
            raise _fetch_failed(what, uri, f"no object {name!r} and nothing under {prefix!r} in bucket {bucket}")
        return root
    except urllib.error.HTTPError as exc:
        problem = f"bucket {bucket!r} does not exist" if exc.code == 404 else f"GCS error HTTP {exc.code}"
        raise _fetch_failed(what, uri, problem) from None
    except (TimeoutError, OSError, ValueError) as exc:
        raise _fetch_failed(what, uri, f"download failed ({exc})") from None


def _s3_code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def fetch(
    uri: str,
    workdir: Path,
    *,
    pvc_root: Path,
    what: str,
    expected_sha256: str | None = None,
) -> Fetched:
    """Make what `uri` names available locally and verify its sha256 when one is expected.

    `workdir` receives downloads; local sources (file://, pvc://, a bare path) are used in place.
    """
    scheme = urllib.parse.urlsplit(uri).scheme.lower()
    if scheme in ("", "file", "pvc"):
        path = _local(uri, what, pvc_root)
    elif scheme in ("https", "http"):
        path = _fetch_http(uri, workdir, what)
    elif scheme == "s3":
        path = _fetch_s3(uri, workdir, what)
    elif scheme == "gs":
        path = _fetch_gcs(uri, workdir, what)
    else:
        raise OptimizeError(
            Failure.INVALID_ARGUMENTS,
            f"{what} {display_uri(uri)}: unsupported scheme {scheme!r} (file, pvc, https, http, s3, gs)",
        )
    try:
        digest = sha256_tree(path) if path.is_dir() else sha256_file(path)
        size = total_bytes(path)
    except OSError as exc:
        raise _fetch_failed(what, uri, f"cannot read ({exc})") from None
    if expected_sha256 is not None and digest != expected_sha256:
        kind = "folder manifest sha256" if path.is_dir() else "sha256"
        raise OptimizeError(
            Failure.CHECKSUM_MISMATCH,
            f"{what} {display_uri(uri)}: {kind} is {digest}, expected {expected_sha256}",
        )
    return Fetched(uri=uri, path=path, sha256=digest, size_bytes=size)


def unpack_archive(archive: Path, dest: Path, what: str) -> Path:
    """Extract a .tar[.gz] or .zip into dest, refusing members that would land outside it."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tar:
                tar.extractall(dest, filter="data")
            return dest
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for member in zf.namelist():
                    parts = PurePosixPath(member).parts
                    if PurePosixPath(member).is_absolute() or ".." in parts:
                        raise OptimizeError(
                            Failure.MODEL_LOAD_FAILED, f"{what} {archive.name}: unsafe member {member!r}"
                        )
                zf.extractall(dest)
            return dest
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise OptimizeError(Failure.MODEL_LOAD_FAILED, f"{what} {archive.name}: broken archive ({exc})") from None
    raise OptimizeError(
        Failure.MODEL_LOAD_FAILED,
        f"{what} {archive.name}: neither a SavedModel folder nor a .tar, .tar.gz or .zip of one",
    )


def saved_model_folder(path: Path, workdir: Path, what: str) -> Path:
    """The folder holding saved_model.pb: the download itself, its only subfolder, or an archive's."""
    if path.is_file():
        path = unpack_archive(path, workdir / "unpacked", what)
    if (path / "saved_model.pb").is_file():
        return path
    candidates = sorted(p.parent for p in path.glob("*/saved_model.pb"))
    if len(candidates) == 1:
        return candidates[0]
    raise OptimizeError(Failure.MODEL_LOAD_FAILED, f"{what}: has no saved_model.pb (not a SavedModel folder)")


def install_saved_model(source: str, dest: Path, pvc_root: Path, sha256: str | None, what: str) -> None:
    """Fetch a SavedModel (a folder, or an archive of one) and put it at `dest` in one rename, so
    TF Serving never sees a half-copied version folder (what `modeldeploy fetch` does)."""
    with tempfile.TemporaryDirectory(prefix="modeldeploy-fetch-") as tmp:
        work = Path(tmp)
        fetched = fetch(source, work, pvc_root=pvc_root, what="model", expected_sha256=sha256)
        folder = saved_model_folder(fetched.path, work, what)
        staging = dest.parent / f".{dest.name}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(folder, staging)
        if dest.exists():
            shutil.rmtree(dest)
        staging.rename(dest)
