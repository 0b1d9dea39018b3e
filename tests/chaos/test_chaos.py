"""The chaos and fuzz scenarios in small (benchmarks/chaos.py, `make chaos`, runs them long and
prints the table in the README). Each scenario's result lists every failure with its input; a
test fails when there is one. See tests/support/chaos_harness.py for what each promise means.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos_fuzz import FuzzPlan, fuzz_scenario
from chaos_harness import ChaosStack, ScenarioResult
from chaos_scenarios import (
    DriftPlan,
    KillPlan,
    OutagePlan,
    OwnershipPlan,
    drift_scenario,
    kill_scenario,
    outage_scenario,
    ownership_scenario,
)

# The first test also trains the reference models and starts the private control plane.
pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(900)]


def check(result: ScenarioResult) -> None:
    print("\n" + result.row() + "".join(f"\n  {note}" for note in result.notes))
    assert result.trials, f"{result.scenario}: no trial ran"
    assert not result.failures, result.report()
    assert result.duplicates == 0 and result.orphans == 0
    assert result.converged == len(result.trials), result.report()


def test_kill_minus_nine_at_random_points_leaves_no_duplicate_and_no_orphan(chaos_stack: ChaosStack) -> None:
    check(kill_scenario(chaos_stack, KillPlan(kills=4, plain=3, optimized=1)))


def test_api_server_and_etcd_restarts_lose_no_optimizer_result(chaos_stack: ChaosStack) -> None:
    check(outage_scenario(chaos_stack, OutagePlan()))


def test_invalid_specs_are_refused_naming_the_field_or_reported_once(
    chaos_stack: ChaosStack, pytestconfig: pytest.Config
) -> None:
    check(fuzz_scenario(chaos_stack, FuzzPlan(generated=30, report_timeout=60), Path(pytestconfig.rootpath / "crds")))


def test_drift_is_repaired_or_reported_without_an_apply_loop(chaos_stack: ChaosStack) -> None:
    check(drift_scenario(chaos_stack, DriftPlan(edits=8)))


def test_objects_with_child_names_that_we_do_not_own_are_never_touched(chaos_stack: ChaosStack) -> None:
    check(ownership_scenario(chaos_stack, OwnershipPlan(trials=2)))
