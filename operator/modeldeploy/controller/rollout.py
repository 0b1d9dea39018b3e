"""The canary step machine: where a canary rollout stands and what it needs next. Pure: the clock,
the canary's pods and the Prometheus answers are arguments.

A rollout exists when strategy is Canary and the pods we build (the desired revision) differ from
what the live stable Deployment runs (its revision annotation). The stable Deployment is left
untouched while a canary Deployment of the desired revision takes each step's share of the traffic;
the share is set by replica counts behind the one Service (or exactly, by an HTTPRoute, when the
gateway routing is configured). Each step waits for its canary pods, then lasts its pause while the
analysis checks them; after the last step the stable Deployment takes the desired template
(Promoting), and once it rolled the canary goes (Promoted). The first check that fails, or a step
whose pods are not ready in time, removes the canary and leaves the stable version serving
(Aborted) until the spec asks for another revision.

Everything a resumed operator needs is in `RolloutStatus` (absolute timestamps), so a restart
continues at the same step. The shell (reconcile) asks `analysis_due` whether the Prometheus
checks must run now, runs them, and calls `decide` again with their samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from modeldeploy.analysis.promql import Sample
from modeldeploy.api.reasons import Reason
from modeldeploy.api.spec import Comparison, PrometheusCheck, Rollout, RolloutStrategy
from modeldeploy.api.status import CheckResult, RolloutPhase, RolloutStatus

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
RESTARTS_CHECK = "restarts"
READINESS_CHECK = "readiness"
# Never requeue sooner than this: timestamps have whole seconds.
MIN_REQUEUE_SECONDS = 1.0
ACTIVE = frozenset({RolloutPhase.PROGRESSING, RolloutPhase.PROMOTING})


def stamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime(TIME_FORMAT)


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)


def canary_replicas(stable: int, weight: int) -> int:
    """Canary pods for `weight` percent of the pods behind the Service, next to `stable` stable pods:
    c / (stable + c) = weight / 100, rounded half up to whole pods, at least one; at 100 percent as
    many as the stable Deployment has."""
    if weight >= 100:
        return stable
    return max(1, math.floor(stable * weight / (100 - weight) + 0.5))


def achieved_weight(ready_stable: int, ready_canary: int) -> int:
    """The canary's share of the ready pods behind the Service, in percent (0 when none is ready)."""
    total = ready_stable + ready_canary
    return 0 if total == 0 or ready_canary == 0 else math.floor(100 * ready_canary / total + 0.5)


@dataclass(frozen=True)
class CanaryView:
    """The live canary Deployment, as far as the machine cares."""

    revision: str | None  # its modeldeploy.io/revision annotation
    replicas: int  # .spec.replicas
    ready: int
    available: int
    updated: int
    rolled: bool = True  # the Deployment controller saw its last spec (observedGeneration)


@dataclass(frozen=True)
class StableView:
    """The live stable Deployment."""

    revision: str
    replicas: int  # .spec.replicas (under an HPA, the HPA's choice)
    ready: int
    available: int
    updated: int
    rolled: bool = True  # observedGeneration >= generation

    @property
    def done(self) -> bool:
        """Rolled to its template: every pod updated, and at least one answers (or scaled to 0)."""
        return self.rolled and self.updated >= self.replicas and (self.available > 0 or self.replicas == 0)


@dataclass(frozen=True)
class RolloutInput:
    rollout: Rollout
    previous: RolloutStatus | None
    revision: str  # what we build now
    version: int
    artifact_hash: str
    stable: StableView
    canary: CanaryView | None
    canary_restarts: int
    now: datetime
    samples: dict[str, Sample] | None = None  # Prometheus answers by check name, when taken
    exact_weights: bool = False  # an HTTPRoute sets the share: it is the step's weight once ready
    # Why this revision needs no canary (e.g. a rollback to one that served all traffic before):
    # set, a new rollout is promoted at once with this message.
    promote_directly: str | None = None


@dataclass(frozen=True)
class RolloutEvent:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class RolloutDecision:
    status: RolloutStatus | None  # None: no rollout (status.rollout cleared)
    canary_replicas: int = 0  # 0: no canary Deployment
    weight: int = 0  # the canary's share a traffic router should give it (percent)
    promote: bool = False  # the stable Deployment takes the desired template now
    events: list[RolloutEvent] = field(default_factory=list)
    requeue_after: float | None = None  # seconds until something is due
    wants_analysis: bool = False  # the Prometheus checks are due and no samples were given

    @property
    def holds_stable(self) -> bool:
        """The stable Deployment is left as it is (a canary runs, or was aborted)."""
        return self.status is not None and not self.promote and self.status.revision != self.status.stable_revision


