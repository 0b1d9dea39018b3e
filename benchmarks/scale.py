"""How the operator scales with the number of ModelDeployments (issue 10); prints Markdown tables, asserts nothing.

Why it exists: the operator's design promises that its cost follows what changes, not what exists:
reconciles read a watch-fed cache (no GET), a resync costs no request, unrelated Pods and ConfigMaps
never reach it (server-side label selectors), and writes happen only where something differs. This
script measures those promises on the local control plane (kwok Nodes, so thousands of pods are cheap):

- N ModelDeployments served as they are (no optimization Job): seconds until all are Ready, p50/p95
  per object, and the operator's API requests per ModelDeployment by verb, counted by the API server
  itself (one APF FlowSchema per verb that matches only the operator's ServiceAccount, read from
  `apiserver_flowcontrol_dispatched_requests_total`), cross-checked against the operator's own
  `modeldeploy_api_requests_total`;
- idle: requests and writes per minute over a window that includes periodic resyncs;
- the operator's CPU seconds and RSS, from /proc;
- once, unrelated noise (ConfigMaps and Pods in a namespace with no ModelDeployment): CPU, requests
  and reconciles it caused (goal: no reconcile, under 1 s CPU);
- once, on the largest N, an edit burst: seconds until the edited ModelDeployments' Deployments carry
  the change, and until they are Ready again.

    python benchmarks/scale.py [--counts 100,500,1000] [--nodes 50] [--noise 2000] [--burst 100]

Each N gets its own namespace and a fresh operator (so CPU and RSS are those of N objects), run as
ServiceAccount modeldeploy-system/operator; the namespace is deleted before the next N. The noise
phase restarts the operator with a resync of an hour, so a periodic resync cannot pass for a
reaction to the noise. Tables go to stdout, progress and notes to stderr, and the notes again to
stdout after the tables. Exits 1, with the operator's log tail, when a phase fails or times out, or
when the operator's own request count contradicts the API server's.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import math
import os
import re
import sys
import tempfile
import threading
import time
import urllib.error
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devcluster.controlplane import ControlPlane
from devcluster.kubeapi import KubeApi
from devcluster.stack import OperatorProcess, condition, make_claim, scrape
from modeldeploy.api import GROUP, KIND, PLURAL, VERSION
from modeldeploy.api.reasons import ConditionType, Reason
from modeldeploy.controller.builders.names import serving_name

REPO = Path(__file__).resolve().parents[1]
OPERATOR_NAMESPACE = "modeldeploy-system"
OPERATOR_SA = "operator"
CLAIM = "models"
NOISE_NAMESPACE = "noise"
BURST_ENV = {"name": "BURST", "value": "1"}
MD_PATH = f"/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/{PLURAL}"

# One FlowSchema per verb, so the API server counts the operator's requests by verb for us. Their
# precedence (100-110) comes before the built-in schemas that match a ServiceAccount (service-accounts
# 9000, global-default 9900); `other` catches whatever the verb schemas miss, so the sum is exact.
VERBS = ("get", "list", "watch", "create", "patch", "update", "delete")
WRITE_VERBS = ("create", "patch", "update", "delete")
SCHEMA_PREFIX = "scale-bench-"
NONRESOURCE = "nonresource"
OTHER = "other"
# A built-in level with room to spare: the measurement must not be what slows the operator down.
PRIORITY_LEVEL = "workload-high"
DISPATCHED = "apiserver_flowcontrol_dispatched_requests_total"
REJECTED = "apiserver_flowcontrol_rejected_requests_total"

CREATE_THREADS = 4  # parallel admin connections creating objects; more only queues on 2 cores
LOG_TAIL_LINES = 60
_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>[^}]*)\} (?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

STARTED = time.monotonic()


def progress(message: str) -> None:
    """Progress goes to stderr so stdout stays a clean Markdown report."""
    print(f"[{time.monotonic() - STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


class PhaseTimeout(RuntimeError):
    """A phase did not finish within its time limit; the benchmark fails."""


# -- pure: manifests -------------------------------------------------------------------------------------


def model_deployment(name: str) -> dict[str, Any]:
    """A ModelDeployment served as is: a SavedModel on the claim, no optimization Job, no HPA."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name},
        "spec": {
            "model": {"name": name, "storageUri": f"pvc://{CLAIM}/{name}", "format": "savedmodel"},
            "optimization": {"enabled": False},
            "serving": {"replicas": 1},
            "autoscaling": {"enabled": False},
        },
    }


def operator_identity(
    namespace: str = OPERATOR_NAMESPACE, name: str = OPERATOR_SA, prefix: str = SCHEMA_PREFIX
) -> list[dict[str, Any]]:
    """The operator's own ServiceAccount (or, with arguments, another controller's, as
    benchmarks/vs_kserve.py runs KServe's). cluster-admin, not the chart's Role: this measures
    requests, and a missing grant would show up as retries rather than as a clear failure."""
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": f"{prefix}operator"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    ]


