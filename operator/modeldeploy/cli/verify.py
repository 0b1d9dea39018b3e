"""`modeldeploy verify`: refuse a model folder that is not what the optimizer published.

Runs as the `verify-model` init container of every serving pod, before TF Serving starts: the
SHA256SUMS file of the version folder must have the digest the optimizer reported (the operator
passes it from the ModelDeployment's status), and every file must match SHA256SUMS with no file
added. When the artifacts are signed, the folder's OpenSSF model signature (model.sig) must also
verify with the signing Secret's public key, so a folder rewritten and re-signed by anyone else is
refused too. A refused artifact therefore never loads; the pod's init container fails with a
one-line termination message that the operator turns into
`ServingReady=False, ArtifactVerificationFailed`.

By hand, `modeldeploy verify --dir DIR --public-key KEY.pub` (or `--certificate-chain CA.pem`)
checks a signed folder without knowing its digest.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

from modeldeploy.contract import sums
from modeldeploy.contract.layout import SIGNATURE_FILE, SUMS_FILE, TERMINATION_MESSAGE_PATH

EXIT_TAMPERED = 3
EXIT_USAGE = 2


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "verify", help="check a model folder against its published sha256 and signature", description=__doc__
    )
    parser.add_argument("--dir", required=True, type=Path, help="the version folder, e.g. /models/NAME/1")
    parser.add_argument("--manifest-sha256", default=None, help="expected sha256 of DIR/SHA256SUMS")
    parser.add_argument("--public-key", type=Path, default=None, help="PEM public key DIR/model.sig must verify with")
    parser.add_argument(
        "--certificate-chain", type=Path, default=None, help="PEM CA certificates the signing certificate chains to"
    )
    parser.add_argument("--identity", default=None, help="keyless sigstore signer identity (needs the internet)")
    parser.add_argument("--oidc-issuer", default=None, help="the keyless identity's OIDC issuer")
    parser.add_argument("--signature", type=Path, default=None, help=f"the signature (default: DIR/{SIGNATURE_FILE})")
    parser.add_argument("--termination-message-path", default=Path(TERMINATION_MESSAGE_PATH), type=Path)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    signed = args.public_key is not None or args.certificate_chain is not None or args.identity is not None
    if args.manifest_sha256 is None and not signed:
        print(
            "modeldeploy verify: give --manifest-sha256 and/or --public-key, --certificate-chain or --identity",
            file=sys.stderr,
        )
        return EXIT_USAGE
    found: list[str] = []
    if args.manifest_sha256 is not None or (args.dir / SUMS_FILE).is_file():
        found += sums.problems(args.dir, args.manifest_sha256)
    signer = None
    if signed:
        from modeldeploy.optimize.signing import SignatureProblem, Trust, verify

        try:
            trust = Trust(args.public_key, args.certificate_chain, args.identity, args.oidc_issuer)
        except ValueError as exc:
            print(f"modeldeploy verify: {exc}", file=sys.stderr)
            return EXIT_USAGE
        try:
            signer = verify(args.dir, args.signature or args.dir / SIGNATURE_FILE, trust).signer
        except SignatureProblem as problem:
            found.append(problem.message)
    if not found:
        checked = "every file matches the published SHA256SUMS" if args.manifest_sha256 else "every file is signed"
        print(f"verified {args.dir}: {checked}" + (f"; signed by {signer}" if signer else ""))
        return 0
    message = f"ArtifactTampered: {args.dir}: " + "; ".join(found)
    print(f"modeldeploy verify: {message}", file=sys.stderr)
    if args.termination_message_path.parent.is_dir():
        with contextlib.suppress(OSError):
            args.termination_message_path.write_text(message[:4000])
    return EXIT_TAMPERED
