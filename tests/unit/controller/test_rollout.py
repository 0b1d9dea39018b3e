"""The canary step machine: every transition of issue 12's state diagram, replica math, timing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modeldeploy.analysis.promql import Sample
from modeldeploy.api.reasons import Reason
from modeldeploy.api.spec import Rollout
from modeldeploy.api.status import RolloutPhase, RolloutStatus
from modeldeploy.controller.rollout import (
    CanaryView,
    RolloutDecision,
    RolloutInput,
    StableView,
    achieved_weight,
    analysis_due,
    canary_replicas,
    decide,
    stamp,
)

T0 = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
NEW, OLD = "new0000000", "old0000000"


def rollout(**kw: Any) -> Rollout:
    body: dict[str, Any] = {
        "strategy": "Canary",
        "steps": [{"weight": 10, "pause": "60s"}, {"weight": 50, "pause": "30s"}],
        "progressDeadlineSeconds": 120,
    }
    body.update(kw)
    return Rollout.model_validate(body)


PROM = {
    "url": "http://prometheus:9090",
    "intervalSeconds": 20,
    "checks": [{"name": "error-ratio", "query": "x", "threshold": 0.05}],
}


def stable(revision: str = OLD, replicas: int = 4, ready: int | None = None, **kw: Any) -> StableView:
    ready = replicas if ready is None else ready
    return StableView(revision, replicas, ready, kw.pop("available", ready), kw.pop("updated", replicas), **kw)


def canary(replicas: int, ready: int | None = None, revision: str = NEW, **kw: Any) -> CanaryView:
    ready = replicas if ready is None else ready
    return CanaryView(revision, replicas, ready, ready, kw.pop("updated", replicas), **kw)


def step(
    previous: RolloutStatus | None,
    now: datetime,
    *,
    spec: Rollout | None = None,
    stable_view: StableView | None = None,
    canary_view: CanaryView | None = None,
    restarts: int = 0,
    samples: dict[str, Sample] | None = None,
    revision: str = NEW,
    exact: bool = False,
) -> RolloutDecision:
    return decide(
        RolloutInput(
            rollout=spec or rollout(),
            previous=previous,
            revision=revision,
            version=5,
            artifact_hash="abc",
            stable=stable_view or stable(),
            canary=canary_view,
            canary_restarts=restarts,
            now=now,
            samples=samples,
            exact_weights=exact,
        )
    )


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# -- replica math -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stable_replicas", "weight", "expected"),
    [
        (4, 10, 1),  # 0.44 rounds to 0, but a step always has one canary pod
        (4, 50, 4),
        (4, 20, 1),
        (3, 60, 5),  # 4.5 rounds half up
        (5, 33, 2),  # 2.46
        (9, 10, 1),
        (2, 100, 2),  # 100 %: as many as the stable Deployment
        (0, 100, 0),
        (1, 99, 99),
    ],
)
def test_canary_replicas(stable_replicas: int, weight: int, expected: int) -> None:
    assert canary_replicas(stable_replicas, weight) == expected


@pytest.mark.parametrize(
    ("ready_stable", "ready_canary", "expected"),
    [(4, 1, 20), (4, 4, 50), (0, 0, 0), (3, 0, 0), (0, 2, 100), (2, 1, 33), (1, 2, 67)],
)
def test_achieved_weight(ready_stable: int, ready_canary: int, expected: int) -> None:
    assert achieved_weight(ready_stable, ready_canary) == expected


# -- start and wait ------------------------------------------------------------------------------------


def test_no_rollout_with_rolling_update() -> None:
    decision = step(None, T0, spec=Rollout())
    assert decision.status is None and decision.canary_replicas == 0 and not decision.promote


def test_nothing_to_roll_out_when_the_desired_revision_is_stable() -> None:
    decision = step(None, T0, stable_view=stable(NEW))
    assert decision.status is None and decision.canary_replicas == 0 and not decision.holds_stable


def test_start_creates_the_first_step_canary_and_holds_the_stable() -> None:
    decision = step(None, T0)
    status = decision.status
    assert status is not None
    assert status.phase == RolloutPhase.PROGRESSING and status.step == 0 and status.steps == 2
    assert status.revision == NEW and status.stable_revision == OLD and status.version == 5
    assert status.started_at == status.step_started_at == stamp(T0) and status.step_ready_at is None
    assert decision.canary_replicas == 1 and decision.weight == 10 and not decision.promote
    assert decision.holds_stable
    # woken at the progress deadline at the latest
    assert decision.requeue_after == 120
    assert [(e.type, e.reason, e.message) for e in decision.events] == [
        (
            "Normal",
            Reason.CANARY_PROGRESSING,
            "canary rollout of version 5 (revision new0000000) started, 2 steps; "
            "revision old0000000 stays stable until promotion",
        )
    ]


def test_waits_for_the_canary_pods_before_the_pause_counts() -> None:
    started = step(None, T0).status
    waiting = step(started, at(90), canary_view=canary(1, ready=0))
    assert waiting.status is not None and waiting.status.step_ready_at is None
    assert waiting.requeue_after == 30  # the deadline
    assert "waiting for canary pods (0/1 ready)" in waiting.status.message


def test_old_revision_canary_pods_do_not_count_as_ready() -> None:
    started = step(None, T0).status
    decision = step(started, at(5), canary_view=canary(1, revision="other00000"))
    assert decision.status is not None and decision.status.step_ready_at is None


def test_a_canary_not_yet_rolled_by_its_controller_is_not_ready() -> None:
    started = step(None, T0).status
    decision = step(started, at(5), canary_view=canary(1, rolled=False))
    assert decision.status is not None and decision.status.step_ready_at is None


def test_ready_canary_starts_the_pause_with_one_event() -> None:
    started = step(None, T0).status
    ready = step(started, at(5), canary_view=canary(1))
    status = ready.status
    assert status is not None and status.step_ready_at == stamp(at(5))
    assert status.achieved_weight == 20  # 1 of 5 ready pods
    assert [(e.type, e.reason, e.message) for e in ready.events] == [
        ("Normal", Reason.CANARY_PROGRESSING, "step 1/2: canary v5 at 10% (achieved 20%), pause 60s")
    ]
    assert ready.requeue_after == 60
    again = step(status, at(6), canary_view=canary(1))
    assert again.events == [] and again.status == status.model_copy(update={"message": again.status.message})  # type: ignore[union-attr]


def test_exact_weights_through_a_route() -> None:
    first = step(None, T0, exact=True)
    started = first.status
    assert started is not None and started.achieved_weight == 0
    assert first.weight == 0, "no traffic to a canary Service without ready pods"
    ready = step(started, at(5), canary_view=canary(1), exact=True)
    assert ready.status is not None and ready.status.achieved_weight == 10 and ready.weight == 10
    second = step(ready.status, at(65), canary_view=canary(1), exact=True)
    assert second.status is not None and second.status.step == 1 and second.weight == 0
    assert step(second.status, at(66), canary_view=canary(4), exact=True).weight == 50


# -- aborts --------------------------------------------------------------------------------------------


def test_progress_deadline_aborts() -> None:
    started = step(None, T0).status
    before = step(started, at(119), canary_view=canary(1, ready=0))
    assert before.status is not None and before.status.phase == RolloutPhase.PROGRESSING
    aborted = step(started, at(120), canary_view=canary(1, ready=0))
    status = aborted.status
    assert status is not None and status.phase == RolloutPhase.ABORTED
    assert aborted.canary_replicas == 0 and not aborted.promote and aborted.holds_stable
    assert status.finished_at == stamp(at(120))
    [event] = aborted.events
    assert event.type == "Warning" and event.reason == Reason.ROLLOUT_ABORTED
    assert "check readiness: 0/1 canary pods ready within progressDeadlineSeconds (120s)" in event.message
    assert any(r.name == "readiness" and not r.passed for r in status.analysis)


def test_the_deadline_counts_from_the_step_start_not_the_rollout_start() -> None:
    started = step(None, T0).status
    ready = step(started, at(100), canary_view=canary(1)).status
    second = step(ready, at(160), canary_view=canary(1)).status  # the 60 s pause ended: step 2
    assert second is not None and second.step == 1 and second.step_started_at == stamp(at(160))
    waiting = step(second, at(279), canary_view=canary(1))
    assert waiting.status is not None and waiting.status.phase == RolloutPhase.PROGRESSING
    aborted = step(second, at(280), canary_view=canary(1))
    assert aborted.status is not None and aborted.status.phase == RolloutPhase.ABORTED


def test_restarts_above_the_limit_abort() -> None:
    started = step(None, T0).status
    ok = step(started, at(5), canary_view=canary(1), restarts=1, spec=rollout(analysis={"maxRestarts": 1}))
    assert ok.status is not None and ok.status.phase == RolloutPhase.PROGRESSING
    aborted = step(ok.status, at(6), canary_view=canary(1), restarts=2, spec=rollout(analysis={"maxRestarts": 1}))
    assert aborted.status is not None and aborted.status.phase == RolloutPhase.ABORTED
    assert "check restarts: canary containers restarted 2 times (maxRestarts 1)" in aborted.events[0].message


def test_restarts_abort_even_before_the_pods_are_ready() -> None:
    started = step(None, T0).status
    aborted = step(started, at(5), canary_view=canary(1, ready=0), restarts=1)
    assert aborted.status is not None and aborted.status.phase == RolloutPhase.ABORTED


def test_aborted_sticks_until_the_revision_changes() -> None:
    started = step(None, T0).status
    aborted = step(started, at(200), canary_view=canary(1, ready=0)).status
    assert aborted is not None
    later = step(aborted, at(5000), canary_view=None)
    assert later.status == aborted and later.canary_replicas == 0 and later.events == [] and later.holds_stable
    assert later.requeue_after is None
    fresh = step(aborted, at(5001), revision="newer00000")
    assert fresh.status is not None and fresh.status.phase == RolloutPhase.PROGRESSING
    assert fresh.status.revision == "newer00000" and fresh.status.step == 0 and fresh.canary_replicas == 1


# -- Prometheus analysis --------------------------------------------------------------------------------


def prom_spec(**kw: Any) -> Rollout:
    return rollout(analysis={"prometheus": {**PROM, **kw}})


def ready_with_analysis(spec: Rollout) -> RolloutStatus:
    started = step(None, T0, spec=spec).status
    decision = step(started, at(5), spec=spec, canary_view=canary(1), samples={"error-ratio": Sample(0.01)})
    assert decision.status is not None and decision.status.last_analysis_at == stamp(at(5))
    return decision.status


def test_analysis_is_due_once_ready_and_asks_for_samples() -> None:
    spec = prom_spec()
    started = step(None, T0, spec=spec).status
    assert not analysis_due(started, spec, at(1))  # not ready yet
    decision = step(started, at(5), spec=spec, canary_view=canary(1))
    assert decision.wants_analysis and decision.status is not None
    assert analysis_due(decision.status, spec, at(5))


def test_analysis_interval_and_the_run_at_the_end_of_the_pause() -> None:
    spec = prom_spec()
    status = ready_with_analysis(spec)
    assert not analysis_due(status, spec, at(24))
    assert analysis_due(status, spec, at(25))  # 20 s interval
    decision = step(status, at(10), spec=spec, canary_view=canary(1))
    assert decision.requeue_after == 15  # the next measurement, before the pause ends (65)
    # the interval ran at 45 and the pause ends at 65: one more measurement at its end before step 2
    later = step(status, at(45), spec=spec, canary_view=canary(1), samples={"error-ratio": Sample(0.01)}).status
    assert later is not None and later.last_analysis_at == stamp(at(45)) and later.step == 0
    at_end = step(later, at(65), spec=spec, canary_view=canary(1))
    assert at_end.wants_analysis and at_end.status is not None and at_end.status.step == 0
    moved = step(later, at(65), spec=spec, canary_view=canary(1), samples={"error-ratio": Sample(0.02)})
    assert moved.status is not None and moved.status.step == 1


@pytest.mark.parametrize(
    ("must_be", "value", "passes"),
    [("Below", 0.05, True), ("Below", 0.06, False), ("Above", 0.05, True), ("Above", 0.04, False)],
)
def test_threshold_comparison(must_be: str, value: float, passes: bool) -> None:
    spec = rollout(
        analysis={"prometheus": {**PROM, "checks": [{**PROM["checks"][0], "mustBe": must_be}]}}  # type: ignore[index]
    )
    started = step(None, T0, spec=spec).status
    decision = step(started, at(5), spec=spec, canary_view=canary(1), samples={"error-ratio": Sample(value)})
    assert decision.status is not None
    assert (decision.status.phase == RolloutPhase.PROGRESSING) is passes
    if not passes:
        [event] = decision.events[-1:]
        assert event.type == "Warning" and f"check error-ratio = {value:g}" in event.message
        assert decision.canary_replicas == 0


def test_failure_limit_tolerates_failures_per_rollout() -> None:
    spec = prom_spec(failureLimit=1)
    started = step(None, T0, spec=spec).status
    first = step(started, at(5), spec=spec, canary_view=canary(1), samples={"error-ratio": Sample(0.9)})
    assert first.status is not None and first.status.phase == RolloutPhase.PROGRESSING
    [result] = [r for r in first.status.analysis if r.name == "error-ratio"]
    assert not result.passed and result.failures == 1
    passing = step(first.status, at(25), spec=spec, canary_view=canary(1), samples={"error-ratio": Sample(0.0)})
    assert passing.status is not None
    [result] = [r for r in passing.status.analysis if r.name == "error-ratio"]
    assert result.passed and result.failures == 1  # failures add up, a pass does not reset them
    second = step(passing.status, at(45), spec=spec, canary_view=canary(1), samples={"error-ratio": Sample(0.9)})
    assert second.status is not None and second.status.phase == RolloutPhase.ABORTED
    assert "2 failures" in second.events[-1].message


def test_query_errors_count_as_failures() -> None:
    spec = prom_spec()
    started = step(None, T0, spec=spec).status
    samples = {"error-ratio": Sample(error="Prometheus at http://prometheus:9090: connection refused")}
    decision = step(started, at(5), spec=spec, canary_view=canary(1), samples=samples)
    assert decision.status is not None and decision.status.phase == RolloutPhase.ABORTED
    assert "connection refused" in decision.events[-1].message and "no value" in decision.events[-1].message


@pytest.mark.parametrize(("fail_on_no_data", "aborted"), [(False, False), (True, True)])
def test_no_data(fail_on_no_data: bool, aborted: bool) -> None:
    spec = rollout(
        analysis={"prometheus": {**PROM, "checks": [{**PROM["checks"][0], "failOnNoData": fail_on_no_data}]}}  # type: ignore[index]
    )
    started = step(None, T0, spec=spec).status
    decision = step(started, at(5), spec=spec, canary_view=canary(1), samples={"error-ratio": Sample()})
    assert decision.status is not None
    assert (decision.status.phase == RolloutPhase.ABORTED) is aborted


# -- steps, promotion -----------------------------------------------------------------------------------


def test_pause_counts_from_ready_then_next_step() -> None:
    started = step(None, T0).status
    ready = step(started, at(30), canary_view=canary(1)).status
    assert ready is not None
    still = step(ready, at(89), canary_view=canary(1))
    assert still.status is not None and still.status.step == 0 and still.requeue_after == 1
    nxt = step(ready, at(90), canary_view=canary(1))
    status = nxt.status
    assert status is not None and status.step == 1 and status.step_started_at == stamp(at(90))
    assert status.step_ready_at is None and status.weight == 50
    assert nxt.canary_replicas == 4 and nxt.weight == 50 and not nxt.promote
    assert nxt.requeue_after == 120  # the new step's deadline


def test_promotion_after_the_last_step_then_promoted() -> None:
    status = step(None, T0).status
    status = step(status, at(1), canary_view=canary(1)).status
    status = step(status, at(61), canary_view=canary(1)).status
    status = step(status, at(70), canary_view=canary(4)).status
    assert status is not None and status.step == 1 and status.step_ready_at == stamp(at(70))
    promoting = step(status, at(100), canary_view=canary(4))
    assert promoting.status is not None and promoting.status.phase == RolloutPhase.PROMOTING
    assert promoting.promote and not promoting.holds_stable
    assert promoting.canary_replicas == 4  # the canary keeps its share while the stable rolls
    assert [e.reason for e in promoting.events] == [Reason.PROMOTING]
    # the stable Deployment took the template (its annotation) but has not rolled yet
    rolling = step(promoting.status, at(101), stable_view=stable(NEW, updated=2), canary_view=canary(4))
    assert rolling.status is not None and rolling.status.phase == RolloutPhase.PROMOTING and rolling.promote
    assert rolling.canary_replicas == 4 and rolling.events == []
    # not even the cache has the new annotation yet: still promoting
    waiting = step(promoting.status, at(101), canary_view=canary(4))
    assert waiting.promote and waiting.status is not None and waiting.status.phase == RolloutPhase.PROMOTING
    done = step(rolling.status, at(120), stable_view=stable(NEW), canary_view=canary(4))
    assert done.status is not None and done.status.phase == RolloutPhase.PROMOTED
    assert done.canary_replicas == 0 and done.status.finished_at == stamp(at(120))
    assert [(e.type, e.reason) for e in done.events] == [("Normal", Reason.PROMOTED)]
    kept = step(done.status, at(500), stable_view=stable(NEW))
    assert kept.status == done.status and kept.events == [] and kept.canary_replicas == 0


def test_a_step_of_100_percent_runs_as_many_canary_pods_as_stable() -> None:
    spec = rollout(steps=[{"weight": 100, "pause": "0s"}])
    started = step(None, T0, spec=spec, stable_view=stable(replicas=3))
    assert started.canary_replicas == 3 and started.weight == 100
    decision = step(started.status, at(1), spec=spec, stable_view=stable(replicas=3), canary_view=canary(3))
    assert decision.status is not None and decision.status.phase == RolloutPhase.PROMOTING
    assert decision.status.achieved_weight == 50


def test_canary_follows_the_stable_replicas_an_hpa_chose() -> None:
    status = step(None, T0).status
    status = step(status, at(1), canary_view=canary(1)).status
    status = step(status, at(61), canary_view=canary(1)).status  # step 2 (50 %)
    scaled = step(status, at(62), stable_view=stable(replicas=6), canary_view=canary(4))
    assert scaled.canary_replicas == 6 and scaled.status is not None and scaled.status.stable_replicas == 6


def test_an_unavailable_stable_is_replaced_directly() -> None:
    decision = step(None, T0, stable_view=stable(ready=0))
    assert decision.status is not None and decision.status.phase == RolloutPhase.PROMOTING and decision.promote
    assert decision.canary_replicas == 0


# -- spec changes ---------------------------------------------------------------------------------------


def test_revision_change_mid_rollout_restarts_at_step_0() -> None:
    status = step(None, T0).status
    status = step(status, at(1), canary_view=canary(1)).status
    status = step(status, at(61), canary_view=canary(1)).status
    assert status is not None and status.step == 1
    restarted = step(status, at(70), revision="newer00000", canary_view=canary(4))
    new = restarted.status
    assert new is not None and new.revision == "newer00000" and new.step == 0
    assert new.started_at == stamp(at(70)) and new.step_ready_at is None and new.analysis[0].name == "restarts"
    assert restarted.canary_replicas == 1
    assert [e.reason for e in restarted.events] == [Reason.CANARY_PROGRESSING]
    assert "restarts at step 1/2 with revision newer00000" in restarted.events[0].message


def test_spec_back_to_the_stable_revision_clears_the_rollout() -> None:
    status = step(None, T0).status
    back = step(status, at(10), revision=OLD, canary_view=canary(1))
    assert back.status is None and back.canary_replicas == 0 and not back.holds_stable


def test_steps_shortened_below_the_current_step_promote() -> None:
    status = step(None, T0).status
    status = step(status, at(1), canary_view=canary(1)).status
    status = step(status, at(61), canary_view=canary(1)).status
    assert status is not None and status.step == 1
    shorter = rollout(steps=[{"weight": 10, "pause": "60s"}])
    decision = step(status, at(62), spec=shorter, canary_view=canary(4))
    assert decision.promote and decision.status is not None and decision.status.phase == RolloutPhase.PROMOTING


def test_resumes_from_status_alone() -> None:
    """An operator restarted mid-step decides from the status it wrote, with no memory."""
    status = step(None, T0).status
    status = step(status, at(1), canary_view=canary(1)).status
    assert status is not None
    restored = RolloutStatus.model_validate(status.model_dump(by_alias=True, exclude_none=True))
    resumed = step(restored, at(30), canary_view=canary(1))
    assert resumed.status is not None and resumed.status.step == 0 and resumed.requeue_after == 31
    assert resumed.events == []


def test_a_revision_that_needs_no_canary_is_promoted_directly() -> None:
    given = RolloutInput(
        rollout=rollout(),
        previous=None,
        revision=NEW,
        version=5,
        artifact_hash="abc",
        stable=stable(),
        canary=None,
        canary_restarts=0,
        now=T0,
        promote_directly="version 5 served before (status.history): rolled back without canary steps",
    )
    decision = decide(given)
    assert decision.promote and decision.canary_replicas == 0
    assert decision.status is not None and decision.status.phase == RolloutPhase.PROMOTING
    assert [(e.reason, e.message) for e in decision.events] == [(Reason.PROMOTING, given.promote_directly)]
