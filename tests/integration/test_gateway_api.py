"""Gateway API routing (rollout.trafficRouting.gatewayAPI) against the real Gateway API CRDs.

The CRDs are the standard channel at the version pinned in e2e/devcluster/versions.env, from the
Go module sigs.k8s.io/gateway-api: their OpenAPI schema and CEL rules judge what the builders
produce. No Gateway controller runs, so routes are stored, never programmed.

The CRDs are cluster-wide, and whether the operator watches HTTPRoute is decided when it starts;
each operator test therefore runs on a private control plane of its own, with or without the
CRDs, and starts its own operator, without touching the session's cluster or its operator. The
schema test uses the session's control plane and the `gateway_api_crds` fixture.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devcluster import gateway_api
from devcluster.controlplane import ControlPlane
from devcluster.stack import OperatorProcess, condition, make_claim, wait_for
from modeldeploy.api import parse_model_deployment
from modeldeploy.controller.builders.traffic import build_http_route, build_track_service
from modeldeploy.controller.drift import is_subset
from modeldeploy.k8s.client import KubeClient, load_client

pytestmark = pytest.mark.integration

GATEWAY = {"parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "http"}]}


def md_manifest(name: str, namespace: str, gateway: dict[str, Any] | None) -> dict[str, Any]:
    """A SavedModel served as is (no optimization Job): its pods run on the kwok nodes at once."""
    spec: dict[str, Any] = {
        "model": {"name": "digits", "storageUri": "pvc://models/exported/1", "format": "savedmodel"},
        "optimization": {"enabled": False},
        "autoscaling": {"enabled": False},
    }
    if gateway is not None:
        spec["rollout"] = {"trafficRouting": {"gatewayAPI": gateway}}
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def weights(route: dict[str, Any]) -> list[tuple[str, int]]:
    return [(b["name"], b["weight"]) for b in route["spec"]["rules"][0]["backendRefs"]]


def test_the_real_crd_stores_the_route_and_services_the_builders_make(
    control_plane: ControlPlane, gateway_api_crds: list[str], kube: KubeClient, namespace: str
) -> None:
    """Created through the operator's own client; read back, every field we set is there as we set it
    (else each reconcile would re-apply it)."""
    assert "httproutes.gateway.networking.k8s.io" in gateway_api_crds
    md = parse_model_deployment(
        md_manifest("digits", namespace, {**GATEWAY, "hostnames": ["digits.example.com", "*.models.example.com"]})
    )
    # No owner: the ModelDeployment is not stored here; the owner reference is checked in the next test.
    manifests = [build_track_service(md, t, None) for t in ("stable", "canary")] + [build_http_route(md, 10, None)]
    for manifest in manifests:
        created = kube.create(manifest)
        assert created is not None, f"{manifest['kind']} {manifest['metadata']['name']} already existed"
        live = kube.get(manifest["kind"], namespace, manifest["metadata"]["name"])
        assert live is not None and is_subset(manifest, live), (manifest, live)
    route = kube.get("HTTPRoute", namespace, "digits")
    assert route is not None and weights(route) == [("digits-stable", 90), ("digits-canary", 10)]
    # The CRD's defaults, which our drift check must tolerate (and does: is_subset above).
    assert route["spec"]["rules"][0]["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    # And the schema is really enforced: a weight the CRD forbids is refused.
    bad = build_http_route(md, 10, None)
    bad["metadata"]["name"] = "digits-bad"
    bad["spec"]["rules"][0]["backendRefs"][0]["weight"] = 1_000_001
    done = control_plane.kubectl("create", "-f", "-", input=json.dumps(bad), check=False)
    assert done.returncode != 0 and "weight" in done.stderr, done.stderr


# -- the operator, on a private control plane --------------------------------------------------------


@pytest.fixture
def private_plane(pytestconfig: pytest.Config) -> Iterator[ControlPlane]:
    """A control plane of this test alone (about 10 s to start): whether the Gateway API CRDs are
    there is this test's choice, and no other test's operator acts on its objects."""
    with ControlPlane(nodes=1) as plane:
        plane.kubectl("apply", "--server-side", "-f", str(pytestconfig.rootpath / "crds"))
        plane.wait_established("modeldeployments.modeldeploy.io")
        yield plane


@pytest.fixture
def private_kube(private_plane: ControlPlane) -> Iterator[KubeClient]:
    client = load_client(str(private_plane.kubeconfig))
    yield client
    client.close()


@pytest.fixture
def served_namespace(private_plane: ControlPlane, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of the private plane with the claim `models` the ModelDeployments read."""
    name = request.node.name.replace("_", "-")[:40].strip("-")
    private_plane.kubectl("create", "namespace", name)
    private_plane.wait_for_serviceaccount(name)
    make_claim(private_plane, tmp_path / "storage", name, "models")
    yield name
    private_plane.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


