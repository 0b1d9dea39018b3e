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


def pvc_path(claim: str, *parts: str) -> str:
    """The in-pod path of a file on a claim: pvc_path('models', 'a/b') == '/mnt/pvc/models/a/b'."""
    return str(PurePosixPath(PVC_ROOT, claim, *(p.strip("/") for p in parts if p.strip("/"))))
