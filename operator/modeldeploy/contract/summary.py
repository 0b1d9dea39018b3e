"""The optimizer's summary: one line of compact JSON that the Job leaves as its termination message.

Kubernetes copies the termination message (at most 4096 bytes) into the Pod's status, so the
operator learns the outcome of a run (its failure reason, or the headline sizes, sparsity,
accuracy and the digest of the published SHA256SUMS) without mounting the artifact store.
`modeldeploy optimize` builds an `OptimizerSummary` and writes `to_line()`; the operator parses it
back with `parse_summary()`. Unknown keys are ignored, so an operator can read the summary of a
newer optimizer image.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from modeldeploy.contract.failures import Failure
from modeldeploy.contract.layout import TERMINATION_LIMIT_BYTES


class Result(StrEnum):
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class Sparsity(BaseModel):
    """Fraction of zero weights measured after pruning, per layer family."""

    model_config = ConfigDict(frozen=True)
    dense: float | None = None
    conv: float | None = None


MAX_SLICE_NAME = 128  # the summary must fit the termination message whatever the slice labels are


class WorstSlice(BaseModel):
    """The class or slice of the evaluation data that lost most to optimization (gated ones only)."""

    model_config = ConfigDict(frozen=True)
    name: str
    """`class=3`, or `slice=VALUE` for a value of the eval data's `slice` array."""
    before: float
    after: float
    examples: int

    @field_validator("name", mode="before")
    @classmethod
    def _short(cls, value: object) -> object:
        if isinstance(value, str) and len(value) > MAX_SLICE_NAME:
            return value[: MAX_SLICE_NAME - 3] + "..."
        return value


class OptimizerSummary(BaseModel):
    """What one run of `modeldeploy optimize` tells the operator."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)

    result: Result
    reason: Failure | None = None
    """Set when result is Failed: the class of failure (its exit code is the container's)."""
    message: str | None = None
    version: int | None = None
    format: str | None = None
    """The published artifact: savedmodel, tflite-dynamic, tflite-float16, tflite-int8..."""
    original_bytes: int | None = None
    optimized_bytes: int | None = None
    original_gzip_bytes: int | None = None
    optimized_gzip_bytes: int | None = None
    sparsity: Sparsity | None = None
    metric: str | None = None
    accuracy_before: float | None = None
    accuracy_after: float | None = None
    gate: Literal["Passed", "Failed", "Skipped"] | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    artifact_sha256: str | None = None
    """sha256 of the served model file (model.tflite, else saved_model.pb)."""
    duration_seconds: float | None = None
    manifest_sha256: str | None = None
    """sha256 of the published SHA256SUMS: the serving pods refuse a folder that differs."""
    reused: bool | None = None
    """True when a retried pod found the version its first attempt had published completely."""
    signer: str | None = None
    """Who signed the published folder (the signing key's fingerprint); None when it is not signed."""
    signature_sha256: str | None = None
    """sha256 of the published signature bundle (model.sig)."""
    source_signer: str | None = None
    """Who signed the source model, when its signature was verified before any work."""
    worst_slice: WorstSlice | None = None
    """The metric before and after on the class or slice that lost most (report.json has them all)."""

    @classmethod
    def failed(cls, reason: Failure, message: str) -> OptimizerSummary:
        return cls(result=Result.FAILED, reason=reason, message=message)

    @property
    def succeeded(self) -> bool:
        return self.result is Result.SUCCEEDED

    def to_line(self) -> str:
        """Compact JSON under the kubelet's limit; a long failure message is cut, never the JSON."""
        line = self._compact()
        if len(line.encode()) < TERMINATION_LIMIT_BYTES:
            return line
        if self.message:
            excess = len(line.encode()) - TERMINATION_LIMIT_BYTES
            cut = self.message[: max(0, len(self.message) - excess - 16)] + "..."
            return self.model_copy(update={"message": cut}).to_line()
        # Cannot happen with the fixed fields; keep the outcome at least.
        return OptimizerSummary(result=self.result, reason=self.reason, version=self.version)._compact()

    def _compact(self) -> str:
        document = self.model_dump(by_alias=True, exclude_none=True, mode="json")
        return json.dumps(document, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def parse_summary(text: str | None) -> OptimizerSummary | None:
    """The summary in a termination message (its last line that is one); None when absent or not ours."""
    if not text:
        return None
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if not isinstance(value, dict):
            continue
        try:
            return OptimizerSummary.model_validate(value)
        except ValidationError:
            continue
    return None