def flow_schemas(
    namespace: str = OPERATOR_NAMESPACE, name: str = OPERATOR_SA, prefix: str = SCHEMA_PREFIX
) -> list[dict[str, Any]]:
    """FlowSchemas that match only the operator's ServiceAccount (or the one given): one per verb,
    one for non-resource URLs (discovery), one for anything else. Their names start with `prefix`,
    which is how server_requests() tells one identity's counts from another's."""
    subjects = [{"kind": "ServiceAccount", "serviceAccount": {"name": name, "namespace": namespace}}]

    def resource_rule(verbs: list[str]) -> dict[str, Any]:
        return {"verbs": verbs, "apiGroups": ["*"], "resources": ["*"], "clusterScope": True, "namespaces": ["*"]}

    rules: list[tuple[str, dict[str, Any]]] = [
        (verb, {"subjects": subjects, "resourceRules": [resource_rule([verb])]}) for verb in VERBS
    ]
    rules.append(
        (NONRESOURCE, {"subjects": subjects, "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}]})
    )
    rules.append(
        (
            OTHER,
            {
                "subjects": subjects,
                "resourceRules": [resource_rule(["*"])],
                "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            },
        )
    )
    return [
        {
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
            "kind": "FlowSchema",
            "metadata": {"name": f"{prefix}{bucket}"},
            "spec": {
                "matchingPrecedence": 100 + index if bucket != OTHER else 110,
                "priorityLevelConfiguration": {"name": PRIORITY_LEVEL},
                "rules": [rule],
            },
        }
        for index, (bucket, rule) in enumerate(rules)
    ]


def noise_configmap(index: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"noise-{index}", "labels": {"app": "noise"}},
        "data": {"index": str(index)},
    }


def noise_pod(index: int) -> dict[str, Any]:
    """A plain pod; the kwok Nodes carry no taint once Ready, so no toleration is needed."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"noise-{index}", "labels": {"app": "noise"}},
        "spec": {
            "containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10"}],
            "terminationGracePeriodSeconds": 0,
        },
    }


# -- pure: parsing and arithmetic --------------------------------------------------------------------------


def parse_samples(text: str, names: Iterable[str]) -> list[tuple[str, dict[str, str], float]]:
    """(metric, labels, value) of every sample of the named metrics in a Prometheus text exposition."""
    wanted = set(names)
    samples = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and match["name"] in wanted:
            samples.append((match["name"], dict(_LABEL.findall(match["labels"])), float(match["value"])))
    return samples


@dataclass(frozen=True)
class Requests:
    """Requests by bucket: a verb (get, list, ...), `nonresource` or `other`."""

    counts: Mapping[str, float] = field(default_factory=dict)

    def __sub__(self, earlier: Requests) -> Requests:
        keys = set(self.counts) | set(earlier.counts)
        return Requests({k: self.counts.get(k, 0.0) - earlier.counts.get(k, 0.0) for k in keys})

    def __getitem__(self, bucket: str) -> float:
        return self.counts.get(bucket, 0.0)

    @property
    def total(self) -> float:
        return sum(self.counts.values())

    @property
    def writes(self) -> float:
        return sum(self[verb] for verb in WRITE_VERBS)

    def per(self, divisor: int) -> str:
        """'total (GET/LIST/WATCH/writes)' per object."""
        d = max(divisor, 1)
        return (
            f"{self.total / d:.2f} ({self['get'] / d:.2f}/{self['list'] / d:.2f}/"
            f"{self['watch'] / d:.2f}/{self.writes / d:.2f})"
        )

    def describe(self) -> str:
        return ", ".join(f"{k} {v:.0f}" for k, v in sorted(self.counts.items()) if v) or "none"


def server_requests(metrics_text: str, prefix: str = SCHEMA_PREFIX) -> tuple[Requests, float]:
    """The operator's requests by bucket as the API server dispatched them, and how many it rejected
    (with `prefix`: those of the identity whose flow_schemas() carry that prefix)."""
    dispatched: dict[str, float] = {}
    rejected = 0.0
    for name, labels, value in parse_samples(metrics_text, (DISPATCHED, REJECTED)):
        schema = labels.get("flow_schema", "")
        if not schema.startswith(prefix):
            continue
        if name == DISPATCHED:
            bucket = schema.removeprefix(prefix)
            dispatched[bucket] = dispatched.get(bucket, 0.0) + value
        else:
            rejected += value
    return Requests(dispatched), rejected


@dataclass(frozen=True)
class OperatorCounters:
    """The operator's own /metrics counters that matter here."""

    requests: Mapping[str, float]  # by HTTP method (GET covers both get and list)
    reconciles: float
    queue_depth: float

    def __sub__(self, earlier: OperatorCounters) -> OperatorCounters:
        methods = set(self.requests) | set(earlier.requests)
        return OperatorCounters(
            {m: self.requests.get(m, 0.0) - earlier.requests.get(m, 0.0) for m in methods},
            self.reconciles - earlier.reconciles,
            self.queue_depth,
        )

    @property
    def total(self) -> float:
        return sum(self.requests.values())

    @property
    def writes(self) -> float:
        return sum(v for method, v in self.requests.items() if method != "GET")


def operator_counters(metrics_text: str) -> OperatorCounters:
    requests: dict[str, float] = {}
    reconciles = depth = 0.0
    names = ("modeldeploy_api_requests_total", "modeldeploy_reconciles_total", "modeldeploy_workqueue_depth")
    for name, labels, value in parse_samples(metrics_text, names):
        if name == names[0]:
            requests[labels.get("method", "?")] = value
        elif name == names[1]:
            reconciles += value
    for line in metrics_text.splitlines():  # an unlabelled gauge: no braces
        if line.startswith(names[2] + " "):
            depth = float(line.split()[1])
    return OperatorCounters(requests, reconciles, depth)


def consistency(server: Requests, client: OperatorCounters) -> tuple[bool, str]:
    """Our client's count against the server's. Writes must match exactly (kopf writes nothing here:
    only `on.event` handlers, Events posting off); the server sees at least our GETs, plus kopf's
    own LISTs and WATCHes and discovery."""
    ours_read = client.requests.get("GET", 0.0)
    server_read = server["get"] + server["list"]
    ok = client.writes == server.writes and server_read >= ours_read and server[OTHER] == 0
    verdict = "consistent" if ok else "INCONSISTENT"
    return ok, (
        f"operator's own count {client.total:.0f} ({_methods(client.requests)}); server saw {server.total:.0f} "
        f"({server.describe()}): writes {client.writes:.0f} vs {server.writes:.0f}, reads {ours_read:.0f} vs "
        f"{server_read:.0f} get+list, kopf's own {server.total - client.total:.0f}: {verdict}"
    )


def _methods(counts: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {v:.0f}" for k, v in sorted(counts.items()) if v) or "none"


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: every figure is an observed one)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def is_ready(md: Mapping[str, Any], generation: int | None = None) -> bool:
    """Ready with reason Ready; with `generation`, also for that spec generation or a later one."""
    ready = condition(dict(md), ConditionType.READY)
    if ready.get("reason") != Reason.READY:
        return False
    return generation is None or (ready.get("observedGeneration") or 0) >= generation


def has_burst_env(deployment: Mapping[str, Any]) -> bool:
    containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    return any(BURST_ENV in (c.get("env") or []) for c in containers)


def pod_ready(pod: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in pod.get("status", {}).get("conditions", [])
    )


# -- the operator process, seen from outside ---------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads) from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may contain spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15 of proc(5)


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB: resident now, and the peak."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", math.nan), values.get("VmHWM", math.nan)


@dataclass(frozen=True)
class Sample:
    at: float
    server: Requests
    rejected: float
    operator: OperatorCounters
    cpu: float
    rss: float
    hwm: float


class Operator:
    """One `modeldeploy run` as the operator's ServiceAccount, watching every namespace."""

    def __init__(self, cp: ControlPlane, log_dir: Path, label: str, resync_seconds: float, workers: int) -> None:
        kubeconfig = cp.serviceaccount_kubeconfig(OPERATOR_NAMESPACE, OPERATOR_SA, expiration_seconds=4 * 3600)
        # OperatorProcess passes its own --resync-seconds first; argparse keeps the last value given.
        self.process = OperatorProcess(
            kubeconfig,
            log_dir / f"operator-{label}.log",
            # JSON logs: their timestamps (microseconds) time each edit's Deployment update.
            extra=["--resync-seconds", str(resync_seconds), "--workers", str(workers), "--log-format", "json"],
        )
        self.pid = self.process.popen.pid
        self.label = label

    def check_alive(self) -> None:
        code = self.process.popen.poll()
        if code is not None:
            raise RuntimeError(f"the operator ({self.label}) exited with code {code}")

    def counters(self) -> OperatorCounters:
        return operator_counters(scrape(self.process.metrics_port))

    def stop(self) -> None:
        self.process.stop()

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            return "\n".join(self.process.log().splitlines()[-lines:])
        except OSError as exc:
            return f"(no log: {exc})"

    def log_summary(self) -> str:
        text = self.process.log()
        lines = text.splitlines()
        errors = sum(1 for line in lines if any(w in line for w in ("ERROR", "Traceback", '"severity": "error"')))
        warnings = sum(1 for line in lines if "WARNING" in line or '"severity": "warn"' in line)
        return f"{len(text.splitlines())} log lines, {errors} errors, {warnings} warnings"


def operator_updates(log_text: str, namespace: str) -> dict[str, float]:
    """ModelDeployment -> wall time (epoch s) of the operator's last 'updated Deployment' log line in
    `namespace` (the benchmark runs the operator with JSON logs: their timestamps have microseconds)."""
    out: dict[str, float] = {}
    for line in log_text.splitlines():
        if not line.startswith("{") or "updated Deployment" not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        where, _, what = str(record.get("message", "")).partition(": ")
        ns, _, md = where.partition("/")
        if ns == namespace and what.startswith("updated Deployment ") and "timestamp" in record:
            out[md] = dt.datetime.fromisoformat(record["timestamp"]).timestamp()
    return out


def histogram(text: str, name: str, labels: str = "") -> tuple[float, float]:
    """(sum, count) of a Prometheus histogram's series; `labels` as exposed, e.g. 'lane="normal"'."""
    series = f"{{{labels}}}" if labels else ""
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith(f"{name}_sum{series} "):
            total = float(line.split()[1])
        elif line.startswith(f"{name}_count{series} "):
            count = float(line.split()[1])
    return total, count


def operator_burst_metrics(before: str, after: str, edits: int) -> str:
    """What the operator's own metrics say about a burst: reconciles and writes per edit, the mean
    wall time of a reconcile and the mean wait in its work queue."""
    reconciles = operator_counters(after).reconciles - operator_counters(before).reconciles
    writes = {labels["write"]: value for _, labels, value in parse_samples(after, ["modeldeploy_writes_total"])}
    for _, labels, value in parse_samples(before, ["modeldeploy_writes_total"]):
        writes[labels["write"]] = writes.get(labels["write"], 0.0) - value
    parts = [
        f"{reconciles / edits:.1f} reconciles per edit",
        "writes per edit " + ", ".join(f"{k} {v / edits:.2f}" for k, v in sorted(writes.items()) if v),
    ]
    for name, series, what in (
        ("modeldeploy_reconcile_duration_seconds", "", "reconcile wall time"),
        ("modeldeploy_workqueue_wait_seconds", 'lane="urgent"', "work queue wait of spec changes"),
        ("modeldeploy_workqueue_wait_seconds", 'lane="normal"', "of other events"),
    ):
        (s1, c1), (s0, c0) = histogram(after, name, series), histogram(before, name, series)
        if c1 > c0:
            parts.append(f"{what} mean {1000 * (s1 - s0) / (c1 - c0):.0f} ms over {c1 - c0:.0f}")
    return "; ".join(parts)


@dataclass(frozen=True)
class BurstTimings:
    """Per edited ModelDeployment, seconds after the first PATCH was sent."""

    sent: Mapping[str, float]
    answered: Mapping[str, float]  # its PATCH's answer came
    applied: Mapping[str, float]  # the operator logged its Deployment's update (its clock, ms)
    seen: Mapping[str, float]  # the Deployment's watch event with the edit reached the benchmark
    ready: Mapping[str, float]  # its watch event Ready for the new generation

    def table(self, names: Mapping[str, str]) -> list[str]:
        """Rows of p50 / p95 / max per step: the step's own share (from the step before) and the time since t0."""
        steps = [
            ("PATCH sent", self.sent),
            ("PATCH answered", self.answered),
            ("operator updated the Deployment", self.applied),
            ("Deployment event seen", self.seen),
            ("Ready again", self.ready),
        ]
        rows = []
        for index, (title, marks) in enumerate(steps):
            keys = [n for n in names.values() if n in marks]
            at = [marks[n] for n in keys]
            share = []  # from the latest earlier step this edit has a mark for
            for n in keys:
                earlier = [m[n] for _, m in steps[:index] if n in m]
                if earlier:
                    share.append(marks[n] - earlier[-1])
            share_text = (
                f"{percentile(share, 50):.2f} / {percentile(share, 95):.2f} / {max(share):.2f}" if share else "-"
            )
            at_text = f"{percentile(at, 50):.2f} / {percentile(at, 95):.2f} / {max(at):.2f}" if at else "-"
            rows.append(f"| {title} | {len(keys)} | {at_text} | {share_text} |")
        return rows


BURST_DETAIL_HEADER = (
    "| step | edits | at: p50 / p95 / max s | step's own share: p50 / p95 / max s |\n| --- | ---: | --- | --- |"
)


def list_version(api: KubeApi, path: str) -> str:
    """The collection's resourceVersion now (a LIST of one item): a watch from it misses nothing after."""
    version: str = api.get(f"{path}?limit=1")["metadata"]["resourceVersion"]
    return version


class Watcher:
    """A watch of a collection in a thread of its own, each event handed to `on_event`."""

    def __init__(
        self, cp: ControlPlane, path: str, version: str, timeout: float, on_event: Callable[[dict[str, Any]], None]
    ) -> None:
        self.path = path
        self.failed: str | None = None
        self._api = cp.admin_api()
        self._stream = self._api.watch(path, version, int(timeout))
        self._on_event = on_event
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=f"watch {path}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for event in self._stream:
            if event.get("type") == "ERROR":
                self.failed = json.dumps(event.get("object"))
                return
            self._on_event(event)
        if not self._stopped:
            self.failed = "the stream ended"

    def stop(self) -> None:
        self._stopped = True
        self._stream.close()
        self._thread.join(timeout=5)
        self._api.close()


# -- the benchmark --------------------------------------------------------------------------------------------


def wait_until(what: str, check: Callable[[], bool], timeout: float, interval: float = 1.0) -> float:
    """Poll `check`; returns the seconds it took, raises PhaseTimeout after `timeout`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise PhaseTimeout(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - started


def install_counted_identity(
    cp: ControlPlane, namespace: str = OPERATOR_NAMESPACE, name: str = OPERATOR_SA, prefix: str = SCHEMA_PREFIX
) -> None:
    """Create the ServiceAccount (cluster-admin) and the FlowSchemas that count its requests, and wait
    until the API server uses every schema."""
    schemas = flow_schemas(namespace, name, prefix)
    items = [*operator_identity(namespace, name, prefix), *schemas]
    cp.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    cp.wait_for_serviceaccount(namespace, name)
    # The APF configuration controller marks each schema Dangling=False once it uses it.
    for schema in schemas:
        schema_name = schema["metadata"]["name"]
        cp.kubectl("wait", "--for=condition=Dangling=False", f"flowschema/{schema_name}", "--timeout=60s", timeout=90)


@dataclass(frozen=True)
class Call:
    """One write the benchmark sends as the admin: POST a manifest or merge-PATCH an object."""

    key: str
    method: str
    path: str
    body: dict[str, Any]


def make_namespace(cp: ControlPlane, workdir: Path, namespace: str, *, with_claim: bool) -> None:
    """A fresh namespace, and (with_claim) the `models` claim bound to an empty hostPath volume."""
    cp.kubectl("create", "namespace", namespace)
    cp.wait_for_serviceaccount(namespace)
    if with_claim:
        # A real PV/PVC pair: the operator only needs the claim to exist, but the scheduler refuses
        # pods whose claim is unbound. kwok pods never mount it, so the folder stays empty.
        make_claim(cp, workdir / "storage", namespace, CLAIM)
        cp.kubectl("wait", "-n", namespace, "--for=jsonpath={.status.phase}=Bound", f"pvc/{CLAIM}", "--timeout=120s")


def delete_namespace(cp: ControlPlane, api: KubeApi, namespace: str, *, timeout: float) -> None:
    """Delete the namespace and its claim's volume, and wait until it is gone (the next run starts clean)."""
    started = time.monotonic()
    cp.kubectl("delete", "namespace", namespace, "--wait=false")
    cp.kubectl("delete", "persistentvolume", f"{namespace}-{CLAIM}", "--wait=false", check=False)
    wait_until(
        f"namespace {namespace} to be deleted",
        lambda: api.request("GET", f"/api/v1/namespaces/{namespace}")[0] == 404,
        timeout=timeout,
        interval=1,
    )
    progress(f"namespace {namespace} deleted in {time.monotonic() - started:.0f} s")


def send_all(
    cp: ControlPlane, calls: Sequence[Call], sent: dict[str, float] | None = None
) -> dict[str, tuple[float, Any]]:
    """Send every call over a few admin connections at once (one by one, they would take seconds that
    the timings would then include); returns key -> (when its answer came, the answer), and notes in
    `sent` when each call was sent."""
    shards = [list(calls[i::CREATE_THREADS]) for i in range(CREATE_THREADS)]

    def send(shard: list[Call]) -> dict[str, tuple[float, Any]]:
        answers: dict[str, tuple[float, Any]] = {}
        with cp.admin_api() as api:
            for call in shard:
                if sent is not None:
                    sent[call.key] = time.monotonic()
                answer = api.post(call.path, call.body) if call.method == "POST" else api.patch(call.path, call.body)
                answers[call.key] = (time.monotonic(), answer)
        return answers

    result: dict[str, tuple[float, Any]] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=CREATE_THREADS) as pool:
        for future in [pool.submit(send, shard) for shard in shards if shard]:
            result.update(future.result())
    return result


