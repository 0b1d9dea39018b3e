"""The chaos scenarios: kill -9, API server and etcd outages, drift, ownership (the fuzz is in
chaos_fuzz.py). Each takes a plan (its sizes, so tests/chaos and benchmarks/chaos.py share the
code) and returns a ScenarioResult; see chaos_harness.py for why.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chaos_harness import (
    CHILD_NAMES,
    MARKER,
    MD_KIND,
    USER_LABEL,
    ChaosStack,
    ScenarioResult,
    Trial,
    add_audit,
    add_tracebacks,
    audit,
    busiest_lines,
    condition,
    normalise_resources,
    optimized_md,
    plain_md,
    quiet_writes,
    settled_audit,
    wait_converged,
    wait_metrics,
    wait_until,
)
from devcluster.kubeapi import ApiError
from modeldeploy.api.reasons import ConditionType, Reason, is_warning
from modeldeploy.controller.builders.labels import ARTIFACT_LABEL, COMPONENT_LABEL, MODEL_DEPLOYMENT_LABEL, OPTIMIZER
from modeldeploy.controller.builders.names import model_config_name, serving_config_name, serving_name
from modeldeploy.k8s.kinds import FIELD_MANAGER

# -- 1. kill -9 --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KillPlan:
    """`kills` rounds: a batch of creates/edits/deletes, a random delay, SIGKILL, restart, converge."""

    kills: int = 4
    plain: int = 4
    optimized: int = 1
    new_job_every: int = 0  # every Nth round edits an optimized spec (a new artifact, so a new Job); 0: never
    max_delay: float = 2.5
    converge_timeout: float = 240.0
    seed: int = 13


def kill_scenario(stack: ChaosStack, plan: KillPlan) -> ScenarioResult:
    result = ScenarioResult("kill -9 the operator")
    rng = random.Random(plan.seed)
    ns = stack.namespace("kill")
    label = f"operator-{ns}"
    plain = [f"p{i}" for i in range(plan.plain)]
    optimized = [f"o{i}" for i in range(plan.optimized)]
    counter, generation = plan.plain, 0
    replicas: dict[str, int] = dict.fromkeys(plain, 1)
    drops: dict[str, float] = dict.fromkeys(optimized, 0.05)
    duplicates: set[str] = set()
    operator = stack.operator(ns, label)
    try:
        for round_ in range(plan.kills):
            generation += 1
            done: list[str] = []
            if round_ == 0:
                for name in plain:
                    stack.create(plain_md(ns, name, generation))
                for name in optimized:
                    stack.create(optimized_md(ns, name, generation))
                done.append(f"created {plain + optimized}")
            else:
                for name in rng.sample(plain, rng.randint(1, len(plain))):
                    stack.merge_patch(MD_KIND, ns, name, {"spec": {"serving": {"env": _marker_env(generation)}}})
                    done.append(f"edited {name}")
                if rng.random() < 0.3:
                    name = rng.choice(plain)
                    replicas[name] = rng.randint(1, 3)
                    stack.merge_patch(MD_KIND, ns, name, {"spec": {"serving": {"replicas": replicas[name]}}})
                    done.append(f"scaled {name} to {replicas[name]}")
                if rng.random() < 0.25 and len(plain) > 1:
                    gone = plain.pop(rng.randrange(len(plain)))
                    stack.delete(MD_KIND, ns, gone)
                    new = f"p{counter}"
                    counter += 1
                    plain.append(new)
                    replicas[new] = 1
                    stack.create(plain_md(ns, new, generation))
                    done.append(f"deleted {gone}, created {new}")
                if optimized and plan.new_job_every and round_ % plan.new_job_every == 0:
                    name = rng.choice(optimized)
                    drops[name] = round(drops[name] + 0.01, 2)
                    patch = {"optimization": {"evaluation": {"maxAccuracyDrop": drops[name]}}}
                    stack.merge_patch(MD_KIND, ns, name, {"spec": patch})
                    done.append(f"new artifact for {name}")
            delay = rng.uniform(0, plan.max_delay)
            time.sleep(delay)
            operator.popen.kill()
            operator.popen.wait()
            operator.stop()
            operator = stack.operator(ns, label)
            seconds, left = wait_converged(stack, ns, plan.converge_timeout)
            result.trials.append(Trial(seconds is not None, seconds))
            if seconds is None:
                result.fail(f"round {round_} (killed {delay:.2f} s after: {', '.join(done)}): not converged: {left}")
            for text in audit(stack, ns).duplicates:
                if text not in duplicates:
                    duplicates.add(text)
                    result.duplicates += 1
                    result.fail(f"round {round_}: {text}")
        found = settled_audit(stack, ns)
        result.orphans += len(found.orphans)
        result.failures += found.orphans
        for text in found.duplicates:
            if text not in duplicates:
                result.duplicates += 1
                result.fail(f"at the end: {text}")
        result.notes.append(f"kill: {plan.kills} SIGKILLs, {counter} plain and {len(optimized)} optimized objects")
    finally:
        operator.stop()
        stack.drop_namespace(ns)
    return result


def _marker_env(generation: int) -> list[dict[str, str]]:
    return [{"name": MARKER, "value": str(generation)}]


# -- 2. API server and etcd outages ---------------------------------------------------------------


@dataclass(frozen=True)
class Outage:
    components: tuple[str, ...]  # stopped in this order, started in the reverse one
    downtime: float  # seconds down (after the optimizer finished, when during_job)
    during_job: bool = False  # the optimizer runs when the outage starts and finishes during it


@dataclass(frozen=True)
class OutagePlan:
    outages: tuple[Outage, ...] = (
        Outage(("kube-apiserver", "etcd"), 3.0, during_job=True),
        Outage(("etcd",), 5.0),
    )
    plain: int = 3
    converge_timeout: float = 60.0  # the issue's bound, from the moment the control plane is back
    # After a miss, how long to keep waiting (the trial stays a miss) before the next outage: the
    # next trial must start from a converged cluster, not from one whose scheduler is still waiting
    # for its lease, and the late time says whether the miss was seconds or minutes.
    settle_timeout: float = 240.0
    # Each outage measured on its own: the dev cluster restarts kube-controller-manager and
    # kube-scheduler with a kubelet's crash-loop back-off (devcluster/supervisor.py), which a kubelet
    # forgets after 10 quiet minutes; outages a minute apart would otherwise find them in
    # CrashLoopBackOff (80 s, 160 s) because of the trials before. False keeps the count.
    independent_trials: bool = True


def outage_scenario(stack: ChaosStack, plan: OutagePlan) -> ScenarioResult:
    result = ScenarioResult("API server and etcd restarts")
    ns = stack.namespace("outage")
    label = f"operator-{ns}"
    plain = [f"p{i}" for i in range(plan.plain)]
    operator = stack.operator(ns, label)
    generation, drop = 0, 0.05
    try:
        for name in plain:
            stack.create(plain_md(ns, name))
        stack.create(optimized_md(ns, "opt", max_drop=drop))
        first, left = wait_converged(stack, ns, 600)  # the first optimization: slow on a busy machine
        if first is None:
            result.fail(f"the objects never converged before the first outage: {left}")
            return result
        for index, outage in enumerate(plan.outages):
            generation += 1
            what = f"outage {index} ({'+'.join(outage.components)} for {outage.downtime:.0f} s"
            what += ", the optimizer finishing meanwhile)" if outage.during_job else ")"
            for name in plain:
                stack.merge_patch(MD_KIND, ns, name, {"spec": {"serving": {"env": _marker_env(generation)}}})
            pod = None
            if outage.during_job:
                drop = round(drop + 0.01, 2)
                patch = {
                    "optimization": {"evaluation": {"maxAccuracyDrop": drop}},
                    "serving": {"env": _marker_env(generation)},
                }
                stack.merge_patch(MD_KIND, ns, "opt", {"spec": patch})
                pod = _running_optimizer_pod(stack, ns, "opt", timeout=120)
                if pod is None:
                    result.fail(f"{what}: the optimizer pod never ran")
                    result.trials.append(Trial(False))
                    continue
            if plan.independent_trials:
                stack.cp.forget_restart_back_off()
            stopped = datetime.now(UTC)
            for component in outage.components:
                stack.cp.stop_component(component, grace=0)
            if pod is not None:
                seconds, _ = wait_until(lambda p=pod: any(name == p for name, _ in stack.executor.runs), 300, 0.5)
                if seconds is None:
                    result.fail(f"{what}: the optimizer did not finish within 300 s")
            time.sleep(outage.downtime)
            for component in reversed(outage.components):
                stack.cp.start_component(component)
            restarted = datetime.now(UTC)
            timing = time_trial(lambda timeout: wait_converged(stack, ns, timeout), plan)
            result.trials.append(Trial(timing.converged is not None, timing.converged))
            leases = lease_delays({name: _lease(stack, name) for name in LEASE_HOLDERS}, stopped, restarted)
            result.notes.append(
                f"{what}: {timing.describe(plan)}; {describe_leases(leases)}{describe_after_leases(timing, leases)}"
            )
            if timing.converged is None:
                result.fail(
                    f"{what}: not converged {plan.converge_timeout:.0f} s after the restart "
                    f"({timing.describe(plan)}; {describe_leases(leases)}): {timing.left}"
                )
            if operator.popen.poll() is not None:
                result.fail(f"{what}: the operator exited with {operator.popen.returncode}")
                operator.stop()
                operator = stack.operator(ns, label)
            if pod is not None:
                lost = _lost_result(stack, ns, "opt", pod)
                if lost:
                    when = timing.describe(plan)
                    result.fail(f"{what}: the optimizer's result is not served ({when}): {lost}")
        add_audit(result, stack, ns)
    finally:
        operator.stop()
        stack.drop_namespace(ns)
    return result


@dataclass(frozen=True)
class TrialTiming:
    """When one outage's objects converged, counted from the restart: within the bound, or later."""

    converged: float | None  # within plan.converge_timeout, else None (a miss)
    late: float | None = None  # a miss that converged within plan.settle_timeout more
    left: Mapping[str, str] | None = None  # what was not converged at the bound

    def describe(self, plan: OutagePlan) -> str:
        if self.converged is not None:
            return f"converged in {self.converged:.1f} s"
        if self.late is not None:
            return f"not converged within {plan.converge_timeout:.0f} s; converged {self.late:.1f} s after the restart"
        total = plan.converge_timeout + plan.settle_timeout
        return f"not converged {total:.0f} s after the restart"


