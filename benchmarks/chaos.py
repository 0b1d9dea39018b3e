"""The chaos and fuzz suite in long (issue 13); prints a Markdown table, asserts nothing.

Why it exists: tests/chaos runs each scenario small so `make test` stays short; the promises are
only convincing over many trials: 100 SIGKILLs of the operator at random points (during Job
creation, child applies, status writes), several API server and etcd outages (one while an
optimizer finishes), at least 200 invalid specs, 50 drift edits, and pre-existing objects with
child names. The scenarios are the same code (tests/support/chaos_*.py) with bigger plans, on a
private local control plane started here.

    python benchmarks/chaos.py [--kills 100] [--fuzz 200] [--drift 50] [--ownership 10] [--only kill,fuzz]
                               [--outage-rounds 1] [--keep-restart-back-off]

The table (scenario, trials, converged, time p50/p95, duplicate Jobs, orphans, failures) goes to
stdout, then every failure with its input; progress to stderr. Exits 0 whatever the scenarios
found (a benchmark reports; the tests assert); exits 1 only when the harness itself breaks.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "support"))

from chaos_fuzz import FuzzPlan, fuzz_scenario  # noqa: E402
from chaos_harness import ChaosStack, ScenarioResult, table  # noqa: E402
from chaos_scenarios import (  # noqa: E402
    DriftPlan,
    KillPlan,
    Outage,
    OutagePlan,
    OwnershipPlan,
    drift_scenario,
    kill_scenario,
    outage_scenario,
    ownership_scenario,
)
from devcluster.controlplane import ControlPlane  # noqa: E402
from devcluster.stack import make_reference_models  # noqa: E402

SCENARIOS = ("fuzz", "drift", "ownership", "outage", "kill")
LONG_OUTAGES = (
    Outage(("kube-apiserver", "etcd"), 5.0, during_job=True),
    Outage(("kube-apiserver",), 10.0),
    Outage(("etcd",), 10.0),
    Outage(("kube-apiserver", "etcd"), 30.0),
    Outage(("kube-apiserver",), 90.0, during_job=True),
    Outage(("etcd",), 30.0),
)


def progress(text: str) -> None:
    print(f"[chaos] {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=100, help="SIGKILLs of the operator")
    parser.add_argument("--fuzz", type=int, default=200, help="generated invalid specs (the issue's cases come on top)")
    parser.add_argument("--drift", type=int, default=50, help="drift edits of children")
    parser.add_argument("--ownership", type=int, default=10, help="ownership trials")
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument(
        "--outage-rounds",
        type=int,
        default=1,
        help=f"times the {len(LONG_OUTAGES)} outages are run, one after the other",
    )
    parser.add_argument(
        "--keep-restart-back-off",
        action="store_true",
        help="outages inherit the controller-manager's crash-loop back-off from the ones before (as on a node "
        "hit by several outages within 10 minutes) instead of each being measured on its own",
    )
    parser.add_argument(
        "--log-dir", type=Path, default=None, help="keep the operators' logs here (default: thrown away)"
    )
    parser.add_argument(
        "--models", type=Path, default=None, help="reference models already trained (default: train them)"
    )
    args = parser.parse_args(argv)
    only = [s for s in args.only.split(",") if s]
    unknown = sorted(set(only) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {SCENARIOS}")

    results: list[ScenarioResult] = []
    with tempfile.TemporaryDirectory(prefix="modeldeploy-chaos-") as tmp:
        work = Path(tmp)
        progress("training the reference models and starting a private control plane")
        models = args.models or make_reference_models(work / "reference")
        log_dir = args.log_dir or work / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        # With --log-dir the control plane's own logs are kept there too (why a component lagged).
        keep = {"workdir": args.log_dir / "controlplane", "keep_workdir": True} if args.log_dir else {}
        with ControlPlane(nodes=3, **keep) as plane:
            (work / "storage").mkdir()
            stack = ChaosStack(plane, work / "storage", models, log_dir, REPO / "crds")
            try:
                runs = {
                    "kill": lambda: kill_scenario(
                        stack, KillPlan(kills=args.kills, plain=6, optimized=2, new_job_every=20, seed=args.seed)
                    ),
                    "outage": lambda: outage_scenario(
                        stack,
                        OutagePlan(
                            outages=LONG_OUTAGES * args.outage_rounds,
                            independent_trials=not args.keep_restart_back_off,
                        ),
                    ),
                    "fuzz": lambda: fuzz_scenario(stack, FuzzPlan(generated=args.fuzz), REPO / "crds"),
                    "drift": lambda: drift_scenario(stack, DriftPlan(edits=args.drift, seed=args.seed)),
                    "ownership": lambda: ownership_scenario(
                        stack, OwnershipPlan(trials=args.ownership, seed=args.seed)
                    ),
                }
                for name in only:
                    started = time.monotonic()
                    progress(f"{name}: running")
                    try:
                        result = runs[name]()
                    except Exception:
                        progress(f"{name}: the harness broke:\n{traceback.format_exc()}")
                        return 1
                    progress(f"{name}: done in {time.monotonic() - started:.0f} s: {result.row()}")
                    if result.failures:
                        progress(result.report())
                    results.append(result)
            finally:
                stack.close()
    print(table(results))
    print()
    for result in results:
        for note in result.notes:
            print(f"- {note}")
    for result in results:
        if result.failures:
            print()
            print(result.report(limit=len(result.failures)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