def create_all(cp: ControlPlane, path: str, manifests: Sequence[dict[str, Any]]) -> dict[str, float]:
    """POST every manifest; returns name -> when its POST returned."""
    calls = [Call(m["metadata"]["name"], "POST", path, m) for m in manifests]
    return {key: at for key, (at, _) in send_all(cp, calls).items()}


@dataclass
class Report:
    rows: list[str] = field(default_factory=list)
    noise: list[str] = field(default_factory=list)
    burst: list[str] = field(default_factory=list)
    burst_detail: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    inconsistent: bool = False

    def note(self, text: str) -> None:
        progress(f"note: {text}")
        self.notes.append(text)


SCALE_HEADER = (
    "| N | all Ready s | p50 s | p95 s | requests/MD (GET/LIST/WATCH/writes) | idle req/min | idle writes/min "
    "| CPU s (to Ready / idle) | RSS MB at Ready / after idle (peak) |\n"
    "| ---: | ---: | ---: | ---: | --- | ---: | ---: | --- | --- |"
)
NOISE_HEADER = (
    "| unrelated objects | settle s | operator CPU s | operator requests (server) | reconciles |\n"
    "| --- | ---: | ---: | ---: | ---: |"
)
BURST_HEADER = (
    "| N | edited | patch s | all Deployments updated s | all Ready again s | requests/edit (GET/LIST/WATCH/writes) "
    "| CPU s |\n| ---: | ---: | ---: | ---: | ---: | --- | ---: |"
)