def time_trial(wait: Callable[[float], tuple[float | None, dict[str, str]]], plan: OutagePlan) -> TrialTiming:
    """Wait up to the bound for convergence (`wait(timeout)` returns the seconds it took, or None, and
    what was left); after a miss keep waiting up to `settle_timeout`, so the next trial does not start
    while this one's components are still coming back (its scheduler still waiting for its lease)."""
    seconds, left = wait(plan.converge_timeout)
    if seconds is not None:
        return TrialTiming(seconds)
    more, _ = wait(plan.settle_timeout)
    return TrialTiming(None, None if more is None else plan.converge_timeout + more, left)


#: The components that lose their leader lease in an outage and are restarted (devcluster/supervisor.py);
#: their Leases in kube-system carry these names.
LEASE_HOLDERS = ("kube-controller-manager", "kube-scheduler")


def _lease(stack: ChaosStack, name: str) -> dict[str, Any] | None:
    try:
        status, text = stack.api.request("GET", f"/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{name}")
    except OSError:
        return None
    if status != 200:
        return None
    lease: dict[str, Any] = json.loads(text)
    return lease


def _micro_time(value: str) -> datetime:
    """A Lease's MicroTime ("2026-12-02T02:17:42.670096Z") as an aware datetime."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def lease_delays(
    leases: Mapping[str, dict[str, Any] | None], stopped: datetime, restarted: datetime
) -> dict[str, float | None]:
    """Seconds from the restart until each component held its leader lease again (negative: it took
    it while the last component was still starting); None when it kept the lease through the outage
    (acquired before the outage began). A Lease that could not be read (None) is left out.

    Why it matters: a restarted kube-controller-manager or kube-scheduler does nothing until it
    holds its lease, and the new process waits for the dead holder's lease to lapse first (15 s
    after it first reads it): these times say which component a slow trial waited for."""
    delays: dict[str, float | None] = {}
    for name, lease in leases.items():
        if lease is None:
            continue
        acquired = (lease.get("spec") or {}).get("acquireTime")
        if not acquired or _micro_time(acquired) < stopped:
            delays[name] = None
        else:
            delays[name] = (_micro_time(acquired) - restarted).total_seconds()
    return delays


def describe_leases(delays: Mapping[str, float | None]) -> str:
    parts = [f"{name} " + ("kept it" if delay is None else f"{delay:+.1f} s") for name, delay in sorted(delays.items())]
    return "leader leases after the restart: " + (", ".join(parts) or "unread")


def after_leases(timing: TrialTiming, delays: Mapping[str, float | None]) -> float | None:
    """Seconds from the moment the control plane was whole again (the restart, or later the last
    leader lease taken anew) until the trial converged; None when it never did. The operator's own
    share: no controller can bring pods up before the scheduler and the controller-manager run."""
    seconds = timing.converged if timing.converged is not None else timing.late
    if seconds is None:
        return None
    whole = max([0.0, *(d for d in delays.values() if d is not None)])
    return seconds - whole


def describe_after_leases(timing: TrialTiming, delays: Mapping[str, float | None]) -> str:
    seconds = after_leases(timing, delays)
    return "" if seconds is None else f"; converged {seconds:.1f} s after the last lease was held"


def _running_optimizer_pod(stack: ChaosStack, ns: str, md: str, timeout: float) -> str | None:
    """The name of the optimizer pod of `md`'s newest Job once the executor runs it."""

    def running() -> str | None:
        pods = stack.list("Pod", ns, f"{MODEL_DEPLOYMENT_LABEL}={md},app.kubernetes.io/component=optimizer")
        for pod in pods:
            if (pod.get("status") or {}).get("phase") == "Running" and not pod["metadata"].get("deletionTimestamp"):
                return str(pod["metadata"]["name"])
        return None

    _, name = wait_until(running, timeout, 0.3)
    return name if isinstance(name, str) else None


