"""The planner and the observation views: which artifact serves, what status says, what is pruned."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modeldeploy.api import ModelDeployment
from modeldeploy.api.status import ModelDeploymentStatus
from modeldeploy.contract.summary import OptimizerSummary, parse_summary
from modeldeploy.controller.builders import Owner, desired_artifact
from modeldeploy.controller.builders.names import job_name
from modeldeploy.controller.drift import is_subset
from modeldeploy.controller.plan import plan as decide
from modeldeploy.controller.status import EventSpec, cancelled_event, optimized_summary, status_of
from modeldeploy.controller.views import DeploymentView, JobView, Observed, view_deployment, view_job

OWNER = Owner(name="digits", uid="uid-1")
EVAL = {"datasetUri": "pvc://models/eval.npz"}
NOW = "2026-11-26T12:00:00Z"
SUMMARY = {
    "result": "Succeeded",
    "version": 1,
    "format": "tflite-int8",
    "originalBytes": 1_278_633,
    "optimizedBytes": 213_555,
    "sparsity": {"dense": 0.8, "conv": None},
    "accuracyBefore": 0.98,
    "accuracyAfter": 0.975,
    "latencyP50Ms": 0.05,
}


@dataclass
class Decided:
    create: list[dict[str, Any]]
    apply: list[dict[str, Any]]
    delete: list[tuple[str, str]]
    status: ModelDeploymentStatus
    events: list[EventSpec]


def plan(md: ModelDeployment, observed: Observed, previous: ModelDeploymentStatus, owner: Owner, now: str) -> Decided:
    """The planner's children and the status they lead to, as one reconcile decides them."""
    p = decide(md, observed, previous, owner)
    update = status_of(md, p, observed, previous, now)
    return Decided(p.create, p.apply, p.delete, update.status, update.events)


def ok_job(md: ModelDeployment, state: str = "Succeeded", **kw: Any) -> JobView:
    digest = desired_artifact(md.name, md.spec, md.namespace).hash
    summary = OptimizerSummary.model_validate(SUMMARY) if state == "Succeeded" else None
    return JobView(job_name(md.name, digest), digest, state, summary=summary, **kw)  # type: ignore[arg-type]


def available(md: ModelDeployment, digest: str | None = None, ready: int = 1) -> DeploymentView:
    return DeploymentView(
        "digits",
        digest or desired_artifact(md.name, md.spec, md.namespace).hash,
        2,
        2,
        1,
        ready,
        1,
        ready > 0,
        "",
        "",
        "",
    )


def kinds(items: list[dict[str, Any]]) -> list[str]:
    return [i["kind"] for i in items]


def test_first_pass_creates_the_job_and_nothing_else(make_md: Callable[..., ModelDeployment]) -> None:
    md = make_md()
    p = plan(md, Observed(), ModelDeploymentStatus(), OWNER, NOW)
    assert kinds(p.create) == ["Job"] and kinds(p.apply) == ["NetworkPolicy"] and p.delete == []
    cond = {c.type: c for c in p.status.conditions}
    assert cond["Optimized"].reason == "Optimizing" and cond["Ready"].status == "False"
    assert p.status.phase == "Optimizing" and p.status.observed_generation is None
    assert [(e.type, e.reason) for e in p.events] == [("Normal", "Optimizing")], "one Event: Ready's first state"


def test_succeeded_job_rolls_out_the_artifact(make_md: Callable[..., ModelDeployment]) -> None:
    md = make_md(
        spec={"optimization": {"quantization": "int8", "pruning": {"denseSparsity": 0.75}, "evaluation": EVAL}}
    )
    job = ok_job(md)
    p = plan(md, Observed(jobs={job.artifact_hash: job}), ModelDeploymentStatus(), OWNER, NOW)
    assert [c["metadata"]["name"] for c in p.create] == [f"digits-prune-{job.artifact_hash[:10]}"], "retention"
    assert kinds(p.apply) == [
        "NetworkPolicy",
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    ]
    assert p.status.served_artifact == job.artifact_hash and p.status.phase == "RollingOut"
    assert p.status.optimization is not None and p.status.optimization.optimized_bytes == 213_555
    assert p.status.optimized_summary == "int8, 80% pruned", "the measured sparsity, not the asked one"
    assert p.status.size_summary == "0.21MB/1.28MB"


