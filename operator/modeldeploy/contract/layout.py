"""Paths and file names that the operator's builders and the programs in its pods must agree on.

The builders mount claims and point flags at these paths; the optimizer, `modeldeploy fetch` and
`modeldeploy verify` use them as their defaults; so a change here moves both sides at once.
"""

from __future__ import annotations

from pathlib import PurePosixPath

PVC_ROOT = PurePosixPath("/mnt/pvc")
"""Where the Job and init containers mount each claim: pvc://CLAIM/PATH is PVC_ROOT/CLAIM/PATH."""

TERMINATION_MESSAGE_PATH = PurePosixPath("/dev/termination-log")
"""Kubernetes copies this file into the container's status; the operator reads the summary there."""

TERMINATION_LIMIT_BYTES = 4096
"""The kubelet keeps at most this many bytes of a termination message."""

SUMS_FILE = "SHA256SUMS"
"""The manifest of a published version folder, in `sha256sum -c` format."""

REPORT_FILE = "report.json"
"""The optimizer's full record of a run, published beside the model."""

TFLITE_FILE = "model.tflite"
"""The quantized model TF Serving loads with --prefer_tflite_model."""

OWNER_FILE = "owner.json"
"""In each artifact folder (`<store>/<hash>/`, beside the version folders): which ModelDeployment
the optimizer built it for (`contract.owner.ArtifactOwner`). The cleanup Jobs remove only folders
whose owner file names their ModelDeployment; a folder without one is never touched."""


SIGNATURE_FILE = "model.sig"
"""The OpenSSF model signature (a sigstore bundle) of a published version folder, when the optimizer
signs what it publishes. It covers every file of the folder except itself and SHA256SUMS, and
SHA256SUMS lists it, so the published SHA256SUMS digest pins the signature too."""

SIGNATURE_SUFFIX = ".sig"
"""The source model's signature defaults to the model's URI with this suffix (model.keras.sig)."""

SOURCE_TRUST_DIR = PurePosixPath("/etc/modeldeploy/source-trust")
"""Where the Job mounts the public key or certificate chain that the source model's signature must
verify against (one key of a Secret or ConfigMap, read-only)."""

SIGNING_DIR = PurePosixPath("/etc/modeldeploy/signing")
"""Where the Job mounts the private key it signs with, and the verify-model init container the public
key it verifies with (each only its own key of the signing Secret, read-only)."""

TRUST_PUBLIC_KEY_FILE = "public-key.pem"
"""File name of a mounted public key (in SOURCE_TRUST_DIR)."""

TRUST_CHAIN_FILE = "certificate-chain.pem"
"""File name of a mounted certificate chain (in SOURCE_TRUST_DIR)."""

SIGNING_PRIVATE_KEY = "signing.key"
"""The key of the signing Secret holding the PEM private key (ECDSA P-256/P-384/P-521) the optimizer
signs with; mounted in the Job only."""

SIGNING_PUBLIC_KEY = "signing.pub"
"""The key of the signing Secret holding the matching PEM public key; mounted in the serving pods'
verify-model init container only."""


def pvc_path(claim: str, *parts: str) -> str:
    """The in-pod path of a file on a claim: pvc_path('models', 'a/b') == '/mnt/pvc/models/a/b'."""
    return str(PurePosixPath(PVC_ROOT, claim, *(p.strip("/") for p in parts if p.strip("/"))))
