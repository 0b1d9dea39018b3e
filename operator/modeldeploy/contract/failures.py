"""Why an optimization Job failed: each class of failure with its reason and exit code.

This table is the single source: `modeldeploy optimize` (and `fetch`) exit with `exit_code` and
write the reason into the termination summary; the operator reads it back into the
ModelDeployment's `Optimized` condition and posts a Warning Event for it. Exit codes are distinct
per class, so a Job's status alone tells them apart.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True)
class _Class:
    exit_code: int
    description: str


class Failure(enum.StrEnum):
    """A class of failure of the optimization Job; the value is its PascalCase reason."""

    INTERNAL = "Internal"
    INVALID_ARGUMENTS = "InvalidArguments"
    FETCH_FAILED = "FetchFailed"
    CHECKSUM_MISMATCH = "ChecksumMismatch"
    MODEL_LOAD_FAILED = "ModelLoadFailed"
    UNSUPPORTED_MODEL = "UnsupportedModel"
    INVALID_DATASET = "InvalidDataset"
    VERSION_EXISTS = "VersionExists"
    EXPORT_FAILED = "ExportFailed"
    CONVERSION_MISMATCH = "ConversionMismatch"
    SIGNATURE_INVALID = "SignatureInvalid"
    SIGNATURE_MISSING = "SignatureMissing"
    QUALITY_GATE_FAILED = "QualityGateFailed"
    TERMINATED = "Terminated"

    @property
    def exit_code(self) -> int:
        return _CLASSES[self].exit_code

    @property
    def description(self) -> str:
        return _CLASSES[self].description


_CLASSES: dict[Failure, _Class] = {
    Failure.INTERNAL: _Class(1, "an unexpected error (a bug): report it with the log"),
    Failure.INVALID_ARGUMENTS: _Class(2, "a flag is missing, malformed or out of range"),
    Failure.FETCH_FAILED: _Class(
        10, "the model or a dataset could not be fetched: not found, unreachable, missing credentials"
    ),
    Failure.CHECKSUM_MISMATCH: _Class(11, "the fetched model's sha256 differs from the expected one"),
    Failure.MODEL_LOAD_FAILED: _Class(12, "the model file is corrupt or not of the declared format"),
    Failure.UNSUPPORTED_MODEL: _Class(
        13, "the model loads but cannot be optimized: unknown layer, several inputs, unconvertible op"
    ),
    Failure.INVALID_DATASET: _Class(14, "a dataset is unreadable, empty, or does not fit the model's input and output"),
    Failure.VERSION_EXISTS: _Class(15, "the output version folder exists already; it is never overwritten"),
    Failure.EXPORT_FAILED: _Class(16, "the result could not be written to the output location"),
    Failure.CONVERSION_MISMATCH: _Class(
        17, "the converted model's outputs are NaN/Inf or differ from the original's beyond the mode's tolerance"
    ),
    Failure.SIGNATURE_INVALID: _Class(
        18,
        "the source model's signature does not verify: a file changed, added or missing, a wrong key or "
        "identity, an untrusted or expired certificate",
    ),
    Failure.SIGNATURE_MISSING: _Class(19, "the source model must be signed and its signature file was not found"),
    Failure.QUALITY_GATE_FAILED: _Class(20, "the optimized model lost more quality than allowed"),
    Failure.TERMINATED: _Class(143, "the process received SIGTERM (the Pod was deleted or timed out)"),
}

SUCCESS_EXIT_CODE = 0


def failure_table_markdown() -> str:
    """The table for the README, generated so it cannot drift from the code."""
    lines = ["| exit code | reason | meaning |", "| ---: | --- | --- |", "| 0 | Succeeded | |"]
    for failure in sorted(Failure, key=lambda f: f.exit_code):
        lines.append(f"| {failure.exit_code} | {failure.value} | {failure.description} |")
    return "\n".join(lines)