def _lost_result(stack: ChaosStack, ns: str, md_name: str, pod: str) -> str | None:
    """Why the optimizer's result for the spec's artifact is not served (None when it is): its pod
    must be Succeeded and the artifact its Job built must be the one served."""
    md = stack.get(MD_KIND, ns, md_name)
    if md is None:
        return "the ModelDeployment is gone"
    reported = stack.get("Pod", ns, pod)
    if reported is None or (reported.get("status") or {}).get("phase") != "Succeeded":
        phase = None if reported is None else (reported.get("status") or {}).get("phase")
        return f"the optimizer pod {pod} is {phase or 'gone'}, not Succeeded: its exit was never reported"
    # The optimization Jobs only: the retention Job (artifact-cleanup) shares the ModelDeployment label.
    jobs = stack.list("Job", ns, f"{MODEL_DEPLOYMENT_LABEL}={md_name},{COMPONENT_LABEL}={OPTIMIZER}")
    newest = max(jobs, key=lambda j: j["metadata"]["creationTimestamp"], default=None)
    if newest is None:
        return "no Job"
    served = (md.get("status") or {}).get("servedArtifact")
    built = newest["metadata"]["labels"].get(ARTIFACT_LABEL)
    if served != built:
        optimized = condition(md, ConditionType.OPTIMIZED)
        return f"served artifact {served}, the newest Job built {built} (Optimized: {optimized.get('reason')})"
    return None


