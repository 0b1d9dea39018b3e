"""The validated settings of one optimization run, built from the CLI's flags.

The CLI keeps argparse permissive (plain strings) and validates here, so a bad flag takes the same
road as every other failure: one line on stderr, a termination message with reason
`InvalidArguments`, exit code 2. No TensorFlow here: validation is instant.
"""

from __future__ import annotations

import argparse
import enum
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TypeVar

from modeldeploy.contract.failures import Failure
from modeldeploy.contract.formats import ModelFormat, PruningSchedule, Quantization
from modeldeploy.contract.layout import PVC_ROOT, SIGNATURE_SUFFIX, TERMINATION_MESSAGE_PATH
from modeldeploy.contract.owner import ArtifactOwner, parse_owner_flag
from modeldeploy.optimize.accuracy import DEFAULT_TOP_K, METRICS
from modeldeploy.optimize.errors import OptimizeError
from modeldeploy.optimize.logs import LOG_FORMATS, LogFormat
from modeldeploy.optimize.signing import Trust

MAX_SPARSITY = 0.95
# 1: weight by weight; 4 and 16: the 1x4 and 1x16 blocks TFLite's sparse fully-connected kernels
# execute (float and int8), so the sparse encoding is what the pod holds in memory.
DENSE_BLOCK_SIZES = (1, 4, 16)
DEFAULT_MAX_ACCURACY_DROP = 0.01
# Smaller classes and slices are reported but not gated: one changed prediction moves a slice of
# n examples by 1/n, 3.3 points at 30 (see optimize/slices.py).
DEFAULT_MIN_SLICE_EXAMPLES = 30
MAX_TOP_K = 1000
DEFAULT_PVC_ROOT = Path(PVC_ROOT)
DEFAULT_TERMINATION_MESSAGE_PATH = Path(TERMINATION_MESSAGE_PATH)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_E = TypeVar("_E", bound=enum.StrEnum)


@dataclass(frozen=True)
class Options:
    source: str
    format: ModelFormat
    sha256: str | None
    output: Path
    version: int
    dense_sparsity: float
    conv_sparsity: float
    fine_tune_epochs: int
    train_data: str | None
    quantization: Quantization
    eval_data: str | None
    metric: str
    max_accuracy_drop: float
    pvc_root: Path
    termination_message_path: Path | None
    log_format: LogFormat
    source_signature: str | None = None
    """Where the source model's signature is; set exactly when `source_trust` is."""
    source_trust: Trust | None = None
    signing_key: Path | None = None
    """The private key the published version folder is signed with; None: not signed."""
    top_k: int = DEFAULT_TOP_K
    max_slice_accuracy_drop: float | None = None  # None: slices are measured and reported, not gated
    min_slice_examples: int = DEFAULT_MIN_SLICE_EXAMPLES
    owner: ArtifactOwner | None = None  # written to <output>/owner.json for the artifact cleanup
    # Gradual (PolynomialDecay) when fine-tuning, one shot otherwise, unless --pruning-schedule says.
    pruning_schedule: PruningSchedule = PruningSchedule.ONE_SHOT
    keep_classifier_dense: bool = False
    dense_block_size: int = 1

    @property
    def prunes(self) -> bool:
        return self.dense_sparsity > 0 or self.conv_sparsity > 0


def _bad(flag: str, problem: str) -> OptimizeError:
    return OptimizeError(Failure.INVALID_ARGUMENTS, f"{flag}: {problem}")


def _required(value: str | None, flag: str) -> str:
    if value is None or not value.strip():
        raise _bad(flag, "is required")
    return value.strip()


def _choice(value: str, flag: str, kind: type[_E]) -> _E:
    try:
        return kind(value.strip().lower())
    except ValueError:
        allowed = "|".join(member.value for member in kind)
        raise _bad(flag, f"must be one of {allowed}, got {value!r}") from None


def _number(value: str | None, flag: str, default: float, low: float, high: float) -> float:
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except ValueError:
        raise _bad(flag, f"must be a number, got {value!r}") from None
    if not low <= number <= high:  # also rejects nan
        raise _bad(flag, f"must be within {low:g}..{high:g}, got {value}")
    return number


def _integer(value: str | None, flag: str, default: int | None, low: int) -> int:
    if value is None or value == "":
        if default is None:
            raise _bad(flag, "is required")
        return default
    try:
        number = int(value)
    except ValueError:
        raise _bad(flag, f"must be an integer, got {value!r}") from None
    if number < low:
        raise _bad(flag, f"must be at least {low}, got {number}")
    return number


