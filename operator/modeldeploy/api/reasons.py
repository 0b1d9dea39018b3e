"""Every condition type and reason the operator publishes, as documented constants.

Code compares these constants, never string literals. Each reason says whether it deserves a
Warning Event (something a human should look at) and what it means; the table in docs/api.md is
generated from here. The optimization Job's failure reasons come from the contract
(`modeldeploy.contract.failures.Failure`) and are all Warnings; some reasons are Kubernetes' own
(a Job's DeadlineExceeded, a pod's CreateContainerConfigError) and are passed through as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from modeldeploy.contract.failures import Failure


class ConditionType(StrEnum):
    """The three conditions of a ModelDeployment; Ready rolls the other two up."""

    OPTIMIZED = "Optimized"
    SERVING_READY = "ServingReady"
    READY = "Ready"


class Reason(StrEnum):
    """Reasons set by the operator itself."""

    # Optimized
    OPTIMIZING = "Optimizing"
    OPTIMIZED = "Optimized"
    NOT_REQUIRED = "NotRequired"
    OPTIMIZATION_FAILED = "OptimizationFailed"
    JOB_FAILED = "JobFailed"
    OPTIMIZATION_CANCELLED = "OptimizationCancelled"
    # ServingReady
    NO_ARTIFACT = "NoArtifact"
    CREATING = "Creating"
    ROLLING_OUT = "RollingOut"
    AVAILABLE = "Available"
    UNAVAILABLE = "Unavailable"
    ARTIFACT_VERIFICATION_FAILED = "ArtifactVerificationFailed"
    NAME_CONFLICT = "NameConflict"
    # Ready
    READY = "Ready"
    SERVING_PREVIOUS_VERSION = "ServingPreviousVersion"
    # ServingReady/Ready during and after a canary rollout
    CANARY_PROGRESSING = "CanaryProgressing"
    PROMOTING = "Promoting"
    PROMOTED = "Promoted"
    ROLLOUT_ABORTED = "RolloutAborted"
    ROLLED_BACK = "RolledBack"
    GATEWAY_API_NOT_INSTALLED = "GatewayAPINotInstalled"
    # any condition: the spec cannot be acted on
    INVALID_SPEC = "InvalidSpec"
    PERSISTENT_VOLUME_CLAIM_NOT_FOUND = "PersistentVolumeClaimNotFound"
    # any condition: the API server refused to store a child we built (Job, Deployment, Service...)
    CHILD_REJECTED = "ChildRejected"
    # a claim the pods mount exists but is not bound to a volume, and the pods wait for it
    PERSISTENT_VOLUME_CLAIM_PENDING = "PersistentVolumeClaimPending"


class KubernetesReason(StrEnum):
    """Reasons Kubernetes reports on our children, passed through into our conditions."""

    DEADLINE_EXCEEDED = "DeadlineExceeded"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    CREATE_CONTAINER_CONFIG_ERROR = "CreateContainerConfigError"
    SECRET_NOT_FOUND = "SecretNotFound"
    UNSCHEDULABLE = "Unschedulable"
    ERR_IMAGE_PULL = "ErrImagePull"
    IMAGE_PULL_BACK_OFF = "ImagePullBackOff"
    INVALID_IMAGE_NAME = "InvalidImageName"
    CREATE_CONTAINER_ERROR = "CreateContainerError"
    CRASH_LOOP_BACK_OFF = "CrashLoopBackOff"


# Why a pod cannot start, as its kubelet or the scheduler says it: surfaced as the condition's reason
# instead of the Deployment's "does not have minimum availability".
POD_START_FAILURES: frozenset[str] = frozenset(
    {
        KubernetesReason.UNSCHEDULABLE,
        KubernetesReason.ERR_IMAGE_PULL,
        KubernetesReason.IMAGE_PULL_BACK_OFF,
        KubernetesReason.INVALID_IMAGE_NAME,
        KubernetesReason.CREATE_CONTAINER_CONFIG_ERROR,
        KubernetesReason.CREATE_CONTAINER_ERROR,
        KubernetesReason.CRASH_LOOP_BACK_OFF,
    }
)


@dataclass(frozen=True)
class ReasonInfo:
    warning: bool
    meaning: str


REASONS: dict[str, ReasonInfo] = {
    Reason.OPTIMIZING: ReasonInfo(
        warning=False, meaning="the optimization Job for the spec's artifact is starting or running"
    ),
    Reason.OPTIMIZED: ReasonInfo(warning=False, meaning="the Job built the artifact the spec asks for"),
    Reason.NOT_REQUIRED: ReasonInfo(warning=False, meaning="optimization is off and the SavedModel is served as it is"),
    Reason.OPTIMIZATION_FAILED: ReasonInfo(warning=True, meaning="the Job failed and its summary gave no reason"),
    Reason.JOB_FAILED: ReasonInfo(
        warning=True, meaning="the Job failed without a summary (its pod never ran the optimizer)"
    ),
    Reason.OPTIMIZATION_CANCELLED: ReasonInfo(
        warning=False,
        meaning="a running optimization Job was deleted: the spec now asks for another artifact (Event only)",
    ),
    Reason.NO_ARTIFACT: ReasonInfo(
        warning=False, meaning="no artifact can be served yet: waiting for the first optimization"
    ),
    Reason.CREATING: ReasonInfo(warning=False, meaning="the TF Serving Deployment is being created"),
    Reason.ROLLING_OUT: ReasonInfo(
        warning=False, meaning="a new version is rolling out; the previous pods serve until it is ready"
    ),
    Reason.AVAILABLE: ReasonInfo(warning=False, meaning="the TF Serving pods are ready with the served version"),
    Reason.UNAVAILABLE: ReasonInfo(warning=False, meaning="the TF Serving Deployment is not Available"),
    Reason.ARTIFACT_VERIFICATION_FAILED: ReasonInfo(
        warning=True,
        meaning="the serving pods refused the version folder: it differs from what the optimizer published",
    ),
    Reason.NAME_CONFLICT: ReasonInfo(
        warning=True,
        meaning="an object with a child's name exists and is not ours: it is left untouched; rename or remove it",
    ),
    Reason.READY: ReasonInfo(warning=False, meaning="the version the spec asks for is served"),
    Reason.SERVING_PREVIOUS_VERSION: ReasonInfo(
        warning=True, meaning="the spec's version failed; the last good version keeps serving (Optimized says why)"
    ),
    Reason.CANARY_PROGRESSING: ReasonInfo(
        warning=False, meaning="a canary of the new revision takes a step's share of traffic while it is analysed"
    ),
    Reason.PROMOTING: ReasonInfo(
        warning=False, meaning="every canary step passed: the stable Deployment takes the new revision"
    ),
    Reason.PROMOTED: ReasonInfo(warning=False, meaning="the canary passed every step and is now stable (Event)"),
    Reason.ROLLOUT_ABORTED: ReasonInfo(
        warning=True,
        meaning=(
            "the canary failed a check or missed its deadline: it was removed, the stable version serves "
            "untouched; no new attempt until the spec changes"
        ),
    ),
    Reason.ROLLED_BACK: ReasonInfo(
        warning=False,
        meaning="the spec went back to a revision in status.history: its artifact serves again, no optimization Job",
    ),
    Reason.GATEWAY_API_NOT_INSTALLED: ReasonInfo(
        warning=True,
        meaning=(
            "rollout.trafficRouting.gatewayAPI is set but the cluster has no HTTPRoute kind "
            "(install the Gateway API CRDs, then restart the operator)"
        ),
    ),
    Reason.INVALID_SPEC: ReasonInfo(warning=True, meaning="the spec breaks a rule the API server could not check"),
    Reason.PERSISTENT_VOLUME_CLAIM_NOT_FOUND: ReasonInfo(
        warning=True, meaning="a claim the spec refers to does not exist"
    ),
    Reason.CHILD_REJECTED: ReasonInfo(
        warning=True,
        meaning=(
            "the API server refused a child built from the spec (its message names the field); "
            "nothing is retried until the spec or the child changes"
        ),
    ),
    Reason.PERSISTENT_VOLUME_CLAIM_PENDING: ReasonInfo(
        warning=True, meaning="a claim the pods mount is not bound to a volume: the pods wait for it"
    ),
    KubernetesReason.DEADLINE_EXCEEDED: ReasonInfo(
        warning=True, meaning="the Job ran longer than optimization.deadlineSeconds"
    ),
    KubernetesReason.BACKOFF_LIMIT_EXCEEDED: ReasonInfo(warning=True, meaning="the Job's pods failed too often"),
    KubernetesReason.PROGRESS_DEADLINE_EXCEEDED: ReasonInfo(
        warning=True, meaning="the Deployment made no progress in time"
    ),
    KubernetesReason.CREATE_CONTAINER_CONFIG_ERROR: ReasonInfo(
        warning=True, meaning="a pod cannot start: a Secret or ConfigMap it needs is missing"
    ),
    KubernetesReason.SECRET_NOT_FOUND: ReasonInfo(warning=True, meaning="a Secret the pod needs is missing"),
    KubernetesReason.UNSCHEDULABLE: ReasonInfo(warning=True, meaning="no node can run the pod"),
    KubernetesReason.ERR_IMAGE_PULL: ReasonInfo(warning=True, meaning="a pod's image cannot be pulled"),
    KubernetesReason.IMAGE_PULL_BACK_OFF: ReasonInfo(
        warning=True, meaning="a pod's image cannot be pulled; the kubelet keeps retrying"
    ),
    KubernetesReason.INVALID_IMAGE_NAME: ReasonInfo(warning=True, meaning="a pod's image reference is invalid"),
    KubernetesReason.CREATE_CONTAINER_ERROR: ReasonInfo(
        warning=True, meaning="the container runtime cannot create a container"
    ),
    KubernetesReason.CRASH_LOOP_BACK_OFF: ReasonInfo(warning=True, meaning="a pod's container keeps exiting"),
    **{failure.value: ReasonInfo(warning=True, meaning=f"optimizer: {failure.description}") for failure in Failure},
}


def is_warning(reason: str) -> bool:
    """Does a condition with this reason deserve a Warning Event? Unknown reasons are Normal."""
    info = REASONS.get(reason)
    return info is not None and info.warning


def reasons_table_markdown() -> str:
    """The reasons as a Markdown table (docs/api.md)."""
    lines = ["| reason | event | meaning |", "| --- | --- | --- |"]
    lines += [f"| {reason} | {'Warning' if i.warning else 'Normal'} | {i.meaning} |" for reason, i in REASONS.items()]
    return "\n".join(lines)
