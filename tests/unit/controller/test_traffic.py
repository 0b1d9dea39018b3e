"""Gateway API routing (rollout.trafficRouting.gatewayAPI): the track Services and the HTTPRoute,
the planner's hook (weights, removal when turned off), and an absent HTTPRoute kind: not listed,
not watched, a GatewayAPINotInstalled condition instead of failed requests."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from modeldeploy.api import InvalidModelDeployment, ModelDeployment
from modeldeploy.api.status import ModelDeploymentStatus
from modeldeploy.controller.builders import Owner, build_service, desired_artifact, render_all
from modeldeploy.controller.builders.labels import MODEL_DEPLOYMENT_LABEL, TRACK_LABEL
from modeldeploy.controller.builders.names import job_name
from modeldeploy.controller.builders.traffic import build_http_route, build_track_service, traffic_child_keys
from modeldeploy.controller.config import OperatorConfig
from modeldeploy.controller.plan import plan
from modeldeploy.controller.runtime import Runtime
from modeldeploy.controller.status import status_of
from modeldeploy.controller.views import DeploymentView, JobState, JobView, Observed
from modeldeploy.k8s.client import ApiError, KubeClient
from modeldeploy.k8s.kinds import KINDS, OPTIONAL_KINDS, WATCHED_KINDS

OWNER = Owner(name="digits", uid="uid-1")
NOW = "2026-12-01T12:00:00Z"
GATEWAY = {"parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "https"}]}


def routed(make_md: Callable[..., ModelDeployment], **gateway: Any) -> ModelDeployment:
    return make_md(spec={"rollout": {"trafficRouting": {"gatewayAPI": {**GATEWAY, **gateway}}}})


def serving(md: ModelDeployment) -> Observed:
    """A succeeded Job and an available Deployment of the desired artifact: Ready without routing."""
    digest = desired_artifact(md.name, md.spec, md.namespace).hash
    job = JobView(job_name(md.name, digest), digest, JobState.SUCCEEDED)
    deployment = DeploymentView("digits", digest, 2, 2, 1, 1, 1, True, "", "", "")
    return Observed(jobs={digest: job}, deployment=deployment)


def weights(route: dict[str, Any]) -> list[int]:
    return [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]]


def by_key(manifests: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m["kind"], m["metadata"]["name"]): m for m in manifests}


# -- builders -------------------------------------------------------------------------------------------


def test_track_services_select_the_serving_pods_of_their_track_on_the_main_service_s_ports(
    make_md: Callable[..., ModelDeployment],
) -> None:
    md = make_md(spec={"service": {"type": "LoadBalancer", "restPort": 8080, "annotations": {"lb": "yes"}}})
    main = build_service(md, OWNER)
    for track in ("stable", "canary"):
        svc = build_track_service(md, track, OWNER)
        assert svc["metadata"]["name"] == f"digits-{track}"
        assert svc["spec"]["selector"] == {**main["spec"]["selector"], TRACK_LABEL: track}
        assert svc["spec"]["ports"] == main["spec"]["ports"]
        assert svc["spec"]["type"] == "ClusterIP", "only the Gateway reaches it; the main Service is the LB"
        assert "annotations" not in svc["metadata"], "the main Service's (load balancer) annotations stay there"
        assert svc["metadata"]["ownerReferences"] == main["metadata"]["ownerReferences"]
        assert svc["metadata"]["labels"][MODEL_DEPLOYMENT_LABEL] == "digits", "watched by our label"
        assert svc["metadata"]["labels"][TRACK_LABEL] == track
    with pytest.raises(ValueError, match="unknown track"):
        build_track_service(md, "blue", OWNER)


def test_the_http_route_splits_the_rest_port_between_the_track_services(
    make_md: Callable[..., ModelDeployment],
) -> None:
    md = routed(make_md, hostnames=["digits.example.com"])
    route = build_http_route(md, 30, OWNER)
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1" and route["kind"] == "HTTPRoute"
    assert route["metadata"]["name"] == "digits" and route["metadata"]["namespace"] == "ml"
    assert route["metadata"]["ownerReferences"] == [OWNER.reference()]
    assert route["metadata"]["labels"][MODEL_DEPLOYMENT_LABEL] == "digits"
    assert route["spec"] == {
        "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "https"}],
        "hostnames": ["digits.example.com"],
        "rules": [
            {
                "backendRefs": [
                    {"name": "digits-stable", "port": 8501, "weight": 70},
                    {"name": "digits-canary", "port": 8501, "weight": 30},
                ]
            }
        ],
    }


def test_the_http_route_leaves_out_what_the_spec_does_not_set(make_md: Callable[..., ModelDeployment]) -> None:
    md = make_md(spec={"rollout": {"trafficRouting": {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}}}})
    route = build_http_route(md, 0, OWNER)
    assert route["spec"]["parentRefs"] == [{"name": "gw"}], "the Gateway in this namespace, any listener"
    assert "hostnames" not in route["spec"], "any host name"
    assert [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]] == [100, 0]


@pytest.mark.parametrize("weight", [-1, 101])
def test_a_weight_outside_0_to_100_is_a_programming_error(make_md: Callable[..., ModelDeployment], weight: int) -> None:
    with pytest.raises(ValueError, match="not a percentage"):
        build_http_route(routed(make_md), weight, OWNER)


def test_no_route_without_gateway_api(make_md: Callable[..., ModelDeployment]) -> None:
    with pytest.raises(ValueError, match="gatewayAPI is not set"):
        build_http_route(make_md(), 0, OWNER)


def test_render_prints_the_routing_children_when_the_spec_asks_for_them(
    make_md: Callable[..., ModelDeployment],
) -> None:
    routed_children = by_key(render_all(routed(make_md)))
    assert set(traffic_child_keys("digits")) <= set(routed_children)
    assert weights(routed_children[("HTTPRoute", "digits")]) == [100, 0]
    assert not set(traffic_child_keys("digits")) & set(by_key(render_all(make_md())))


@pytest.mark.parametrize("hostname", ["Digits.example.com", "digits.example.com.", "*.*.example.com", "a_b.example"])
def test_the_api_refuses_host_names_the_http_route_schema_refuses(
    make_md: Callable[..., ModelDeployment], hostname: str
) -> None:
    with pytest.raises(InvalidModelDeployment, match="hostnames"):
        routed(make_md, hostnames=[hostname])


# -- the planner ----------------------------------------------------------------------------------------


def test_the_plan_applies_track_services_and_a_route_all_to_stable_by_default(
    make_md: Callable[..., ModelDeployment],
) -> None:
    md = routed(make_md)
    decided = plan(md, serving(md), ModelDeploymentStatus(), OWNER)
    applied = by_key(decided.apply)
    assert set(traffic_child_keys("digits")) <= set(applied)
    backends = applied[("HTTPRoute", "digits")]["spec"]["rules"][0]["backendRefs"]
    assert [(b["name"], b["weight"]) for b in backends] == [("digits-stable", 100), ("digits-canary", 0)]
    assert decided.routing_blocked is None


def test_the_canary_weight_argument_sets_the_route_s_weights(make_md: Callable[..., ModelDeployment]) -> None:
    md = routed(make_md)
    decided = plan(md, serving(md), ModelDeploymentStatus(), OWNER, canary_weight=25)
    backends = by_key(decided.apply)[("HTTPRoute", "digits")]["spec"]["rules"][0]["backendRefs"]
    assert [b["weight"] for b in backends] == [75, 25]


def test_without_gateway_api_there_is_no_route_and_existing_ones_are_removed(
    make_md: Callable[..., ModelDeployment],
) -> None:
    md = make_md()
    live = {key: {"metadata": {"name": key[1]}} for key in traffic_child_keys("digits")}
    live[("Service", "digits")] = {"metadata": {"name": "digits"}}
    observed = serving(md)
    observed = Observed(jobs=observed.jobs, deployment=observed.deployment, children=live)
    decided = plan(md, observed, ModelDeploymentStatus(), OWNER)
    assert not set(traffic_child_keys("digits")) & set(by_key(decided.apply))
    assert sorted(decided.delete) == sorted(traffic_child_keys("digits")), "never the main Service"


def test_a_cluster_without_http_route_gets_a_condition_and_no_routing_children(
    make_md: Callable[..., ModelDeployment],
) -> None:
    md = routed(make_md)
    base = serving(md)
    stale = {("Service", "digits-stable"): {"metadata": {"name": "digits-stable"}}}
    observed = Observed(
        jobs=base.jobs, deployment=base.deployment, children=stale, missing_kinds=frozenset({"HTTPRoute"})
    )
    decided = plan(md, observed, ModelDeploymentStatus(), OWNER)
    kinds = {kind for kind, _ in by_key(decided.apply)}
    assert "HTTPRoute" not in kinds
    assert not set(traffic_child_keys("digits")) & set(by_key(decided.apply)), "no track Service either"
    assert ("Deployment", "digits") in by_key(decided.apply) and ("Service", "digits") in by_key(decided.apply)
    assert decided.delete == [("Service", "digits-stable")]
    update = status_of(md, decided, observed, ModelDeploymentStatus(), NOW)
    ready = next(c for c in update.status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", "GatewayAPINotInstalled")
    assert "install the Gateway API CRDs" in ready.message
    serving_ready = next(c for c in update.status.conditions if c.type == "ServingReady")
    assert serving_ready.status == "True", "the pods still serve through the main Service"
    assert update.status.phase == "Degraded" and update.status.summary == "Degraded: GatewayAPINotInstalled"
    assert [(e.type, e.reason) for e in update.events if e.reason == "GatewayAPINotInstalled"] == [
        ("Warning", "GatewayAPINotInstalled")
    ]


def test_a_missing_http_route_kind_concerns_only_those_that_ask_for_it(
    make_md: Callable[..., ModelDeployment],
) -> None:
    md = make_md()
    base = serving(md)
    observed = Observed(jobs=base.jobs, deployment=base.deployment, missing_kinds=frozenset({"HTTPRoute"}))
    decided = plan(md, observed, ModelDeploymentStatus(), OWNER)
    update = status_of(md, decided, observed, ModelDeploymentStatus(), NOW)
    assert decided.routing_blocked is None and update.status.phase == "Ready"


# -- the kinds table and the runtime --------------------------------------------------------------------


def test_http_route_is_an_optional_prunable_watched_child() -> None:
    route = KINDS["HTTPRoute"]
    assert route.optional and route.prunable and route.watched and route.owned_by_label
    assert route.path_prefix == "/apis/gateway.networking.k8s.io/v1"
    assert set(route.verbs) == {"list", "watch", "create", "patch", "delete"}
    assert [k.kind for k in OPTIONAL_KINDS] == ["HTTPRoute"], "every built-in kind is always served"


class Discovery:
    """A client that serves every kind but `absent`, and records the LISTs it answers."""

    def __init__(self, absent: set[str]) -> None:
        self.absent = absent
        self.listed: list[str] = []

    def served(self, kind: str) -> bool:
        return kind not in self.absent

    def list(self, kind: str, namespace: str | None, label_selector: str | None = None) -> list[dict[str, Any]]:
        if kind in self.absent:
            raise ApiError(404, "GET", f"/{kind}", "the server could not find the requested resource")
        self.listed.append(kind)
        return []


def test_an_unserved_optional_kind_is_neither_listed_nor_watched_and_the_reconciler_knows() -> None:
    kube = Discovery(absent={"HTTPRoute"})
    runtime = Runtime(kube, OperatorConfig())  # type: ignore[arg-type]
    runtime.prime()  # a LIST of HTTPRoute would raise the 404 the real API server answers
    assert "HTTPRoute" not in kube.listed and "Service" in kube.listed
    assert runtime.missing_kinds == frozenset({"HTTPRoute"})
    assert runtime.reconciler.missing_kinds == frozenset({"HTTPRoute"})
    assert "HTTPRoute" not in [k.kind for k in runtime.watched_kinds()]


def test_a_served_optional_kind_is_listed_and_watched() -> None:
    kube = Discovery(absent=set())
    runtime = Runtime(kube, OperatorConfig())  # type: ignore[arg-type]
    runtime.prime()
    assert "HTTPRoute" in kube.listed and runtime.missing_kinds == frozenset()
    assert runtime.watched_kinds() == WATCHED_KINDS


class Answering(KubeClient):
    """The real client's discovery logic over canned answers."""

    def __init__(self, answer: dict[str, Any] | None) -> None:
        self.answer = answer
        self.paths: list[str] = []

    def _call(self, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        self.paths.append(f"{method} {path}")
        if self.answer is None:
            raise ApiError(
                404, method, path, json.dumps({"message": "the server could not find the requested resource"})
            )
        return self.answer


def test_served_asks_discovery_of_the_kind_s_group_version() -> None:
    absent = Answering(None)
    assert absent.served("HTTPRoute") is False
    assert absent.paths == ["GET /apis/gateway.networking.k8s.io/v1"]
    other = Answering({"resources": [{"name": "grpcroutes"}, {"name": "httproutes/status"}]})
    assert other.served("HTTPRoute") is False, "the group is there but not this resource"
    assert Answering({"resources": [{"name": "httproutes"}]}).served("HTTPRoute") is True