# -- 4. drift ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftPlan:
    edits: int = 8
    deadline: float = 10.0  # the issue's bound for "repaired or reported"
    seed: int = 4


def _service_view(obj: dict[str, Any], names: set[str]) -> Any:
    spec = obj["spec"]
    ports = sorted(
        (p.get("name"), p["port"], str(p.get("targetPort")), p.get("protocol", "TCP"))
        for p in spec.get("ports", [])
        if p.get("name") in names
    )
    return {"ports": ports, "selector": spec.get("selector"), "type": spec.get("type")}


def _deployment_view(obj: dict[str, Any], fixed_replicas: bool) -> Any:
    template = obj["spec"]["template"]["spec"]
    containers = [
        {
            "name": c["name"],
            "image": c["image"],
            "env": c.get("env"),
            "ports": c.get("ports"),
            "resources": normalise_resources(c.get("resources") or {}),
            "args": c.get("args"),
        }
        for c in template["containers"]
    ]
    view: dict[str, Any] = {"containers": containers, "selector": obj["spec"]["selector"]}
    if fixed_replicas:
        view["replicas"] = obj["spec"].get("replicas")
    return view


def _view(kind: str, obj: dict[str, Any] | None, context: dict[str, Any]) -> Any:
    """The fields the operator manages on a child (what a repair must restore); None when absent."""
    if obj is None:
        return None
    if kind == "Service":
        return _service_view(obj, context["port_names"])
    if kind == "Deployment":
        return _deployment_view(obj, context["fixed_replicas"])
    if kind == "ConfigMap":
        return obj.get("data")
    if kind == "HorizontalPodAutoscaler":
        spec = obj["spec"]
        return {k: spec.get(k) for k in ("minReplicas", "maxReplicas", "scaleTargetRef", "metrics")}
    return obj.get("spec")


