"""Invalid ModelDeployments by the hundred against the real API server and a running operator.

Why it exists: every invalid spec must end one of two ways: refused at apply with the field named,
or accepted and then reported (Ready=False with a Warning reason, or Ready=True with a Warning reason
and phase Degraded when the model answers but a child it can do without was refused, and one Warning
Event), without a traceback in the operator's log and without a write on every resync. The cases come from two
places: hypothesis strategies over the generated CRD schema (every bounded number, enum, pattern,
length and required field, pushed out of bounds one at a time) and over what the schema cannot say
(quantities, requests above limits, env names, image references, dotted names, label keys, duplicate
ports, pod-spec passthroughs), plus every case issue 13 lists, always included.
"""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from chaos_harness import (
    MD_KIND,
    RESYNC_SECONDS,
    ChaosStack,
    ScenarioResult,
    Trial,
    add_tracebacks,
    condition,
    md_path,
    plain_md,
    wait_metrics,
    writes,
)
from devcluster.kubeapi import ApiError
from modeldeploy.api.quantity import QUANTITY_PATTERN
from modeldeploy.api.reasons import ConditionType, is_warning

DELETE = object()  # a Case value: remove the field


@dataclass(frozen=True)
class Case:
    """One invalid ModelDeployment: `sets` applied to a valid one; a refusal must name `field`."""

    label: str
    field: str  # dotted path a rejection must name (its last segment is accepted too)
    sets: tuple[tuple[tuple[str, ...], Any], ...]
    dotted_name: bool = False

    def manifest(self, namespace: str, name: str) -> dict[str, Any]:
        md = plain_md(namespace, name)
        for path, value in self.sets:
            target = md
            for key in path[:-1]:
                target = target.setdefault(key, {})
            if value is DELETE:
                target.pop(path[-1], None)
            else:
                target[path[-1]] = copy.deepcopy(value)
        return md

    def key(self) -> str:
        return json.dumps(
            [self.label, [[list(p), "<delete>" if v is DELETE else v] for p, v in self.sets]],
            sort_keys=True,
            default=str,
        )


def _case(label: str, field_: str, *sets: tuple[str, Any], dotted_name: bool = False) -> Case:
    return Case(label, field_, tuple((tuple(path.split(".")), value) for path, value in sets), dotted_name)


# -- the issue's cases, always run -----------------------------------------------------------------

_AUTOSCALING = ("spec.autoscaling.enabled", True)
_OPTIMIZING = ("spec.optimization.enabled", True)

