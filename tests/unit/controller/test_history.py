"""status.history (the audit trail) and the instant rollback it allows: the pure rules of
`controller/history.py`, and what the planner and status make of them in one reconcile."""

from __future__ import annotations

import json
from typing import Any

from modeldeploy.api import ModelDeployment, parse_model_deployment
from modeldeploy.api.status import HistoryEntry, HistoryOutcome, ModelDeploymentStatus
from modeldeploy.contract.formats import ModelFormat
from modeldeploy.contract.summary import OptimizerSummary
from modeldeploy.controller.builders import Owner, desired_artifact
from modeldeploy.controller.builders.names import job_name
from modeldeploy.controller.history import (
    MAX_HISTORY_BYTES,
    MAX_MESSAGE_CHARS,
    aborted_entry,
    current,
    find_rollback,
    record_aborted,
    record_serving,
)
from modeldeploy.controller.plan import Plan, plan
from modeldeploy.controller.status import StatusUpdate, status_of
from modeldeploy.controller.views import DeploymentView, JobState, JobView, Observed

OWNER = Owner(name="digits", uid="uid-1")
T0, T1, T2, T3 = (f"2026-12-01T1{i}:00:00Z" for i in range(4))


def entry(version: int, digest: str, outcome: HistoryOutcome = HistoryOutcome.PROMOTED, **kw: Any) -> HistoryEntry:
    fields: dict[str, Any] = {
        "storage_uri": f"pvc://models/modeldeploy/digits/{digest}/{version}",
        "manifest_sha256": f"m{digest}",
        **kw,
    }
    return HistoryEntry(version=version, artifact_hash=digest, outcome=outcome, **fields)


# -- the pure rules -----------------------------------------------------------------------------------


def test_a_new_artifact_serving_supersedes_the_current_one() -> None:
    history = record_serving([], entry(1, "a1", from_=T0), T0, 10)
    assert [(e.version, e.outcome, e.from_, e.to) for e in history] == [(1, "Promoted", T0, None)]
    history = record_serving(history, entry(2, "b2", from_=T1), T1, 10)
    assert [(e.version, e.outcome, e.from_, e.to) for e in history] == [
        (2, "Promoted", T1, None),
        (1, "Superseded", T0, T1),
    ]
    assert history[1].message == "superseded by version 2 (artifact b2)"
    history = record_serving(history, entry(1, "a1", from_=T2, message="rolled back"), T2, 10)
    assert [(e.version, e.outcome, e.to) for e in history] == [
        (1, "Promoted", None),
        (2, "Superseded", T2),
        (1, "Superseded", T1),
    ]
    again = record_serving(history, entry(2, "b2", from_=T3), T3, 10)
    assert again[1].message == "rolled back; superseded by version 2 (artifact b2)", "how it started stays"


def test_a_resync_adds_nothing() -> None:
    """The same artifact seen serving again (every resync, a pod restart) is no new entry, whatever
    the clock says: the current entry already names it."""
    history = record_serving([], entry(1, "a1", from_=T0), T0, 10)
    history = record_serving(history, entry(2, "b2", from_=T1), T1, 10)
    assert record_serving(history, entry(2, "b2", from_=T2), T2, 10) == history
    assert record_serving(history, None, T2, 10) == history, "nothing serving all traffic: unchanged"


def test_the_history_keeps_history_limit_entries_newest_first() -> None:
    history: list[HistoryEntry] = []
    for version in range(1, 6):
        history = record_serving(history, entry(version, f"h{version}", from_=T0), T0, 3)
    assert [e.version for e in history] == [5, 4, 3]
    assert record_serving(history, None, T1, 2) == history[:2], "a lower limit applies at the next pass"


def test_the_history_is_size_bounded() -> None:
    """Messages are cut, and the oldest entries go while the list is over its byte budget."""
    long = "x" * 10_000
    history = record_serving([], entry(1, "a1", message=long), T0, 10)
    assert len(history[0].message) == MAX_MESSAGE_CHARS and history[0].message.endswith("...")
    huge_uri = "pvc://models/" + "d" * 8_000
    history = []
    for version in range(1, 11):
        history = record_serving(history, entry(version, f"h{version}", storage_uri=huge_uri), T0, 10)
    size = len(json.dumps([e.to_api() for e in history]))
    assert size <= MAX_HISTORY_BYTES and 1 < len(history) < 10, (size, len(history))
    assert history[0].version == 10, "the newest stays"