def pruning_schedule(value: str | None, fine_tune_epochs: int) -> PruningSchedule:
    """--pruning-schedule, case-insensitive; unset: PolynomialDecay when fine-tuning, else OneShot."""
    if value is None or not value.strip():
        return PruningSchedule.POLYNOMIAL_DECAY if fine_tune_epochs > 0 else PruningSchedule.ONE_SHOT
    by_name = {member.value.lower(): member for member in PruningSchedule}
    schedule = by_name.get(value.strip().lower())
    if schedule is None:
        allowed = "|".join(member.value for member in PruningSchedule)
        raise _bad("--pruning-schedule", f"must be one of {allowed}, got {value!r}")
    if schedule is PruningSchedule.POLYNOMIAL_DECAY and fine_tune_epochs == 0:
        raise _bad("--pruning-schedule", "PolynomialDecay ramps the sparsity over fine-tuning: give --fine-tune-epochs")
    return schedule


def infer_format(source: str) -> ModelFormat:
    """A missing --format follows the source's suffix; anything else is taken as a SavedModel."""
    name = PurePosixPath(source.split("?", 1)[0].rstrip("/")).name.lower()
    if name.endswith(".keras"):
        return ModelFormat.KERAS
    if name.endswith((".h5", ".hdf5")):
        return ModelFormat.H5
    return ModelFormat.SAVEDMODEL


def local_output_path(value: str, pvc_root: Path) -> Path:
    """--output is a local folder; file:// and pvc://CLAIM/PATH spell the same thing as URIs."""
    if value.startswith("file://"):
        return Path(value.removeprefix("file://"))
    if value.startswith("pvc://"):
        from modeldeploy.optimize.storage import resolve_pvc

        return resolve_pvc(value, pvc_root)
    if "://" in value:
        raise _bad("--output", f"must be a local folder, file:// or pvc:// URI, got {value!r}")
    return Path(value)


# Kubernetes sets this in every container (whatever the pod's enableServiceLinks says).
IN_POD_ENV = "KUBERNETES_SERVICE_HOST"


def default_termination_message_path(environ: Mapping[str, str]) -> Path | None:
    """Kubernetes' termination-log path when running in a pod, else none: run by hand, nothing is
    written to /dev. The operator's Job passes the path explicitly anyway."""
    return DEFAULT_TERMINATION_MESSAGE_PATH if environ.get(IN_POD_ENV) else None


def termination_message_path(flag: str | None, environ: Mapping[str, str]) -> Path | None:
    """--termination-message-path: absent means the default, '' means none."""
    if flag is None:
        return default_termination_message_path(environ)
    return Path(flag) if flag else None


