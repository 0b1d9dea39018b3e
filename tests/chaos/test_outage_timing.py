"""How the outage scenario times a trial and says which component it waited for; pure, no cluster.

A trial that misses the 60 s bound must still be waited for before the next outage: the harness
went on at once, so the next outage (etcd stopped) began while the missed trial's kube-scheduler
was still asking for its lease, and the lease requests of the next trial timed out (seen in a long
run: the scheduler held its lease 107 s after the restart, 47 s of them in the next outage).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chaos_scenarios import (
    OutagePlan,
    TrialTiming,
    after_leases,
    describe_after_leases,
    describe_leases,
    lease_delays,
    time_trial,
)

PLAN = OutagePlan(converge_timeout=60.0, settle_timeout=240.0)
T0 = datetime(2026, 12, 2, 2, 15, 12, tzinfo=UTC)


class Waits:
    """A fake wait_converged: answers from a script and records the timeouts it was given."""

    def __init__(self, *answers: float | None) -> None:
        self.answers = list(answers)
        self.timeouts: list[float] = []

    def __call__(self, timeout: float) -> tuple[float | None, dict[str, str]]:
        self.timeouts.append(timeout)
        seconds = self.answers.pop(0)
        return seconds, ({} if seconds is not None else {"opt": "Ready is True/RollingOut"})


def test_a_trial_within_the_bound_is_timed_once() -> None:
    waits = Waits(18.5)
    timing = time_trial(waits, PLAN)
    assert (timing.converged, timing.late, waits.timeouts) == (18.5, None, [60.0])
    assert timing.describe(PLAN) == "converged in 18.5 s"


def test_a_missed_trial_is_waited_for_before_the_next_outage_and_stays_a_miss() -> None:
    waits = Waits(None, 7.2)
    timing = time_trial(waits, PLAN)
    assert waits.timeouts == [60.0, 240.0]
    assert timing.converged is None
    assert timing.late == pytest.approx(67.2)
    assert timing.left == {"opt": "Ready is True/RollingOut"}
    assert timing.describe(PLAN) == "not converged within 60 s; converged 67.2 s after the restart"


def test_a_trial_that_never_converges_says_so() -> None:
    timing = time_trial(Waits(None, None), PLAN)
    assert (timing.converged, timing.late) == (None, None)
    assert timing.describe(PLAN) == "not converged 300 s after the restart"


def lease(acquired: datetime) -> dict[str, Any]:
    return {"spec": {"holderIdentity": "vm_x", "acquireTime": acquired.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}}


def test_lease_delays_count_from_the_restart_and_tell_a_kept_lease_from_a_new_one() -> None:
    restarted = T0 + timedelta(seconds=134.4)
    delays = lease_delays(
        {
            "kube-controller-manager": lease(restarted + timedelta(seconds=16.3)),
            "kube-scheduler": lease(restarted + timedelta(seconds=51.5)),
        },
        T0,
        restarted,
    )
    assert delays == {"kube-controller-manager": pytest.approx(16.3), "kube-scheduler": pytest.approx(51.5)}
    # A 5 s outage is shorter than the renew deadline (10 s): the holder keeps its lease.
    kept = lease_delays({"kube-scheduler": lease(T0 - timedelta(minutes=3))}, T0, restarted)
    assert kept == {"kube-scheduler": None}
    # Taken while the API server was still starting (the old holder released it on its way out).
    early = lease_delays({"kube-scheduler": lease(restarted - timedelta(seconds=0.5))}, T0, restarted)
    assert early == {"kube-scheduler": pytest.approx(-0.5)}
    # A Lease that could not be read is left out, not reported as kept.
    assert lease_delays({"kube-scheduler": None}, T0, restarted) == {}


def test_describe_leases_names_each_component() -> None:
    text = describe_leases({"kube-scheduler": 51.54, "kube-controller-manager": None})
    assert text == "leader leases after the restart: kube-controller-manager kept it, kube-scheduler +51.5 s"
    assert describe_leases({}) == "leader leases after the restart: unread"


def test_the_operator_s_share_counts_from_the_last_lease_taken() -> None:
    """A 90 s outage missed at 66.1 s: kube-scheduler held its lease at +63.8 s, so the operator's
    objects converged 2.3 s after the control plane was whole again."""
    missed = TrialTiming(None, 66.1)
    delays: dict[str, float | None] = {"kube-scheduler": 63.8, "kube-controller-manager": 14.9}
    assert after_leases(missed, delays) == pytest.approx(2.3)
    assert describe_after_leases(missed, delays) == "; converged 2.3 s after the last lease was held"
    # Leases kept through a short outage, or taken while the API server was still starting: from the restart.
    assert after_leases(TrialTiming(18.5), {"kube-scheduler": None, "kube-controller-manager": -0.5}) == 18.5
    assert after_leases(TrialTiming(None), delays) is None and describe_after_leases(TrialTiming(None), delays) == ""