@dataclass(frozen=True)
class DriftEdit:
    """One edit by "another client": what it does, to which child, and how."""

    label: str
    kind: str
    applies: Callable[[dict[str, Any]], bool]  # to this ModelDeployment (its spec)
    run: Callable[[ChaosStack, str, str], None]  # (stack, namespace, ModelDeployment name)


def _kubectl_patch(kind: str, namespace: str, name: str, patch: Any, kind_of_patch: str = "json") -> list[str]:
    return ["patch", kind, name, "-n", namespace, f"--type={kind_of_patch}", "-p", json.dumps(patch)]


def _ssa(stack: ChaosStack, manifest: dict[str, Any], manager: str = "intruder") -> None:
    stack.kubectl(
        "apply",
        "--server-side",
        f"--field-manager={manager}",
        "--force-conflicts",
        "-f",
        "-",
        input=json.dumps(manifest),
    )


def _drift_edits() -> list[DriftEdit]:
    always: Callable[[dict[str, Any]], bool] = lambda _: True  # noqa: E731
    hpa: Callable[[dict[str, Any]], bool] = lambda spec: spec.get("autoscaling", {}).get("enabled", True)  # noqa: E731
    fixed: Callable[[dict[str, Any]], bool] = lambda spec: not hpa(spec)  # noqa: E731
    # A respelling needs a limit to respell: on a spec without one, the JSON patch's replace adds a
    # limit, a field of another manager's that the operator rightly leaves alone.
    memory_limit: Callable[[dict[str, Any]], bool] = (  # noqa: E731
        lambda spec: "memory" in spec["serving"].get("resources", {}).get("limits", {})
    )

    def delete(kind: str, name_of: Callable[[str], str]) -> Callable[[ChaosStack, str, str], None]:
        def run(stack: ChaosStack, ns: str, md: str) -> None:
            stack.delete(kind, ns, name_of(md))

        return run

    def kubectl(kind: str, patch: Any, type_: str = "json") -> Callable[[ChaosStack, str, str], None]:
        def run(stack: ChaosStack, ns: str, md: str) -> None:
            stack.kubectl(*_kubectl_patch(kind, ns, serving_name(md), patch, type_))

        return run

    def service_extra_port(stack: ChaosStack, ns: str, md: str) -> None:
        _ssa(
            stack,
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": serving_name(md), "namespace": ns},
                "spec": {"ports": [{"name": "extra", "port": 9999, "targetPort": 9999, "protocol": "TCP"}]},
            },
        )

    def deployment_extra_label(stack: ChaosStack, ns: str, md: str) -> None:
        _ssa(
            stack,
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {
                    "name": serving_name(md),
                    "namespace": ns,
                    "labels": {"team": "someone-else"},
                    "annotations": {"example.com/owner": "another-tool"},
                },
            },
        )

    def config_map_data(stack: ChaosStack, ns: str, md: str) -> None:
        stack.merge_patch("ConfigMap", ns, model_config_name(md), {"data": {"models.config": "edited by hand"}})

    container = "/spec/template/spec/containers/0"
    return [
        DriftEdit("delete the Service", "Service", always, delete("Service", serving_name)),
        DriftEdit("delete the model ConfigMap", "ConfigMap", always, delete("ConfigMap", model_config_name)),
        DriftEdit("delete the serving ConfigMap", "ConfigMap", always, delete("ConfigMap", serving_config_name)),
        DriftEdit("delete the Deployment", "Deployment", always, delete("Deployment", serving_name)),
        DriftEdit("delete the HPA", "HorizontalPodAutoscaler", hpa, delete("HorizontalPodAutoscaler", serving_name)),
        DriftEdit("delete the NetworkPolicy", "NetworkPolicy", always, delete("NetworkPolicy", serving_name)),
        DriftEdit(
            "change the Service's REST port",
            "Service",
            always,
            kubectl("service", [{"op": "replace", "path": "/spec/ports/0/port", "value": 9501}]),
        ),
        DriftEdit(
            "rename a Service port",
            "Service",
            always,
            kubectl("service", [{"op": "replace", "path": "/spec/ports/0/name", "value": "renamed"}]),
        ),
        DriftEdit("add a Service port (another field manager)", "Service", always, service_extra_port),
        DriftEdit(
            "change the Service selector",
            "Service",
            always,
            kubectl(
                "service",
                [{"op": "replace", "path": "/spec/selector/modeldeploy.io~1model-deployment", "value": "someone-else"}],
            ),
        ),
        DriftEdit(
            "respell the CPU request (0.5 for 500m)",
            "Deployment",
            always,
            kubectl("deployment", [{"op": "replace", "path": f"{container}/resources/requests/cpu", "value": "0.5"}]),
        ),
        DriftEdit(
            "respell the memory limit (1024Mi for 1Gi)",
            "Deployment",
            memory_limit,
            kubectl(
                "deployment", [{"op": "replace", "path": f"{container}/resources/limits/memory", "value": "1024Mi"}]
            ),
        ),
        DriftEdit(
            "change the CPU request",
            "Deployment",
            always,
            kubectl("deployment", [{"op": "replace", "path": f"{container}/resources/requests/cpu", "value": "750m"}]),
        ),
        DriftEdit(
            "change the image",
            "Deployment",
            always,
            kubectl("deployment", [{"op": "replace", "path": f"{container}/image", "value": "evil/image:1"}]),
        ),
        DriftEdit("labels and annotations from another field manager", "Deployment", always, deployment_extra_label),
        DriftEdit(
            "scale the Deployment by hand",
            "Deployment",
            fixed,
            kubectl("deployment", {"spec": {"replicas": 3}}, "merge"),
        ),
        DriftEdit("edit the model ConfigMap", "ConfigMap", always, config_map_data),
        DriftEdit(
            "change the HPA's maxReplicas",
            "HorizontalPodAutoscaler",
            hpa,
            kubectl("hpa", {"spec": {"maxReplicas": 9}}, "merge"),
        ),
    ]


