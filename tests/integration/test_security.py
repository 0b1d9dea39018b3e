"""Security, proven against the real API server: the operator with exactly the chart's RBAC serves an
example end to end in namespaces that enforce the restricted Pod Security profile; `kubectl auth can-i`
shows what it cannot do; checkov finds nothing unexplained in the chart, the images or the children the
operator creates; and no Secret value reaches a log, an Event or a status.

The session's admin operator is paused (`sole_operator`) while an operator with the chart's
ServiceAccount works, so a missing permission cannot be hidden by the admin doing the job instead.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from chart_support import (
    CHART,
    REPO,
    RESTRICTED,
    can_i,
    fullname,
    get_json,
    install,
    new_namespace,
    refused_lines,
    render,
    run_operator_as,
    sole_operator,
)
from devcluster.controlplane import CommandError, ControlPlane
from devcluster.stack import OperatorProcess, condition, make_claim, wait_for
from modeldeploy.k8s.client import KubeClient

pytestmark = pytest.mark.integration
__all__ = ["sole_operator"]  # a fixture, used by name

PRIVILEGED_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "not-restricted"},
    "spec": {"containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10", "securityContext": {}}]},
}


def assert_restricted_rejects_a_bad_pod(cp: ControlPlane, namespace: str) -> None:
    """The control for the admission checks: a pod that is not restricted-compliant is refused here."""
    with pytest.raises(CommandError) as refused:
        cp.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(PRIVILEGED_POD))
    assert "violates PodSecurity" in refused.value.stderr and '"restricted:latest"' in refused.value.stderr


def wait_ready(
    kube: KubeClient, namespace: str, name: str, timeout: float = 240, operator: OperatorProcess | None = None
) -> dict[str, Any]:
    """Wait for Ready; with `operator`, fail at its first refused request instead of at the timeout."""

    def ready() -> dict[str, Any] | None:
        if operator is not None:
            refused = refused_lines(operator)
            assert not refused, "the operator was refused:\n" + "\n".join(refused[:10])
        md = kube.get("ModelDeployment", namespace, name)
        return md if condition(md, "Ready").get("reason") == "Ready" else None

    found: dict[str, Any] = wait_for(f"ModelDeployment {namespace}/{name} Ready", ready, timeout)
    return found


def chart_operator_pods(cp: ControlPlane, namespace: str, release: str) -> list[dict[str, Any]]:
    pods: list[dict[str, Any]] = get_json(cp, "-n", namespace, "pods", "-l", f"app.kubernetes.io/instance={release}")[
        "items"
    ]
    return pods


# --- the operator with the chart's RBAC, under restricted Pod Security ----------------------------------


def test_operator_with_the_charts_rbac_serves_an_example_in_restricted_namespaces(
    control_plane: ControlPlane,
    kube: KubeClient,
    namespace: str,
    storage_root: Path,
    reference_models: Path,
    executor: object,
    sole_operator: None,
    tmp_path: Path,
) -> None:
    cp = control_plane
    system = new_namespace(cp, "modeldeploy-system", RESTRICTED)
    cp.kubectl("label", "namespace", namespace, RESTRICTED)
    release = "md-rbac"  # cluster-scoped names: distinct from other tests' releases
    name = fullname(release)
    sa_user = f"system:serviceaccount:{system}:{name}"
    operator: OperatorProcess | None = None
    try:
        install(cp, release, system)
        # The chart's own pod was admitted under "restricted" (a rejected pod never exists; the
        # ReplicaSet would only record FailedCreate), and a non-compliant one is not.
        pods = chart_operator_pods(cp, system, release)
        assert [p["status"]["phase"] for p in pods] == ["Running"], pods
        assert_restricted_rejects_a_bad_pod(cp, system)
        assert_restricted_rejects_a_bad_pod(cp, namespace)

        deployment = get_json(cp, "-n", system, "deployment", name)
        operator = run_operator_as(cp, system, name, deployment, tmp_path / "operator.log")
        make_claim(cp, storage_root, namespace, "models", reference_models)
        started = time.monotonic()
        cp.kubectl("apply", "-n", namespace, "-f", str(REPO / "examples" / "digits-mlp.yaml"))
        md = wait_ready(kube, namespace, "digits-mlp", operator=operator)
        elapsed = time.monotonic() - started

        # End to end: the optimizer pod ran (admitted under restricted) and the serving Deployment has
        # Available pods (admitted under restricted too).
        assert md["status"]["servedVersion"] == 1 and md["status"]["optimization"]["artifactFormat"] == "tflite-int8"
        job = get_json(cp, "-n", namespace, "job", md["status"]["optimization"]["jobName"])
        assert job["status"].get("succeeded") == 1
        serving = get_json(cp, "-n", namespace, "deployment", "digits-mlp")
        assert serving["status"].get("availableReplicas", 0) >= 1, serving["status"]
        assert condition(serving, "Available")["status"] == "True"
        for kind in ("service", "configmap/digits-mlp-model-config", "horizontalpodautoscaler", "poddisruptionbudget"):
            target = kind if "/" in kind else f"{kind}/digits-mlp"
            cp.kubectl("get", "-n", namespace, target)
        events = get_json(cp, "-n", namespace, "events.events.k8s.io")["items"]
        assert any(e.get("reportingController") == "modeldeploy.io/operator" for e in events)
        assert not refused_lines(operator), "\n".join(refused_lines(operator))
        print(f"\ndigits-mlp Ready in {elapsed:.1f}s with the chart's RBAC ({sa_user})")

        # What it may do, and what it may not.
        allowed = [
            ("list", "modeldeployments.modeldeploy.io", None),
            ("watch", "modeldeployments.modeldeploy.io", None),
            ("patch", "modeldeployments.modeldeploy.io/status", namespace),
            ("update", "modeldeployments.modeldeploy.io/finalizers", namespace),
            ("create", "jobs.batch", namespace),
            ("delete", "jobs.batch", namespace),
            ("patch", "deployments.apps", namespace),
            ("patch", "services", namespace),
            ("patch", "configmaps", namespace),
            ("patch", "horizontalpodautoscalers.autoscaling", namespace),
            ("patch", "poddisruptionbudgets.policy", namespace),
            ("list", "pods", namespace),
            ("watch", "persistentvolumeclaims", namespace),
            ("watch", "pods", namespace),
            ("create", "events", namespace),
            ("watch", "customresourcedefinitions.apiextensions.k8s.io", None),
        ]
        denied = [
            ("get", "deployments.apps", namespace),  # the operator reads through its watches only
            ("get", "secrets", namespace),
            ("list", "secrets", namespace),
            ("list", "secrets", None),
            ("watch", "secrets", system),
            ("update", "modeldeployments.modeldeploy.io", namespace),  # spec is the user's
            ("delete", "modeldeployments.modeldeploy.io", namespace),
            ("create", "pods", namespace),
            ("delete", "pods", namespace),
            ("create", "pods/exec", namespace),
            ("get", "pods/log", namespace),
            ("update", "jobs.batch", namespace),
            ("create", "statefulsets.apps", namespace),
            ("create", "daemonsets.apps", namespace),
            ("create", "roles.rbac.authorization.k8s.io", namespace),
            ("create", "rolebindings.rbac.authorization.k8s.io", namespace),
            ("create", "clusterrolebindings.rbac.authorization.k8s.io", None),
            ("get", "nodes", None),
            ("create", "persistentvolumeclaims", namespace),
            ("create", "serviceaccounts/token", system),
            ("patch", "customresourcedefinitions.apiextensions.k8s.io", None),
            ("create", "namespaces", None),
            ("patch", "clusterkopfpeerings.kopf.dev", None),  # only with replicas > 1
        ]
        wrong = [f"can {v} {r}" for v, r, ns in denied if can_i(cp, sa_user, v, r, ns)]
        wrong += [f"cannot {v} {r}" for v, r, ns in allowed if not can_i(cp, sa_user, v, r, ns)]
        assert not wrong, wrong
    finally:
        if operator is not None:
            operator.stop()
        cp.kubectl("delete", "md", "--all", "-n", namespace, "--wait=false", check=False)
        cp.helm("uninstall", release, "-n", system, "--wait", "--timeout=120s", check=False)
        cp.kubectl("delete", "namespace", system, "--wait=false", "--ignore-not-found")


def test_namespaced_mode_works_in_its_namespace_and_nowhere_else(
    control_plane: ControlPlane,
    kube: KubeClient,
    namespace: str,
    storage_root: Path,
    reference_models: Path,
    executor: object,
    sole_operator: None,
    tmp_path: Path,
) -> None:
    cp = control_plane
    system = new_namespace(cp, "md-ns-system", RESTRICTED)
    elsewhere = new_namespace(cp, "md-elsewhere")
    release = "md-ns"
    name = fullname(release)
    sa_user = f"system:serviceaccount:{system}:{name}"
    operator: OperatorProcess | None = None
    try:
        install(cp, release, system, {"watchNamespaces": [namespace]})
        deployment = get_json(cp, "-n", system, "deployment", name)
        operator = run_operator_as(cp, system, name, deployment, tmp_path / "operator.log")
        make_claim(cp, storage_root, namespace, "models", reference_models)
        md = {
            "apiVersion": "modeldeploy.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "plain", "namespace": namespace},
            "spec": {
                "model": {"name": "plain", "storageUri": "pvc://models/mlp.keras", "format": "keras"},
                "optimization": {"enabled": False},
                "autoscaling": {"enabled": False},
            },
        }
        cp.kubectl("apply", "-f", "-", input=json.dumps(md))
        wait_ready(kube, namespace, "plain", timeout=180, operator=operator)
        # A ModelDeployment outside the watched namespace is not the operator's business.
        cp.kubectl("apply", "-f", "-", input=json.dumps(md | {"metadata": {"name": "plain", "namespace": elsewhere}}))
        time.sleep(5)
        assert not (kube.get("ModelDeployment", elsewhere, "plain") or {}).get("status")
        assert not kube.list("Job", elsewhere)
        assert not refused_lines(operator), "\n".join(refused_lines(operator))

        for verb, resource in (("list", "modeldeployments.modeldeploy.io"), ("create", "jobs.batch")):
            assert can_i(cp, sa_user, verb, resource, namespace)
            assert not can_i(cp, sa_user, verb, resource, elsewhere)
            assert not can_i(cp, sa_user, verb, resource, None)
        assert not can_i(cp, sa_user, "get", "secrets", namespace)
        assert not can_i(cp, sa_user, "patch", "deployments.apps", elsewhere)
    finally:
        if operator is not None:
            operator.stop()
        cp.helm("uninstall", release, "-n", system, "--wait", "--timeout=120s", check=False)
        for ns in (system, elsewhere):
            cp.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found")


# --- no Secret value in logs, Events or status ------------------------------------------------------------


class _DenyingS3(http.server.BaseHTTPRequestHandler):
    """An S3 endpoint that refuses every request as an unknown access key, like AWS does."""

    BODY = (
        b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidAccessKeyId</Code>'
        b"<Message>The AWS Access Key Id you provided does not exist in our records.</Message></Error>"
    )

    def _deny(self, body: bool) -> None:
        self.send_response(403)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(self.BODY)))
        self.end_headers()
        if body:
            self.wfile.write(self.BODY)

    def do_GET(self) -> None:
        self._deny(True)

    def do_HEAD(self) -> None:
        self._deny(False)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def denying_s3() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _DenyingS3)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_no_secret_value_reaches_logs_events_or_status(
    control_plane: ControlPlane,
    kube: KubeClient,
    namespace: str,
    storage_root: Path,
    reference_models: Path,
    operator_log: OperatorProcess,
    denying_s3: str,
) -> None:
    """A credentials Secret with distinctive values, used by a ModelDeployment that succeeds (pvc source)
    and by one whose S3 fetch is refused (the error path, where credentials leak most often)."""
    cp = control_plane
    key_id = "AKIA" + uuid.uuid4().hex[:16].upper()
    secret_key = f"s3cr3t-{uuid.uuid4().hex}"
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "model-credentials", "namespace": namespace},
        "stringData": {
            "AWS_ACCESS_KEY_ID": key_id,
            "AWS_SECRET_ACCESS_KEY": secret_key,
            "AWS_ENDPOINT_URL": denying_s3,
            "AWS_DEFAULT_REGION": "us-east-1",
        },
    }
    cp.kubectl("apply", "-f", "-", input=json.dumps(secret))
    make_claim(cp, storage_root, namespace, "models", reference_models)
    log_start = operator_log.log_path.stat().st_size

    def model_deployment(name: str, uri: str, **extra: Any) -> dict[str, Any]:
        return {
            "apiVersion": "modeldeploy.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "model": {"name": name, "storageUri": uri, "format": "keras", "credentialsSecret": "model-credentials"},
                "optimization": {"enabled": False},
                "autoscaling": {"enabled": False},
                **extra,
            },
        }

    for md in (
        model_deployment("with-credentials", "pvc://models/mlp.keras"),
        model_deployment("s3-denied", "s3://models-bucket/mlp.keras", artifacts={"uri": "pvc://models/artifacts"}),
    ):
        cp.kubectl("apply", "-f", "-", input=json.dumps(md))
    wait_ready(kube, namespace, "with-credentials", timeout=180)
    denied = wait_for(
        "the S3 fetch to be refused",
        lambda: (
            (m := kube.get("ModelDeployment", namespace, "s3-denied"))
            and condition(m, "Optimized").get("status") == "False"
            and "access denied" in condition(m, "Optimized").get("message", "")
            and m
        ),
        timeout=180,
    )
    time.sleep(2)  # let the Events of the last transitions land

    # Everything a user or a log shipper sees.
    seen: dict[str, str] = {
        "operator log": operator_log.log()[log_start:] if len(operator_log.log()) >= log_start else operator_log.log(),
        "ModelDeployments": cp.kubectl("get", "md", "-n", namespace, "-o", "yaml").stdout,
        "Events (core/v1)": cp.kubectl("get", "events", "-n", namespace, "-o", "yaml").stdout,
        "Events (events.k8s.io)": cp.kubectl("get", "events.events.k8s.io", "-n", namespace, "-o", "yaml").stdout,
        "Jobs and Pods (status, termination messages)": cp.kubectl(
            "get", "jobs,pods", "-n", namespace, "-o", "yaml"
        ).stdout,
        "kubectl describe md": cp.kubectl("describe", "md", "-n", namespace).stdout,
    }
    optimizer_logs = sorted((storage_root / "logs").glob(f"{namespace}.*.log"))
    assert len(optimizer_logs) >= 2, "both optimizer pods ran"
    for path in optimizer_logs:
        seen[f"optimizer log {path.name}"] = path.read_text(errors="replace")
    assert "access denied" in json.dumps(denied["status"])
    assert "s3://models-bucket/mlp.keras" in seen["kubectl describe md"], "the failure is reported, without secrets"

    needles = {
        "access key id": key_id,
        "secret access key": secret_key,
        "secret access key (base64)": base64.b64encode(secret_key.encode()).decode(),
    }
    # The control: the same search finds the value where it does live.
    stored = cp.kubectl("get", "secret", "model-credentials", "-n", namespace, "-o", "yaml").stdout
    assert needles["secret access key (base64)"] in stored
    leaks = [f"{what} in {where}" for where, text in seen.items() for what, value in needles.items() if value in text]
    assert not leaks, leaks


# --- checkov ---------------------------------------------------------------------------------------------

#: Checks the children the operator renders suppress (checkov.io/skipN annotations, each with its reason
#: in modeldeploy/builders/labels.py). No other check may fail or be skipped.
CHILDREN_SKIPS = {"CKV_K8S_43", "CKV_K8S_15"}
#: The chart's suppressions (checkov.io/skipN annotations) with the default values.
CHART_SKIPS = {"CKV_K8S_38", "CKV_K8S_43", "CKV_K8S_15", "CKV_K8S_40"}


def checkov_binary() -> str:
    """checkov from this venv, from its own venv (.venv/tools/checkov: its pins clash with ours), or PATH."""
    for candidate in (
        Path(sys.executable).parent / "checkov",
        REPO / ".venv" / "tools" / "checkov" / "bin" / "checkov",
    ):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("checkov")
    if found is None:
        pytest.fail("checkov is not installed: run `make checkov-install`", pytrace=False)
    return found


def run_checkov(*args: str) -> dict[str, Any]:
    """One framework's JSON report (results: passed/failed/skipped checks)."""
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    result = subprocess.run(
        [checkov_binary(), *args, "--output", "json", "--skip-download"],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr[-3000:]
    report = json.loads(result.stdout)
    if isinstance(report, list):
        (report,) = report
    assert isinstance(report, dict) and "results" in report, result.stdout[:2000]
    return report


def failures(report: dict[str, Any]) -> list[str]:
    return [f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in report["results"]["failed_checks"]]


def test_checkov_finds_nothing_unexplained_in_the_chart(control_plane: ControlPlane, tmp_path: Path) -> None:
    """The chart rendered with several value sets (helm template, a real namespace), and the Dockerfiles."""
    value_sets: dict[str, dict[str, Any]] = {
        "default": {},
        "namespaced": {"watchNamespaces": ["team-a"]},
        "ha": {"replicas": 3},
        "ha-namespaced": {"replicas": 2, "watchNamespaces": ["team-a", "team-b"]},
        "pinned": {
            "image": {"digest": "sha256:" + "1" * 64},
            "podSecurityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "securityContext": {"runAsUser": 10001, "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True},
        },
    }
    for label, values in value_sets.items():
        objects = render(control_plane, values)
        (tmp_path / f"{label}.yaml").write_text(yaml.safe_dump_all(objects))
    report = run_checkov("-d", str(tmp_path), "--framework", "kubernetes")
    assert not failures(report), "\n".join(failures(report))
    assert report["summary"]["passed"] > 100
    skipped: dict[str, set[str]] = {}
    for check in report["results"]["skipped_checks"]:
        reason = (check.get("check_result") or {}).get("suppress_comment", "")
        assert len(reason) > 30, f"{check['check_id']}: a suppression needs a written reason, got {reason!r}"
        skipped.setdefault(check["file_path"].rsplit("/", 1)[-1], set()).add(check["check_id"])
    assert skipped["default.yaml"] == CHART_SKIPS
    assert skipped["pinned.yaml"] == {"CKV_K8S_38"}, "a digest and a high UID lift the other suppressions"

    dockerfiles = run_checkov(
        "-f", str(REPO / "Dockerfile"), "-f", str(REPO / "Dockerfile.optimizer"), "--framework", "dockerfile"
    )
    assert not failures(dockerfiles), "\n".join(failures(dockerfiles))
    assert {c["check_id"] for c in dockerfiles["results"]["skipped_checks"]} <= {"CKV_DOCKER_2"}
    assert CHART.exists()


def test_checkov_passes_on_the_children_with_explained_suppressions(tmp_path: Path) -> None:
    """The children of every example as the operator would create them (in a non-default namespace)."""
    for example in sorted((REPO / "examples").glob("digits-*.yaml")):
        md = yaml.safe_load(example.read_text())
        md["metadata"]["namespace"] = "models"
        rendered = subprocess.run(
            [sys.executable, "-m", "modeldeploy.cli", "render", "-f", "-"],
            input=yaml.safe_dump(md),
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        (tmp_path / example.name).write_text(rendered)
    report = run_checkov("-d", str(tmp_path), "--framework", "kubernetes")
    assert not report["results"]["failed_checks"], "\n".join(failures(report))
    skipped = {c["check_id"] for c in report["results"]["skipped_checks"]}
    assert skipped == CHILDREN_SKIPS, skipped
    assert report["summary"]["passed"] > 100