def no_rollout() -> RolloutDecision:
    return RolloutDecision(None)


def _step_words(status: RolloutStatus) -> str:
    return f"step {status.step + 1}/{status.steps}"


def analysis_due(status: RolloutStatus | None, rollout: Rollout, now: datetime) -> bool:
    """The Prometheus checks must run now: the current step's pods are ready, and the last run is
    an interval old (or the step's pause ended after it, which gets one last run)."""
    prometheus = rollout.analysis.prometheus
    if prometheus is None or status is None or status.phase != RolloutPhase.PROGRESSING:
        return False
    ready_at = parse_time(status.step_ready_at)
    if ready_at is None:
        return False
    last = parse_time(status.last_analysis_at)
    if last is None or last < ready_at:
        return True
    if now - last >= timedelta(seconds=prometheus.interval_seconds):
        return True
    pause_end = ready_at + timedelta(seconds=rollout.steps[min(status.step, len(rollout.steps) - 1)].pause_seconds)
    return now >= pause_end > last


def measure(check: PrometheusCheck, sample: Sample, before: CheckResult | None, now: str) -> CheckResult:
    """One Prometheus measurement against its limit; failures add up over the rollout."""
    failures = before.failures if before is not None else 0
    sign = "<=" if check.must_be == Comparison.BELOW else ">="
    if sample.error is not None:
        passed, message = False, f"query failed: {sample.error}"
    elif sample.value is None:
        passed = not check.fail_on_no_data
        message = "no data" + (" (failOnNoData)" if check.fail_on_no_data else " (passes: failOnNoData is false)")
    else:
        value = sample.value
        passed = value <= check.threshold if check.must_be == Comparison.BELOW else value >= check.threshold
        message = f"{value:g} {'' if passed else 'not '}{sign} {check.threshold:g}"
    return CheckResult(
        name=check.name,
        passed=passed,
        value=sample.value if sample.error is None else None,
        message=message,
        failures=failures + (0 if passed else 1),
        measured_at=now,
    )


def _restarts_result(restarts: int, limit: int, before: list[CheckResult], now: str) -> CheckResult:
    passed = restarts <= limit
    old = next((r for r in before if r.name == RESTARTS_CHECK), None)
    if old is not None and old.passed == passed and old.value == float(restarts):
        return old  # unchanged: no status write per pass
    return CheckResult(
        name=RESTARTS_CHECK,
        passed=passed,
        value=float(restarts),
        message=f"{restarts} container restarts of canary pods ({'' if passed else 'not '}<= {limit})",
        failures=0 if passed else 1,
        measured_at=now,
    )


def _replace(results: list[CheckResult], new: CheckResult) -> list[CheckResult]:
    out = [r for r in results if r.name != new.name]
    out.append(new)
    return sorted(out, key=lambda r: (r.name != RESTARTS_CHECK, r.name))


