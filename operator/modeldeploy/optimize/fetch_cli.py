"""`modeldeploy fetch`: put a remote SavedModel where TF Serving reads it.

The serving pods' `fetch-model` init container runs it when a SavedModel is served as it is from
s3:// or https:// (TF Serving's own s3 support is broken in current images): it downloads the
folder (an S3 prefix, or a .tar/.tar.gz/.zip over https), checks the sha256 when one is given, and
copies the folder holding saved_model.pb to `--dest` (TF Serving's `<base>/<version>`). Failures
are one line naming the URI, with the optimizer's exit codes; no TensorFlow is needed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from modeldeploy.optimize.errors import OptimizeError, Reason


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("fetch", help="download a SavedModel into a folder (serving init container)")
    parser.add_argument("--source", required=True, help="s3://BUCKET/PREFIX, https://.../model.tar.gz, file://, pvc://")
    parser.add_argument("--dest", required=True, type=Path, help="the version folder to fill, e.g. /models/NAME/1")
    parser.add_argument("--sha256", default=None, help="expected sha256 (of the folder's manifest, or of the archive)")
    parser.add_argument("--pvc-root", default="/mnt/pvc", type=Path)
    parser.set_defaults(func=run)


def saved_model_folder(path: Path, workdir: Path, what: str) -> Path:
    """The folder holding saved_model.pb: the download itself, its only subfolder, or an archive's."""
    from modeldeploy.optimize.storage import unpack_archive

    if path.is_file():
        path = unpack_archive(path, workdir / "unpacked", what)
    if (path / "saved_model.pb").is_file():
        return path
    candidates = sorted(p.parent for p in path.glob("*/saved_model.pb"))
    if len(candidates) == 1:
        return candidates[0]
    raise OptimizeError(Reason.MODEL_LOAD_FAILED, f"{what}: has no saved_model.pb (not a SavedModel folder)")


def run(args: argparse.Namespace) -> int:
    from modeldeploy.optimize.storage import display_uri, fetch

    what = f"model {display_uri(args.source)}"
    try:
        with tempfile.TemporaryDirectory(prefix="modeldeploy-fetch-") as tmp:
            work = Path(tmp)
            fetched = fetch(args.source, work, pvc_root=args.pvc_root, what="model", expected_sha256=args.sha256)
            folder = saved_model_folder(fetched.path, work, what)
            staging = args.dest.parent / f".{args.dest.name}.partial"
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(folder, staging)
            if args.dest.exists():
                shutil.rmtree(args.dest)
            staging.rename(args.dest)
    except OptimizeError as error:
        print(f"modeldeploy fetch: {error}", file=sys.stderr)
        return error.exit_code
    except OSError as exc:
        print(f"modeldeploy fetch: cannot write {args.dest}: {exc}", file=sys.stderr)
        return Reason.EXPORT_FAILED.exit_code
    print(f"fetched {what} into {args.dest}")
    return 0