def test_ready_when_the_deployment_is_available(make_md: Callable[..., ModelDeployment]) -> None:
    md = make_md()
    job = ok_job(md)
    p = plan(md, Observed(jobs={job.artifact_hash: job}, deployment=available(md)), ModelDeploymentStatus(), OWNER, NOW)
    cond = {c.type: c for c in p.status.conditions}
    assert cond["Ready"].status == "True" and cond["ServingReady"].reason == "Available"
    assert p.status.phase == "Ready" and p.status.ready_replicas == 1
    assert p.status.url == "http://digits.ml.svc:8501/v1/models/digits"


def test_failed_optimization_keeps_serving_the_previous_artifact(make_md: Callable[..., ModelDeployment]) -> None:
    v1 = make_md()
    v1_job = ok_job(v1)
    first = plan(
        v1, Observed(jobs={v1_job.artifact_hash: v1_job}, deployment=available(v1)), ModelDeploymentStatus(), OWNER, NOW
    )
    v2 = make_md(spec={"model": {"version": 2}})
    failed = ok_job(v2, "Failed", reason="QualityGateFailed", message="accuracy dropped 3.2 points")
    observed = Observed(
        jobs={v1_job.artifact_hash: v1_job, failed.artifact_hash: failed},
        deployment=available(v1, v1_job.artifact_hash),
    )
    p = plan(v2, observed, first.status, OWNER, "2026-11-26T12:05:00Z")
    deployment = next(c for c in p.apply if c["kind"] == "Deployment")
    assert deployment["metadata"]["annotations"]["modeldeploy.io/artifact"] == v1_job.artifact_hash
    assert p.status.served_version == 1 and p.status.phase == "Degraded"
    cond = {c.type: c for c in p.status.conditions}
    assert cond["Optimized"].reason == "QualityGateFailed"
    assert cond["Ready"].status == "True" and cond["Ready"].reason == "ServingPreviousVersion"
    assert "accuracy dropped 3.2 points" in cond["Ready"].message
    assert cond["ServingReady"].last_transition_time == NOW  # unchanged status keeps its time
    assert cond["Optimized"].last_transition_time == "2026-11-26T12:05:00Z"
    assert ("Job", v1_job.name) not in p.delete, "the serving artifact's Job is kept"
    assert any(e.type == "Warning" and e.reason == "QualityGateFailed" for e in p.events)


def test_unwanted_children_and_stale_jobs_are_removed(make_md: Callable[..., ModelDeployment]) -> None:
    md = make_md(spec={"autoscaling": {"enabled": False}})
    job = ok_job(md)
    stale = JobView("digits-opt-old", "0ld", "Failed")
    children = {("HorizontalPodAutoscaler", "digits"): {}, ("PodDisruptionBudget", "digits"): {}}
    p = plan(
        md,
        Observed(jobs={job.artifact_hash: job, "0ld": stale}, children=children),
        ModelDeploymentStatus(),
        OWNER,
        NOW,
    )
    assert sorted(p.delete) == [
        ("HorizontalPodAutoscaler", "digits"),
        ("Job", "digits-opt-old"),
        ("PodDisruptionBudget", "digits"),
    ]


def test_superseded_running_jobs_are_cancelled_but_never_the_wanted_or_serving_one(
    make_md: Callable[..., ModelDeployment],
) -> None:
    """Quick version bumps: only the newest wanted artifact keeps a running Job; the Job of what serves
    and of what the spec asks for stay; each cancelled Job gets one Normal Event naming it and its version."""
    md = make_md(spec={"model": {"version": 5}})
    wanted = ok_job(md, "Running")
    serving = JobView("digits-opt-serving", "5erving", "Running", version="1")  # type: ignore[arg-type]
    old_running = [JobView(f"digits-opt-v{v}", f"hash{v}", "Running", version=str(v)) for v in (2, 3, 4)]  # type: ignore[arg-type]
    old_failed = JobView("digits-opt-failed", "failed", "Failed", version="2")  # type: ignore[arg-type]
    jobs = {j.artifact_hash: j for j in (wanted, serving, old_failed, *old_running)}
    previous = ModelDeploymentStatus(served_artifact="5erving", served_uri="pvc://models/x/5erving/1", served_version=1)
    p = decide(md, Observed(jobs=jobs), previous, OWNER)
    assert [j.name for j in p.cancel] == ["digits-opt-v2", "digits-opt-v3", "digits-opt-v4"]
    assert p.delete == [("Job", "digits-opt-failed")]
    assert [c["metadata"]["name"] for c in p.create] == ["digits-prune-5erving"], "only the retention Job"
    event = cancelled_event(p.cancel[0], p.desired)
    assert (event.type, event.reason) == ("Normal", "OptimizationCancelled")
    assert "digits-opt-v2" in event.message and "version 2" in event.message and "version 5" in event.message


