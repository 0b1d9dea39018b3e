"""Pure decisions behind the reliability fixes: refused children, semantic drift, replicas under an
HPA, Ready across a scale-up, pod start failures, unbound claims and the STATUS column."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from modeldeploy.api import InvalidModelDeployment, ModelDeployment, parse_model_deployment
from modeldeploy.api.crd import build_crd
from modeldeploy.api.status import Condition, ConditionStatus, ModelDeploymentStatus
from modeldeploy.contract.summary import OptimizerSummary
from modeldeploy.controller.builders import Owner, desired_artifact
from modeldeploy.controller.builders.labels import ARTIFACT_LABEL
from modeldeploy.controller.builders.names import job_name
from modeldeploy.controller.drift import is_subset, service_ports_repair
from modeldeploy.controller.plan import plan
from modeldeploy.controller.status import StatusUpdate, status_of, transition_events
from modeldeploy.controller.views import (
    DeploymentView,
    JobState,
    JobView,
    Observed,
    PodProblem,
    Rejection,
    pod_problem,
    pod_problems,
)
from modeldeploy.k8s.client import api_error

OWNER = Owner(name="digits", uid="uid-1")
NOW = "2026-12-01T12:00:00Z"
LATER = "2026-12-01T12:05:00Z"
SUMMARY = {"result": "Succeeded", "version": 1, "format": "tflite-dynamic", "manifestSha256": "a" * 64}


def ok_job(md: ModelDeployment, state: JobState = JobState.SUCCEEDED, **kw: Any) -> JobView:
    digest = desired_artifact(md.name, md.spec, md.namespace).hash
    summary = OptimizerSummary.model_validate(SUMMARY) if state == JobState.SUCCEEDED else None
    return JobView(job_name(md.name, digest), digest, state, summary=summary, **kw)


def deployment(
    digest: str, *, replicas: int = 1, ready: int = 1, updated: int | None = None, available: bool = True, **kw: Any
) -> DeploymentView:
    return DeploymentView(
        name="digits",
        artifact_hash=digest,
        generation=2,
        observed_generation=2,
        replicas=replicas,
        ready_replicas=ready,
        updated_replicas=replicas if updated is None else updated,
        available=available,
        progressing_reason=kw.get("progressing", "NewReplicaSetAvailable"),
        progressing_message="",
        unavailable_message="" if available else "Deployment does not have minimum availability.",
        available_replicas=kw.get("available_replicas", ready),
    )


def status(md: ModelDeployment, observed: Observed, previous: ModelDeploymentStatus, now: str = NOW) -> StatusUpdate:
    return status_of(md, plan(md, observed, previous, OWNER), observed, previous, now)


def conditions(update: StatusUpdate) -> dict[str, Any]:
    return {c.type: c for c in update.status.conditions}


def serving_v1(make_md: Callable[..., ModelDeployment]) -> tuple[JobView, ModelDeploymentStatus]:
    v1 = make_md()
    job = ok_job(v1)
    first = status(
        v1, Observed(jobs={job.artifact_hash: job}, deployment=deployment(job.artifact_hash)), ModelDeploymentStatus()
    )
    assert conditions(first)["Ready"].reason == "Ready"
    return job, first.status


# -- item 2: refused children ---------------------------------------------------------------------------

REFUSED_DEPLOYMENT = Rejection(
    "Deployment",
    "ml/digits",
    'Deployment.apps "digits" is invalid: spec.template.spec.tolerations[0].operator: Unsupported value: "Sometimes"',
    ("spec.template.spec.tolerations[0].operator",),
)


def test_a_refused_deployment_while_the_old_one_serves(make_md: Callable[..., ModelDeployment]) -> None:
    v1_job, previous = serving_v1(make_md)
    v2 = make_md(spec={"model": {"version": 2}, "serving": {"tolerations": [{"operator": "Sometimes"}]}})
    v2_job = ok_job(v2)
    observed = Observed(
        jobs={v1_job.artifact_hash: v1_job, v2_job.artifact_hash: v2_job},
        deployment=deployment(v1_job.artifact_hash),
        rejected=(REFUSED_DEPLOYMENT,),
    )
    update = status(v2, observed, previous, LATER)
    cond = conditions(update)
    assert cond["Optimized"].status == "True", "the Job did succeed"
    assert cond["ServingReady"].status == "False" and cond["ServingReady"].reason == "ChildRejected"
    assert "field spec.template.spec.tolerations[0].operator" in cond["ServingReady"].message
    assert cond["Ready"].status == "True" and cond["Ready"].reason == "ChildRejected"
    assert "keep serving" in cond["Ready"].message and "refused Deployment ml/digits" in cond["Ready"].message
    # What runs is still version 1, and the status says so.
    assert update.status.served_version == 1 and update.status.served_artifact == v1_job.artifact_hash
    assert update.status.phase == "Degraded"
    assert update.status.summary == "Degraded: v2 failed (ChildRejected)"
    assert [(e.type, e.reason) for e in update.events].count(("Warning", "ChildRejected")) == 1

    # The next pass sees the same refusal: nothing to write, no Event.
    again = status(v2, observed, update.status, "2026-12-01T12:10:00Z")
    assert again.status == update.status and again.events == []


def test_a_refused_child_with_nothing_serving_fails_ready(make_md: Callable[..., ModelDeployment]) -> None:
    md = make_md()
    job = ok_job(md)
    refused = Rejection("Service", "ml/digits", "Service is invalid", ("spec.ports[0].port",))
    update = status(md, Observed(jobs={job.artifact_hash: job}, rejected=(refused,)), ModelDeploymentStatus())
    cond = conditions(update)
    assert cond["Ready"].status == "False" and cond["Ready"].reason == "ChildRejected"
    assert update.status.phase == "Failed" and update.status.summary == "Failed: ChildRejected"
    assert [e.reason for e in update.events if e.type == "Warning"] == ["ChildRejected"]


def test_pods_without_the_service_they_were_refused_do_not_make_the_model_ready(
    make_md: Callable[..., ModelDeployment],
) -> None:
    """Clients reach the pods through the Service: if its creation was refused, nothing serves,
    however available the Deployment (the fuzz suite's REST and gRPC on one port said Ready=True)."""
    md = make_md()
    job = ok_job(md)
    refused = Rejection("Service", "ml/digits", "Service is invalid", ("spec.ports[1]",))
    observed = Observed(jobs={job.artifact_hash: job}, deployment=deployment(job.artifact_hash), rejected=(refused,))
    ready = conditions(status(md, observed, ModelDeploymentStatus()))["Ready"]
    assert (ready.status, ready.reason) == ("False", "ChildRejected")


def test_a_refused_job_is_reported_on_optimized(make_md: Callable[..., ModelDeployment]) -> None:
    md = make_md()
    refused = Rejection("Job", "ml/digits-optimize-x", "Job.batch is invalid", ("spec.template.spec.containers[0]",))
    cond = conditions(status(md, Observed(rejected=(refused,)), ModelDeploymentStatus()))
    assert cond["Optimized"].reason == "ChildRejected" and "Job.batch is invalid" in cond["Optimized"].message
    assert cond["Ready"].reason == "ChildRejected"


def test_the_api_servers_status_gives_message_fields_and_refusal() -> None:
    body = {
        "kind": "Status",
        "status": "Failure",
        "message": 'Deployment.apps "x" is invalid: spec.template.spec.containers[0].env[0].name: Invalid value',
        "reason": "Invalid",
        "details": {
            "causes": [
                {"reason": "FieldValueInvalid", "field": "spec.template.spec.containers[0].env[0].name"},
                {"reason": "FieldValueInvalid", "field": "spec.template.spec.containers[0].env[0].name"},
            ]
        },
        "code": 422,
    }
    error = api_error(422, "PATCH", "/apis/apps/v1/x", json.dumps(body).encode())
    assert error.refused and error.reason == "Invalid"
    assert error.fields == ("spec.template.spec.containers[0].env[0].name",)
    assert error.message.startswith('Deployment.apps "x" is invalid')
    terminating = {
        "message": "unable to create new content in namespace ns because it is being terminated",
        "details": {"causes": [{"reason": "NamespaceTerminating", "field": "metadata.namespace"}]},
    }
    assert not api_error(403, "POST", "/x", json.dumps(terminating).encode()).refused
    assert api_error(403, "POST", "/x", b'{"message": "forbidden: RBAC"}').refused
    assert not api_error(500, "POST", "/x", b"not json").refused
    assert not api_error(409, "POST", "/x", b"{}").refused


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"serving": {"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1500m"}}}}, "cpu 2 > 1500m"),
        ({"optimization": {"resources": {"requests": {"memory": "5Gi"}, "limits": {"memory": "4Gi"}}}}, "memory"),
        ({"serving": {"env": [{"name": "A=B", "value": "x"}]}}, "printable ASCII characters other than '='"),
        ({"serving": {"env": [{"name": "A", "value": "x", "valueFrom": {"fieldRef": {}}}]}}, "mutually exclusive"),
        ({"serving": {"image": "TensorFlow/Serving:2"}}, "serving.image is not a valid image reference"),
        ({"serving": {"image": "tensorflow/serving:2 "}}, "not a valid image reference"),
        # An upper-case first component without a dot or a port is a path, not a registry (fuzz case).
        ({"serving": {"image": "Kfu/xiac"}}, "serving.image is not a valid image reference"),
        ({"optimization": {"image": "ghcr.io/x/optimizer@sha256:abc"}}, "optimization.image is not a valid image"),
    ],
)
def test_what_the_crd_cannot_type_is_checked_before_building(
    minimal: dict[str, Any], spec: dict[str, Any], problem: str
) -> None:
    for key, value in spec.items():
        minimal["spec"][key] = value
    with pytest.raises(InvalidModelDeployment) as info:
        parse_model_deployment(minimal)
    assert any(problem in p for p in info.value.problems), info.value.problems
    assert all(p.startswith("spec.") for p in info.value.problems), "each problem names its field"


