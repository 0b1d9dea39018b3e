"""`modeldeploy fetch`: put a remote SavedModel where TF Serving reads it.

The serving pods' `fetch-model` init container runs it when a SavedModel is served as it is from
s3:// or https:// (TF Serving's own s3 support is broken in current images): it downloads the
folder (an S3 prefix, or a .tar/.tar.gz/.zip over https), checks the sha256 when one is given, and
copies the folder holding saved_model.pb to `--dest` (TF Serving's `<base>/<version>`). Failures
are one line naming the URI, with the optimizer's exit codes; no TensorFlow is needed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from modeldeploy.contract.failures import Failure
from modeldeploy.contract.layout import PVC_ROOT
from modeldeploy.optimize.errors import OptimizeError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("fetch", help="download a SavedModel into a folder (serving init container)")
    parser.add_argument("--source", required=True, help="s3://BUCKET/PREFIX, https://.../model.tar.gz, file://, pvc://")
    parser.add_argument("--dest", required=True, type=Path, help="the version folder to fill, e.g. /models/NAME/1")
    parser.add_argument("--sha256", default=None, help="expected sha256 (of the folder's manifest, or of the archive)")
    parser.add_argument("--pvc-root", default=Path(PVC_ROOT), type=Path)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modeldeploy.optimize.storage import display_uri, install_saved_model

    what = f"model {display_uri(args.source)}"
    try:
        install_saved_model(args.source, args.dest, args.pvc_root, args.sha256, what)
    except OptimizeError as error:
        print(f"modeldeploy fetch: {error}", file=sys.stderr)
        return error.exit_code
    except OSError as exc:
        print(f"modeldeploy fetch: cannot write {args.dest}: {exc}", file=sys.stderr)
        return Failure.EXPORT_FAILED.exit_code
    print(f"fetched {what} into {args.dest}")
    return 0