def test_no_password_from_a_url_reaches_status_or_events(make_md: Callable[..., ModelDeployment]) -> None:
    """Defence in depth: whatever a Job or pod reports, user info in URLs never reaches status or Events."""
    md = make_md()
    failed = ok_job(
        md,
        "Failed",
        reason="FetchFailed",
        message='model s3://b/m.keras: unreachable (Could not connect to "http://admin:hunter2-pw@minio:9000/b")',
    )
    p = plan(md, Observed(jobs={failed.artifact_hash: failed}), ModelDeploymentStatus(), OWNER, NOW)
    texts = [c.message for c in p.status.conditions] + [e.message for e in p.events]
    assert texts and all("hunter2-pw" not in t and "admin" not in t for t in texts), texts
    assert any("http://***@minio:9000/b" in t for t in texts)


def test_a_newly_served_artifact_gets_one_retention_job(make_md: Callable[..., ModelDeployment]) -> None:
    """Once the spec's artifact serves, one cleanup Job prunes older ones; it keeps what serves, what
    served before and what the pods still run, and is not created again while it exists."""
    md = make_md(spec={"model": {"version": 2}, "artifacts": {"retain": 1}})
    job = ok_job(md)
    previous = ModelDeploymentStatus(served_artifact="0ld", served_uri="pvc://models/x/0ld/1", served_version=1)
    old_prune = "digits-prune-0ld"
    observed = Observed(jobs={job.artifact_hash: job}, deployment=available(md, "0ld"), cleanup_jobs={old_prune: True})
    p = decide(md, observed, previous, OWNER)
    (prune,) = [c for c in p.create if c["metadata"]["name"].startswith("digits-prune-")]
    assert prune["metadata"]["name"] == f"digits-prune-{job.artifact_hash[:10]}"
    assert prune["metadata"]["ownerReferences"][0]["uid"] == OWNER.uid
    args = prune["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "prune-artifacts" and "--root=/mnt/pvc/models/modeldeploy/digits" in args
    assert {a for a in args if a.startswith("--keep=")} == {"--keep=0ld", f"--keep={job.artifact_hash}"}
    assert "--retain=1" in args and "--owner=ml/digits" in args
    assert ("Job", old_prune) in p.delete, "the finished cleanup of the artifact served before goes"

    again = decide(
        md, Observed(jobs={job.artifact_hash: job}, cleanup_jobs={prune["metadata"]["name"]: True}), previous, OWNER
    )
    assert not [c for c in again.create if c["metadata"]["name"].startswith("digits-prune-")]
    assert ("Job", prune["metadata"]["name"]) not in again.delete


def test_no_retention_job_while_nothing_of_ours_serves(make_md: Callable[..., ModelDeployment]) -> None:
    md = make_md()
    p = decide(md, Observed(jobs={}), ModelDeploymentStatus(), OWNER)
    assert [c["metadata"]["name"] for c in p.create] == [job_name(md.name, p.desired.hash)]


def test_missing_claim_blocks_everything(make_md: Callable[..., ModelDeployment]) -> None:
    p = plan(make_md(), Observed(missing_claims=("models",)), ModelDeploymentStatus(), OWNER, NOW)
    assert p.create == p.apply == p.delete == []
    ready = next(c for c in p.status.conditions if c.type == "Ready")
    assert ready.reason == "PersistentVolumeClaimNotFound" and "models" in ready.message
    assert p.status.phase == "Failed"


def test_savedmodel_without_optimization_needs_no_job(make_md: Callable[..., ModelDeployment]) -> None:
    md = make_md(
        spec={"model": {"format": "savedmodel", "storageUri": "pvc://models/sm"}, "optimization": {"enabled": False}}
    )
    p = plan(md, Observed(), ModelDeploymentStatus(), OWNER, NOW)
    assert p.create == [] and "Deployment" in kinds(p.apply)
    assert next(c for c in p.status.conditions if c.type == "Optimized").reason == "NotRequired"
    assert [e.reason for e in p.events] == ["Creating"], "served as is: no Event about an optimization"


def test_optimized_summary_texts(make_md: Callable[..., ModelDeployment]) -> None:
    both = make_md(
        spec={
            "optimization": {
                "quantization": "int8",
                "pruning": {"denseSparsity": 0.8, "convSparsity": 0.5},
                "evaluation": EVAL,
            }
        }
    )
    assert optimized_summary(both, None) == "int8, dense 80%/conv 50% pruned"
    assert optimized_summary(make_md(spec={"optimization": {"quantization": "float16"}}), None) == "float16"
    assert optimized_summary(make_md(), None) == "none"


def test_job_views() -> None:
    job = {"metadata": {"name": "j", "labels": {"modeldeploy.io/artifact": "abc"}}, "status": {}}
    waiting_pod = {
        "metadata": {"creationTimestamp": "t"},
        "status": {
            "containerStatuses": [
                {"state": {"waiting": {"reason": "CreateContainerConfigError", "message": 'secret "s3" not found'}}}
            ]
        },
    }
    view = view_job(job, [waiting_pod])
    assert (view.state, view.reason, view.message) == ("Running", "CreateContainerConfigError", 'secret "s3" not found')
    failed = {
        **job,
        "status": {
            "conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "too long"}]
        },
    }
    assert view_job(failed, []).reason == "DeadlineExceeded"
    gate = {
        "metadata": {},
        "status": {
            "containerStatuses": [
                {
                    "state": {
                        "terminated": {
                            "exitCode": 20,
                            "message": json.dumps(
                                {"result": "Failed", "reason": "QualityGateFailed", "message": "drop 3 points"}
                            ),
                        }
                    }
                }
            ]
        },
    }
    assert (view_job(failed, [gate]).reason, view_job(failed, [gate]).message) == ("QualityGateFailed", "drop 3 points")
    assert parse_summary("some log line\nnot json") is None


def test_deployment_view_reads_conditions() -> None:
    dep = {
        "metadata": {"name": "d", "generation": 3, "annotations": {"modeldeploy.io/artifact": "h"}},
        "status": {
            "observedGeneration": 3,
            "replicas": 2,
            "readyReplicas": 1,
            "updatedReplicas": 2,
            "conditions": [{"type": "Available", "status": "False", "message": "min availability"}],
        },
    }
    view = view_deployment(dep)
    assert (view.artifact_hash, view.available, view.unavailable_message) == ("h", False, "min availability")


def test_is_subset_semantics() -> None:
    assert is_subset({"a": 1, "b": [{"x": "1"}]}, {"a": 1.0, "b": [{"x": 1, "y": 2}], "c": 3})
    assert not is_subset({"b": [1]}, {"b": [1, 2]})
    assert not is_subset({"a": True}, {"a": 1})
    assert not is_subset({"a": {"b": 1}}, {"a": {}})


def test_a_refused_artifact_makes_serving_not_ready(make_md: Callable[..., ModelDeployment]) -> None:
    md = make_md()
    job = ok_job(md)
    summary = OptimizerSummary.model_validate({**SUMMARY, "manifestSha256": "ab" * 32})
    job = JobView(job.name, job.artifact_hash, "Succeeded", summary=summary)  # type: ignore[arg-type]
    observed = Observed(
        jobs={job.artifact_hash: job},
        deployment=available(md),
        refused_artifacts={job.artifact_hash: "ArtifactTampered: model.tflite: content changed"},
    )
    p = plan(md, observed, ModelDeploymentStatus(), OWNER, NOW)
    cond = {c.type: c for c in p.status.conditions}
    assert cond["ServingReady"].reason == cond["Ready"].reason == "ArtifactVerificationFailed"
    assert "model.tflite: content changed" in cond["Ready"].message
    deployment = next(c for c in p.apply if c["kind"] == "Deployment")
    (verify,) = deployment["spec"]["template"]["spec"]["initContainers"]
    assert f"--manifest-sha256={'ab' * 32}" in verify["args"]


def test_refused_artifacts_are_read_from_init_container_statuses() -> None:
    from modeldeploy.controller.views import refused_artifacts

    pod = {
        "metadata": {"labels": {"modeldeploy.io/artifact": "h1"}},
        "status": {
            "initContainerStatuses": [
                {
                    "name": "verify-model",
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 3, "message": "ArtifactTampered: x"}},
                }
            ]
        },
    }
    fine = {
        "metadata": {"labels": {"modeldeploy.io/artifact": "h2"}},
        "status": {"initContainerStatuses": [{"name": "verify-model", "state": {"terminated": {"exitCode": 0}}}]},
    }
    assert refused_artifacts([pod, fine], "verify-model") == {"h1": "ArtifactTampered: x"}