ISSUE_CASES: tuple[Case, ...] = (
    # Kubernetes 1.36 takes any printable ASCII but "=" in an env name (a leading digit or a space is
    # fine); what it refuses, the operator must report.
    _case("invalid env name (an =)", "spec.serving.env", ("spec.serving.env", [{"name": "A=B", "value": "x"}])),
    _case("invalid env name (a tab)", "spec.serving.env", ("spec.serving.env", [{"name": "A\tB", "value": "x"}])),
    _case("invalid env name (not ASCII)", "spec.serving.env", ("spec.serving.env", [{"name": "CAFÉ", "value": "x"}])),
    _case(
        "env valueFrom without a key",
        "spec.serving.env",
        ("spec.serving.env", [{"name": "S", "valueFrom": {"secretKeyRef": {"name": "s"}}}]),
    ),
    _case(
        "CPU requests above limits",
        "spec.serving.resources",
        ("spec.serving.resources", {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}),
    ),
    _case(
        "memory requests above limits",
        "spec.serving.resources",
        ("spec.serving.resources", {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}),
    ),
    _case("negative CPU request", "spec.serving.resources", ("spec.serving.resources", {"requests": {"cpu": "-1"}})),
    _case(
        "invalid quantity",
        "spec.serving.resources.requests.cpu",
        ("spec.serving.resources", {"requests": {"cpu": "lots"}}),
    ),
    _case(
        "optimizer requests above limits",
        "spec.optimization.resources",
        _OPTIMIZING,
        ("spec.optimization.resources", {"requests": {"memory": "4Gi"}, "limits": {"memory": "1Gi"}}),
    ),
    _case("image reference with spaces", "spec.serving.image", ("spec.serving.image", "tensorflow serving:latest")),
    _case("image reference in upper case", "spec.serving.image", ("spec.serving.image", "TensorFlow/Serving:2.20.0")),
    _case("image reference with two tags", "spec.serving.image", ("spec.serving.image", "tensorflow/serving:2.20:0")),
    _case(
        "optimizer image reference with spaces",
        "spec.optimization.image",
        _OPTIMIZING,
        ("spec.optimization.image", "bad image"),
    ),
    _case("a dot in the name", "metadata.name", dotted_name=True),
    _case("REST and gRPC on one Service port", "spec.service", ("spec.service", {"restPort": 8500, "grpcPort": 8500})),
    _case(
        "minReplicas above maxReplicas",
        "spec.autoscaling.minReplicas",
        _AUTOSCALING,
        ("spec.autoscaling.minReplicas", 5),
        ("spec.autoscaling.maxReplicas", 2),
    ),
    _case("invalid pod label key", "spec.serving.podLabels", ("spec.serving.podLabels", {"bad key!": "x"})),
    _case(
        "invalid pod annotation key", "spec.serving.podAnnotations", ("spec.serving.podAnnotations", {"bad key!": "x"})
    ),
    _case(
        "invalid Service annotation key", "spec.service.annotations", ("spec.service.annotations", {"bad key!": "x"})
    ),
    _case("invalid nodeSelector key", "spec.serving.nodeSelector", ("spec.serving.nodeSelector", {"bad key!": "x"})),
    _case(
        "invalid toleration",
        "spec.serving.tolerations",
        ("spec.serving.tolerations", [{"key": "k", "operator": "Sometimes"}]),
    ),
    _case(
        "invalid affinity",
        "spec.serving.affinity",
        (
            "spec.serving.affinity",
            {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [{"key": "k", "operator": "Nope"}]}]
                    }
                }
            },
        ),
    ),
    _case(
        "invalid ServiceAccount name",
        "spec.serving.serviceAccountName",
        ("spec.serving.serviceAccountName", "Not_A_Name"),
    ),
    _case(
        "invalid HPA metric",
        "spec.autoscaling.metrics",
        _AUTOSCALING,
        ("spec.autoscaling.metrics", [{"type": "Bogus"}]),
    ),
    _case(
        "invalid HPA behavior",
        "spec.autoscaling.behavior",
        _AUTOSCALING,
        ("spec.autoscaling.behavior", {"scaleUp": {"policies": [{"type": "Nope", "value": 0, "periodSeconds": 0}]}}),
    ),
    _case("storage URI with an unknown scheme", "spec.model.storageUri", ("spec.model.storageUri", "ftp://host/model")),
    _case("s3 model without an artifacts claim", "spec.artifacts", ("spec.model.storageUri", "s3://bucket/model")),
    _case(
        "invalid credentials Secret name", "spec.model.credentialsSecret", ("spec.model.credentialsSecret", "Bad_Name")
    ),
    _case("sha256 that is not hex", "spec.model.sha256", ("spec.model.sha256", "z" * 64)),
    _case("model version 0", "spec.model.version", ("spec.model.version", 0)),
    _case("no model name", "spec.model.name", ("spec.model.name", DELETE)),
    _case("no model", "spec.model", ("spec.model", DELETE)),
    _case("replicas out of range", "spec.serving.replicas", ("spec.serving.replicas", 100000)),
    _case(
        "nodeSelector value too long", "spec.serving.nodeSelector", ("spec.serving.nodeSelector", {"disk": "x" * 64})
    ),
)


# -- strategies over the CRD schema ------------------------------------------------------------------


@dataclass(frozen=True)
class Leaf:
    path: tuple[str, ...]  # from the object's root: ("spec", "serving", "replicas")
    schema: dict[str, Any] = field(hash=False, compare=False)
    required: bool = False


def crd_schema(crds: Path) -> dict[str, Any]:
    for file in sorted(crds.glob("*.yaml")):
        doc = yaml.safe_load(file.read_text())
        if doc.get("kind") == "CustomResourceDefinition":
            schema: dict[str, Any] = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
            return schema
    raise FileNotFoundError(f"no CustomResourceDefinition in {crds}")


