"""The chaos suite's scenarios, written once for two sizes: tests/chaos runs them small in `make test`,
benchmarks/chaos.py (`make chaos`) runs them long and prints the table.

Why it exists: the operator's promises (one Job per artifact, no orphan, never touch what is not
ours, every refusal reported, no apply loop, no lost optimizer result) only mean something when they
hold under abuse: SIGKILL at random points, the API server and etcd going away, invalid specs by
the hundred, other clients editing children. Each scenario runs on a private control plane (a
`ChaosStack`: its own API server, etcd, executor and operators, so stopping them harms no other
test), returns a `ScenarioResult` whose `failures` name the input and what happened, and never
asserts itself: the tests assert on the result, the benchmark prints it.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from devcluster.controlplane import ControlPlane
from devcluster.executor import JobPodExecutor
from devcluster.kubeapi import ApiError
from devcluster.stack import OperatorProcess, condition, make_claim, scrape
from modeldeploy.api import GROUP, PLURAL, VERSION
from modeldeploy.api.quantity import parse_quantity
from modeldeploy.api.reasons import ConditionType, Reason
from modeldeploy.controller.builders.labels import (
    ARTIFACT_CLEANUP,
    ARTIFACT_LABEL,
    COMPONENT_LABEL,
    MODEL_DEPLOYMENT_LABEL,
    OPTIMIZER,
)
from modeldeploy.controller.builders.names import model_config_name, serving_name
from modeldeploy.k8s.kinds import KINDS, Role

MD_KIND = "ModelDeployment"
# The chaos cluster has no Gateway API CRDs (optional kinds are not served there): the audit lists
# the kinds every cluster has.
CHILD_KINDS = tuple(k for k, v in KINDS.items() if v.role == Role.CHILD and not v.optional)
#: Objects "a user" made before the operator saw them carry this label; audits leave them out.
USER_LABEL = "chaos.modeldeploy.io/user"
#: The edit marker: every edit of the kill scenario sets this variable on the serving container.
MARKER = "CHAOS_GENERATION"
CLAIM = "models"
RESYNC_SECONDS = 5.0  # what OperatorProcess passes to the operator
WRITE_METRIC = "modeldeploy_writes_total"


# -- results ---------------------------------------------------------------------------------------


@dataclass
class Trial:
    """One trial of a scenario: did it reach the wanted state, and how long it took."""

    converged: bool
    seconds: float | None = None


@dataclass
class ScenarioResult:
    """What a scenario saw. `failures` each name the trial's input and what happened."""

    scenario: str
    trials: list[Trial] = field(default_factory=list)
    duplicates: int = 0
    orphans: int = 0
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def converged(self) -> int:
        return sum(t.converged for t in self.trials)

    def percentile(self, pct: float) -> float | None:
        times = sorted(t.seconds for t in self.trials if t.converged and t.seconds is not None)
        if not times:
            return None
        return times[min(len(times) - 1, max(0, math.ceil(pct / 100 * len(times)) - 1))]  # nearest rank

    def fail(self, text: str) -> None:
        self.failures.append(text)

    def row(self) -> str:
        def fmt(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f} s"

        return (
            f"| {self.scenario} | {len(self.trials)} | {self.converged}/{len(self.trials)} | "
            f"{fmt(self.percentile(50))} / {fmt(self.percentile(95))} | {self.duplicates} | {self.orphans} | "
            f"{len(self.failures)} |"
        )

    def report(self, limit: int = 40) -> str:
        """The failures, one per line, for a test's assertion message and the benchmark's notes."""
        lines = [f"{self.scenario}: {len(self.failures)} failure(s)"]
        lines += [f"  - {failure}" for failure in self.failures[:limit]]
        if len(self.failures) > limit:
            lines.append(f"  ... and {len(self.failures) - limit} more")
        return "\n".join(lines)


TABLE_HEADER = (
    "| scenario | trials | converged | time p50 / p95 | duplicate Jobs | orphans | failures |\n"
    "| --- | --- | --- | --- | --- | --- | --- |"
)


def table(results: Sequence[ScenarioResult]) -> str:
    return "\n".join([TABLE_HEADER, *(r.row() for r in results)])


# -- the private cluster ---------------------------------------------------------------------------


def md_path(namespace: str, name: str = "") -> str:
    base = f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace)}/{PLURAL}"
    return f"{base}/{quote(name)}" if name else base


def kind_path(kind: str, namespace: str, name: str = "") -> str:
    if kind == MD_KIND:
        return md_path(namespace, name)
    info = KINDS[kind]
    base = f"{info.path_prefix}/namespaces/{quote(namespace)}/{info.plural}"
    return f"{base}/{quote(name)}" if name else base


