"""Conditions: the three we publish, how they keep their transition times, and which changes
deserve an Event.

- `Optimized`: the artifact the spec asks for exists (True), is being built (False, Optimizing),
  or could not be built (False, with the optimizer's reason: QualityGateFailed, FetchFailed...).
- `ServingReady`: the TF Serving Deployment is Available and runs the artifact we applied.
- `Ready`: clients can use the model. It stays True while an older version keeps serving after a
  failed optimization (reason ServingPreviousVersion), like a Deployment stays Available after a
  failed rollout; `Optimized` then says what went wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

from modeldeploy.api.status import Condition, ConditionStatus

OPTIMIZED = "Optimized"
SERVING_READY = "ServingReady"
READY = "Ready"
CONDITION_TYPES = (OPTIMIZED, SERVING_READY, READY)

# Reasons that describe a problem a human should look at (Warning Events).
WARNING_REASONS = frozenset(
    {
        "QualityGateFailed",
        "FetchFailed",
        "ChecksumMismatch",
        "ModelLoadFailed",
        "UnsupportedModel",
        "InvalidDataset",
        "InvalidArguments",
        "Internal",
        "OptimizationFailed",
        "JobFailed",
        "DeadlineExceeded",
        "BackoffLimitExceeded",
        "ProgressDeadlineExceeded",
        "ServingPreviousVersion",
        "PersistentVolumeClaimNotFound",
        "SecretNotFound",
        "CreateContainerConfigError",
        "Unschedulable",
        "InvalidSpec",
        "ArtifactVerificationFailed",
        "VersionExists",
        "ExportFailed",
        "Terminated",
    }
)


@dataclass(frozen=True)
class EventSpec:
    type: str  # Normal | Warning
    reason: str
    message: str


def condition(type_: str, true: bool, reason: str, message: str, generation: int | None) -> Condition:
    return Condition(
        type=type_,
        status=ConditionStatus.TRUE if true else ConditionStatus.FALSE,
        reason=reason,
        message=message,
        observed_generation=generation,
    )


def merge_conditions(previous: list[Condition], new: list[Condition], now: str) -> list[Condition]:
    """New conditions, keeping lastTransitionTime when a condition's status did not change."""
    before = {c.type: c for c in previous}
    merged = []
    for cond in new:
        old = before.get(cond.type)
        same = old is not None and old.status == cond.status and old.last_transition_time
        merged.append(
            cond.model_copy(update={"last_transition_time": old.last_transition_time if same and old else now})
        )
    return merged


def transition_events(previous: list[Condition], new: list[Condition]) -> list[EventSpec]:
    """An Event for every condition whose status or reason changed."""
    before = {c.type: (c.status, c.reason) for c in previous}
    events = []
    for cond in new:
        if before.get(cond.type) == (cond.status, cond.reason):
            continue
        kind = "Warning" if cond.reason in WARNING_REASONS else "Normal"
        events.append(EventSpec(kind, cond.reason, f"{cond.type}={cond.status.value}: {cond.message}"))
    return events
