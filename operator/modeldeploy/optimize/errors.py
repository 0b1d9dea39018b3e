"""The classes of failure of `modeldeploy optimize`, each with its PascalCase reason and exit code.

This table is the single source: the CLI exits with `exit_code`, writes `reason` into the
termination message, and the operator reads the reason back into the ModelDeployment's
`Optimized` condition. Exit codes are distinct per class so a Job's status alone tells them apart.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True)
class _Failure:
    exit_code: int
    description: str


class Reason(enum.StrEnum):
    """Why an optimization failed; the value is the reason written in the termination message."""

    INTERNAL = "Internal"
    INVALID_ARGUMENTS = "InvalidArguments"
    FETCH_FAILED = "FetchFailed"
    CHECKSUM_MISMATCH = "ChecksumMismatch"
    MODEL_LOAD_FAILED = "ModelLoadFailed"
    UNSUPPORTED_MODEL = "UnsupportedModel"
    INVALID_DATASET = "InvalidDataset"
    VERSION_EXISTS = "VersionExists"
    EXPORT_FAILED = "ExportFailed"
    QUALITY_GATE_FAILED = "QualityGateFailed"
    TERMINATED = "Terminated"

    @property
    def exit_code(self) -> int:
        return FAILURES[self].exit_code

    @property
    def description(self) -> str:
        return FAILURES[self].description


FAILURES: dict[Reason, _Failure] = {
    Reason.INTERNAL: _Failure(1, "an unexpected error (a bug): report it with the log"),
    Reason.INVALID_ARGUMENTS: _Failure(2, "a flag is missing, malformed or out of range"),
    Reason.FETCH_FAILED: _Failure(
        10, "the model or a dataset could not be fetched: not found, unreachable, missing credentials"
    ),
    Reason.CHECKSUM_MISMATCH: _Failure(11, "the fetched model's sha256 differs from the expected one"),
    Reason.MODEL_LOAD_FAILED: _Failure(12, "the model file is corrupt or not of the declared format"),
    Reason.UNSUPPORTED_MODEL: _Failure(
        13, "the model loads but cannot be optimized: unknown layer, several inputs, unconvertible op"
    ),
    Reason.INVALID_DATASET: _Failure(
        14, "a dataset is unreadable, empty, or does not fit the model's input and output"
    ),
    Reason.VERSION_EXISTS: _Failure(15, "the output version folder exists already; it is never overwritten"),
    Reason.EXPORT_FAILED: _Failure(16, "the result could not be written to the output location"),
    Reason.QUALITY_GATE_FAILED: _Failure(20, "the optimized model lost more quality than allowed"),
    Reason.TERMINATED: _Failure(143, "the process received SIGTERM (the Pod was deleted or timed out)"),
}

SUCCESS_EXIT_CODE = 0


class OptimizeError(Exception):
    """A failure with a known class; `message` names the cause (file, URI or flag) in one line."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = " ".join(message.split())  # always one line

    @property
    def exit_code(self) -> int:
        return self.reason.exit_code

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.message}"


def reason_table_markdown() -> str:
    """The table for the README, generated so it cannot drift from the code."""
    lines = ["| exit code | reason | meaning |", "| ---: | --- | --- |", "| 0 | Succeeded | |"]
    for reason in sorted(Reason, key=lambda r: r.exit_code):
        lines.append(f"| {reason.exit_code} | {reason.value} | {reason.description} |")
    return "\n".join(lines)