@pytest.mark.parametrize(
    "image",
    [
        "tensorflow/serving:2.20.0",
        "tensorflow/serving",
        "localhost:5000/team/serving:v1",
        "Registry.Example.com/team/serving:v1",
        "registry:5000/serving",
        "ghcr.io/modeldeploy/optimizer:0.1.0",
        "registry.example.com/a/b-c__d.e@sha256:" + "0" * 64,
        "docker.io/library/busybox:1.36@sha256:" + "f" * 64,
    ],
)
def test_usual_image_references_are_accepted(minimal: dict[str, Any], image: str) -> None:
    minimal["spec"]["serving"] = {"image": image}
    minimal["spec"]["optimization"] = {"image": image}
    assert parse_model_deployment(minimal).spec.serving.image == image


def test_the_crd_carries_the_rules_the_api_server_checks() -> None:
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = schema["properties"]["spec"]["properties"]
    rules = lambda node: [r["rule"] for r in node.get("x-kubernetes-validations", [])]  # noqa: E731
    assert any("matches" in r and "metadata.name" in r for r in rules(schema))
    serving = spec["serving"]["properties"]
    assert any("compareTo" in r for r in rules(serving["resources"]))
    assert serving["resources"]["properties"]["requests"]["maxProperties"] == 8  # CEL's cost needs a bound
    assert any("contains('=')" in r for r in rules(serving["env"]["items"]))
    assert serving["env"]["maxItems"] == 128 and serving["env"]["items"]["properties"]["name"]["pattern"]
    assert any("image" in r for r in rules(schema["properties"]["spec"]["properties"]["serving"]))
    assert any("oldSelf" in r for r in rules(schema["properties"]["spec"]))


