"""The validated settings of one optimization run, built from the CLI's flags.

The CLI keeps argparse permissive (plain strings) and validates here, so a bad flag takes the same
road as every other failure: one line on stderr, a termination message with reason
`InvalidArguments`, exit code 2. No TensorFlow here: validation is instant.
"""

from __future__ import annotations

import argparse
import enum
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TypeVar

from modeldeploy.contract.failures import Failure
from modeldeploy.contract.formats import ModelFormat, PruningSchedule, Quantization
from modeldeploy.contract.layout import PVC_ROOT, TERMINATION_MESSAGE_PATH
from modeldeploy.optimize.accuracy import METRICS
from modeldeploy.optimize.errors import OptimizeError
from modeldeploy.optimize.logs import LOG_FORMATS, LogFormat

MAX_SPARSITY = 0.95
# 1: weight by weight; 4 and 16: the 1x4 and 1x16 blocks TFLite's sparse fully-connected kernels
# execute (float and int8), so the sparse encoding is what the pod holds in memory.
DENSE_BLOCK_SIZES = (1, 4, 16)
DEFAULT_MAX_ACCURACY_DROP = 0.01
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
    log_format = (ns.log_format or "text").strip().lower()
    if log_format not in LOG_FORMATS:
        raise _bad("--log-format", f"must be one of {'|'.join(LOG_FORMATS)}, got {ns.log_format!r}")
    train_data = ns.train_data or None
    eval_data = ns.eval_data or None
    if epochs > 0 and train_data is None:
        raise _bad("--fine-tune-epochs", f"{epochs} epochs need --train-data")
    if quantization is Quantization.INT8 and train_data is None and eval_data is None:
        raise _bad("--quantization", "int8 needs representative data: give --train-data or --eval-data")
    schedule = pruning_schedule(ns.pruning_schedule, epochs)
    block = _integer(ns.dense_block_size, "--dense-block-size", 1, 1)
    if block not in DENSE_BLOCK_SIZES:
        raise _bad("--dense-block-size", f"must be one of {'|'.join(map(str, DENSE_BLOCK_SIZES))}, got {block}")
    termination = ns.termination_message_path
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
        termination_message_path=Path(termination) if termination else None,
        log_format="json" if log_format == "json" else "text",
        pruning_schedule=schedule,
        keep_classifier_dense=bool(ns.keep_classifier_dense),
        dense_block_size=block,
    )