def test_an_aborted_canary_is_recorded_once_per_attempt() -> None:
    md_artifact = desired_artifact("digits", md_v(2).spec, "ml")
    history = record_serving([], entry(1, "a1", from_=T0), T0, 10)
    aborted = aborted_entry(
        md_artifact, None, "int8", started_at=T1, finished_at=T2, message="check error-ratio: 0.2 > 0.05 " * 40
    )
    once = record_aborted(history, aborted, 10)
    assert [(e.version, e.outcome) for e in once] == [(2, "Aborted"), (1, "Promoted")]
    assert (once[0].from_, once[0].to) == (T1, T2) and len(once[0].message) == MAX_MESSAGE_CHARS
    assert record_aborted(once, aborted, 10) == once, "the step machine reports it every pass"
    retried = aborted.model_copy(update={"from_": T3})
    assert len(record_aborted(once, retried, 10)) == 3, "a new attempt of the same artifact is a new entry"
    assert current(once) == once[1], "an aborted canary never served all traffic"
    assert find_rollback(once, md_artifact.hash) is None, "nor can it be rolled back to"


def test_find_rollback_takes_the_newest_entry_that_can_serve_again() -> None:
    history = [
        entry(1, "a1", HistoryOutcome.ABORTED),
        entry(2, "b2"),
        entry(1, "a1", HistoryOutcome.SUPERSEDED, storage_uri="pvc://models/new/a1/1"),
        entry(1, "a1", HistoryOutcome.SUPERSEDED, storage_uri="pvc://models/old/a1/1"),
        entry(3, "c3", HistoryOutcome.SUPERSEDED, manifest_sha256=None),
        entry(4, "d4", HistoryOutcome.SUPERSEDED, storage_uri=None),
    ]
    found = find_rollback(history, "a1")
    assert found is not None and found.storage_uri == "pvc://models/new/a1/1"
    assert find_rollback(history, "b2") == history[1]
    assert find_rollback(history, "c3") is None, "pods could not verify it: it is built again"
    assert find_rollback(history, "d4") is None
    assert find_rollback(history, "zz") is None


# -- through the planner and status, as one reconcile decides ---------------------------------------

SUMMARY = {
    "result": "Succeeded",
    "format": "tflite-dynamic",
    "originalBytes": 1_278_633,
    "optimizedBytes": 213_555,
    "metric": "accuracy",
    "accuracyBefore": 0.98,
    "accuracyAfter": 0.975,
    "manifestSha256": "feed" * 16,
    "signer": "sha256:abc",
}


def md_v(version: int, **spec: Any) -> ModelDeployment:
    return parse_model_deployment(
        {
            "apiVersion": "modeldeploy.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "digits", "namespace": "ml"},
            "spec": {
                "model": {"name": "digits", "storageUri": "pvc://models/digits.keras", "version": version},
                "optimization": {"quantization": "dynamic"},
                **spec,
            },
        }
    )


def succeeded_job(md: ModelDeployment, manifest: str = "feed" * 16) -> JobView:
    digest = desired_artifact(md.name, md.spec, md.namespace).hash
    summary = OptimizerSummary.model_validate({**SUMMARY, "version": md.spec.model.version, "manifestSha256": manifest})
    return JobView(job_name(md.name, digest), digest, JobState.SUCCEEDED, summary=summary)


def deployment(digest: str, *, done: bool) -> DeploymentView:
    """The serving Deployment with `digest`'s pods: updated and available, or still rolling."""
    return DeploymentView("digits", digest, 3, 3, 1, 1 if done else 0, 1 if done else 0, done, "", "", "")


def reconcile(
    md: ModelDeployment, observed: Observed, previous: ModelDeploymentStatus, now: str
) -> tuple[Plan, StatusUpdate]:
    decided = plan(md, observed, previous, OWNER)
    return decided, status_of(md, decided, observed, previous, now)