class _Machine:
    """One decision: the input, and the requeue times found along the way."""

    def __init__(self, given: RolloutInput) -> None:
        self.given = given
        self.now = stamp(given.now)
        self.due: list[float] = []
        self.events: list[RolloutEvent] = []

    def wake_at(self, when: datetime) -> None:
        self.due.append(max(MIN_REQUEUE_SECONDS, (when - self.given.now).total_seconds()))

    def decision(self, status: RolloutStatus | None, replicas: int = 0, weight: int = 0, **kw: bool) -> RolloutDecision:
        return RolloutDecision(
            status,
            canary_replicas=replicas,
            weight=weight,
            events=self.events,
            requeue_after=min(self.due) if self.due else None,
            **kw,
        )

    # -- transitions ------------------------------------------------------------------------------------

    def start(self, replaced: RolloutStatus | None) -> RolloutDecision:
        g = self.given
        status = RolloutStatus(
            revision=g.revision,
            version=g.version,
            artifact_hash=g.artifact_hash,
            stable_revision=g.stable.revision,
            phase=RolloutPhase.PROGRESSING,
            step=0,
            steps=len(g.rollout.steps),
            started_at=self.now,
            step_started_at=self.now,
            stable_replicas=g.stable.replicas,
        )
        direct = g.promote_directly
        if direct is None and g.stable.available == 0 and g.stable.replicas > 0:
            # Nothing serves that a canary could protect: the new revision replaces it at once.
            direct = "the stable Deployment has no available pod: the new revision replaces it directly"
        if direct is not None:
            status = status.model_copy(
                update={"phase": RolloutPhase.PROMOTING, "step": status.steps, "message": direct}
            )
            self.events.append(RolloutEvent("Normal", Reason.PROMOTING, direct))
            return self.decision(status, promote=True)
        if replaced is None or replaced.phase not in ACTIVE:
            self.events.append(
                RolloutEvent(
                    "Normal",
                    Reason.CANARY_PROGRESSING,
                    f"canary rollout of version {g.version} (revision {g.revision}) started, "
                    f"{len(g.rollout.steps)} steps; revision {g.stable.revision} stays stable until promotion",
                )
            )
        else:
            self.events.append(
                RolloutEvent(
                    "Normal",
                    Reason.CANARY_PROGRESSING,
                    f"the spec changed during the rollout of revision {replaced.revision}: the canary restarts "
                    f"at step 1/{status.steps} with revision {g.revision} (version {g.version})",
                )
            )
        return self.progress(status)

    def abort(self, status: RolloutStatus, failed: CheckResult, why: str) -> RolloutDecision:
        message = (
            f"canary version {status.version} (revision {status.revision}) aborted at {_step_words(status)}: {why}"
        )
        self.events.append(RolloutEvent("Warning", Reason.ROLLOUT_ABORTED, message + "; the stable version serves"))
        aborted = status.model_copy(
            update={
                "phase": RolloutPhase.ABORTED,
                "analysis": _replace(status.analysis, failed),
                "canary_replicas": 0,
                "achieved_weight": 0,
                "message": message,
                "finished_at": self.now,
            }
        )
        return self.decision(aborted)

    def promoting(self, status: RolloutStatus, replicas: int, weight: int) -> RolloutDecision:
        g = self.given
        if status.phase != RolloutPhase.PROMOTING:
            message = (
                f"every step passed: the stable Deployment takes version {status.version} (revision {status.revision})"
            )
            self.events.append(RolloutEvent("Normal", Reason.PROMOTING, message))
            status = status.model_copy(
                update={"phase": RolloutPhase.PROMOTING, "step": status.steps, "message": message}
            )
        if g.stable.revision == status.revision and g.stable.done:
            message = f"version {status.version} (revision {status.revision}) passed every step and is now stable"
            self.events.append(RolloutEvent("Normal", Reason.PROMOTED, message))
            promoted = status.model_copy(
                update={
                    "phase": RolloutPhase.PROMOTED,
                    "stable_revision": status.revision,
                    "canary_replicas": 0,
                    "achieved_weight": 0,
                    "weight": 0,
                    "stable_replicas": g.stable.replicas,
                    "message": message,
                    "finished_at": self.now,
                }
            )
            return self.decision(promoted, promote=True)
        # The canary keeps its share while the stable Deployment rolls: no dip in capacity.
        return self.decision(status, replicas, weight, promote=True)

    def progress(self, status: RolloutStatus) -> RolloutDecision:
        g = self.given
        steps = g.rollout.steps
        analysis = g.rollout.analysis
        step = steps[status.step]
        wanted = canary_replicas(g.stable.replicas, step.weight)
        canary = g.canary
        current = canary is not None and canary.revision == g.revision and canary.rolled
        ready_canary = canary.ready if canary is not None and current else 0
        ready = (
            current
            and canary is not None
            and canary.replicas == wanted
            and canary.ready >= wanted
            and canary.updated >= wanted
        )
        # Through an HTTPRoute the share is exact once the pods answer; otherwise it is what the pods make.
        exact = step.weight if ready else 0
        achieved = exact if g.exact_weights else achieved_weight(g.stable.ready, ready_canary)
        # What a route sends to the canary: nothing until the step's pods are ready (an HTTPRoute
        # would send requests to a Service without endpoints).
        route = exact if g.exact_weights else step.weight
        status = status.model_copy(
            update={
                "weight": step.weight,
                "canary_replicas": wanted,
                "stable_replicas": g.stable.replicas,
                "achieved_weight": achieved,
            }
        )

        restarts = _restarts_result(g.canary_restarts, analysis.max_restarts, status.analysis, self.now)
        status = status.model_copy(update={"analysis": _replace(status.analysis, restarts)})
        if not restarts.passed:
            return self.abort(
                status,
                restarts,
                f"check {RESTARTS_CHECK}: canary containers restarted {g.canary_restarts} "
                f"time{'s' if g.canary_restarts != 1 else ''} (maxRestarts {analysis.max_restarts})",
            )

        started = parse_time(status.step_started_at) or g.now
        ready_at = parse_time(status.step_ready_at)
        if ready_at is None and not ready:
            deadline = started + timedelta(seconds=g.rollout.progress_deadline_seconds)
            if g.now >= deadline:
                have = f"{ready_canary}/{wanted}"
                failed = CheckResult(
                    name=READINESS_CHECK,
                    passed=False,
                    value=float(ready_canary),
                    message=f"{have} canary pods ready after {g.rollout.progress_deadline_seconds}s",
                    failures=1,
                    measured_at=self.now,
                )
                why = (
                    f"check {READINESS_CHECK}: {have} canary pods ready within progressDeadlineSeconds "
                    f"({g.rollout.progress_deadline_seconds}s)"
                )
                return self.abort(status, failed, why)
            self.wake_at(deadline)
            status = status.model_copy(
                update={"message": f"{_step_words(status)}: waiting for canary pods ({ready_canary}/{wanted} ready)"}
            )
            return self.decision(status, wanted, route)

        if ready_at is None:
            ready_at = g.now
            status = status.model_copy(update={"step_ready_at": self.now})
            self.events.append(
                RolloutEvent(
                    "Normal",
                    Reason.CANARY_PROGRESSING,
                    f"{_step_words(status)}: canary v{status.version} at {step.weight}% (achieved {achieved}%)"
                    + (f", pause {step.pause}" if step.pause_seconds else ""),
                )
            )

        pause_end = ready_at + timedelta(seconds=step.pause_seconds)
        prometheus = analysis.prometheus
        if prometheus is not None and analysis_due(status, g.rollout, g.now):
            if g.samples is None:
                status = status.model_copy(update={"message": self._running_message(status, step.weight, achieved)})
                return self.decision(status, wanted, route, wants_analysis=True)
            results = status.analysis
            for check in prometheus.checks:
                before = next((r for r in results if r.name == check.name), None)
                sample = g.samples.get(check.name, Sample(error="not measured"))
                result = measure(check, sample, before, self.now)
                results = _replace(results, result)
                if result.failures > prometheus.failure_limit:
                    status = status.model_copy(update={"analysis": results, "last_analysis_at": self.now})
                    value = "no value" if result.value is None else f"{result.value:g}"
                    why = f"check {check.name} = {value} ({result.message}; {result.failures} failures)"
                    return self.abort(status, result, why)
            status = status.model_copy(update={"analysis": results, "last_analysis_at": self.now})

        if g.now >= pause_end and not analysis_due(status, g.rollout, g.now):
            if status.step + 1 >= len(steps):
                return self.promoting(status, wanted, route)
            nxt = status.model_copy(
                update={"step": status.step + 1, "step_started_at": self.now, "step_ready_at": None}
            )
            return self.progress(nxt)

        self.wake_at(pause_end)
        if prometheus is not None:
            last = parse_time(status.last_analysis_at) or g.now
            self.wake_at(last + timedelta(seconds=prometheus.interval_seconds))
        status = status.model_copy(update={"message": self._running_message(status, step.weight, achieved)})
        return self.decision(status, wanted, route)

    def _running_message(self, status: RolloutStatus, weight: int, achieved: int) -> str:
        return (
            f"{_step_words(status)}: canary version {status.version} at {weight}% of the traffic ({achieved}% reached)"
        )