def test_a_dotted_name_is_invalid(minimal: dict[str, Any]) -> None:
    minimal["metadata"]["name"] = "digits.v2"
    with pytest.raises(InvalidModelDeployment) as info:
        parse_model_deployment(minimal)
    assert info.value.problems[0].startswith("metadata.name: must be a lowercase DNS label")


# -- item 3: semantic drift -----------------------------------------------------------------------------


def test_quantities_compare_by_value_in_resources_only() -> None:
    ours = {"resources": {"requests": {"cpu": "0.5", "memory": "1024Mi"}, "limits": {"cpu": "1000m"}}}
    live = {"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1"}}}
    assert is_subset(ours, live)
    assert not is_subset({"resources": {"limits": {"cpu": "2"}}}, live)
    assert is_subset({"emptyDir": {"sizeLimit": "1024Mi"}}, {"emptyDir": {"sizeLimit": "1Gi"}})
    # Elsewhere a string is a string: an annotation "0.5" is not "500m".
    assert not is_subset({"annotations": {"a": "0.5"}}, {"annotations": {"a": "500m"}})


def test_keyed_lists_match_by_key_and_ignore_other_managers_entries() -> None:
    ours = {"containers": [{"name": "tfserving", "env": [{"name": "A", "value": "1"}]}]}
    live = {
        "containers": [
            {"name": "istio-proxy", "image": "proxy"},
            {"name": "tfserving", "env": [{"name": "INJECTED", "value": "x"}, {"name": "A", "value": "1"}]},
        ]
    }
    assert is_subset(ours, live)
    live["containers"][1]["env"][1]["value"] = "2"
    assert not is_subset(ours, live)
    service = {"ports": [{"name": "http", "port": 8501}, {"name": "grpc", "port": 8500}]}
    assert is_subset(service, {"ports": [{"name": "metrics", "port": 9090}, *reversed(service["ports"])]})
    assert not is_subset(service, {"ports": [{"name": "web", "port": 8501}, {"name": "grpc", "port": 8500}]})
    # Lists without a merge key are atomic: apply replaces them whole, so length matters.
    assert not is_subset({"args": ["--a"]}, {"args": ["--a", "--b"]})