def test_ready_stays_true_while_a_new_version_rolls_out(make_md: Callable[..., ModelDeployment]) -> None:
    v2 = make_md(spec={"model": {"version": 2}})
    job = ok_job(v2)
    old_pods_available = DeploymentView("digits", "old-artifact", 3, 3, 1, 1, 0, True, "", "", "")
    p = plan(
        v2, Observed(jobs={job.artifact_hash: job}, deployment=old_pods_available), ModelDeploymentStatus(), OWNER, NOW
    )
    cond = {c.type: c for c in p.status.conditions}
    assert cond["ServingReady"].reason == "RollingOut" and cond["ServingReady"].status == "False"
    assert cond["Ready"].status == "True" and cond["Ready"].reason == "RollingOut"
    assert p.status.phase == "RollingOut"
    nothing_available = DeploymentView("digits", "old-artifact", 3, 3, 1, 0, 0, False, "", "", "")
    p = plan(
        v2, Observed(jobs={job.artifact_hash: job}, deployment=nothing_available), ModelDeploymentStatus(), OWNER, NOW
    )
    assert {c.type: c for c in p.status.conditions}["Ready"].status == "False"


def test_the_worst_slice_of_the_summary_reaches_status_optimization(make_md: Callable[..., ModelDeployment]) -> None:
    evaluation = {**EVAL, "maxSliceAccuracyDrop": 0.1}
    md = make_md(spec={"optimization": {"quantization": "float16", "evaluation": evaluation}})
    worst = {"name": "slice=night", "before": 1.0, "after": 0.925, "examples": 40}
    line = OptimizerSummary.model_validate({**SUMMARY, "metric": "accuracy", "worstSlice": worst}).to_line()
    summary = parse_summary(f"progress\n{line}\n")  # as the operator reads the pod's termination message
    digest = desired_artifact(md.name, md.spec, md.namespace).hash
    job = JobView(job_name(md.name, digest), digest, "Succeeded", summary=summary)  # type: ignore[arg-type]
    p = plan(md, Observed(jobs={digest: job}), ModelDeploymentStatus(), OWNER, NOW)
    assert p.status.optimization is not None
    written = p.status.to_api()["optimization"]
    assert written["worstSlice"] == worst and written["metric"] == "accuracy"


