"""The status of a ModelDeployment, from the plan and what was observed. Pure: the clock is an argument.

Three conditions, rolled up into a phase and the printer columns' strings:
- `Optimized`: the artifact the spec asks for exists (True; reason RolledBack when it is served
  again from status.history without a Job), is being built (False, Optimizing), or could not be
  built (False, with the optimizer's reason: QualityGateFailed, FetchFailed...).
- `ServingReady`: the TF Serving Deployment is Available and runs the artifact we applied.
- `Ready`: clients can use the model. It stays True while an older version keeps serving after a
  failed optimization (reason ServingPreviousVersion), like a Deployment stays Available after a
  failed rollout; `Optimized` then says what went wrong.
Conditions keep their lastTransitionTime while their status holds. Events are posted for the
transitions a user cares about (`transition_events`), Warning when the reason says a human should look.
`status.history` (the audit trail, `history.py`) is carried from pass to pass and grows when an
artifact starts serving all traffic (`with_history`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from modeldeploy.api import ModelDeployment
from modeldeploy.api.reasons import POD_START_FAILURES, ConditionType, KubernetesReason, Reason, is_warning
from modeldeploy.api.status import (
    Condition,
    ConditionStatus,
    ModelDeploymentStatus,
    OptimizationResult,
    Phase,
    RolloutPhase,
    RolloutStatus,
)
from modeldeploy.contract.formats import Quantization
from modeldeploy.contract.redact import redact_userinfo
from modeldeploy.controller.builders import needs_job
from modeldeploy.controller.builders.artifacts import Artifact
from modeldeploy.controller.builders.labels import SERVING, selector_labels
from modeldeploy.controller.builders.names import job_name, serving_name
from modeldeploy.controller.builders.service import model_url
from modeldeploy.controller.history import (
    aborted_entry,
    entry_from_status,
    record_aborted,
    record_serving,
    rollback_condition_message,
    rollback_event_message,
)
from modeldeploy.controller.plan import Plan, previous_artifact
from modeldeploy.controller.rollout import ACTIVE
from modeldeploy.controller.views import DeploymentView, JobState, JobView, Observed, PodProblem, Rejection


@dataclass(frozen=True)
class EventSpec:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class StatusUpdate:
    status: ModelDeploymentStatus = field(default_factory=ModelDeploymentStatus)
    events: list[EventSpec] = field(default_factory=list)


TRUE, FALSE = ConditionStatus.TRUE, ConditionStatus.FALSE
# A Deployment's Progressing reason while its new ReplicaSet's pods come up.
DEPLOYMENT_PROGRESSING = "ReplicaSetUpdated"
# Reasons that keep the spec's version from serving while the pods already running may still answer:
# Ready stays True on them (like RollingOut), the phase says Degraded.
BLOCKED_BESIDE_SERVING: frozenset[str] = frozenset(
    {Reason.CHILD_REJECTED, Reason.PERSISTENT_VOLUME_CLAIM_PENDING, *POD_START_FAILURES}
)
# Reasons two conditions often take at once (ServingReady and Ready): one Warning Event says it.
ONE_EVENT_PER_REASON = BLOCKED_BESIDE_SERVING


def new_condition(type_: str, status: ConditionStatus, reason: str, message: str, generation: int | None) -> Condition:
    return Condition(
        type=type_,
        status=status,
        reason=reason,
        message=redact_userinfo(message),  # messages quote URIs and the optimizer: never a password
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
    """One Event per transition a user cares about: Ready appearing or flipping, Ready reaching
    reason Ready (a version is served), a condition turning to a Warning reason, an optimization
    Job finishing. Steps in between (Creating, RollingOut) are in the conditions that
    `kubectl describe` shows, not worth an API write each."""
    before = {c.type: (c.status, c.reason) for c in previous}
    events = []
    for cond in new:
        old = before.get(cond.type)
        if old == (cond.status, cond.reason):
            continue
        # A Warning once per problem: when only the status flips (Ready=True/ChildRejected once the pods
        # serve beside a refused HPA), the problem was told already; the flip itself is Normal news.
        warning = is_warning(cond.reason) and (old is None or old[1] != cond.reason)
        optimized = cond.type == ConditionType.OPTIMIZED and cond.reason == Reason.OPTIMIZED  # a Job finished
        ready = cond.type == ConditionType.READY and (
            old is None or old[0] != cond.status or cond.reason == Reason.READY
        )
        if ready or warning or optimized:
            kind = "Warning" if warning else "Normal"
            events.append(EventSpec(kind, cond.reason, f"{cond.type}={cond.status.value}: {cond.message}"))
    return events


def _is_true(cond: Condition) -> bool:
    return cond.status == ConditionStatus.TRUE


# -- printer columns ------------------------------------------------------------------------------------


def _mb(size: int | None) -> str:
    return "?" if size is None else f"{size / 1e6:.2f}MB"


def optimized_summary(md: ModelDeployment, result: OptimizationResult | None) -> str:
    """The OPTIMIZED column: 'int8, 80% pruned', 'float16', 'dense 80%/conv 50% pruned', 'none'."""
    opt = md.spec.optimization
    if not needs_job(md.spec):
        return "none (served as is)"
    if not opt.enabled:
        return "none"
    parts = [opt.quantization.value] if opt.quantization != Quantization.NONE else []
    sparsity = result.sparsity if result and result.sparsity else None
    dense = sparsity.dense if sparsity and sparsity.dense is not None else opt.pruning.dense_sparsity
    conv = sparsity.conv if sparsity and sparsity.conv is not None else opt.pruning.conv_sparsity
    if opt.pruning.dense_sparsity and opt.pruning.conv_sparsity:
        parts.append(f"dense {dense:.0%}/conv {conv:.0%} pruned")
    elif opt.pruning.dense_sparsity or opt.pruning.conv_sparsity:
        parts.append(f"{max(dense or 0, conv or 0):.0%} pruned")
    return ", ".join(parts) or "none"


def size_summary(result: OptimizationResult | None) -> str | None:
    """The SIZE column: optimized/original."""
    if result is None or result.optimized_bytes is None:
        return None
    return f"{_mb(result.optimized_bytes)}/{_mb(result.original_bytes)}"


# -- conditions -----------------------------------------------------------------------------------------


def one_event_per_reason(events: list[EventSpec]) -> list[EventSpec]:
    """Of the Events with the same reason in `ONE_EVENT_PER_REASON`, keep the last (Ready's)."""
    last = {e.reason: i for i, e in enumerate(events)}
    return [e for i, e in enumerate(events) if e.reason not in ONE_EVENT_PER_REASON or last[e.reason] == i]


def rejected_message(rejections: list[Rejection]) -> str:
    return "; ".join(r.describe() for r in rejections)


def claims_pending_message(claims: tuple[str, ...], who: str, why: str) -> str:
    names = ", ".join(claims)
    return f"PersistentVolumeClaim {names} is not bound to a volume (Pending): {who} waits for it ({why})".rstrip(" ()")


def pod_start_condition(
    type_: str, problem: PodProblem, pending_claims: tuple[str, ...], who: str, generation: int | None
) -> Condition:
    """A pod that cannot start, with the scheduler's or kubelet's reason; an unschedulable pod whose
    claim is unbound is waiting for that claim, which is what the user must fix."""
    if problem.reason == KubernetesReason.UNSCHEDULABLE and pending_claims:
        message = claims_pending_message(pending_claims, who, problem.message)
        return new_condition(type_, FALSE, Reason.PERSISTENT_VOLUME_CLAIM_PENDING, message, generation)
    return new_condition(type_, FALSE, problem.reason, f"{who} cannot start: {problem.message}", generation)


def optimized_condition(
    md: ModelDeployment,
    decided: Plan,
    generation: int | None,
    *,
    rejected: tuple[Rejection, ...] = (),
    pending_claims: tuple[str, ...] = (),
) -> Condition:
    optimized, job = ConditionType.OPTIMIZED, decided.job
    if not needs_job(md.spec):
        return new_condition(optimized, TRUE, Reason.NOT_REQUIRED, "the SavedModel is served as it is", generation)
    if decided.rollback is not None:
        return new_condition(
            optimized, TRUE, Reason.ROLLED_BACK, rollback_condition_message(decided.rollback), generation
        )
    version = md.spec.model.version
    refused = [r for r in rejected if r.kind == "Job"]
    if refused and job is None:
        return new_condition(optimized, FALSE, Reason.CHILD_REJECTED, rejected_message(refused), generation)
    if job is not None and job.state == JobState.RUNNING and job.reason in POD_START_FAILURES:
        problem = PodProblem(job.reason, f"{job.reason}: {job.message}".rstrip(": "))
        return pod_start_condition(optimized, problem, pending_claims, f"the pod of Job {job.name}", generation)
    if job is None or job.state == JobState.RUNNING:
        # The same words for "created in this pass" and "running", so that the pass after the one
        # that creates the Job has nothing to write.
        name = job.name if job is not None else job_name(md.name, decided.desired.hash)
        why = f" ({job.reason}: {job.message})" if job is not None and job.reason else ""
        message = f"Job {name} is optimizing version {version}{why}"
        return new_condition(optimized, FALSE, Reason.OPTIMIZING, message, generation)
    if job.state == JobState.FAILED:
        message = f"Job {job.name} failed: {job.message}".rstrip(": ")
        return new_condition(optimized, FALSE, job.reason or Reason.JOB_FAILED, message, generation)
    message = f"Job {job.name} built artifact {decided.desired.hash}"
    return new_condition(optimized, TRUE, Reason.OPTIMIZED, message, generation)


def serving_available(dep: DeploymentView) -> bool:
    """Clients are answered: the Deployment is Available with a ready pod (or scaled to zero on
    purpose), or at least one pod is available while the rest come up."""
    return (dep.available and (dep.ready_replicas > 0 or dep.replicas == 0)) or dep.available_replicas > 0


def serving_condition(decided: Plan, observed: Observed, generation: int | None) -> Condition:
    serving, serve, dep = ConditionType.SERVING_READY, decided.serve, observed.deployment
    if observed.conflicts:
        message = (
            f"{', '.join(observed.conflicts)} already exists and is not owned by this ModelDeployment: "
            "it is left untouched; delete or rename it"
        )
        return new_condition(serving, FALSE, Reason.NAME_CONFLICT, message, generation)
    refused = [r for r in observed.rejected if r.kind != "Job"]
    if refused:
        return new_condition(serving, FALSE, Reason.CHILD_REJECTED, rejected_message(refused), generation)
    if serve is None:
        return new_condition(serving, FALSE, Reason.NO_ARTIFACT, "waiting for the first optimized artifact", generation)
    if serve.hash in observed.refused_artifacts:
        message = f"serving pods refused version {serve.version}: {observed.refused_artifacts[serve.hash]}"
        return new_condition(serving, FALSE, Reason.ARTIFACT_VERIFICATION_FAILED, message, generation)
    if dep is None:
        return new_condition(serving, FALSE, Reason.CREATING, "creating the TF Serving Deployment", generation)
    if dep.artifact_hash != serve.hash or dep.observed_generation < dep.generation:
        message = f"rolling out version {serve.version} ({serve.hash})"
        return new_condition(serving, FALSE, Reason.ROLLING_OUT, message, generation)
    problem = observed.pod_problems.get(serve.hash)
    who = f"a TF Serving pod of version {serve.version}"
    if dep.progressing_reason == KubernetesReason.PROGRESS_DEADLINE_EXCEEDED and problem is None:
        reason = KubernetesReason.PROGRESS_DEADLINE_EXCEEDED
        return new_condition(serving, FALSE, reason, dep.progressing_message, generation)
    if dep.updated_replicas < dep.replicas:
        if problem is not None:
            return pod_start_condition(serving, problem, observed.pending_claims, who, generation)
        message = f"{dep.updated_replicas}/{dep.replicas} pods run version {serve.version}"
        return new_condition(serving, FALSE, Reason.ROLLING_OUT, message, generation)
    if serving_available(dep):
        # A scale-up makes the Deployment "not Available" until the new pods are ready (maxUnavailable
        # 0), while the ready ones keep answering: that is no outage.
        message = f"{dep.ready_replicas}/{dep.replicas} TF Serving pods ready with version {serve.version}"
        return new_condition(serving, TRUE, Reason.AVAILABLE, message, generation)
    if problem is not None:
        return pod_start_condition(serving, problem, observed.pending_claims, who, generation)
    if dep.progressing_reason == KubernetesReason.PROGRESS_DEADLINE_EXCEEDED:
        reason = KubernetesReason.PROGRESS_DEADLINE_EXCEEDED
        return new_condition(serving, FALSE, reason, dep.progressing_message, generation)
    if not dep.available and dep.progressing_reason == DEPLOYMENT_PROGRESSING:
        # The Deployment controller is still bringing pods up: a rollout in progress, not an outage.
        message = f"rolling out version {serve.version} ({serve.hash})"
        return new_condition(serving, FALSE, Reason.ROLLING_OUT, message, generation)
    if dep.available and (dep.ready_replicas > 0 or dep.replicas == 0):
        message = f"{dep.ready_replicas}/{dep.replicas} TF Serving pods ready with version {serve.version}"
        return new_condition(serving, TRUE, Reason.AVAILABLE, message, generation)
    message = dep.unavailable_message or f"{dep.ready_replicas}/{dep.replicas} TF Serving pods ready"
    return new_condition(serving, FALSE, Reason.UNAVAILABLE, message, generation)


def ready_condition(
    md: ModelDeployment,
    decided: Plan,
    optimized: Condition,
    serving: Condition,
    generation: int | None,
    *,
    still_serving: bool,
) -> Condition:
    ready, name, serve, desired = ConditionType.READY, md.spec.model.name, decided.serve, decided.desired
    if serving.reason == Reason.ROLLING_OUT and still_serving and serve is not None:
        # maxUnavailable 0: the pods of the previous version answer until the new ones are ready.
        message = f"rolling out version {serve.version}; the previous pods keep serving"
        return new_condition(ready, TRUE, Reason.ROLLING_OUT, message, generation)
    if serving.reason in BLOCKED_BESIDE_SERVING and still_serving:
        message = f"the pods already running keep serving, but {serving.message}"
        return new_condition(ready, TRUE, serving.reason, message, generation)
    if not _is_true(serving) or serve is None:
        optimizing = optimized.reason == Reason.OPTIMIZING
        failing = optimized if not _is_true(optimized) and not optimizing else serving
        if serve is None and optimizing:
            failing = optimized
        return new_condition(ready, FALSE, failing.reason, failing.message, generation)
    if serve.hash == desired.hash:
        message = f"model {name} version {serve.version} is served"
        if decided.result is not None and decided.result.signer:
            # The Event of this transition then says who signed what is served.
            bundle = (decided.result.signature_sha256 or "")[:12]
            message += f", signed by {decided.result.signer} (model.sig sha256 {bundle}...)"
        return new_condition(ready, TRUE, Reason.READY, message, generation)
    if optimized.reason == Reason.OPTIMIZING:
        message = f"serving version {serve.version} while version {desired.version} is optimized"
        return new_condition(ready, TRUE, Reason.OPTIMIZING, message, generation)
    message = (
        f"still serving version {serve.version}: version {desired.version} failed ({optimized.reason}: "
        f"{optimized.message})"
    )
    return new_condition(ready, TRUE, Reason.SERVING_PREVIOUS_VERSION, message, generation)


def phase_of(
    desired: Artifact, serve: Artifact | None, optimized: Condition, serving: Condition, ready: Condition
) -> Phase:
    waiting = optimized.reason in BLOCKED_BESIDE_SERVING and optimized.reason != Reason.CHILD_REJECTED
    failed = not _is_true(optimized) and optimized.reason != Reason.OPTIMIZING and not waiting
    if _is_true(ready):
        if ready.reason == Reason.ROLLING_OUT:
            return Phase.ROLLING_OUT
        if ready.reason in BLOCKED_BESIDE_SERVING:
            return Phase.DEGRADED
        if serve is not None and serve.hash == desired.hash:
            return Phase.READY
        return Phase.DEGRADED if failed else Phase.OPTIMIZING
    if failed or serving.reason in (Reason.NAME_CONFLICT, Reason.CHILD_REJECTED):
        return Phase.FAILED
    if optimized.reason == Reason.OPTIMIZING:
        return Phase.OPTIMIZING
    if serving.reason in (Reason.ROLLING_OUT, Reason.CREATING):
        return Phase.ROLLING_OUT
    return Phase.PENDING


def cancelled_event(job: JobView, desired: Artifact) -> EventSpec:
    """The Normal Event for a running optimization Job deleted because the spec moved on."""
    version = f"version {job.version}" if job.version else f"artifact {job.artifact_hash}"
    message = (
        f"cancelled Job {job.name}, which was building {version}: the spec now asks for version "
        f"{desired.version} (artifact {desired.hash})"
    )
    return EventSpec("Normal", Reason.OPTIMIZATION_CANCELLED, message)


def status_summary(phase: Phase, version: int, optimized: Condition, serving: Condition, ready: Condition) -> str:
    """The STATUS column: 'Ready', 'Optimizing: v3', 'Degraded: v3 failed (QualityGateFailed)'."""
    if phase == Phase.READY:
        return phase.value
    if phase in (Phase.OPTIMIZING, Phase.ROLLING_OUT):
        return f"{phase.value}: v{version}"
    if phase == Phase.DEGRADED:
        why = optimized if not _is_true(optimized) and optimized.reason != Reason.OPTIMIZING else serving
        return f"{phase.value}: v{version} failed ({why.reason})"
    return f"{phase.value}: {ready.reason}"


# -- canary rollout -------------------------------------------------------------------------------------


def stable_artifact(
    md: ModelDeployment, previous: ModelDeploymentStatus, dep: DeploymentView, serve: Artifact
) -> Artifact:
    """What the stable Deployment runs while a canary holds it: the artifact served before."""
    served = previous_artifact(md, previous)
    if served is not None and served.hash == dep.artifact_hash:
        return served
    return dataclasses.replace(serve, hash=dep.artifact_hash, version=dep.model_version or serve.version)


def rollout_ready(
    ready: Condition, rollout: RolloutStatus | None, stable_version: int | None, generation: int | None
) -> Condition:
    """Ready while a canary rollout runs: the stable version answers clients (True), and the reason
    says where the rollout stands; after an abort it stays True (RolloutAborted) with the failed check."""
    if rollout is None or ready.status != TRUE:
        return ready
    serves = f"version {stable_version} serves" if stable_version is not None else "the stable pods serve"
    if rollout.phase == RolloutPhase.PROGRESSING:
        return new_condition(ready.type, TRUE, Reason.CANARY_PROGRESSING, f"{serves}; {rollout.message}", generation)
    if rollout.phase == RolloutPhase.ABORTED and rollout.revision != rollout.stable_revision:
        message = f"{rollout.message}; {serves} untouched"
        return new_condition(ready.type, TRUE, Reason.ROLLOUT_ABORTED, message, generation)
    if rollout.phase == RolloutPhase.PROMOTING:
        return new_condition(ready.type, TRUE, Reason.PROMOTING, rollout.message, generation)
    return ready


def with_aborted(
    md: ModelDeployment,
    decided: Plan,
    status: ModelDeploymentStatus,
    rollout: RolloutStatus,
    canary: Artifact,
    now: str,
) -> ModelDeploymentStatus:
    """`status` with the aborted canary in status.history (once per attempt), its failed check in
    the entry's message."""
    entry = aborted_entry(
        canary,
        decided.result,
        optimized_summary(md, decided.result),
        started_at=rollout.started_at,
        finished_at=rollout.finished_at or now,
        message=rollout.message,
    )
    return status.model_copy(update={"history": record_aborted(status.history, entry, md.spec.rollout.history_limit)})


def canary_column(rollout: RolloutStatus | None) -> str:
    """The CANARY column: the share the canary reached while a rollout runs, else '-'."""
    return f"{rollout.achieved_weight}%" if rollout is not None and rollout.phase in ACTIVE else "-"


# -- the whole status -----------------------------------------------------------------------------------


def failed_status(
    previous: ModelDeploymentStatus, reason: str, message: str, generation: int | None, now: str
) -> StatusUpdate:
    """The spec cannot be acted on: every condition says why; what serves is left as it is."""
    conds = [new_condition(t, FALSE, reason, message, generation) for t in ConditionType]
    status = previous.model_copy(
        update={
            "observed_generation": generation,
            "phase": Phase.FAILED,
            "summary": f"{Phase.FAILED.value}: {reason}",
            "conditions": merge_conditions(previous.conditions, conds, now),
        }
    )
    return StatusUpdate(status, transition_events(previous.conditions, status.conditions))


def status_of(
    md: ModelDeployment, decided: Plan, observed: Observed, previous: ModelDeploymentStatus, now: str
) -> StatusUpdate:
    generation = md.metadata.generation
    if decided.blocked is not None:
        return failed_status(previous, decided.blocked.reason, decided.blocked.message, generation, now)
    serve, result, deployment = decided.serve, decided.result, observed.deployment
    optimized = optimized_condition(
        md, decided, generation, rejected=observed.rejected, pending_claims=observed.pending_claims
    )
    decision = decided.rollout
    rollout = decision.status if decision is not None else None
    # While a canary holds the stable Deployment, ServingReady is about what the stable pods run.
    hold = decision is not None and decision.holds_stable and deployment is not None and serve is not None
    stable = stable_artifact(md, previous, deployment, serve) if hold and deployment and serve else None
    serving = serving_condition(dataclasses.replace(decided, serve=stable) if stable else decided, observed, generation)
    # Clients reach the pods through the Service: when its creation was refused, nothing serves.
    unreachable = (
        any(r.kind == "Service" for r in observed.rejected)
        and (
            "Service",
            serving_name(md.name),
        )
        not in observed.children
    )
    still_serving = deployment is not None and serving_available(deployment) and not unreachable
    ready = ready_condition(md, decided, optimized, serving, generation, still_serving=still_serving)
    ready = rollout_ready(ready, rollout, stable.version if stable else None, generation)
    phase = phase_of(decided.desired, serve, optimized, serving, ready)
    summary = status_summary(phase, decided.desired.version, optimized, serving, ready)
    if ready.reason in (Reason.CANARY_PROGRESSING, Reason.PROMOTING):
        phase, summary = Phase.ROLLING_OUT, f"{Phase.ROLLING_OUT.value}: v{decided.desired.version}"
    elif ready.reason == Reason.ROLLOUT_ABORTED:
        phase = Phase.DEGRADED
        summary = f"{phase.value}: v{decided.desired.version} failed ({Reason.ROLLOUT_ABORTED})"
    if decided.routing_blocked is not None and _is_true(ready):
        # The pods serve through the main Service, but the routing the spec asks for cannot exist.
        blocked = decided.routing_blocked
        ready = new_condition(ConditionType.READY, FALSE, blocked.reason, blocked.message, generation)
        phase, summary = Phase.DEGRADED, f"{Phase.DEGRADED.value}: {blocked.reason}"
    served_version, served_artifact, served_uri = (
        (serve.version, serve.hash, serve.location) if serve else (None, None, None)
    )
    if (hold or any(r.kind == "Deployment" for r in observed.rejected)) and previous.served_artifact:
        # The Deployment for `serve` was refused, or a canary holds it: what runs is still what served before.
        served_version, served_artifact, served_uri = (
            previous.served_version,
            previous.served_artifact,
            previous.served_uri,
        )
    status = ModelDeploymentStatus(
        observed_generation=generation,
        phase=phase,
        summary=summary,
        served_version=served_version,
        served_artifact=served_artifact,
        served_uri=served_uri,
        optimization=result,
        optimized_summary=optimized_summary(md, result) if serve else None,
        size_summary=size_summary(result),
        replicas=deployment.replicas if deployment else 0,
        ready_replicas=deployment.ready_replicas if deployment else 0,
        selector=",".join(f"{k}={v}" for k, v in selector_labels(md.name, SERVING).items()),
        url=model_url(md) if serve else None,
        conditions=merge_conditions(previous.conditions, [optimized, serving, ready], now),
        rollout=rollout,
        canary=canary_column(rollout),
    )
    status, history_events = with_history(md, decided, status, previous, now, serving_all=_is_true(serving))
    if rollout is not None and rollout.phase == RolloutPhase.ABORTED and serve is not None:
        status = with_aborted(md, decided, status, rollout, serve, now)
    events = history_events + one_event_per_reason(transition_events(previous.conditions, status.conditions))
    if decision is not None:
        # The step machine's Events say more than a condition's flip (the failed check and its value).
        told = {e.reason for e in decision.events}
        events = [e for e in events if e.reason not in told] + [
            EventSpec(e.type, e.reason, e.message) for e in decision.events
        ]
    return StatusUpdate(status, events)


def with_history(
    md: ModelDeployment,
    decided: Plan,
    status: ModelDeploymentStatus,
    previous: ModelDeploymentStatus,
    now: str,
    *,
    serving_all: bool,
) -> tuple[ModelDeploymentStatus, list[EventSpec]]:
    """`status` with status.history carried over and, once the serving Deployment is updated and
    available with the served artifact (`serving_all`), that artifact recorded; and the RolledBack
    Event when the spec went back to an artifact of the history."""
    rollback, events = decided.rollback, []
    if rollback is not None and rollback.optimized_summary:
        status = status.model_copy(update={"optimized_summary": rollback.optimized_summary})
    if rollback is not None and previous.served_artifact != rollback.artifact_hash:
        before = next((c for c in previous.conditions if c.type == ConditionType.OPTIMIZED), None)
        if before is None or (before.status, before.reason) != (TRUE, Reason.ROLLED_BACK):
            events.append(EventSpec("Normal", Reason.ROLLED_BACK, rollback_event_message(rollback)))
    served = entry_from_status(status, now) if serving_all else None
    if served is not None and rollback is not None and served.artifact_hash == rollback.artifact_hash:
        served = served.model_copy(update={"message": "rolled back: served again from history, no optimization Job"})
    history = record_serving(previous.history, served, now, md.spec.rollout.history_limit)
    return status.model_copy(update={"history": history}), events