def options_from_args(ns: argparse.Namespace) -> Options:
    """Validate the parsed flags; raises OptimizeError(InvalidArguments) naming the flag."""
    source = _required(ns.source, "--source")
    fmt = infer_format(source) if not ns.format else _choice(ns.format, "--format", ModelFormat)
    sha256 = ns.sha256.strip().lower() if ns.sha256 else None
    if sha256 is not None:
        sha256 = sha256.removeprefix("sha256:")
        if not _SHA256.match(sha256):
            raise _bad("--sha256", f"must be 64 hex digits, got {ns.sha256!r}")
    pvc_root = Path(ns.pvc_root) if ns.pvc_root else DEFAULT_PVC_ROOT
    output = local_output_path(_required(ns.output, "--output"), pvc_root)
    version = _integer(ns.version, "--version", None, 1)
    dense = _number(ns.dense_sparsity, "--dense-sparsity", 0.0, 0.0, MAX_SPARSITY)
    conv = _number(ns.conv_sparsity, "--conv-sparsity", 0.0, 0.0, MAX_SPARSITY)
    epochs = _integer(ns.fine_tune_epochs, "--fine-tune-epochs", 0, 0)
    quantization = _choice(ns.quantization or "none", "--quantization", Quantization)
    metric = (ns.metric or "accuracy").strip()
    if metric not in METRICS:
        raise _bad("--metric", f"must be one of {'|'.join(METRICS)}, got {metric!r}")
    max_drop = _number(ns.max_accuracy_drop, "--max-accuracy-drop", DEFAULT_MAX_ACCURACY_DROP, 0.0, 1.0)
    top_k = _integer(ns.top_k, "--top-k", DEFAULT_TOP_K, 2)
    if top_k > MAX_TOP_K:
        raise _bad("--top-k", f"must be at most {MAX_TOP_K}, got {top_k}")
    max_slice_drop = None
    if ns.max_slice_accuracy_drop not in (None, ""):  # unset: slices are reported, not gated
        max_slice_drop = _number(ns.max_slice_accuracy_drop, "--max-slice-accuracy-drop", 0.0, 0.0, 1.0)
    min_slice = _integer(ns.min_slice_examples, "--min-slice-examples", DEFAULT_MIN_SLICE_EXAMPLES, 1)
    log_format = (ns.log_format or "text").strip().lower()
    if log_format not in LOG_FORMATS:
        raise _bad("--log-format", f"must be one of {'|'.join(LOG_FORMATS)}, got {ns.log_format!r}")
    train_data = ns.train_data or None
    eval_data = ns.eval_data or None
    if epochs > 0 and train_data is None:
        raise _bad("--fine-tune-epochs", f"{epochs} epochs need --train-data")
    if quantization is Quantization.INT8 and train_data is None and eval_data is None:
        raise _bad("--quantization", "int8 needs representative data: give --train-data or --eval-data")
    source_trust = _source_trust(ns)
    source_signature = None
    if source_trust is not None:
        source_signature = (getattr(ns, "source_signature", None) or "").strip() or (
            source.rstrip("/") + SIGNATURE_SUFFIX
        )
    elif getattr(ns, "source_signature", None):
        raise _bad("--source-signature", "needs --source-public-key, --source-certificate-chain or --source-identity")
    signing_key = getattr(ns, "signing_key", None)
    if signing_key and not Path(signing_key).is_file():
        raise _bad("--signing-key", f"{signing_key} is not a file")
    owner = None
    if getattr(ns, "owner", None):
        owner = parse_owner_flag(ns.owner.strip())
        if owner is None:
            raise _bad("--owner", f"must be NAMESPACE/NAME[/UID], got {ns.owner!r}")
    schedule = pruning_schedule(ns.pruning_schedule, epochs)
    block = _integer(ns.dense_block_size, "--dense-block-size", 1, 1)
    if block not in DENSE_BLOCK_SIZES:
        raise _bad("--dense-block-size", f"must be one of {'|'.join(map(str, DENSE_BLOCK_SIZES))}, got {block}")
    return Options(
        source=source,
        format=fmt,
        sha256=sha256,
        output=output,
        version=version,
        dense_sparsity=dense,
        conv_sparsity=conv,
        fine_tune_epochs=epochs,
        train_data=train_data,
        quantization=quantization,
        eval_data=eval_data,
        metric=metric,
        max_accuracy_drop=max_drop,
        pvc_root=pvc_root,
        termination_message_path=termination_message_path(ns.termination_message_path, os.environ),
        log_format="json" if log_format == "json" else "text",
        source_signature=source_signature,
        source_trust=source_trust,
        signing_key=Path(signing_key) if signing_key else None,
        top_k=top_k,
        max_slice_accuracy_drop=max_slice_drop,
        min_slice_examples=min_slice,
        owner=owner,
        pruning_schedule=schedule,
        keep_classifier_dense=bool(ns.keep_classifier_dense),
        dense_block_size=block,
    )


def _source_trust(ns: argparse.Namespace) -> Trust | None:
    """What the source model's signature must verify against, from the --source-* flags."""
    public_key = getattr(ns, "source_public_key", None) or None
    chain = getattr(ns, "source_certificate_chain", None) or None
    identity = getattr(ns, "source_identity", None) or None
    issuer = getattr(ns, "source_oidc_issuer", None) or None
    if public_key is None and chain is None and identity is None:
        if issuer:
            raise _bad("--source-oidc-issuer", "needs --source-identity")
        return None
    for flag, value in (("--source-public-key", public_key), ("--source-certificate-chain", chain)):
        if value is not None and not Path(value).is_file():
            raise _bad(flag, f"{value} is not a file")
    try:
        return Trust(
            public_key=Path(public_key) if public_key else None,
            certificate_chain=Path(chain) if chain else None,
            identity=identity,
            oidc_issuer=issuer,
        )
    except ValueError as exc:
        raise _bad("--source-public-key|--source-certificate-chain|--source-identity", str(exc)) from None