class ChaosStack:
    """A private control plane with the CRD, an executor (the test kubelet for optimizer pods) and
    the reference models; operators are started per scenario (`operator()`), scoped to its namespace."""

    def __init__(self, cp: ControlPlane, storage_root: Path, reference_models: Path, log_dir: Path, crds: Path) -> None:
        self.cp = cp
        self.storage_root = storage_root
        self.reference_models = reference_models
        self.log_dir = log_dir
        self.api = cp.admin_api()
        cp.kubectl("apply", "--server-side", "-f", str(crds))
        cp.wait_established(f"{PLURAL}.{GROUP}")
        self._executor_api = cp.admin_api()
        self.executor = JobPodExecutor(self._executor_api, storage_root).__enter__()

    def close(self) -> None:
        self.executor.__exit__(None, None, None)
        self._executor_api.close()
        self.api.close()

    # -- reads ---------------------------------------------------------------------------------------
    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            status, text = self.api.request("GET", kind_path(kind, namespace, name))
        except OSError:
            return None  # the API server is away (an outage scenario); callers poll
        if status == 404:
            return None
        if not 200 <= status < 300:
            raise ApiError("GET", kind_path(kind, namespace, name), status, text)
        obj: dict[str, Any] = json.loads(text)
        return obj

    def list(self, kind: str, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
        path = kind_path(kind, namespace)
        if selector:
            path += "?" + urlencode({"labelSelector": selector})
        items: list[dict[str, Any]] = self.api.get(path)["items"]
        return items

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """Events about the ModelDeployment `name` (the core view shows events.k8s.io Events too)."""
        selector = urlencode({"fieldSelector": f"involvedObject.name={name},involvedObject.kind={MD_KIND}"})
        items: list[dict[str, Any]] = self.api.get(f"/api/v1/namespaces/{quote(namespace)}/events?{selector}")["items"]
        return items

    # -- writes --------------------------------------------------------------------------------------
    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        meta = manifest["metadata"]
        created: dict[str, Any] = self.api.post(kind_path(manifest["kind"], meta["namespace"]), manifest)
        return created

    def merge_patch(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.api.patch(kind_path(kind, namespace, name), patch)

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        status, text = self.api.request("DELETE", kind_path(kind, namespace, name))
        if status not in (200, 202, 404):
            raise ApiError("DELETE", kind_path(kind, namespace, name), status, text)
        return status != 404

    def kubectl(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.cp.kubectl(*args, input=input)

    # -- namespaces and operators ----------------------------------------------------------------------
    def namespace(self, prefix: str) -> str:
        """A fresh namespace with the claim `models` holding the reference models."""
        name = f"{prefix}-{uuid.uuid4().hex[:5]}"
        self.cp.kubectl("create", "namespace", name)
        self.cp.wait_for_serviceaccount(name)
        make_claim(self.cp, self.storage_root, name, CLAIM, self.reference_models)
        return name

    def drop_namespace(self, namespace: str) -> None:
        """Delete the namespace without waiting; the API server may still be coming back from an outage."""
        for _ in range(30):
            done = self.cp.kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found", check=False)
            if done.returncode == 0:
                return
            time.sleep(1)

    def operator(self, namespace: str, label: str) -> OperatorProcess:
        """`modeldeploy run -n NAMESPACE` (resync every 5 s), its log in the stack's log folder."""
        return OperatorProcess(self.cp.kubeconfig, self.log_dir / f"{label}.log", extra=["-n", namespace])

    @contextmanager
    def running_operator(self, namespace: str, label: str) -> Iterator[OperatorProcess]:
        process = self.operator(namespace, label)
        try:
            yield process
        finally:
            process.stop()


# -- manifests -------------------------------------------------------------------------------------


def plain_md(namespace: str, name: str, generation: int = 0, replicas: int = 1) -> dict[str, Any]:
    """A ModelDeployment served as it is (no optimization Job): kwok makes its pods Ready."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": MD_KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"name": name, "storageUri": f"pvc://{CLAIM}/{name}", "format": "savedmodel"},
            "optimization": {"enabled": False},
            "serving": {"replicas": replicas, "env": [{"name": MARKER, "value": str(generation)}]},
            "autoscaling": {"enabled": False},
        },
    }


def optimized_md(namespace: str, name: str, generation: int = 0, max_drop: float = 0.05) -> dict[str, Any]:
    """A ModelDeployment whose optimization Job really runs (the executor runs the optimizer)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": MD_KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"name": "digits", "storageUri": f"pvc://{CLAIM}/mlp.keras", "format": "keras", "version": 1},
            "optimization": {
                "quantization": "dynamic",
                "evaluation": {"datasetUri": f"pvc://{CLAIM}/mlp-eval.npz", "maxAccuracyDrop": max_drop},
            },
            "serving": {"replicas": 1, "env": [{"name": MARKER, "value": str(generation)}]},
            "autoscaling": {"enabled": False},
        },
    }


# -- invariants ------------------------------------------------------------------------------------


def marker(md: dict[str, Any]) -> str | None:
    for var in md["spec"].get("serving", {}).get("env", []):
        if var.get("name") == MARKER:
            return str(var.get("value"))
    return None


def converged(stack: ChaosStack, namespace: str, md: dict[str, Any]) -> str | None:
    """None when the ModelDeployment's children and status are what its spec asks for; else why not."""
    name = md["metadata"]["name"]
    ready = condition(md, ConditionType.READY)
    if ready.get("status") != "True" or ready.get("reason") != Reason.READY:
        deployment = stack.get("Deployment", namespace, serving_name(name))
        return (
            f"Ready is {ready.get('status')}/{ready.get('reason')}: {ready.get('message', '')[:160]}; "
            f"its Deployment: {deployment_summary(deployment)}"
        )
    if (md.get("status") or {}).get("observedGeneration") != md["metadata"]["generation"]:
        return (
            f"observedGeneration {(md.get('status') or {}).get('observedGeneration')} != {md['metadata']['generation']}"
        )
    deployment = stack.get("Deployment", namespace, serving_name(name))
    if deployment is None:
        return "no Deployment"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {v["name"]: v.get("value") for v in container.get("env", [])}
    want = marker(md)
    if want is not None and env.get(MARKER) != want:
        return f"Deployment's {MARKER}={env.get(MARKER)!r}, spec says {want!r}"
    autoscaling = md["spec"].get("autoscaling", {}).get("enabled", True)
    if not autoscaling and deployment["spec"].get("replicas") != md["spec"].get("serving", {}).get("replicas", 1):
        return f"Deployment replicas {deployment['spec'].get('replicas')} != spec"
    return None


def deployment_summary(deployment: dict[str, Any] | None) -> str:
    """What the Deployment itself says, to tell a stale status from a slow rollout."""
    if deployment is None:
        return "none"
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    return (
        f"generation {deployment['metadata'].get('generation')} observed {status.get('observedGeneration')}, "
        f"replicas {spec.get('replicas')} updated {status.get('updatedReplicas', 0)} "
        f"available {status.get('availableReplicas', 0)}"
    )


def all_converged(stack: ChaosStack, namespace: str) -> dict[str, str]:
    """{name: why not} for every ModelDeployment of the namespace that has not converged."""
    try:
        items = stack.list(MD_KIND, namespace)
        return {md["metadata"]["name"]: why for md in items if (why := converged(stack, namespace, md))}
    except (OSError, ApiError) as exc:
        return {"*": f"cannot read: {exc}"}


def wait_converged(stack: ChaosStack, namespace: str, timeout: float) -> tuple[float | None, dict[str, str]]:
    """Seconds until every ModelDeployment converged (None on timeout) and what was left."""
    started = time.monotonic()
    left: dict[str, str] = {}
    while time.monotonic() - started < timeout:
        left = all_converged(stack, namespace)
        if not left:
            return time.monotonic() - started, {}
        time.sleep(0.25)
    return None, left


@dataclass
class Audit:
    duplicates: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)