def leaves(schema: dict[str, Any], path: tuple[str, ...] = ("spec",)) -> Iterator[Leaf]:
    """Every constrained scalar under `spec` (not inside lists or passthrough objects)."""
    required = set(schema.get("required", []))
    for name, sub in (schema.get("properties") or {}).items():
        here = (*path, name)
        if sub.get("x-kubernetes-preserve-unknown-fields") or sub.get("type") == "array":
            continue
        if sub.get("type") == "object" and "properties" in sub:
            if name in required:
                yield Leaf(here, sub, required=True)
            yield from leaves(sub, here)
        elif sub.get("type") in ("integer", "number", "string", "boolean"):
            yield Leaf(here, sub, required=name in required)


def _not_matching(pattern: str) -> st.SearchStrategy[str]:
    compiled = re.compile(pattern)
    return st.text(min_size=0, max_size=40).filter(lambda s: not compiled.search(s))


def leaf_cases(leaf: Leaf) -> st.SearchStrategy[Case]:
    """Values the schema forbids at one leaf, each as a Case naming it."""
    schema, dotted = leaf.schema, ".".join(leaf.path)
    options: list[st.SearchStrategy[tuple[str, Any]]] = []
    kind = schema.get("type")
    if kind in ("integer", "number"):
        numbers = st.integers if kind == "integer" else st.floats
        if "minimum" in schema:
            low = schema["minimum"]
            options.append(
                st.tuples(
                    st.just("below the minimum"),
                    numbers(max_value=low - 1)
                    if kind == "integer"
                    else st.floats(max_value=low, exclude_max=True, allow_nan=False, allow_infinity=False),
                )
            )
        if "maximum" in schema:
            high = schema["maximum"]
            options.append(
                st.tuples(
                    st.just("above the maximum"),
                    numbers(min_value=high + 1)
                    if kind == "integer"
                    else st.floats(min_value=high, exclude_min=True, allow_nan=False, allow_infinity=False),
                )
            )
        options.append(
            st.tuples(
                st.just("a string for a number"),
                st.text(min_size=1, max_size=10).filter(lambda s: not s.strip().lstrip("-").isdigit()),
            )
        )
    elif kind == "string":
        if "enum" in schema:
            options.append(
                st.tuples(
                    st.just("not one of the enum"), st.text(max_size=20).filter(lambda s: s not in schema["enum"])
                )
            )
        if "pattern" in schema:
            options.append(st.tuples(st.just("not matching the pattern"), _not_matching(schema["pattern"])))
        if "maxLength" in schema:
            options.append(
                st.tuples(
                    st.just("too long"),
                    st.text(alphabet="abc", min_size=schema["maxLength"] + 1, max_size=schema["maxLength"] + 40),
                )
            )
        if schema.get("minLength"):
            options.append(st.tuples(st.just("empty"), st.just("")))
        options.append(st.tuples(st.just("a number for a string"), st.integers()))
    elif kind == "boolean":
        options.append(st.tuples(st.just("a string for a boolean"), st.sampled_from(["yes", "on", "1", "treu"])))
    elif kind == "object":
        options.append(st.tuples(st.just("a string for an object"), st.text(max_size=10)))
    if leaf.required:
        options.append(st.tuples(st.just("missing (required)"), st.just(DELETE)))
    if not options:
        return st.nothing()
    return st.one_of(options).map(lambda pair: Case(f"{dotted}: {pair[0]}", dotted, ((leaf.path, pair[1]),)))


_INVALID_ENV = st.one_of(
    st.from_regex(r"[A-Z]{0,4}=[A-Z0-9]{0,4}", fullmatch=True),
    st.from_regex(r"[A-Z]{1,4}[\t\n\x00-\x08é€][A-Z]{0,4}", fullmatch=True),
)
_INVALID_QUANTITY = st.text(min_size=1, max_size=12).filter(lambda s: not re.match(QUANTITY_PATTERN, s))
_INVALID_LABEL_KEY = st.from_regex(r"[a-z]{1,5}[ !@#%^&*()][a-z]{0,5}", fullmatch=True)
_INVALID_IMAGE = st.one_of(
    st.from_regex(r"[a-z]{2,8} [a-z]{2,8}", fullmatch=True),
    st.from_regex(r"[A-Z][a-z]{2,8}/[a-z]{2,8}", fullmatch=True),
    st.from_regex(r"[a-z]{2,8}:[a-z0-9]{1,4}:[a-z0-9]{1,4}", fullmatch=True),
)