def optimizer_jobs(decided: Plan) -> list[str]:
    return [c["metadata"]["name"] for c in decided.create if "-opt-" in c["metadata"]["name"]]


def serve_v1_then_v2(limit: int = 10) -> tuple[ModelDeploymentStatus, str, str]:
    """v1 optimized and served, then v2: the status after v2 serves all traffic."""
    rollout = {"rollout": {"historyLimit": limit}}
    v1, v2 = md_v(1, **rollout), md_v(2, **rollout)
    job1, job2 = succeeded_job(v1, "a" * 64), succeeded_job(v2, "b" * 64)
    _, first = reconcile(v1, Observed(jobs={job1.artifact_hash: job1}), ModelDeploymentStatus(), T0)
    assert first.status.history == [], "applied, not yet serving: nothing recorded"
    observed = Observed(jobs={job1.artifact_hash: job1}, deployment=deployment(job1.artifact_hash, done=True))
    _, served = reconcile(v1, observed, first.status, T0)
    (only,) = served.status.history
    assert (only.version, only.artifact_hash, only.outcome, only.from_) == (1, job1.artifact_hash, "Promoted", T0)
    assert only.storage_uri == f"pvc://models/modeldeploy/digits/{job1.artifact_hash}/1"
    assert (only.manifest_sha256, only.metric, only.accuracy_before, only.accuracy_after) == (
        "a" * 64,
        "accuracy",
        0.98,
        0.975,
    )
    assert (only.optimized_bytes, only.signer, only.optimized_summary) == (213_555, "sha256:abc", "dynamic")
    rolling = Observed(jobs={job2.artifact_hash: job2}, deployment=deployment(job1.artifact_hash, done=True))
    _, v2_applied = reconcile(v2, rolling, served.status, T1)
    assert v2_applied.status.history == served.status.history, "v2 does not serve all traffic yet"
    updated = Observed(jobs={job2.artifact_hash: job2}, deployment=deployment(job2.artifact_hash, done=False))
    _, v2_rolling = reconcile(v2, updated, v2_applied.status, T1)
    assert len(v2_rolling.status.history) == 1, "the Deployment is updated but its new pods are not available"
    done = Observed(jobs={job2.artifact_hash: job2}, deployment=deployment(job2.artifact_hash, done=True))
    _, v2_served = reconcile(v2, done, v2_rolling.status, T2)
    return v2_served.status, job1.artifact_hash, job2.artifact_hash


def test_history_follows_what_serves_all_traffic() -> None:
    status, h1, h2 = serve_v1_then_v2()
    assert [(e.version, e.artifact_hash, e.outcome, e.from_, e.to) for e in status.history] == [
        (2, h2, "Promoted", T2, None),
        (1, h1, "Superseded", T0, T2),
    ]
    assert status.history[0].manifest_sha256 == "b" * 64
    v2 = md_v(2)
    job2 = succeeded_job(v2, "b" * 64)
    done = Observed(jobs={job2.artifact_hash: job2}, deployment=deployment(job2.artifact_hash, done=True))
    _, resync = reconcile(v2, done, status, T3)
    assert resync.status == status and resync.events == [], "a resync writes nothing"