def start_operator(plane: ControlPlane, namespace: str, log_path: Path) -> OperatorProcess:
    return OperatorProcess(plane.kubeconfig, log_path, ["--namespace", namespace])


def wait_reason(kube: KubeClient, namespace: str, name: str, reason: str, timeout: float = 120) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        md = kube.get("ModelDeployment", namespace, name)
        return md if condition(md, "Ready").get("reason") == reason else None

    found: dict[str, Any] = wait_for(f"{namespace}/{name} Ready reason {reason}", check, timeout)
    return found


def test_an_operator_with_the_crds_routes_all_to_stable_and_removes_the_route_when_turned_off(
    private_plane: ControlPlane, private_kube: KubeClient, served_namespace: str, tmp_path: Path
) -> None:
    gateway_api.install(private_plane)
    ns, kube = served_namespace, private_kube
    operator = start_operator(private_plane, ns, tmp_path / "operator.log")
    try:
        private_plane.kubectl("apply", "-f", "-", input=json.dumps(md_manifest("digits", ns, GATEWAY)))
        md = wait_reason(kube, ns, "digits", "Ready")

        route = wait_for("the HTTPRoute", lambda: kube.get("HTTPRoute", ns, "digits"), timeout=60)
        assert weights(route) == [("digits-stable", 100), ("digits-canary", 0)]
        assert route["spec"]["parentRefs"][0] == {
            "group": "gateway.networking.k8s.io",  # the CRD's defaults
            "kind": "Gateway",
            "name": "public",
            "namespace": "gateways",
            "sectionName": "http",
        }
        assert route["metadata"]["ownerReferences"][0]["uid"] == md["metadata"]["uid"]
        main = kube.get("Service", ns, "digits")
        assert main is not None
        for track in ("stable", "canary"):
            svc = kube.get("Service", ns, f"digits-{track}")
            assert svc is not None, f"Service digits-{track}"
            assert svc["spec"]["selector"] == {**main["spec"]["selector"], "modeldeploy.io/track": track}
            assert svc["metadata"]["ownerReferences"][0]["uid"] == md["metadata"]["uid"]

        # Stable: a resync (every 5 s) finds nothing to write on the route.
        version = route["metadata"]["resourceVersion"]
        time.sleep(11)
        again = kube.get("HTTPRoute", ns, "digits")
        assert again is not None and again["metadata"]["resourceVersion"] == version, "the route was re-applied"

        # The watch is registered (at startup, the kind being served): a deleted route comes back at
        # once. Without the watch the cache would still hold it and nothing would be recreated.
        private_plane.kubectl("delete", "httproute", "digits", "-n", ns)

        def recreated() -> dict[str, Any] | None:
            found = kube.get("HTTPRoute", ns, "digits")
            return found if found is not None and found["metadata"]["resourceVersion"] != version else None

        wait_for("the HTTPRoute recreated", recreated, timeout=30)

        # gatewayAPI turned off: the route and the track Services go, the main Service stays.
        patch = {"spec": {"rollout": {"trafficRouting": {"gatewayAPI": None}}}}
        private_plane.kubectl("patch", "modeldeployment", "digits", "-n", ns, "--type=merge", "-p", json.dumps(patch))

        def routing_gone() -> bool:
            return all(
                kube.get(kind, ns, name) is None
                for kind, name in (("HTTPRoute", "digits"), ("Service", "digits-stable"), ("Service", "digits-canary"))
            )

        wait_for("the HTTPRoute and the track Services removed", routing_gone, timeout=60)
        assert kube.get("Service", ns, "digits") is not None
        assert condition(kube.get("ModelDeployment", ns, "digits"), "Ready").get("reason") == "Ready"
    finally:
        operator.stop()
    log = operator.log()
    assert "Unresolved resources" not in log and "reconcile failed" not in log, log[-5000:]