@st.composite
def semantic_cases(draw: st.DrawFn) -> Case:
    """What the schema cannot say, with generated values."""
    which = draw(st.sampled_from(["env", "quantity", "over", "label", "image", "dotted", "ports", "minmax"]))
    if which == "env":
        name = draw(_INVALID_ENV)
        return _case(f"env name {name!r}", "spec.serving.env", ("spec.serving.env", [{"name": name, "value": "x"}]))
    if which == "quantity":
        value = draw(_INVALID_QUANTITY)
        resource = draw(st.sampled_from(["cpu", "memory"]))
        return _case(
            f"{resource} quantity {value!r}",
            f"spec.serving.resources.requests.{resource}",
            ("spec.serving.resources", {"requests": {resource: value}}),
        )
    if which == "over":
        limit = draw(st.integers(1, 8))
        request = draw(st.integers(limit + 1, 64))
        unit = draw(st.sampled_from([("cpu", ""), ("cpu", "000m"), ("memory", "Gi"), ("memory", "Mi")]))
        resources = {"requests": {unit[0]: f"{request}{unit[1]}"}, "limits": {unit[0]: f"{limit}{unit[1]}"}}
        where = draw(st.sampled_from(["serving", "optimization"]))
        sets = [(f"spec.{where}.resources", resources)]
        if where == "optimization":
            sets.insert(0, _OPTIMIZING)
        return _case(
            f"{where} {unit[0]} request {request}{unit[1]} above limit {limit}{unit[1]}",
            f"spec.{where}.resources",
            *sets,
        )
    if which == "label":
        key = draw(_INVALID_LABEL_KEY)
        where = draw(
            st.sampled_from(
                ["serving.podLabels", "serving.podAnnotations", "serving.nodeSelector", "service.annotations"]
            )
        )
        return _case(f"{where} key {key!r}", f"spec.{where}", (f"spec.{where}", {key: "x"}))
    if which == "image":
        image = draw(_INVALID_IMAGE)
        return _case(f"serving image {image!r}", "spec.serving.image", ("spec.serving.image", image))
    if which == "dotted":
        return _case("a dot in the name", "metadata.name", dotted_name=True)
    if which == "ports":
        port = draw(st.integers(1, 65535))
        return _case(
            f"REST and gRPC both on port {port}", "spec.service", ("spec.service", {"restPort": port, "grpcPort": port})
        )
    high = draw(st.integers(1, 999))
    low = draw(st.integers(high + 1, 1000))
    return _case(
        f"minReplicas {low} above maxReplicas {high}",
        "spec.autoscaling.minReplicas",
        _AUTOSCALING,
        ("spec.autoscaling.minReplicas", low),
        ("spec.autoscaling.maxReplicas", high),
    )


