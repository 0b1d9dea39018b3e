"""Helpers shared by test_chart.py and test_security.py: render, install and read back the chart, and
run the operator the way the chart's pod would, with the chart's ServiceAccount credentials.

Pods are only simulated by kwok here, so the chart's operator pod never runs its process; the tests run
`modeldeploy run` locally instead, with the arguments read from the installed workload and a kubeconfig
holding a token of the chart's ServiceAccount, so the operator has exactly the chart's RBAC.
"""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcluster.controlplane import ControlPlane
from devcluster.stack import OperatorProcess
from repo_paths import REPO

CHART = REPO / "charts" / "modeldeploy-operator"
#: Must match Chart.yaml's name; fullname = <release>-<chart> unless the release name contains it.
CHART_NAME = "modeldeploy-operator"
RESTRICTED = "pod-security.kubernetes.io/enforce=restricted"


def set_flags(values: dict[str, Any]) -> list[str]:
    """--set-json flags for a values mapping (exact types, lists included)."""
    return [flag for key, value in values.items() for flag in ("--set-json", f"{key}={json.dumps(value)}")]


def render(
    cp: ControlPlane, values: dict[str, Any] | None = None, *, namespace: str = "modeldeploy-system", crds: bool = False
) -> list[dict[str, Any]]:
    """`helm template` of the chart, as a list of objects."""
    args = ["template", "modeldeploy", str(CHART), "-n", namespace, *set_flags(values or {})]
    if crds:
        args.append("--include-crds")
    return [doc for doc in yaml.safe_load_all(cp.helm(*args).stdout) if doc]


def install(cp: ControlPlane, release: str, namespace: str, values: dict[str, Any] | None = None) -> None:
    """`helm upgrade --install --wait`: the workload's pods exist and are Ready (kwok) when it returns."""
    cp.helm(
        "upgrade", "--install", release, str(CHART), "-n", namespace, "--wait", "--timeout=120s",
        *set_flags(values or {}),
    )  # fmt: skip


def fullname(release: str) -> str:
    return release if CHART_NAME in release else f"{release}-{CHART_NAME}"


def get_json(cp: ControlPlane, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(cp.kubectl("get", "-o", "json", *args).stdout)
    return result


def operator_container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    container: dict[str, Any] = next(c for c in containers if c["name"] == "operator")
    return container


def chart_run_args(workload: dict[str, Any]) -> list[str]:
    """The `modeldeploy run` arguments the chart's pod would run with (the container's args minus `run`)."""
    args = list(operator_container(workload)["args"])
    assert args[0] == "run", args
    return args[1:]


def env_value(workload: dict[str, Any], name: str) -> str | None:
    for var in operator_container(workload).get("env", []):
        if var["name"] == name:
            return str(var["value"]) if "value" in var else None
    return None


def new_namespace(cp: ControlPlane, prefix: str, *labels: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:5]}"
    cp.kubectl("create", "namespace", name)
    if labels:
        cp.kubectl("label", "namespace", name, *labels)
    cp.wait_for_serviceaccount(name)
    return name


def can_i(cp: ControlPlane, user: str, verb: str, resource: str, namespace: str | None = None) -> bool:
    """`kubectl auth can-i` as `user` (impersonated by the admin); namespace None = all namespaces;
    resource may name a subresource (pods/log)."""
    scope = ["-n", namespace] if namespace else ["--all-namespaces"]
    # "pods/log" would be read as the pod named "log": a subresource goes in its own flag.
    resource, _, subresource = resource.partition("/")
    sub = [f"--subresource={subresource}"] if subresource else []
    result = cp.kubectl("auth", "can-i", verb, resource, *sub, "--as", user, *scope, check=False)
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), f"can-i {verb} {resource}: {answer!r} {result.stderr}"
    return answer == "yes"


def run_operator_as(
    cp: ControlPlane, namespace: str, serviceaccount: str, workload: dict[str, Any], log: Path, *extra: str
) -> OperatorProcess:
    """`modeldeploy run` with the chart's arguments and a token of the chart's ServiceAccount."""
    kubeconfig = cp.serviceaccount_kubeconfig(namespace, serviceaccount)
    return OperatorProcess(kubeconfig, log, [*chart_run_args(workload), *extra])


def refused_lines(operator: OperatorProcess) -> list[str]:
    """Lines where the API server refused the operator (403) or kopf found a permission missing.

    A 403 from the NamespaceLifecycle admission ("... because it is being terminated": an Event into a
    namespace an earlier test is deleting) is not a permission problem and does not count.
    """
    return [
        line
        for line in operator.log().splitlines()
        if ("forbidden" in line.lower() or "not enough permissions" in line.lower())
        and "because it is being terminated" not in line
    ]


@pytest.fixture
def sole_operator(operator_process: OperatorProcess) -> Iterator[None]:
    """Pause the session's admin operator (cluster-admin, all namespaces) for the duration of a test.

    Otherwise it would reconcile the test's ModelDeployments too, and an operator running with the
    chart's RBAC could look successful while lacking a permission. SIGSTOP freezes it; SIGCONT resumes
    it afterwards (kopf re-establishes its watches).
    """
    operator_process.popen.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        operator_process.popen.send_signal(signal.SIGCONT)