def audit(stack: ChaosStack, namespace: str) -> Audit:
    """Duplicate optimization Jobs (two Jobs for one ModelDeployment's artifact) and orphans (a child
    whose ModelDeployment is gone or does not own it, or that has no owner reference); objects
    made by "a user" (USER_LABEL) are not children, and neither is the artifact cleanup Job of a
    deleted ModelDeployment (no owner on purpose, so that garbage collection does not remove it
    before it runs; it deletes itself after ttlSecondsAfterFinished)."""
    owners = {md["metadata"]["name"]: md["metadata"]["uid"] for md in stack.list(MD_KIND, namespace)}
    uids = set(owners.values())
    found = Audit()
    jobs: dict[tuple[str, str], list[str]] = {}
    for kind in CHILD_KINDS:
        for obj in stack.list(kind, namespace):
            meta = obj["metadata"]
            labels = meta.get("labels") or {}
            if labels.get(USER_LABEL) == "true":
                continue
            refs = [r for r in meta.get("ownerReferences") or [] if r.get("kind") == MD_KIND]
            parent = labels.get(MODEL_DEPLOYMENT_LABEL)
            if parent is None and not refs:
                continue  # not ours (e.g. the Job controller's pods are not listed here anyway)
            if meta.get("deletionTimestamp"):
                continue
            where = f"{kind} {namespace}/{meta['name']}"
            if (
                not refs
                and labels.get(COMPONENT_LABEL) == ARTIFACT_CLEANUP
                and obj["spec"].get("ttlSecondsAfterFinished")
            ):
                continue  # the artifact cleanup after a delete: ownerless on purpose, it removes itself
            if not refs:
                found.orphans.append(f"{where} has no ownerReference")
            elif not any(r["uid"] in uids for r in refs):
                found.orphans.append(f"{where} is owned by a ModelDeployment that is gone ({refs[0]['name']})")
            elif parent is not None and owners.get(parent) not in {r["uid"] for r in refs}:
                found.orphans.append(f"{where} is labelled for {parent} but owned by another object")
            if kind == "Job" and parent is not None and labels.get(COMPONENT_LABEL) == OPTIMIZER:
                jobs.setdefault((parent, labels.get(ARTIFACT_LABEL, "")), []).append(meta["name"])
    for (parent, artifact), names in jobs.items():
        if len(names) > 1:
            found.duplicates.append(f"{len(names)} Jobs for {parent}'s artifact {artifact}: {sorted(names)}")
    return found