def drift_mds(ns: str) -> list[dict[str, Any]]:
    """Two ModelDeployments whose quantities are spelled unlike the API server's canonical form."""
    auto = plain_md(ns, "auto")
    auto["spec"]["autoscaling"] = {"enabled": True, "minReplicas": 2, "maxReplicas": 4}
    auto["spec"]["serving"]["resources"] = {
        "requests": {"cpu": "0.5", "memory": "1024Mi"},
        "limits": {"cpu": "1000m", "memory": "1Gi"},
    }
    fixed = plain_md(ns, "fixed", replicas=2)
    fixed["spec"]["serving"]["resources"] = {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"cpu": "1"}}
    return [auto, fixed]


def _reported(md: dict[str, Any] | None, child: str) -> str | None:
    """A False condition with a Warning reason that names the child: the drift was reported."""
    for cond in ((md or {}).get("status") or {}).get("conditions", []):
        if cond.get("status") == "False" and is_warning(cond.get("reason", "")) and child in cond.get("message", ""):
            return f"{cond['type']}={cond['reason']}"
    return None


def drift_scenario(stack: ChaosStack, plan: DriftPlan) -> ScenarioResult:
    result = ScenarioResult("drift of children")
    rng = random.Random(plan.seed)
    ns = stack.namespace("drift")
    operator = stack.operator(ns, f"operator-{ns}")
    try:
        wait_metrics(operator)
        mds = drift_mds(ns)
        for md in mds:
            stack.create(md)
        first, left = wait_converged(stack, ns, 120)
        if first is None:
            result.fail(f"never Ready: {left}")
            return result
        if quiet_writes(operator) is None:
            result.fail(
                "apply loop before any drift (quantities spelled 0.5, 1024Mi, 1000m in the spec): the operator "
                f"kept writing through every resync; its log repeats: {busiest_lines(operator.log())}"
            )
        snapshots: dict[tuple[str, str], Any] = {}
        contexts: dict[str, dict[str, Any]] = {}
        for md in mds:
            name, spec = md["metadata"]["name"], md["spec"]
            service = stack.get("Service", ns, serving_name(name)) or {"spec": {}}
            contexts[name] = {
                "port_names": {p.get("name") for p in service["spec"].get("ports", [])},
                "fixed_replicas": not spec["autoscaling"]["enabled"],
            }
        edits = _drift_edits()
        for index in range(plan.edits):
            md = rng.choice(mds)
            name, spec = md["metadata"]["name"], md["spec"]
            edit = rng.choice([e for e in edits if e.applies(spec)])
            child_name = (
                serving_config_name
                if "serving ConfigMap" in edit.label
                else model_config_name
                if edit.kind == "ConfigMap"
                else serving_name
            )(name)
            key = (edit.kind, child_name)
            if key not in snapshots:
                snapshots[key] = _view(edit.kind, stack.get(edit.kind, ns, child_name), contexts[name])
            wanted = snapshots[key]
            what = f"edit {index} ({edit.label} of {name})"
            try:
                edit.run(stack, ns, name)
            except Exception as exc:  # an edit the API server refuses is not drift; say so
                result.notes.append(f"{what}: refused by the API server: {str(exc)[:200]}")
                continue

            def repaired(
                kind: str = edit.kind, child: str = child_name, want: Any = wanted, md_name: str = name
            ) -> Any:
                now = _view(kind, stack.get(kind, ns, child), contexts[md_name])
                if now == want:
                    return "repaired"
                return _reported(stack.get(MD_KIND, ns, md_name), child)

            seconds, _ = wait_until(repaired, plan.deadline, 0.1)
            result.trials.append(Trial(seconds is not None, seconds))
            if seconds is None:
                now = _view(edit.kind, stack.get(edit.kind, ns, child_name), contexts[name])
                result.fail(
                    f"{what}: neither repaired nor reported within {plan.deadline:.0f} s; wanted {wanted}, got {now}"
                )
        settle = quiet_writes(operator, timeout=60)
        if settle is None:
            result.fail(
                "apply loop: the operator kept writing 60 s after the last edit; its log repeats: "
                f"{busiest_lines(operator.log())}"
            )
        add_tracebacks(result, operator.log())
        add_audit(result, stack, ns)
    finally:
        operator.stop()
        stack.drop_namespace(ns)
    return result