def test_a_renumbered_service_port_is_replaced_and_foreign_ports_kept() -> None:
    ours = {"spec": {"ports": [{"name": "http", "port": 8501}, {"name": "grpc", "port": 8500}]}}
    live = {
        "spec": {
            "ports": [
                {"name": "http", "port": 9000, "protocol": "TCP", "targetPort": "http"},
                {"name": "grpc", "port": 8500, "protocol": "TCP", "targetPort": "grpc", "nodePort": 30500},
                {"name": "metrics", "port": 9090, "protocol": "TCP"},
            ]
        }
    }
    repaired = service_ports_repair(ours, live)
    assert repaired == [
        {"name": "http", "port": 8501},
        {"name": "grpc", "port": 8500, "protocol": "TCP", "targetPort": "grpc", "nodePort": 30500},
        {"name": "metrics", "port": 9090, "protocol": "TCP"},
    ]
    # No name collision: apply can do it, nothing to replace.
    assert service_ports_repair(ours, {"spec": {"ports": live["spec"]["ports"][1:]}}) is None


# -- item 4: replicas under an HPA ----------------------------------------------------------------------


def test_under_an_hpa_replicas_are_set_on_creation_only(make_md: Callable[..., ModelDeployment]) -> None:
    md = make_md(spec={"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 5}})
    job = ok_job(md)
    decided = plan(md, Observed(jobs={job.artifact_hash: job}), ModelDeploymentStatus(), OWNER)
    applied = next(c for c in decided.apply if c["kind"] == "Deployment")
    assert "replicas" not in applied["spec"], "applying replicas would take them back from the HPA"
    initial = decided.initial[("Deployment", applied["metadata"]["name"])]
    assert initial["spec"]["replicas"] == 3
    assert {k: v for k, v in initial["spec"].items() if k != "replicas"} == applied["spec"]
    off = make_md(spec={"autoscaling": {"enabled": False}, "serving": {"replicas": 2}})
    decided = plan(off, Observed(jobs={job.artifact_hash: ok_job(off)}), ModelDeploymentStatus(), OWNER)
    assert decided.initial == {}


# -- item 6: Ready across a scale-up --------------------------------------------------------------------


def test_ready_holds_while_a_scale_up_brings_pods_up(make_md: Callable[..., ModelDeployment]) -> None:
    md = make_md(spec={"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 5}})
    job = ok_job(md)
    steady = status(
        md,
        Observed(jobs={job.artifact_hash: job}, deployment=deployment(job.artifact_hash, replicas=2, ready=2)),
        ModelDeploymentStatus(),
    )
    # The HPA asked for 3: with maxUnavailable 0 the Deployment is not "Available" until the third
    # pod is ready, while two keep answering.
    scaling = deployment(job.artifact_hash, replicas=3, ready=2, available=False, progressing="ReplicaSetUpdated")
    update = status(md, Observed(jobs={job.artifact_hash: job}, deployment=scaling), steady.status, LATER)
    cond = conditions(update)
    assert cond["Ready"].status == "True" and cond["Ready"].reason == "Ready"
    assert cond["ServingReady"].status == "True" and "2/3" in cond["ServingReady"].message
    assert cond["Ready"].last_transition_time == NOW and update.events == []
    # No pod available at all is an outage.
    down = deployment(job.artifact_hash, replicas=3, ready=0, available=False)
    assert (
        conditions(status(md, Observed(jobs={job.artifact_hash: job}, deployment=down), steady.status))["Ready"].status
        == "False"
    )


# -- item 7: the STATUS column --------------------------------------------------------------------------


def test_status_column_names_the_failed_version(make_md: Callable[..., ModelDeployment]) -> None:
    v1_job, previous = serving_v1(make_md)
    assert previous.summary == "Ready"
    v2 = make_md(spec={"model": {"version": 3}})
    failed = ok_job(v2, JobState.FAILED, reason="QualityGateFailed", message="accuracy dropped")
    observed = Observed(
        jobs={v1_job.artifact_hash: v1_job, failed.artifact_hash: failed}, deployment=deployment(v1_job.artifact_hash)
    )
    update = status(v2, observed, previous, LATER)
    assert update.status.served_version == 1
    assert update.status.summary == "Degraded: v3 failed (QualityGateFailed)"
    running = ok_job(v2, JobState.RUNNING)
    observed = Observed(
        jobs={v1_job.artifact_hash: v1_job, running.artifact_hash: running}, deployment=deployment(v1_job.artifact_hash)
    )
    assert status(v2, observed, previous).status.summary == "Optimizing: v3"


# -- item 8: why pods do not start ----------------------------------------------------------------------


def serving_pod(digest: str, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "digits-abc", "labels": {ARTIFACT_LABEL: digest}}, "status": status}


def test_pod_start_failures_are_read_from_pods() -> None:
    pulling = serving_pod(
        "d1",
        containerStatuses=[
            {"name": "tfserving", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling"}}}
        ],
    )
    assert pod_problem(pulling) == PodProblem("ImagePullBackOff", "container tfserving: Back-off pulling")
    pending = serving_pod(
        "d2",
        conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes"}],
    )
    assert pod_problem(pending) == PodProblem("Unschedulable", "0/3 nodes")
    starting = serving_pod(
        "d3", containerStatuses=[{"name": "t", "state": {"waiting": {"reason": "ContainerCreating"}}}]
    )
    assert pod_problem(starting) is None
    assert set(pod_problems([pulling, pending, starting])) == {"d1", "d2"}


def test_serving_pods_that_cannot_start_give_their_reason(make_md: Callable[..., ModelDeployment]) -> None:
    md = make_md()
    job = ok_job(md)
    dep = deployment(job.artifact_hash, ready=0, available=False)
    problem = PodProblem("ImagePullBackOff", 'container tfserving: Back-off pulling image "registry.invalid/x:1"')
    observed = Observed(jobs={job.artifact_hash: job}, deployment=dep, pod_problems={job.artifact_hash: problem})
    update = status(md, observed, ModelDeploymentStatus())
    cond = conditions(update)
    assert cond["ServingReady"].reason == "ImagePullBackOff" and "registry.invalid/x:1" in cond["ServingReady"].message
    assert cond["Ready"].status == "False" and cond["Ready"].reason == "ImagePullBackOff"
    assert [e.reason for e in update.events if e.type == "Warning"] == ["ImagePullBackOff"], "one Warning Event"
    unschedulable = PodProblem(
        "Unschedulable", "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims"
    )
    observed = Observed(
        jobs={job.artifact_hash: job},
        deployment=dep,
        pod_problems={job.artifact_hash: unschedulable},
        pending_claims=("models",),
    )
    cond = conditions(status(md, observed, ModelDeploymentStatus()))
    assert cond["ServingReady"].reason == "PersistentVolumeClaimPending"
    assert "PersistentVolumeClaim models is not bound" in cond["ServingReady"].message


def test_a_new_versions_pods_failing_beside_the_old_ones(make_md: Callable[..., ModelDeployment]) -> None:
    v1_job, previous = serving_v1(make_md)
    v2 = make_md(spec={"model": {"version": 2}})
    v2_job = ok_job(v2)
    rolling = deployment(v2_job.artifact_hash, replicas=2, ready=1, updated=1, available=True)
    problem = PodProblem("ErrImagePull", "container tfserving: not found")
    observed = Observed(
        jobs={v1_job.artifact_hash: v1_job, v2_job.artifact_hash: v2_job},
        deployment=rolling,
        pod_problems={v2_job.artifact_hash: problem},
    )
    update = status(v2, observed, previous, LATER)
    cond = conditions(update)
    assert cond["ServingReady"].reason == "ErrImagePull"
    assert cond["Ready"].status == "True" and cond["Ready"].reason == "ErrImagePull"
    assert update.status.phase == "Degraded"


def test_a_job_pod_that_cannot_start_is_not_optimizing(make_md: Callable[..., ModelDeployment]) -> None:
    md = make_md(spec={"model": {"credentialsSecret": "s3-credentials"}})
    job = ok_job(md, JobState.RUNNING, reason="CreateContainerConfigError", message='secret "s3-credentials" not found')
    update = status(md, Observed(jobs={job.artifact_hash: job}), ModelDeploymentStatus())
    cond = conditions(update)
    assert cond["Optimized"].reason == "CreateContainerConfigError"
    assert 'secret "s3-credentials" not found' in cond["Ready"].message
    assert update.status.phase == "Pending"
    assert [e.type for e in update.events if e.reason == "CreateContainerConfigError"] == ["Warning"]
    unbound = ok_job(md, JobState.RUNNING, reason="Unschedulable", message="pod has unbound immediate claims")
    observed = Observed(jobs={unbound.artifact_hash: unbound}, pending_claims=("models",))
    cond = conditions(status(md, observed, ModelDeploymentStatus()))
    assert cond["Ready"].reason == "PersistentVolumeClaimPending"
    assert "PersistentVolumeClaim models is not bound to a volume" in cond["Ready"].message


def test_a_problem_already_told_is_not_warned_again_when_ready_flips() -> None:
    """Ready=False/ChildRejected, then Ready=True/ChildRejected once the pods serve beside a refused
    HPA: one Warning for the refusal, and the flip is Normal (the fuzz suite counted two Warnings)."""
    refused = Condition(type="Ready", status=ConditionStatus.FALSE, reason="ChildRejected", message="HPA refused")
    serving = refused.model_copy(update={"status": ConditionStatus.TRUE})
    first = transition_events([], [refused])
    assert [(e.type, e.reason) for e in first] == [("Warning", "ChildRejected")]
    assert [(e.type, e.reason) for e in transition_events([refused], [serving])] == [("Normal", "ChildRejected")]