def generated_cases(crds: Path, count: int) -> list[Case]:
    """`count` distinct cases drawn by hypothesis from the schema's leaves and the semantic rules,
    spread over the fields (hypothesis mutates what it just drew: without a cap per field, a run
    would spend itself on one)."""
    all_leaves = list(leaves(crd_schema(crds)["properties"]["spec"]))
    strategy = st.one_of(st.sampled_from(all_leaves).flatmap(leaf_cases), semantic_cases())
    per_field = max(2, -(-count // (len(all_leaves) + 8)))
    found: dict[str, Case] = {}
    fields: dict[str, int] = {}

    @settings(
        max_examples=count * 10,
        phases=[Phase.generate],
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(case: Case) -> None:
        if len(found) >= count or fields.get(case.field, 0) >= per_field or case.key() in found:
            return
        found[case.key()] = case
        fields[case.field] = fields.get(case.field, 0) + 1

    collect()
    return list(found.values())


# -- the scenario ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FuzzPlan:
    generated: int = 30
    report_timeout: float = 90.0  # for every accepted object to be reported
    seed_label: str = "fuzz"


def _field_named(case: Case, message: str) -> bool:
    leaf = case.field.rsplit(".", 1)[-1]
    return case.field in message or re.search(rf"\b{re.escape(leaf)}\b", message) is not None


def _reported(md: dict[str, Any] | None) -> str | None:
    ready = condition(md, ConditionType.READY)
    if ready.get("status") == "True" and is_warning(ready.get("reason", "")):
        # The model answers (Deployment and Service in place) but a child it can do without, such as
        # the HPA, was refused: Ready stays True with the Warning reason and the phase is Degraded.
        phase = ((md or {}).get("status") or {}).get("phase")
        return f"Ready=True/{ready['reason']} ({phase})" if phase == "Degraded" else None
    if ready.get("status") != "False":
        return None
    for cond in ((md or {}).get("status") or {}).get("conditions", []):
        if cond.get("status") == "False" and is_warning(cond.get("reason", "")):
            return f"{cond['type']}={cond['reason']}"
    return None


def fuzz_scenario(stack: ChaosStack, plan: FuzzPlan, crds: Path) -> ScenarioResult:
    result = ScenarioResult("fuzz: invalid specs")
    cases = list(ISSUE_CASES) + generated_cases(crds, plan.generated)
    ns = stack.namespace("fuzz")
    operator = stack.operator(ns, f"operator-{ns}")
    accepted: dict[str, Case] = {}
    rejected = 0
    started: dict[str, float] = {}
    try:
        wait_metrics(operator)
        for index, case in enumerate(cases):
            name = f"fz{index}.x" if case.dotted_name else f"fz{index}"
            manifest = case.manifest(ns, name)
            try:
                stack.api.post(md_path(ns), manifest)
            except ApiError as exc:
                rejected += 1
                if exc.status not in (400, 422):
                    result.fail(f"{case.label}: refused with HTTP {exc.status}, not as invalid: {exc}")
                    result.trials.append(Trial(False))
                elif not _field_named(case, str(exc)):
                    result.fail(f"{case.label}: refused without naming {case.field}: {str(exc)[:300]}")
                    result.trials.append(Trial(False))
                else:
                    result.trials.append(Trial(True))  # refused at once: no time to report
                continue
            if case.dotted_name:
                # A name CEL could admit but no child can carry must be refused at admission (the
                # CRD holds the rule), not accepted and reported later.
                result.fail(f"{case.label}: {name} was accepted; it must be refused at apply naming metadata.name")
                result.trials.append(Trial(False))
                continue
            accepted[name] = case
            started[name] = time.monotonic()
        pending = dict(accepted)
        deadline = time.monotonic() + plan.report_timeout
        while pending and time.monotonic() < deadline:
            for name in list(pending):
                md = stack.get(MD_KIND, ns, name)
                if _reported(md):
                    result.trials.append(Trial(True, time.monotonic() - started[name]))
                    del pending[name]
            time.sleep(0.5)
        for name, case in pending.items():
            md = stack.get(MD_KIND, ns, name)
            ready = condition(md, ConditionType.READY)
            result.trials.append(Trial(False))
            result.fail(
                f"{case.label}: accepted as {name}, never reported within {plan.report_timeout:.0f} s "
                f"(Ready={ready.get('status')}/{ready.get('reason')}: {ready.get('message', '')[:160]})"
            )
        # A forced resync (every RESYNC_SECONDS) must cost no write for objects that did not change.
        time.sleep(2)
        before = writes(operator)
        time.sleep(2 * RESYNC_SECONDS + 1)
        delta = writes(operator) - before
        if delta:
            result.fail(f"{delta:.0f} writes in two resyncs with {len(accepted)} invalid objects and nothing changing")
        for name, case in accepted.items():
            if name in pending:
                continue
            warnings = [e for e in stack.events(ns, name) if e.get("type") == "Warning"]
            if len(warnings) != 1:
                reasons = [e.get("reason") for e in warnings]
                result.fail(f"{case.label} ({name}): {len(warnings)} Warning Events, not one: {reasons}")
        add_tracebacks(result, operator.log())
        result.notes.append(
            f"fuzz: {len(cases)} cases ({len(ISSUE_CASES)} from the issue), {rejected} refused at apply, "
            f"{len(accepted)} accepted"
        )
    finally:
        operator.stop()
        stack.drop_namespace(ns)
    return result