def settled_audit(stack: ChaosStack, namespace: str, timeout: float = 30.0) -> Audit:
    """The audit once the garbage collector had its chance: orphans must be gone within `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        found = audit(stack, namespace)
        if (not found.orphans) or time.monotonic() > deadline:
            return found
        time.sleep(1.0)


def writes(operator: OperatorProcess) -> float:
    """Every write the operator made so far (creates, applies, deletes, status patches, Events)."""
    total = 0.0
    for line in scrape(operator.metrics_port).splitlines():
        if line.startswith(WRITE_METRIC + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_metrics(operator: OperatorProcess, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if operator.popen.poll() is not None:
            raise RuntimeError(f"the operator exited with {operator.popen.returncode}:\n{operator.log()[-3000:]}")
        try:
            writes(operator)
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError("the operator's /metrics never answered")


def quiet_writes(operator: OperatorProcess, windows: int = 2, timeout: float = 45.0) -> float | None:
    """Seconds until `windows` resync periods in a row passed without a write (None: it kept writing)."""
    started = time.monotonic()
    quiet, before = 0, writes(operator)
    while time.monotonic() - started < timeout:
        time.sleep(RESYNC_SECONDS + 0.5)
        now = writes(operator)
        quiet, before = (quiet + 1 if now == before else 0), now
        if quiet >= windows:
            return time.monotonic() - started
    return None


def busiest_lines(text: str, last: int = 200, top: int = 3) -> str:
    """The log messages repeated most often in the last `last` lines (what an apply loop writes)."""
    counts: dict[str, int] = {}
    for line in text.splitlines()[-last:]:
        message = re.sub(r"^\S+ \S+ ", "", line.strip())  # drop the timestamp
        message = re.sub(r"\b\d+(\.\d+)?\b", "N", message)[:160]
        if message:
            counts[message] = counts.get(message, 0) + 1
    ranked = sorted(counts.items(), key=lambda item: -item[1])[:top]
    return "; ".join(f"{n}x {message!r}" for message, n in ranked)


def tracebacks(text: str) -> list[str]:
    """The first line after each Python traceback in an operator log."""
    found = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            tail = next((ln for ln in lines[index + 1 :] if ln and not ln.startswith((" ", "\t"))), "?")
            found.append(tail[:300])
    return found


def wait_until(check: Callable[[], Any], timeout: float, interval: float = 0.2) -> tuple[float | None, Any]:
    """(seconds until `check` returned something truthy or None on timeout, its last value)."""
    started = time.monotonic()
    last: Any = None
    while time.monotonic() - started < timeout:
        try:
            last = check()
        except (OSError, ApiError) as exc:
            last = exc
        else:
            if last:
                return time.monotonic() - started, last
        time.sleep(interval)
    return None, last


def add_audit(result: ScenarioResult, stack: ChaosStack, namespace: str) -> None:
    found = settled_audit(stack, namespace)
    result.duplicates += len(found.duplicates)
    result.orphans += len(found.orphans)
    result.failures += found.duplicates + found.orphans


def add_tracebacks(result: ScenarioResult, operator_log: str) -> None:
    for line in tracebacks(operator_log):
        result.fail(f"operator traceback: {line}")


def normalise_resources(resources: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {
        section: {key: str(parse_quantity(str(value)).normalize()) for key, value in (values or {}).items()}
        for section, values in (resources or {}).items()
    }


CHILD_NAMES = {
    "Service": serving_name,
    "Deployment": serving_name,
    "HorizontalPodAutoscaler": serving_name,
    "PodDisruptionBudget": serving_name,
    "ConfigMap": model_config_name,
}