# -- 5. ownership ------------------------------------------------------------------------------------


OWNERSHIP_KINDS = ("Service", "ConfigMap", "Deployment", "HorizontalPodAutoscaler")


@dataclass(frozen=True)
class OwnershipPlan:
    trials: int = 2  # the first trial takes every kind at once, the others a random non-empty subset
    settle: float = 6.0  # seconds (more than a resync) the operator has to (wrongly) touch them
    seed: int = 5


def user_object(kind: str, ns: str, name: str) -> dict[str, Any]:
    """What "a user" made before the ModelDeployment existed, with the child's name."""
    meta = {"name": name, "namespace": ns, "labels": {USER_LABEL: "true", "app": "users-own"}}
    if kind == "Service":
        return {
            "apiVersion": "v1",
            "kind": kind,
            "metadata": meta,
            "spec": {"selector": {"app": "users-own"}, "ports": [{"name": "web", "port": 80, "targetPort": 8080}]},
        }
    if kind == "ConfigMap":
        return {"apiVersion": "v1", "kind": kind, "metadata": meta, "data": {"owner": "a user"}}
    if kind == "Deployment":
        labels = {"app": "users-own"}
        return {
            "apiVersion": "apps/v1",
            "kind": kind,
            "metadata": meta,
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
                },
            },
        }
    return {
        "apiVersion": "autoscaling/v2",
        "kind": kind,
        "metadata": meta,
        "spec": {
            "minReplicas": 1,
            "maxReplicas": 2,
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "users-own"},
        },
    }


