"""`modeldeploy verify`: refuse a model folder that is not what the optimizer published.

Runs as the `verify-model` init container of every serving pod, before TF Serving starts: the
SHA256SUMS file of the version folder must have the digest the optimizer reported (the operator
passes it from the ModelDeployment's status), and every file must match SHA256SUMS with no file
added. A tampered artifact therefore never loads; the pod's init container fails with a one-line
termination message that the operator turns into `ServingReady=False, ArtifactVerificationFailed`.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

from modeldeploy.contract import sums
from modeldeploy.contract.layout import TERMINATION_MESSAGE_PATH

EXIT_TAMPERED = 3


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "verify", help="check a model folder against its published sha256", description=__doc__
    )
    parser.add_argument("--dir", required=True, type=Path, help="the version folder, e.g. /models/NAME/1")
    parser.add_argument("--manifest-sha256", required=True, help="expected sha256 of DIR/SHA256SUMS")
    parser.add_argument("--termination-message-path", default=Path(TERMINATION_MESSAGE_PATH), type=Path)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    found = sums.problems(args.dir, args.manifest_sha256)
    if not found:
        print(f"verified {args.dir}: every file matches the published SHA256SUMS")
        return 0
    message = f"ArtifactTampered: {args.dir}: " + "; ".join(found)
    print(f"modeldeploy verify: {message}", file=sys.stderr)
    if args.termination_message_path.parent.is_dir():
        with contextlib.suppress(OSError):
            args.termination_message_path.write_text(message[:4000])
    return EXIT_TAMPERED