def test_a_succeeded_job_whose_pod_is_gone_keeps_what_the_status_recorded(
    make_md: Callable[..., ModelDeployment],
) -> None:
    """Its pod (and the termination message on it) deleted, a succeeded Job says nothing more: the
    serving pods must still verify the artifact's digest, and the status keep the optimizer's report.
    The Deployment used to lose its verify-model init container, so a tampered artifact was served."""
    md = make_md()
    job = ok_job(md)
    summary = OptimizerSummary.model_validate({**SUMMARY, "manifestSha256": "ab" * 32})
    finished = JobView(job.name, job.artifact_hash, "Succeeded", summary=summary)  # type: ignore[arg-type]
    first = plan(
        md, Observed(jobs={job.artifact_hash: finished}, deployment=available(md)), ModelDeploymentStatus(), OWNER, NOW
    )
    assert first.status.optimization is not None and first.status.optimization.manifest_sha256 == "ab" * 32

    gone = JobView(job.name, job.artifact_hash, "Succeeded", summary=None)  # type: ignore[arg-type]
    later = plan(md, Observed(jobs={job.artifact_hash: gone}, deployment=available(md)), first.status, OWNER, NOW)
    deployment = next(c for c in later.apply if c["kind"] == "Deployment")
    (verify,) = deployment["spec"]["template"]["spec"]["initContainers"]
    assert f"--manifest-sha256={'ab' * 32}" in verify["args"]
    assert later.status.optimization == first.status.optimization
    assert deployment == next(c for c in first.apply if c["kind"] == "Deployment"), "the same pods"