def decide(given: RolloutInput) -> RolloutDecision:
    """The next state of the rollout of `given.revision` over the stable Deployment's revision."""
    machine = _Machine(given)
    previous = given.previous
    if given.rollout.strategy != RolloutStrategy.CANARY:
        return no_rollout()
    same = previous is not None and previous.revision == given.revision
    if given.revision == given.stable.revision:
        if previous is not None and same and previous.phase == RolloutPhase.PROMOTING:
            replicas = previous.canary_replicas
            return machine.promoting(previous, replicas, previous.weight)
        if previous is not None and same and previous.phase == RolloutPhase.PROMOTED:
            return machine.decision(previous)
        return no_rollout()  # nothing to roll out (the spec went back to what is stable)
    if previous is None or not same:
        return machine.start(previous)
    if previous.phase == RolloutPhase.ABORTED:
        return machine.decision(previous)  # no new attempt until the spec asks for another revision
    if previous.phase in (RolloutPhase.PROMOTING, RolloutPhase.PROMOTED):
        # The stable Deployment takes the desired template; its annotation follows with that apply.
        replicas = previous.canary_replicas if previous.phase == RolloutPhase.PROMOTING else 0
        return machine.promoting(
            previous.model_copy(update={"phase": RolloutPhase.PROMOTING}), replicas, previous.weight
        )
    if previous.step >= len(given.rollout.steps):
        # The steps were shortened mid-rollout: every step that is left has passed.
        return machine.promoting(previous, previous.canary_replicas, previous.weight)
    return machine.progress(previous.model_copy(update={"steps": len(given.rollout.steps)}))


__all__ = [
    "CanaryView",
    "RolloutDecision",
    "RolloutEvent",
    "RolloutInput",
    "StableView",
    "achieved_weight",
    "analysis_due",
    "canary_replicas",
    "decide",
    "measure",
    "no_rollout",
    "parse_time",
    "stamp",
]