def ownership_scenario(stack: ChaosStack, plan: OwnershipPlan) -> ScenarioResult:
    result = ScenarioResult("ownership of existing objects")
    rng = random.Random(plan.seed)
    ns = stack.namespace("owner")
    operator = stack.operator(ns, f"operator-{ns}")
    try:
        wait_metrics(operator)
        for index in range(plan.trials):
            name = f"own{index}"
            kinds = (
                list(OWNERSHIP_KINDS)
                if index == 0
                else rng.sample(OWNERSHIP_KINDS, rng.randint(1, len(OWNERSHIP_KINDS)))
            )
            what = f"trial {index} (a user's {', '.join(kinds)} named like {name}'s children)"
            before: dict[str, dict[str, Any]] = {}
            for kind in kinds:
                child = CHILD_NAMES[kind](name)
                created = stack.create(user_object(kind, ns, child))
                before[kind] = created
            stack.create(plain_md(ns, name))

            def conflict(md_name: str = name) -> Any:
                md = stack.get(MD_KIND, ns, md_name)
                return any(
                    c.get("reason") == Reason.NAME_CONFLICT
                    for c in ((md or {}).get("status") or {}).get("conditions", [])
                )

            seconds, _ = wait_until(conflict, 30)
            if seconds is None:
                md = stack.get(MD_KIND, ns, name)
                result.fail(
                    f"{what}: no {Reason.NAME_CONFLICT} condition; Ready is {condition(md, ConditionType.READY)}"
                )
            time.sleep(plan.settle)
            ok = _untouched(stack, ns, before, result, f"{what}, while the ModelDeployment exists")
            stack.delete(MD_KIND, ns, name)
            gone, _ = wait_until(lambda md_name=name: stack.get(MD_KIND, ns, md_name) is None, 60)
            # The garbage collector removes what the ModelDeployment owned; give it a few seconds.
            wait_until(
                lambda md_name=name: (
                    not stack.list("Service", ns, f"{MODEL_DEPLOYMENT_LABEL}={md_name}")
                    and not stack.list("ConfigMap", ns, f"{MODEL_DEPLOYMENT_LABEL}={md_name}")
                ),
                15,
            )
            time.sleep(2)
            ok = _untouched(stack, ns, before, result, f"{what}, after the ModelDeployment was deleted") and ok
            result.trials.append(Trial(ok and seconds is not None and gone is not None, seconds))
            for kind in kinds:
                stack.delete(kind, ns, CHILD_NAMES[kind](name))
        add_tracebacks(result, operator.log())
        add_audit(result, stack, ns)
    finally:
        operator.stop()
        stack.drop_namespace(ns)
    return result


def _users(value: Any) -> Any:
    """Labels or annotations without those Kubernetes' own controllers add (a Deployment's revision)."""
    return {k: v for k, v in (value or {}).items() if not k.startswith("deployment.kubernetes.io/")}


def _untouched(
    stack: ChaosStack, ns: str, before: dict[str, dict[str, Any]], result: ScenarioResult, what: str
) -> bool:
    ok = True
    for kind, old in before.items():
        name = old["metadata"]["name"]
        try:
            now = stack.get(kind, ns, name)
        except ApiError as exc:
            now = None
            result.fail(f"{what}: cannot read {kind} {name}: {exc}")
        if now is None:
            result.fail(f"{what}: the user's {kind} {name} was deleted")
            ok = False
            continue
        changes = []
        if now["metadata"]["uid"] != old["metadata"]["uid"]:
            changes.append("replaced (new uid)")
        if now["metadata"].get("ownerReferences"):
            changes.append(f"ownerReferences {now['metadata']['ownerReferences']}")
        managers = sorted({m.get("manager", "") for m in now["metadata"].get("managedFields", [])} - {""})
        if FIELD_MANAGER in managers:
            changes.append(f"written by {FIELD_MANAGER}")
        # Controllers write the status of Deployments and HPAs (their resourceVersion moves): compare
        # what a user wrote, the generation (spec), labels and annotations.
        if now["metadata"].get("generation") != old["metadata"].get("generation"):
            changes.append("its spec was changed (new generation)")
        for key in ("labels", "annotations"):
            if _users(now["metadata"].get(key)) != _users(old["metadata"].get(key)):
                changes.append(f"metadata.{key} changed: {now['metadata'].get(key)}")
        if (
            kind in ("Service", "ConfigMap")
            and now["metadata"]["resourceVersion"] != old["metadata"]["resourceVersion"]
        ):
            changes.append(f"modified (field managers {managers})")
        if changes:
            result.fail(f"{what}: the user's {kind} {name} was {'; '.join(changes)}")
            ok = False
    return ok