def test_going_back_to_a_version_in_history_serves_it_without_a_job() -> None:
    status, h1, h2 = serve_v1_then_v2()
    v1 = md_v(1)
    job2 = succeeded_job(md_v(2), "b" * 64)
    # The spec goes back to version 1: its Job was removed when version 2 took over.
    observed = Observed(jobs={job2.artifact_hash: job2}, deployment=deployment(h2, done=True))
    decided, update = reconcile(v1, observed, status, T3)
    assert decided.rollback is not None and decided.rollback.artifact_hash == h1
    assert optimizer_jobs(decided) == [], "no optimization Job"
    assert decided.serve is not None and decided.serve.hash == h1
    assert decided.serve.location == f"pvc://models/modeldeploy/digits/{h1}/1"
    dep = next(c for c in decided.apply if c["kind"] == "Deployment")
    assert dep["metadata"]["annotations"]["modeldeploy.io/artifact"] == h1
    init = {c["name"]: c for c in dep["spec"]["template"]["spec"]["initContainers"]}
    assert f"--manifest-sha256={'a' * 64}" in init["verify-model"]["args"], "the pods still verify its digest"
    conditions = {c.type: c for c in update.status.conditions}
    assert (conditions["Optimized"].status, conditions["Optimized"].reason) == ("True", "RolledBack")
    assert "from status.history" in conditions["Optimized"].message
    assert [(e.type, e.reason) for e in update.events] == [("Normal", "RolledBack")]
    assert update.events[0].message.startswith(f"serving version 1 again from history (artifact {h1}, optimized")
    assert "no optimization Job" in update.events[0].message
    restored = update.status.optimization
    assert restored is not None and restored.artifact_hash == h1 and restored.manifest_sha256 == "a" * 64
    assert (restored.accuracy_after, restored.optimized_bytes, restored.signer) == (0.975, 213_555, "sha256:abc")
    assert update.status.served_artifact == h1 and len(update.status.history) == 2, "not serving all traffic yet"

    # The next passes: no new Event while rolling out, then v1 serves all traffic again.
    rolling = Observed(jobs={}, deployment=deployment(h1, done=False))
    decided, again = reconcile(v1, rolling, update.status, T3)
    assert optimizer_jobs(decided) == [] and "RolledBack" not in [e.reason for e in again.events]
    _, served = reconcile(v1, Observed(jobs={}, deployment=deployment(h1, done=True)), again.status, T3)
    assert [(e.version, e.outcome) for e in served.status.history] == [
        (1, "Promoted"),
        (2, "Superseded"),
        (1, "Superseded"),
    ]
    assert served.status.history[0].message.startswith("rolled back")
    assert served.status.history[0].manifest_sha256 == "a" * 64
    assert next(c for c in served.status.conditions if c.type == "Ready").reason == "Ready"


def test_no_rollback_when_the_history_cannot_verify_the_artifact() -> None:
    status, h1, _ = serve_v1_then_v2()
    unverifiable = [e.model_copy(update={"manifest_sha256": None}) for e in status.history]
    decided = plan(md_v(1), Observed(), status.model_copy(update={"history": unverifiable}), OWNER)
    assert decided.rollback is None and optimizer_jobs(decided) == [job_name("digits", h1)]


def test_an_artifact_served_as_is_never_uses_the_history() -> None:
    md = md_v(1, optimization={"enabled": False})
    md = md.model_copy(
        update={
            "spec": md.spec.model_copy(
                update={
                    "model": md.spec.model.model_copy(
                        update={"storage_uri": "pvc://models/sm", "format": ModelFormat.SAVEDMODEL}
                    )
                }
            )
        }
    )
    digest = desired_artifact(md.name, md.spec, md.namespace).hash
    previous = ModelDeploymentStatus(history=[entry(1, digest, HistoryOutcome.SUPERSEDED)])
    decided = plan(md, Observed(), previous, OWNER)
    assert decided.rollback is None and decided.serve is not None and decided.serve.location == "pvc://models/sm"


def test_the_retention_job_keeps_every_artifact_of_the_history() -> None:
    """The cleanup Job created when version 3 starts serving keeps what the history lists (even with
    retain 0), and nothing else beyond what serves."""
    status, h1, h2 = serve_v1_then_v2()
    status = status.model_copy(update={"history": [*status.history, entry(7, "aborted7", HistoryOutcome.ABORTED)]})
    v3 = md_v(3, artifacts={"retain": 0})
    job3 = succeeded_job(v3)
    decided = plan(v3, Observed(jobs={job3.artifact_hash: job3}, deployment=deployment(h2, done=True)), status, OWNER)
    (prune,) = [c for c in decided.create if c["metadata"]["name"].startswith("digits-prune-")]
    args = prune["spec"]["template"]["spec"]["containers"][0]["args"]
    assert {a for a in args if a.startswith("--keep=")} == {
        f"--keep={h}" for h in (h1, h2, "aborted7", job3.artifact_hash)
    }
    assert "--retain=0" in args
