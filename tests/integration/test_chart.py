"""The Helm chart charts/modeldeploy-operator: lint, schema, valid Kubernetes 1.36 objects, least-privilege
RBAC as rendered, and install / upgrade / uninstall / high availability against the real control plane.

Why against the control plane and not only `helm template`: the API server is what rejects a bad
object, what Helm's ownership and CRD handling run against, and what creates the StatefulSet pods
whose index labels become the HA priorities.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from chart_support import (
    CHART,
    RESTRICTED,
    chart_run_args,
    env_value,
    fullname,
    get_json,
    install,
    new_namespace,
    operator_container,
    refused_lines,
    render,
    run_operator_as,
)
from devcluster.controlplane import CommandError, ControlPlane
from devcluster.stack import OperatorProcess, wait_for

pytestmark = pytest.mark.integration
K8S_VERSION = "1.36.0"
#: The value sets every render-level test runs over: default, namespaced, HA (both scopes), pinned.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"]},
    "ha-cluster": {"replicas": 3},
    "ha-namespaced": {"replicas": 2, "watchNamespaces": ["team-a"]},
    "pinned": {
        "image": {"digest": "sha256:" + "0" * 64, "repository": "registry.example/modeldeploy/operator"},
        "podSecurityContext": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "metrics": {"port": 9191, "service": {"enabled": False}},
        "networkPolicy": {"enabled": False},
    },
}
NAMESPACED_KINDS_THE_OPERATOR_WRITES = {
    ("batch", "jobs"),
    ("", "services"),
    ("", "configmaps"),
    ("apps", "deployments"),
    ("autoscaling", "horizontalpodautoscalers"),
    ("policy", "poddisruptionbudgets"),
    ("gateway.networking.k8s.io", "httproutes"),
}


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def workload(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    return found


# --- render-level ------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_chart_lints_strictly(control_plane: ControlPlane, values: dict[str, Any]) -> None:
    flags = [f for key, value in values.items() for f in ("--set-json", f"{key}={json.dumps(value)}")]
    result = control_plane.helm("lint", "--strict", str(CHART), *flags)
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout, result.stdout


def test_values_schema_rejects_bad_values(control_plane: ControlPlane) -> None:
    """values.schema.json turns typos and impossible values into install-time errors."""
    bad = {
        "replicas": 0,
        "logFormat": "xml",
        "watchNamespaces": ["Not_A_Namespace"],
        "image": {"repository": "x", "pullPolicy": "Sometimes"},
        "replicaCount": 2,  # a typo of `replicas`: unknown keys are errors
    }
    for key, value in bad.items():
        with pytest.raises(CommandError) as refused:
            render(control_plane, {key: value})
        assert key.split(".")[0] in refused.value.stderr, refused.value.stderr
    with pytest.raises(CommandError) as clash:
        render(control_plane, {"livenessPort": 9090})
    assert "must differ" in clash.value.stderr


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_rendered_chart_is_valid_kubernetes(control_plane: ControlPlane, values: dict[str, Any]) -> None:
    """Every object, CRDs included, passes kubernetes-validate in strict mode (unknown fields are errors);
    the peering objects are custom resources of CRDs the chart itself ships."""
    objects = render(control_plane, values, crds=True)
    crds = {(o["spec"]["group"], o["spec"]["names"]["kind"]) for o in by_kind(objects, "CustomResourceDefinition")}
    assert ("modeldeploy.io", "ModelDeployment") in crds
    for obj in objects:
        group = obj["apiVersion"].rpartition("/")[0]
        if (group, obj["kind"]) in crds:
            continue
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    # The validator really is strict: the same workload with one misspelt field is refused.
    broken = copy.deepcopy(workload(objects))
    operator_container(broken)["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_the_signing_default_reaches_the_operator(control_plane: ControlPlane) -> None:
    """signing.defaultKeySecret becomes `modeldeploy run --default-signing-key-secret`; unset, no flag."""
    from modeldeploy.cli import build_parser

    assert not any("signing" in a for a in chart_run_args(workload(render(control_plane, {}))))
    args = chart_run_args(workload(render(control_plane, {"signing": {"defaultKeySecret": "team-signing"}})))
    assert build_parser().parse_args(["run", *args]).default_signing_key_secret == "team-signing"
    with pytest.raises(CommandError) as refused:
        render(control_plane, {"signing": {"defaultKeySecret": "Not A Secret"}})
    assert "defaultKeySecret" in refused.value.stderr, refused.value.stderr


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_rbac_is_least_privilege(control_plane: ControlPlane, values: dict[str, Any]) -> None:
    objects = render(control_plane, values)
    roles = by_kind(objects, "ClusterRole") + by_kind(objects, "Role")
    assert roles
    for role in roles:
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"], rule
            assert "secrets" not in rule["resources"], f"{role['metadata']['name']}: the operator never reads Secrets"
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), rule
            assert not {"roles", "rolebindings", "clusterroles", "clusterrolebindings"} & set(rule["resources"])
    namespaces = values.get("watchNamespaces", [])
    writes = {
        (group, resource)
        for role in roles
        for rule in role["rules"]
        if "create" in rule["verbs"] or "patch" in rule["verbs"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert {k for k in writes if k in NAMESPACED_KINDS_THE_OPERATOR_WRITES} == NAMESPACED_KINDS_THE_OPERATOR_WRITES
    cluster_resources = {
        r for role in by_kind(objects, "ClusterRole") for rule in role["rules"] for r in rule["resources"]
    }
    if namespaces:
        # Namespaced mode: every grant on namespaced kinds lives in a Role of a watched namespace.
        assert cluster_resources <= {"customresourcedefinitions", "namespaces"}, cluster_resources
        assert sorted(r["metadata"]["namespace"] for r in by_kind(objects, "Role")) == sorted(namespaces)
        assert [a for a in operator_container(workload(objects))["args"] if a.startswith("--namespace")] == [
            f"--namespace={ns}" for ns in namespaces
        ]
    else:
        assert not by_kind(objects, "Role") and "modeldeployments" in cluster_resources
        assert "--all-namespaces" in operator_container(workload(objects))["args"]
    peering_resource = "kopfpeerings" if namespaces else "clusterkopfpeerings"
    has_peering_rule = any(peering_resource in rule["resources"] for role in roles for rule in role["rules"])
    assert has_peering_rule == (values.get("replicas", 1) > 1)


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_workload_is_hardened_and_wired_to_its_ports(control_plane: ControlPlane, values: dict[str, Any]) -> None:
    objects = render(control_plane, values)
    found = workload(objects)
    ha = values.get("replicas", 1) > 1
    assert found["kind"] == ("StatefulSet" if ha else "Deployment")
    if not ha:
        assert found["spec"]["strategy"]["type"] == "Recreate", "two standalone operators must never overlap"
    pod = found["spec"]["template"]["spec"]
    container = operator_container(found)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["limits"] and container["resources"]["requests"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    metrics_port = values.get("metrics", {}).get("port", 9090)
    assert ports == {"health": 8080, "metrics": metrics_port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    env = {e["name"]: e for e in container["env"]}
    assert env["MODELDEPLOY_LIVENESS_PORT"]["value"] == "8080"
    assert env["MODELDEPLOY_METRICS_PORT"]["value"] == str(metrics_port)
    if ha:
        assert env["MODELDEPLOY_PEERING"]["value"] == fullname("modeldeploy")
        assert env["MODELDEPLOY_PRIORITY"]["value"] == "ordinal"
        assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        peerings = by_kind(objects, "KopfPeering") + by_kind(objects, "ClusterKopfPeering")
        assert {p["metadata"]["name"] for p in peerings} == {fullname("modeldeploy")}
        expected = values.get("watchNamespaces") or [None]
        assert sorted(str(p["metadata"].get("namespace")) for p in peerings) == sorted(map(str, expected))
    else:
        assert "MODELDEPLOY_PEERING" not in env and not by_kind(objects, "ClusterKopfPeering")
    services = by_kind(objects, "Service")
    if values.get("metrics", {}).get("service", {}).get("enabled", True):
        (service,) = services
        assert service["spec"]["ports"] == [
            {"name": "metrics", "port": metrics_port, "targetPort": "metrics", "protocol": "TCP", "appProtocol": "http"}
        ]
        annotations = service["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == str(metrics_port)
        assert service["spec"]["selector"].items() <= found["spec"]["template"]["metadata"]["labels"].items()
    else:
        assert services == []


def active(operator: OperatorProcess) -> bool:
    """Whether a peering operator is handling events: its last pause/resume line, paused at start."""
    state = False
    for line in operator.log().splitlines():
        if "Pausing operations" in line or "Pausing all operators" in line:
            state = False
        elif "Resuming operations" in line:
            state = True
    return state


# --- against the control plane -----------------------------------------------------------------------


def test_install_upgrade_uninstall_keeps_the_crds(control_plane: ControlPlane, namespace: str) -> None:
    """A user's life cycle: install, change a value, switch to namespaced mode, uninstall; the CRDs (and so
    every ModelDeployment) outlive the release."""
    cp = control_plane
    release = "md-op"
    name = fullname(release)
    started = time.monotonic()
    install(cp, release, namespace)
    deployment = get_json(cp, "-n", namespace, "deployment", name)
    assert "--log-format=json" in operator_container(deployment)["args"]
    assert get_json(cp, "clusterrole", name)["rules"]
    for crd in ("modeldeployments.modeldeploy.io", "kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"):
        cp.wait_established(crd, timeout=60)
    pods = get_json(cp, "-n", namespace, "pods", "-l", f"app.kubernetes.io/instance={release}")["items"]
    assert [p["status"]["phase"] for p in pods] == ["Running"]
    notes = cp.helm("get", "notes", release, "-n", namespace).stdout
    assert "kubectl apply -n default -f examples/digits-mlp.yaml" in notes and "kubectl get md" in notes, notes
    assert "kubectl delete crd modeldeployments.modeldeploy.io" in notes, notes
    service = get_json(cp, "-n", namespace, "service", f"{name}-metrics")
    assert service["spec"]["ports"][0]["port"] == 9090
    # A ModelDeployment made while the release exists; it must survive the uninstall.
    md = {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "survivor", "namespace": namespace},
        "spec": {"model": {"name": "survivor", "storageUri": "pvc://models/mlp.keras"}},
    }
    cp.kubectl("apply", "-f", "-", input=json.dumps(md))

    # Upgrade: a changed value reaches the Deployment and, through the Recreate strategy, a new pod.
    install(cp, release, namespace, {"logFormat": "plain", "resyncSeconds": 30})
    args = operator_container(get_json(cp, "-n", namespace, "deployment", name))["args"]
    assert "--log-format=plain" in args and "--resync-seconds=30" in args
    wait_for(
        "an operator pod with the upgraded arguments",
        lambda: [
            p
            for p in get_json(cp, "-n", namespace, "pods", "-l", f"app.kubernetes.io/instance={release}")["items"]
            if "--log-format=plain" in p["spec"]["containers"][0]["args"] and p["status"].get("phase") == "Running"
        ],
        timeout=60,
    )

    # Upgrade to namespaced mode: the ClusterRole with namespaced grants goes, a Role appears.
    install(cp, release, namespace, {"watchNamespaces": [namespace]})
    assert cp.kubectl("get", "clusterrole", name, check=False).returncode != 0
    role = get_json(cp, "-n", namespace, "role", name)
    assert any("modeldeployments" in rule["resources"] for rule in role["rules"])
    assert f"--namespace={namespace}" in operator_container(get_json(cp, "-n", namespace, "deployment", name))["args"]
    notes = cp.helm("get", "notes", release, "-n", namespace).stdout
    assert f"kubectl apply -n {namespace} -f examples/digits-mlp.yaml" in notes, notes

    cp.helm("uninstall", release, "-n", namespace, "--wait", "--timeout=120s")
    for kind_name in (f"deployment/{name}", f"serviceaccount/{name}", f"service/{name}-metrics", f"role/{name}"):
        assert cp.kubectl("-n", namespace, "get", kind_name, check=False).returncode != 0, kind_name
    assert cp.kubectl("get", f"clusterrolebinding/{name}-discovery", check=False).returncode != 0
    for crd in ("modeldeployments.modeldeploy.io", "kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"):
        cp.kubectl("get", "crd", crd)  # still there: Helm never deletes what it installed from crds/
    assert get_json(cp, "-n", namespace, "modeldeployment", "survivor")["metadata"]["name"] == "survivor"
    print(f"\ninstall, 2 upgrades, uninstall: {time.monotonic() - started:.1f}s")


@pytest.fixture
def ha_release(control_plane: ControlPlane, namespace: str, crd_installed: None) -> Iterator[tuple[str, str]]:
    """The chart with replicas=2 watching `namespace`, installed into its own restricted namespace;
    yields (release namespace, release name)."""
    system = new_namespace(control_plane, "md-ha-system", RESTRICTED)
    release = "md-ha"
    try:
        install(control_plane, release, system, {"replicas": 2, "watchNamespaces": [namespace]})
        yield system, release
    finally:
        control_plane.helm("uninstall", release, "-n", system, "--wait", "--timeout=120s", check=False)
        control_plane.kubectl("delete", "namespace", system, "--wait=false", "--ignore-not-found")


def test_ha_replicas_are_a_statefulset_meeting_in_a_peering(
    control_plane: ControlPlane, namespace: str, ha_release: tuple[str, str]
) -> None:
    """replicas=2: StatefulSet pods <fullname>-0 and -1 (the names `ordinal` priorities come from),
    admitted under the restricted Pod Security profile, and the KopfPeering they meet in."""
    cp = control_plane
    system, release = ha_release
    name = fullname(release)
    pods = get_json(cp, "-n", system, "pods", "-l", f"app.kubernetes.io/instance={release}")["items"]
    assert sorted(p["metadata"]["name"] for p in pods) == [f"{name}-0", f"{name}-1"]
    assert {p["status"]["phase"] for p in pods} == {"Running"}
    statefulset = get_json(cp, "-n", system, "statefulset", name)
    assert env_value(statefulset, "MODELDEPLOY_PRIORITY") == "ordinal"
    get_json(cp, "-n", namespace, "kopfpeering", env_value(statefulset, "MODELDEPLOY_PEERING") or "")
    assert cp.kubectl("get", "pdb", "-n", system, name).returncode == 0


def test_ha_operators_with_the_charts_environment_elect_pod_zero(
    control_plane: ControlPlane,
    namespace: str,
    ha_release: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two operators, each with a StatefulSet pod's environment as the chart sets it (HOSTNAME and POD_ID
    the pod name, MODELDEPLOY_PEERING, MODELDEPLOY_PRIORITY=ordinal) and the chart's RBAC, meet in the
    KopfPeering with priorities 100 and 99; pod 0 works and pod 1 stands by."""
    cp = control_plane
    system, release = ha_release
    name = fullname(release)
    statefulset = get_json(cp, "-n", system, "statefulset", name)
    operators = []
    try:
        for ordinal in (0, 1):
            pod = f"{name}-{ordinal}"
            monkeypatch.setenv("HOSTNAME", pod)
            monkeypatch.setenv("POD_ID", pod)
            for var in ("MODELDEPLOY_PEERING", "MODELDEPLOY_PRIORITY"):
                monkeypatch.setenv(var, env_value(statefulset, var) or "")
            operators.append(run_operator_as(cp, system, name, statefulset, tmp_path / f"{pod}.log"))
        peering = env_value(statefulset, "MODELDEPLOY_PEERING") or ""

        def peers() -> dict[str, int]:
            for operator in operators:
                assert operator.popen.poll() is None, f"an operator exited:\n{operator.log()[-3000:]}"
            status = get_json(cp, "-n", namespace, "kopfpeering", peering).get("status") or {}
            return {identity: int(peer["priority"]) for identity, peer in status.items() if peer}

        wait_for(
            "both operators in the KopfPeering",
            lambda: peers() == {f"{name}-0": 100, f"{name}-1": 99},
            timeout=90,
        )
        # kopf starts paused and resumes once no live peer has a higher priority.
        wait_for(
            "pod 0 active and pod 1 paused",
            lambda: [active(op) for op in operators] == [True, False],
            timeout=60,
        )
    finally:
        for operator in operators:
            operator.stop()
    for operator in operators:
        assert not refused_lines(operator), "\n".join(refused_lines(operator))