class Bench:
    def __init__(self, cp: ControlPlane, workdir: Path, args: argparse.Namespace, report: Report) -> None:
        self.cp = cp
        self.workdir = workdir
        self.args = args
        self.report = report
        self.operator: Operator | None = None
        self.last_operator: Operator | None = None  # for the log tail after a failure
        self.api = cp.admin_api()  # polling and metrics; creation threads open their own
        self.printed_header = False

    def close(self) -> None:
        self.stop_operator()
        self.api.close()

    # -- measuring --------------------------------------------------------------------------------------

    def sample(self) -> Sample:
        operator = self._require_operator()
        operator.check_alive()
        server, rejected = self.server_counts()
        counters = operator.counters()
        rss, hwm = memory_mb(operator.pid)
        return Sample(time.monotonic(), server, rejected, counters, cpu_seconds(operator.pid), rss, hwm)

    def server_counts(self) -> tuple[Requests, float]:
        status, text = self.api.request("GET", "/metrics")
        if status != 200:
            raise RuntimeError(f"GET /metrics of the API server answered {status}")
        return server_requests(text)

    def _require_operator(self) -> Operator:
        if self.operator is None:
            raise RuntimeError("no operator running")
        return self.operator

    def start_operator(self, label: str, resync_seconds: float, existing: int = 0) -> Sample:
        """Start a fresh operator and wait until its start-up (LISTs, watches, first reconciles) is over:
        the server sees no new request from it for a few seconds and its queue is empty. `existing`:
        how many Ready ModelDeployments it finds, which a restart should leave alone."""
        self.stop_operator()
        before, _ = self.server_counts()
        log_dir: Path = self.args.log_dir or self.workdir
        log_dir.mkdir(parents=True, exist_ok=True)
        operator = Operator(self.cp, log_dir, label, resync_seconds, self.args.workers)
        self.operator = self.last_operator = operator
        progress(f"operator {label} started (pid {operator.pid}, resync {resync_seconds:.0f} s)")

        def metrics_up() -> bool:
            operator.check_alive()
            try:
                operator.counters()
            except (urllib.error.URLError, OSError):
                return False
            return "cache filled" in operator.process.log()

        wait_until(f"operator {label} to start", metrics_up, timeout=120, interval=0.5)
        started = self.settle(f"operator {label} start-up", timeout=300)
        # Not part of any row: a one-off cost that depends on the kinds watched, not on N.
        requests = started.server - before
        text = f"operator {label} start-up: requests {requests.describe()}"
        if existing:
            text += (
                f"; over {existing} existing Ready ModelDeployments it wrote {requests.writes:.0f} times "
                f"({requests.writes / existing:.1f} per ModelDeployment; a restart should write nothing)"
            )
        self.report.note(text)
        return started

    def settle(self, what: str, timeout: float, quiet_seconds: float = 3.0) -> Sample:
        """Wait until the operator's request count and reconciles stay still for `quiet_seconds`."""
        last = self.sample()
        quiet_since = time.monotonic()
        started = time.monotonic()
        while True:
            time.sleep(0.5)
            now = self.sample()
            moved = now.server.total != last.server.total or now.operator.reconciles != last.operator.reconciles
            if moved or now.operator.queue_depth > 0:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= quiet_seconds:
                return now
            if time.monotonic() - started > timeout:
                raise PhaseTimeout(f"timed out after {timeout:.0f} s waiting for {what} to settle")
            last = now

    def stop_operator(self) -> None:
        if self.operator is not None:
            self.operator.stop()
            progress(f"operator {self.operator.label} stopped: {self.operator.log_summary()}")
            self.operator = None

    def operator_tail(self) -> str:
        operator = self.last_operator
        return operator.tail() if operator is not None else "(no operator was started)"

    # -- set-up ---------------------------------------------------------------------------------------------

    def prepare_cluster(self) -> None:
        cp = self.cp
        cp.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        cp.wait_established(f"{PLURAL}.{GROUP}", timeout=60)
        install_counted_identity(cp)

    def make_namespace(self, namespace: str, *, with_claim: bool) -> None:
        make_namespace(self.cp, self.workdir, namespace, with_claim=with_claim)

    def delete_namespace(self, namespace: str) -> None:
        delete_namespace(self.cp, self.api, namespace, timeout=self.args.phase_timeout)

    # -- phases ---------------------------------------------------------------------------------------------

    def list_items(self, path: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.api.get(path)["items"]
        return items

    def scale(self, count: int, *, burst: bool, noise: bool) -> None:
        args = self.args
        namespace = f"scale-{count}"
        self.make_namespace(namespace, with_claim=True)
        start = self.start_operator(f"n{count}", args.resync_seconds)
        manifests = [model_deployment(f"m{i}") for i in range(count)]
        md_path = MD_PATH.format(ns=namespace)
        t0 = time.monotonic()
        created = create_all(self.cp, md_path, manifests)
        progress(f"N={count}: created {count} ModelDeployments in {time.monotonic() - t0:.1f} s")

        ready_at: dict[str, float] = {}
        deadline = t0 + args.ready_timeout
        while len(ready_at) < count:
            time.sleep(1)
            now = time.monotonic()
            self._require_operator().check_alive()
            for md in self.list_items(md_path):
                name = md["metadata"]["name"]
                if name not in ready_at and is_ready(md):
                    ready_at[name] = now
            if now > deadline:
                raise PhaseTimeout(f"N={count}: only {len(ready_at)} of {count} Ready after {args.ready_timeout:.0f} s")
        ready = self.sample()
        all_ready = max(ready_at.values()) - t0
        latencies = [ready_at[name] - created[name] for name in created]
        progress(f"N={count}: all Ready after {all_ready:.1f} s")

        to_ready = ready.server - start.server
        ok, text = consistency(to_ready, ready.operator - start.operator)
        self.report.inconsistent |= not ok
        self.report.note(f"N={count}, create to all Ready: {text}")
        if ready.rejected - start.rejected:
            self.report.note(f"N={count}: APF rejected {ready.rejected - start.rejected:.0f} operator requests")

        time.sleep(10)
        idle_start = self.sample()
        time.sleep(args.idle_seconds)
        idle_end = self.sample()
        minutes = (idle_end.at - idle_start.at) / 60
        idle = idle_end.server - idle_start.server
        idle_reconciles = (idle_end.operator - idle_start.operator).reconciles
        self.report.note(
            f"N={count}, idle {idle_end.at - idle_start.at:.0f} s: {idle_reconciles:.0f} reconciles "
            f"({idle_reconciles / count:.1f} resyncs of every object), requests: {idle.describe()}"
            + (
                " (WATCH: kopf re-opens a watch stream that was quiet for its inactivity_timeout, 70 s;"
                " at most one per watched kind, whatever N)"
                if idle["watch"]
                else ""
            )
        )
        row = (
            f"| {count} | {all_ready:.1f} | {percentile(latencies, 50):.1f} | {percentile(latencies, 95):.1f} "
            f"| {to_ready.per(count)} | {idle.total / minutes:.1f} | {idle.writes / minutes:.1f} "
            f"| {ready.cpu - start.cpu:.1f} / {idle_end.cpu - idle_start.cpu:.2f} "
            f"| {ready.rss:.0f} / {idle_end.rss:.0f} ({idle_end.hwm:.0f}) |"
        )
        if not self.printed_header:
            print(SCALE_HEADER, flush=True)
            self.printed_header = True
        print(row, flush=True)
        self.report.rows.append(row)

        if burst:
            self.edit_burst(namespace, count)
        if noise:
            self.noise(existing=count)
        else:
            self.stop_operator()
            self.delete_namespace(namespace)

    def edit_burst(self, namespace: str, count: int) -> None:
        """Edit `--burst` ModelDeployments at once (an env var of the serving container) and time how long
        until every one's Deployment carries it, and until each is Ready again for its new generation.

        Both are followed with watches opened before the first PATCH (a LIST of 1,000 Deployments every
        quarter second would load the API server that the operator is waiting on). Per edit it notes when
        its PATCH was sent and answered, when the operator logged its Deployment update, and when the
        Deployment's watch event came; and from the operator's metrics, its reconciles, their wall time and
        the time keys waited in its work queue."""
        edits = min(self.args.burst, count)
        if edits <= 0:
            return
        md_path = MD_PATH.format(ns=namespace)
        deployments_path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
        before = self.settle("the operator before the burst", timeout=120)
        operator = self._require_operator()
        metrics_before = scrape(operator.process.metrics_port)
        names = [f"m{i}" for i in range(edits)]
        wanted = {serving_name(name): name for name in names}
        updated_at: dict[str, float] = {}  # ModelDeployment -> its Deployment's first event with the edit
        ready_events: dict[str, list[tuple[float, int]]] = {}  # ModelDeployment -> (when, generation) Ready

        def on_deployment(event: dict[str, Any]) -> None:
            obj = event.get("object", {})
            md = wanted.get(obj.get("metadata", {}).get("name", ""))
            if md is not None and md not in updated_at and has_burst_env(obj):
                updated_at[md] = time.monotonic()

        def on_model_deployment(event: dict[str, Any]) -> None:
            obj = event.get("object", {})
            generation = obj.get("metadata", {}).get("generation")
            if isinstance(generation, int) and is_ready(obj, generation):
                ready_events.setdefault(obj["metadata"]["name"], []).append((time.monotonic(), generation))

        timeout = self.args.phase_timeout
        watches = [
            Watcher(self.cp, deployments_path, self.list_version(deployments_path), timeout, on_deployment),
            Watcher(self.cp, md_path, self.list_version(md_path), timeout, on_model_deployment),
        ]
        patch = {"spec": {"serving": {"env": [BURST_ENV]}}}
        sent: dict[str, float] = {}
        t0 = time.monotonic()
        wall0 = time.time()
        try:
            answers = send_all(self.cp, [Call(name, "PATCH", f"{md_path}/{name}", patch) for name in names], sent)
            generations = {name: int(answer["metadata"]["generation"]) for name, (_, answer) in answers.items()}
            patched = time.monotonic() - t0

            def ready_again() -> bool:
                return all(any(g >= generations[n] for _, g in ready_events.get(n, ())) for n in names)

            wait_until(
                "the edited Deployments", lambda: self._watching(watches) and len(updated_at) == edits, timeout, 0.05
            )
            updated = time.monotonic() - t0
            wait_until(
                "the edited ModelDeployments Ready again",
                lambda: self._watching(watches) and ready_again(),
                timeout,
                0.1,
            )
            ready = time.monotonic() - t0
        finally:
            for watch in watches:
                watch.stop()
        # Until the operator has nothing left to do for the burst (its later passes: RollingOut, then
        # Ready and its Event): its writes belong to the burst, and an operator stopped before would
        # leave them to the next one, which must then write where a restart should write nothing.
        after = self.settle("the operator after the burst", timeout=self.args.phase_timeout)
        self.report.note(f"burst on N={count}: the operator settled {after.at - t0:.1f} s after the first PATCH")
        requests = after.server - before.server
        row = (
            f"| {count} | {edits} | {patched:.1f} | {updated:.1f} | {ready:.1f} | {requests.per(edits)} "
            f"| {after.cpu - before.cpu:.1f} |"
        )
        self.report.burst.append(row)
        self.report.note(f"burst on N={count}: operator requests {requests.describe()}")
        timings = BurstTimings(
            sent={n: sent[n] - t0 for n in names},
            answered={n: answers[n][0] - t0 for n in names},
            applied={
                n: at - wall0 for n, at in operator_updates(operator.process.log(), namespace).items() if n in names
            },
            seen={n: at - t0 for n, at in updated_at.items()},
            ready={n: min(t for t, g in ready_events[n] if g >= generations[n]) - t0 for n in names},
        )
        self.report.burst_detail.extend(timings.table(wanted))
        own = operator_burst_metrics(metrics_before, scrape(operator.process.metrics_port), edits)
        self.report.note(f"burst on N={count}, operator: {own}")
        progress(f"burst: {row}")

    def list_version(self, path: str) -> str:
        return list_version(self.api, path)

    def _watching(self, watches: Sequence[Watcher]) -> bool:
        self._require_operator().check_alive()
        for watch in watches:
            if watch.failed is not None:
                raise RuntimeError(f"the benchmark's watch of {watch.path} failed: {watch.failed}")
        return True

    def noise(self, existing: int) -> None:
        """Unrelated ConfigMaps and Pods in a namespace without a ModelDeployment. A fresh operator with
        a long resync: a periodic resync must not be mistaken for a reaction to the noise."""
        count: int = self.args.noise
        if count <= 0:
            return
        before = self.start_operator("noise", resync_seconds=3600, existing=existing)
        self.make_namespace(NOISE_NAMESPACE, with_claim=False)
        t0 = time.monotonic()
        create_all(
            self.cp, f"/api/v1/namespaces/{NOISE_NAMESPACE}/configmaps", [noise_configmap(i) for i in range(count)]
        )
        create_all(self.cp, f"/api/v1/namespaces/{NOISE_NAMESPACE}/pods", [noise_pod(i) for i in range(count)])
        progress(f"noise: created {count} ConfigMaps and {count} Pods in {time.monotonic() - t0:.1f} s")
        pods_path = f"/api/v1/namespaces/{NOISE_NAMESPACE}/pods"

        def pods_ready() -> bool:
            self._require_operator().check_alive()
            return sum(1 for pod in self.list_items(pods_path) if pod_ready(pod)) >= count

        wait_until(f"{count} noise pods Ready", pods_ready, self.args.phase_timeout, interval=1)
        settled = time.monotonic() - t0
        time.sleep(5)  # the last status updates and Events of the pods
        after = self.sample()
        requests = after.server - before.server
        reconciles = (after.operator - before.operator).reconciles
        row = (
            f"| {count} ConfigMaps + {count} Pods | {settled:.1f} | {after.cpu - before.cpu:.2f} "
            f"| {requests.total:.0f} | {reconciles:.0f} |"
        )
        self.report.noise.append(row)
        self.report.note(
            f"noise: operator requests {requests.describe()}; goal: no reconcile, under 1 s CPU "
            f"({'met' if reconciles == 0 and after.cpu - before.cpu < 1 else 'NOT met'})"
        )
        progress(f"noise: {row}")


def parse_counts(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or min(counts) <= 0:
        raise argparse.ArgumentTypeError("--counts needs positive integers, e.g. 100,500,1000")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--counts", type=parse_counts, default=[100, 500, 1000], help="ModelDeployments per run")
    parser.add_argument("--nodes", type=int, default=50, help="kwok Nodes")
    parser.add_argument("--noise", type=int, default=2000, help="unrelated ConfigMaps and Pods, each (0 = skip)")
    parser.add_argument("--burst", type=int, default=100, help="ModelDeployments edited at once (0 = skip)")
    parser.add_argument("--resync-seconds", type=float, default=20.0, help="the operator's resync during runs")
    parser.add_argument("--workers", type=int, default=8, help="the operator's reconcile workers")
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="idle measurement window")
    parser.add_argument("--ready-timeout", type=float, default=900.0, help="seconds for all N to be Ready")
    parser.add_argument("--phase-timeout", type=float, default=600.0, help="seconds for other phases")
    parser.add_argument("--log-dir", type=Path, default=None, help="keep the operators' logs here (default: dropped)")
    args = parser.parse_args(argv)
    counts: list[int] = args.counts

    report = Report()
    failed = False
    with tempfile.TemporaryDirectory(prefix="modeldeploy-scale-") as tmp:
        progress(f"starting a control plane with {args.nodes} kwok Nodes")
        with ControlPlane(nodes=args.nodes) as cp:
            bench = Bench(cp, Path(tmp), args, report)
            try:
                bench.prepare_cluster()
                largest = max(counts)
                for index, count in enumerate(counts):
                    last = index == len(counts) - 1
                    bench.scale(count, burst=count == largest and largest not in counts[:index], noise=last)
            except Exception as exc:
                failed = True
                print(f"\nFAILED: {type(exc).__name__}: {exc}", flush=True)
                print(f"--- operator log tail:\n{bench.operator_tail()}\n---", flush=True)
            finally:
                bench.close()
    for title, header, rows in (
        ("Noise", NOISE_HEADER, report.noise),
        ("Edit burst", BURST_HEADER, report.burst),
        ("Edit burst, per edit (seconds after the first PATCH was sent)", BURST_DETAIL_HEADER, report.burst_detail),
    ):
        if rows:
            print(f"\n{title}\n\n{header}", flush=True)
            print("\n".join(rows), flush=True)
    if report.notes:
        print("\nNotes\n\n" + "\n".join(f"- {note}" for note in report.notes), flush=True)
    if report.inconsistent:
        print("\nFAILED: the operator's own request count disagrees with the API server's (see notes)", flush=True)
    return 1 if failed or report.inconsistent else 0


if __name__ == "__main__":
    sys.exit(main())