def test_an_operator_without_the_crds_says_gateway_api_not_installed_and_keeps_serving(
    private_plane: ControlPlane, private_kube: KubeClient, served_namespace: str, tmp_path: Path
) -> None:
    """A cluster that never had the CRDs (deleting them is no shortcut: the API server's CRD finalizer
    can stay stuck on 'storage is (re)initializing' for minutes): HTTPRoute is neither listed nor
    watched (kopf would log 'Unresolved resources' for a handler of an unserved kind), and the
    ModelDeployment asking for it says why Ready is False, without a retry storm."""
    assert not gateway_api.httproute_served(private_plane)
    ns, kube = served_namespace, private_kube
    operator = start_operator(private_plane, ns, tmp_path / "operator.log")
    try:
        private_plane.kubectl("apply", "-f", "-", input=json.dumps(md_manifest("digits", ns, GATEWAY)))
        md = wait_reason(kube, ns, "digits", "GatewayAPINotInstalled")
        ready = condition(md, "Ready")
        assert ready["status"] == "False" and "install the Gateway API CRDs" in ready["message"]
        assert condition(md, "ServingReady")["status"] == "True", "the pods serve through the main Service"
        assert md["status"]["phase"] == "Degraded"
        assert kube.get("Service", ns, "digits") is not None
        assert kube.get("Service", ns, "digits-stable") is None and kube.get("Service", ns, "digits-canary") is None
        time.sleep(11)  # two resyncs: nothing new to say
        events = json.loads(private_plane.kubectl("get", "events", "-n", ns, "-o", "json").stdout)["items"]
        warnings = [e for e in events if e["reason"] == "GatewayAPINotInstalled"]
        assert [e["type"] for e in warnings] == ["Warning"], "one Warning Event, not one per resync"
    finally:
        operator.stop()
    log = operator.log()
    assert "HTTPRoute (gateway.networking.k8s.io/v1) is not served by the API server" in log, log[-5000:]
    assert "Unresolved resources" not in log and "reconcile failed" not in log, log[-5000:]


def test_a_canary_through_the_route_gets_each_step_s_weight_then_all_goes_to_stable(
    private_plane: ControlPlane, private_kube: KubeClient, served_namespace: str, tmp_path: Path
) -> None:
    """A canary rollout with gatewayAPI: the route sends each step's exact share to the canary track
    once its pods are ready, then, promoted, everything to the stable track again."""
    gateway_api.install(private_plane)
    ns, kube = served_namespace, private_kube
    body = md_manifest("digits", ns, GATEWAY)
    body["spec"]["serving"] = {"replicas": 2}
    body["spec"]["rollout"].update(
        {"strategy": "Canary", "steps": [{"weight": 25, "pause": "3s"}, {"weight": 50, "pause": "3s"}]}
    )
    operator = start_operator(private_plane, ns, tmp_path / "operator.log")
    try:
        private_plane.kubectl("apply", "-f", "-", input=json.dumps(body))
        wait_reason(kube, ns, "digits", "Ready")
        body["spec"]["model"]["version"] = 2
        private_plane.kubectl("apply", "-f", "-", input=json.dumps(body))
        seen: set[tuple[tuple[str, int], ...]] = set()

        def promoted() -> bool:
            route = kube.get("HTTPRoute", ns, "digits")
            if route is not None:
                seen.add(tuple(weights(route)))
            md = kube.get("ModelDeployment", ns, "digits") or {}
            return ((md.get("status") or {}).get("rollout") or {}).get("phase") == "Promoted"

        wait_for("the canary promoted", promoted, timeout=120)
        assert (("digits-stable", 75), ("digits-canary", 25)) in seen, seen
        assert (("digits-stable", 50), ("digits-canary", 50)) in seen, seen

        def all_to_stable() -> bool:
            route = kube.get("HTTPRoute", ns, "digits")
            return route is not None and weights(route) == [("digits-stable", 100), ("digits-canary", 0)]

        wait_for("all traffic back on the stable track", all_to_stable, timeout=60)
    finally:
        operator.stop()
    log = operator.log()
    assert "reconcile failed" not in log, log[-5000:]
