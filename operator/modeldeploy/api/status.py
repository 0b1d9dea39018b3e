"""The observed state of a ModelDeployment (`status`), written only by the operator.

Conditions follow the Kubernetes convention (type, status, reason, message, lastTransitionTime,
observedGeneration) so `kubectl describe` and `kubectl wait --for=condition=Ready` work.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from modeldeploy.api.base import ApiModel


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Phase(StrEnum):
    PENDING = "Pending"
    OPTIMIZING = "Optimizing"
    ROLLING_OUT = "RollingOut"
    READY = "Ready"
    DEGRADED = "Degraded"
    FAILED = "Failed"


class Condition(ApiModel):
    """One aspect of the state, with why it is so."""

    type: str = Field(description="Optimized, ServingReady or Ready.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="A PascalCase reason, e.g. QualityGateFailed.")
    message: str = Field(default="", description="What happened, for a human.")
    last_transition_time: str | None = Field(default=None, description="When status last changed (RFC 3339).")
    observed_generation: int | None = Field(default=None, description="The spec generation this reflects.")


class LayerSparsity(ApiModel):
    """Sparsity measured after pruning, per layer family."""

    dense: float | None = Field(default=None, description="Fraction of zero weights in Dense kernels.")
    conv: float | None = Field(default=None, description="Fraction of zero weights in convolution kernels.")


class WorstSlice(ApiModel):
    """The class or slice of the evaluation data that lost most to optimization."""

    name: str = Field(description="class=N, or slice=VALUE for a value of the evaluation data's slice array.")
    before: float = Field(description="The metric on this slice before optimization.")
    after: float = Field(description="The metric on this slice after optimization.")
    examples: int = Field(description="Evaluation examples in this slice.")


class OptimizationResult(ApiModel):
    """What the optimizer reported for the artifact being served or built."""

    job_name: str | None = Field(default=None, description="The optimization Job.")
    artifact_hash: str | None = Field(default=None, description="Hash of the model and optimization spec.")
    artifact_format: str | None = Field(default=None, description="e.g. savedmodel, tflite-int8.")
    artifact_sha256: str | None = Field(default=None, description="sha256 of the served model file.")
    manifest_sha256: str | None = Field(
        default=None, description="sha256 of the artifact's SHA256SUMS; serving pods refuse a folder that differs."
    )
    original_bytes: int | None = Field(default=None, description="Size of the original SavedModel.")
    optimized_bytes: int | None = Field(default=None, description="Size of the optimized model.")
    original_gzip_bytes: int | None = Field(default=None, description="Gzipped size of the original.")
    optimized_gzip_bytes: int | None = Field(default=None, description="Gzipped size of the optimized model.")
    sparsity: LayerSparsity | None = Field(default=None, description="Measured sparsity.")
    accuracy_before: float | None = Field(default=None, description="Accuracy of the original model.")
    accuracy_after: float | None = Field(default=None, description="Accuracy of the optimized model.")
    latency_p50_ms: float | None = Field(default=None, description="Median latency per example (ms).")
    latency_p95_ms: float | None = Field(default=None, description="95th percentile latency per example (ms).")
    duration_seconds: float | None = Field(default=None, description="Wall time of the optimization.")
    signer: str | None = Field(
        default=None,
        description="Who signed the published version folder (the signing key's sha256 fingerprint); unset: unsigned.",
    )
    signature_sha256: str | None = Field(
        default=None, description="sha256 of the published signature bundle (model.sig)."
    )
    source_signer: str | None = Field(
        default=None, description="Who signed the source model (spec.model.signature), as verified before any work."
    )
    metric: str | None = Field(
        default=None, description="The quality metric of accuracyBefore/After: accuracy, topKAccuracy, auc, mse, mae."
    )
    worst_slice: WorstSlice | None = Field(
        default=None,
        description="The class or slice that lost most (among those with at least minSliceExamples examples).",
    )


class RolloutPhase(StrEnum):
    PROGRESSING = "Progressing"  # a canary step: pods coming up, or the step's pause running
    PROMOTING = "Promoting"  # every step passed: the stable Deployment takes the new revision
    PROMOTED = "Promoted"  # done: the new revision is stable, the canary is gone
    ABORTED = "Aborted"  # a check failed or the deadline passed: canary removed, stable untouched


class CheckResult(ApiModel):
    """The last measurement of one analysis check."""

    name: str = Field(description="restarts, readiness, or the Prometheus check's name.")
    passed: bool = Field(description="Whether it was within its limit.")
    value: float | None = Field(default=None, description="The measured value (unset: no data or an error).")
    message: str = Field(default="", description="What was measured against what, or the error.")
    failures: int = Field(default=0, description="Failed measurements so far in this rollout.")
    measured_at: str | None = Field(default=None, description="When (RFC 3339).")


class RolloutStatus(ApiModel):
    """Where the canary rollout of a revision stands; kept after it ends (Promoted, Aborted) until the
    next revision. An operator restarted mid-rollout resumes from here, at the same step."""

    revision: str = Field(description="The revision rolled out: a hash of the serving pods' template.")
    version: int | None = Field(default=None, description="Its model version.")
    artifact_hash: str | None = Field(default=None, description="Its artifact.")
    stable_revision: str | None = Field(default=None, description="The revision that stays stable until promotion.")
    phase: RolloutPhase = Field(description="Progressing, Promoting, Promoted or Aborted.")
    step: int = Field(default=0, description="The current step (0-based); the number of steps once promoting.")
    steps: int = Field(default=0, description="How many steps the rollout has.")
    started_at: str | None = Field(default=None, description="When the rollout started.")
    step_started_at: str | None = Field(
        default=None, description="When the current step started (its pods being created)."
    )
    step_ready_at: str | None = Field(
        default=None, description="When the current step's canary pods were ready (its pause counts from here)."
    )
    weight: int = Field(default=0, description="The canary's share of traffic the step asks for (percent).")
    achieved_weight: int = Field(
        default=0,
        description=(
            "The share actually reached (percent): exact through an HTTPRoute, otherwise ready canary pods "
            "over all ready serving pods."
        ),
    )
    canary_replicas: int = Field(default=0, description="Canary pods wanted.")
    stable_replicas: int = Field(default=0, description="Stable pods.")
    analysis: list[CheckResult] = Field(default_factory=list, description="The last measurement of every check.")
    last_analysis_at: str | None = Field(default=None, description="When the Prometheus checks last ran.")
    message: str = Field(default="", description="What is happening, or why it was aborted.")
    finished_at: str | None = Field(default=None, description="When it was promoted or aborted.")


class HistoryOutcome(StrEnum):
    PROMOTED = "Promoted"  # took all traffic (and still does while `to` is unset)
    SUPERSEDED = "Superseded"  # served, then replaced by a newer revision
    ABORTED = "Aborted"  # a canary that never took all traffic


class HistoryEntry(ApiModel):
    """One revision that served (or was tried as a canary): the audit trail."""

    version: int = Field(description="The model version.")
    artifact_hash: str = Field(description="The artifact's hash.")
    storage_uri: str | None = Field(default=None, description="Where its version folder is.")
    manifest_sha256: str | None = Field(default=None, description="sha256 of its SHA256SUMS (what pods verify).")
    optimized_summary: str | None = Field(default=None, description="e.g. 'int8, 80% pruned'.")
    metric: str | None = Field(default=None, description="The quality metric of accuracyBefore/After.")
    accuracy_before: float | None = Field(default=None, description="The original model's quality.")
    accuracy_after: float | None = Field(default=None, description="The optimized model's quality.")
    optimized_bytes: int | None = Field(default=None, description="Size of the served model file.")
    signer: str | None = Field(default=None, description="Who signed the published folder.")
    from_: str | None = Field(default=None, alias="from", description="When it started serving (RFC 3339).")
    to: str | None = Field(default=None, description="When it stopped serving (unset: it still serves).")
    outcome: HistoryOutcome = Field(description="Promoted, Superseded or Aborted.")
    message: str = Field(default="", description="Why it ended (the failed check, the rollback).")


class ModelDeploymentStatus(ApiModel):
    """Everything the operator observed."""

    observed_generation: int | None = Field(default=None, description="The spec generation last reconciled.")
    phase: Phase | None = Field(
        default=None,
        description="A one-word summary: Pending, Optimizing, RollingOut, Ready, Degraded, Failed.",
    )
    conditions: list[Condition] = Field(default_factory=list, description="Optimized, ServingReady, Ready.")
    served_version: int | None = Field(default=None, description="The model version the serving pods load.")
    served_artifact: str | None = Field(default=None, description="Artifact hash the serving pods load.")
    served_uri: str | None = Field(
        default=None, description="Where the served version folder is (kept to go on serving it after a failure)."
    )
    optimization: OptimizationResult | None = Field(default=None, description="The optimizer's report.")
    optimized_summary: str | None = Field(default=None, description="e.g. 'int8, 80% pruned' (the OPTIMIZED column).")
    size_summary: str | None = Field(default=None, description="e.g. '0.2MB/1.3MB' (the SIZE column).")
    replicas: int | None = Field(default=None, description="Serving pods (the scale subresource reads it).")
    ready_replicas: int | None = Field(default=None, description="Serving pods that are ready.")
    selector: str | None = Field(
        default=None, description="Label selector of the serving pods (for the HPA and kubectl scale)."
    )
    url: str | None = Field(default=None, description="In-cluster REST URL of the model.")
    summary: str | None = Field(
        default=None,
        description=(
            "The STATUS column: the phase, and what keeps the spec's version from serving, e.g. "
            "'Degraded: v3 failed (QualityGateFailed)'."
        ),
    )
    rollout: RolloutStatus | None = Field(
        default=None, description="The canary rollout of the newest revision (strategy Canary)."
    )
    canary: str | None = Field(
        default=None, description="The CANARY column: the canary's achieved share, e.g. '10%', or '-'."
    )
    history: list[HistoryEntry] = Field(
        default_factory=list,
        description="The last served revisions, newest first (spec.rollout.historyLimit of them).",
    )
