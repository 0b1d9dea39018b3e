"""The Reconciler over a recording fake client: which writes, in which order, none on a second pass.

Fast and exact where the integration tests (a real API server) are slow and coarse: the fake keeps
objects in a dict, answers label selectors, and records every write. It proves the orchestration
(observe -> plan -> apply what differs -> status on change -> Events), not the API server's behaviour.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import jsonpatch
import jsonpointer
import pytest

from modeldeploy.contract.summary import OptimizerSummary, Result
from modeldeploy.controller.builders.labels import COMPONENT_LABEL, MODEL_DEPLOYMENT_LABEL, OPTIMIZER
from modeldeploy.controller.cache import Cache
from modeldeploy.controller.config import OperatorConfig
from modeldeploy.controller.reconcile import Reconciler
from modeldeploy.controller.runtime import Runtime
from modeldeploy.k8s.client import ApiError
from modeldeploy.k8s.kinds import FIELD_MANAGER

NAMESPACE = "ml"
Key = tuple[str, str, str]  # kind, namespace, name


class RecordingKube:
    """The writes of KubeClient, recorded; each answer is the object with a new resourceVersion,
    as the API server's would be. The Reconciler reads nothing from it: it reads the cache."""

    def __init__(self) -> None:
        self.objects: dict[Key, dict[str, Any]] = {}
        self.writes: list[tuple[str, str, str]] = []  # (verb, kind, name or reason)
        self.reads: list[tuple[str, str]] = []  # GETs: (kind, name)
        self.managed_fields_sent: list[list[dict[str, Any]]] = []
        self.fail_status_with: int | None = None

    def _stored(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(next(VERSIONS))
        meta = obj["metadata"]
        self.objects[(obj["kind"], meta.get("namespace", NAMESPACE), meta["name"])] = obj
        return copy.deepcopy(obj)

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Replaces the object (a fake: no merge), keeping its managedFields plus our Apply entry, as
        the API server does: an apply leaves the entry of our create where it is."""
        self.writes.append(("apply", manifest["kind"], manifest["metadata"]["name"]))
        meta = manifest["metadata"]
        old = self.objects.get((manifest["kind"], meta.get("namespace", NAMESPACE), meta["name"]), {})
        entries = [e for e in old.get("metadata", {}).get("managedFields", []) if e["operation"] != "Apply"]
        entries.insert(0, managed_entry("Apply", manifest))
        stored: dict[str, Any] = {**manifest, "metadata": {**meta, "managedFields": entries}}
        generation = int(old.get("metadata", {}).get("generation", 0))
        if "status" in old:  # the status subresource: an apply leaves it as it is
            stored["status"] = old["status"]
        if old and old.get("spec") != manifest.get("spec"):
            generation += 1  # a new spec: a new generation, which the Deployment controller has not seen
        if generation:
            stored["metadata"]["generation"] = generation
        return self._stored(stored)

    def create(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        key = (manifest["kind"], manifest["metadata"]["namespace"], manifest["metadata"]["name"])
        if key in self.objects:
            return None
        self.writes.append(("create", manifest["kind"], manifest["metadata"]["name"]))
        meta = {**manifest["metadata"], "managedFields": [managed_entry("Update", manifest)]}
        return self._stored({**manifest, "metadata": meta})

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        self.reads.append((kind, name))
        obj = self.objects.get((kind, namespace or "", name))
        return copy.deepcopy(obj) if obj is not None else None

    def replace_managed_fields(
        self, kind: str, namespace: str, name: str, resource_version: str, managed_fields: list[dict[str, Any]]
    ) -> dict[str, Any]:
        obj = self.objects[(kind, namespace, name)]
        if obj["metadata"]["resourceVersion"] != resource_version:
            raise ApiError(409, "PATCH", f"{kind}/{name}", "changed meanwhile")
        self.writes.append(("managedFields", kind, name))
        self.managed_fields_sent.append(copy.deepcopy(managed_fields))
        return self._stored({**obj, "metadata": {**obj["metadata"], "managedFields": managed_fields}})

    def patch_managed_fields(
        self, kind: str, namespace: str, name: str, patch: list[dict[str, Any]]
    ) -> dict[str, Any] | None:
        """The JSON patch as the API server applies it: None for a failed test or a missing path (422)."""
        obj = self.objects.get((kind, namespace, name))
        if obj is None:
            raise ApiError(404, "PATCH", f"{kind}/{name}", "not found")
        try:
            patched = jsonpatch.apply_patch(obj, patch)
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException):
            return None
        self.writes.append(("managedFields", kind, name))
        self.managed_fields_sent.append(copy.deepcopy(patched["metadata"]["managedFields"]))
        return self._stored(patched)

    def delete(self, kind: str, namespace: str | None, name: str) -> bool:
        if self.objects.pop((kind, namespace or "", name), None) is None:
            return False
        self.writes.append(("delete", kind, name))
        return True

    def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        if self.fail_status_with is not None:
            raise ApiError(self.fail_status_with, "PATCH", f"{kind}/{name}/status", "not found")
        self.writes.append(("status", kind, name))
        obj = self.objects[(kind, namespace, name)]
        merged = {**obj.get("status", {}), **status}
        obj["status"] = {k: v for k, v in merged.items() if v is not None}
        return self._stored(obj)

    def emit_event(
        self, regarding: dict[str, Any], event_type: str, reason: str, note: str, action: str, now: str
    ) -> None:
        self.writes.append(("event", event_type, reason))

    def list(
        self, kind: str, namespace: str | None, label_selector: str | None = None, field_selector: str | None = None
    ) -> list[dict[str, Any]]:
        """Only what the Reconciler asks: one object by name (after a create found the name taken)."""
        assert label_selector is None and field_selector is not None and field_selector.startswith("metadata.name=")
        obj = self.objects.get((kind, namespace or "", field_selector.removeprefix("metadata.name=")))
        return [copy.deepcopy(obj)] if obj is not None else []


def field_set(obj: Any) -> dict[str, Any]:
    """A fieldsV1 tree of a manifest, roughly as the API server records it (lists as leaves)."""
    if not isinstance(obj, dict):
        return {}
    return {f"f:{k}": field_set(v) for k, v in obj.items() if k not in ("apiVersion", "kind")}


def managed_entry(operation: str, manifest: dict[str, Any]) -> dict[str, Any]:
    fields = field_set({k: v for k, v in manifest.items() if k != "status"})
    fields["f:metadata"].pop("f:name", None)
    fields["f:metadata"].pop("f:namespace", None)
    return {
        "manager": FIELD_MANAGER,
        "operation": operation,
        "apiVersion": manifest["apiVersion"],
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    }


VERSIONS = itertools.count(1)  # one sequence, like etcd's revisions, for writes and watch events


def watched(kube: RecordingKube, cache: Cache, obj: dict[str, Any]) -> None:
    """A change by someone else: the API server stores it, and its watch event brings it to the cache."""
    cache.upsert(obj["kind"], kube._stored(obj))


@pytest.fixture
def cache() -> Cache:
    return Cache()


@pytest.fixture
def kube(minimal: dict[str, Any], cache: Cache) -> RecordingKube:
    fake = RecordingKube()
    md = copy.deepcopy(minimal)
    md["metadata"].update({"uid": "uid-1", "generation": 1})
    watched(fake, cache, md)
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "models", "namespace": "ml"}}
    watched(fake, cache, claim)
    return fake


@pytest.fixture
def reconcile(kube: RecordingKube, cache: Cache) -> Callable[[], list[tuple[str, str, str]]]:
    clock = lambda: datetime(2026, 12, 1, 12, 0, tzinfo=UTC)  # noqa: E731
    reconciler = Reconciler(kube, cache, clock=clock)  # type: ignore[arg-type]

    def run() -> list[tuple[str, str, str]]:
        before = len(kube.writes)
        reconciler.reconcile(NAMESPACE, "digits")
        return kube.writes[before:]

    return run


def finish_job(kube: RecordingKube, cache: Cache) -> str:
    """The Job's watch event after it completed, and its pod's, with the termination summary."""
    ((name,),) = [[o["metadata"]["name"]] for o in cache.snapshot(NAMESPACE, "digits").of_kind("Job")]
    job = copy.deepcopy(cache.get("Job", NAMESPACE, name))
    assert job is not None
    job["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    watched(kube, cache, job)
    summary = OptimizerSummary(result=Result.SUCCEEDED, version=1, format="savedmodel", manifest_sha256="ab" * 32)
    labels = {MODEL_DEPLOYMENT_LABEL: "digits", COMPONENT_LABEL: OPTIMIZER, "batch.kubernetes.io/job-name": name}
    pod = {
        "kind": "Pod",
        "metadata": {"name": f"{name}-x", "namespace": NAMESPACE, "labels": labels},
        "status": {"containerStatuses": [{"state": {"terminated": {"exitCode": 0, "message": summary.to_line()}}}]},
    }
    watched(kube, cache, pod)
    return name


def test_first_pass_creates_the_job_then_applies_then_reports(
    kube: RecordingKube, reconcile: Callable[[], list[tuple[str, str, str]]]
) -> None:
    writes = reconcile()
    assert [w[:2] for w in writes] == [
        ("create", "Job"),
        ("create", "NetworkPolicy"),
        ("status", "ModelDeployment"),
        ("event", "Normal"),
    ]
    assert [w[2] for w in writes if w[0] == "event"] == ["Optimizing"], "one Event: Ready's first state"
    assert kube.objects[("ModelDeployment", NAMESPACE, "digits")]["status"]["phase"] == "Optimizing"
    assert reconcile() == [], "a second pass with nothing changed writes nothing"


def test_a_finished_job_rolls_out_the_serving_children_once(
    kube: RecordingKube, cache: Cache, reconcile: Callable[[], list[tuple[str, str, str]]]
) -> None:
    reconcile()
    finish_job(kube, cache)
    writes = reconcile()
    applied = [kind for verb, kind, _ in writes if verb == "create"]  # new children: created, never applied
    assert applied == [
        "Job",  # the retention cleanup: the artifact became served
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    ], applied
    assert writes.index(("status", "ModelDeployment", "digits")) > max(
        i for i, w in enumerate(writes) if w[0] == "create"
    ), "status is written after the children"
    assert ("event", "Normal", "Optimized") in writes
    status = kube.objects[("ModelDeployment", NAMESPACE, "digits")]["status"]
    assert status["servedVersion"] == 1 and status["optimization"]["manifestSha256"] == "ab" * 32
    # The next pass sees the Deployment it created (not yet Available): status only, no child re-applied.
    assert {verb for verb, _, _ in reconcile()} == {"status"}, "Creating -> Unavailable: no Event"
    assert reconcile() == [], "applied children match: no re-apply, no status patch"


def test_a_user_edit_of_a_field_we_own_is_re_applied(
    kube: RecordingKube, cache: Cache, reconcile: Callable[[], list[tuple[str, str, str]]]
) -> None:
    reconcile()
    finish_job(kube, cache)
    reconcile()
    reconcile()
    service = copy.deepcopy(cache.get("Service", NAMESPACE, "digits"))
    assert service is not None
    service["spec"]["type"] = "NodePort"
    watched(kube, cache, service)
    assert reconcile() == [("apply", "Service", "digits")]


def test_a_404_on_status_means_deleted_meanwhile(
    kube: RecordingKube, reconcile: Callable[[], list[tuple[str, str, str]]]
) -> None:
    kube.fail_status_with = 404
    writes = reconcile()
    assert [w[0] for w in writes] == ["create", "create"], "no status, and no Events for an object that is gone"


def test_other_status_errors_are_raised_for_a_retry(
    kube: RecordingKube, reconcile: Callable[[], list[tuple[str, str, str]]]
) -> None:
    kube.fail_status_with = 500
    with pytest.raises(ApiError):
        reconcile()


def test_an_invalid_spec_is_reported_once(
    kube: RecordingKube, cache: Cache, reconcile: Callable[[], list[tuple[str, str, str]]]
) -> None:
    md = copy.deepcopy(cache.get("ModelDeployment", NAMESPACE, "digits"))
    assert md is not None
    md["spec"]["model"]["version"] = 0
    watched(kube, cache, md)
    writes = reconcile()
    assert writes == [("status", "ModelDeployment", "digits"), ("event", "Warning", "InvalidSpec")]
    assert reconcile() == []


class Listing:
    """A client whose LIST answers like the API server's: items carry no apiVersion and no kind."""

    def __init__(self, objects: dict[Key, dict[str, Any]]) -> None:
        self.objects = objects

    def served(self, kind: str) -> bool:
        return True  # a cluster with every optional kind's CRDs

    def list(self, kind: str, namespace: str | None, label_selector: str | None = None) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in copy.deepcopy(obj).items() if k not in ("apiVersion", "kind")}
            for (k, ns, _), obj in self.objects.items()
            if k == kind and (namespace is None or ns == namespace)
        ]


def test_a_restarted_operator_writes_nothing_for_a_ready_object(
    kube: RecordingKube, cache: Cache, reconcile: Callable[[], list[tuple[str, str, str]]]
) -> None:
    """After a restart the cache is filled from LISTs, whose items lack apiVersion and kind."""
    reconcile()
    finish_job(kube, cache)
    reconcile()
    reconcile()
    restarted = Runtime(Listing(kube.objects), OperatorConfig())  # type: ignore[arg-type]
    restarted.prime()
    restarted.reconciler = Reconciler(kube, restarted.cache)  # type: ignore[arg-type]
    before = len(kube.writes)
    restarted.reconciler.reconcile(NAMESPACE, "digits")
    assert kube.writes[before:] == []


def test_a_foreign_object_with_a_child_s_name_is_never_touched(
    kube: RecordingKube, cache: Cache, reconcile: Callable[[], list[tuple[str, str, str]]]
) -> None:
    """A user's Service named like our child: not applied, not adopted; NameConflict until it goes."""
    theirs = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "digits", "namespace": NAMESPACE}}
    kube._stored(theirs)  # exists on the server; no label of ours, so never in the cache
    reconcile()
    finish_job(kube, cache)
    writes = reconcile()
    assert ("apply", "Service", "digits") not in writes and ("create", "Service", "digits") not in writes
    assert kube.objects[("Service", NAMESPACE, "digits")]["metadata"] == {
        "name": "digits",
        "namespace": NAMESPACE,
        "resourceVersion": kube.objects[("Service", NAMESPACE, "digits")]["metadata"]["resourceVersion"],
    }, "no label, no ownerReference added"
    status = kube.objects[("ModelDeployment", NAMESPACE, "digits")]["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "NameConflict") and "Service ml/digits" in ready["message"]
    assert ("event", "Warning", "NameConflict") in writes
    assert ("create", "Deployment", "digits") in writes, "the other children are still created"
    # The user removes their Service: the next pass creates ours.
    del kube.objects[("Service", NAMESPACE, "digits")]
    assert ("create", "Service", "digits") in reconcile()


def edit_serving(kube: RecordingKube, cache: Cache, **serving: Any) -> None:
    """The user edits spec.serving (None removes a field)."""
    md = copy.deepcopy(cache.get("ModelDeployment", NAMESPACE, "digits"))
    assert md is not None
    for key, value in serving.items():
        if value is None:
            md["spec"].setdefault("serving", {}).pop(key, None)
        else:
            md["spec"].setdefault("serving", {})[key] = value
    md["metadata"]["generation"] += 1
    watched(kube, cache, md)


def test_a_field_removed_from_the_spec_is_removed_from_the_child_it_created(
    kube: RecordingKube, cache: Cache, reconcile: Callable[[], list[tuple[str, str, str]]]
) -> None:
    """A field only the create set (the API server keeps it under the create's Update entry) is
    noticed by its digest; the create's fields become the apply's (once: a read and a patch) so the
    apply removes it; under the HPA, spec.replicas stays out of our apply's fields."""
    toleration = {"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}
    edit_serving(kube, cache, tolerations=[toleration], env=[{"name": "EXTRA", "value": "1"}])
    reconcile()
    finish_job(kube, cache)
    reconcile()
    reconcile()
    created = kube.objects[("Deployment", NAMESPACE, "digits")]
    assert created["spec"]["template"]["spec"]["tolerations"] == [toleration]
    assert created["spec"]["replicas"] == 1, "created with the HPA's minimum"
    assert reconcile() == [], "the create is not followed by an apply"

    edit_serving(kube, cache, tolerations=None, env=None)
    writes = [w for w in reconcile() if w[1] == "Deployment"]
    assert writes == [("managedFields", "Deployment", "digits"), ("apply", "Deployment", "digits")]
    assert kube.reads == [], "the cache knew where the create's entry is: no read"
    (entries,) = kube.managed_fields_sent
    assert [(e["manager"], e["operation"]) for e in entries] == [(FIELD_MANAGER, "Apply")]
    owned = entries[0]["fieldsV1"]
    assert "f:tolerations" in owned["f:spec"]["f:template"]["f:spec"], "now owned by the apply: removable"
    assert "f:replicas" not in owned["f:spec"], "the HPA's replicas: never ours to remove"
    live = kube.objects[("Deployment", NAMESPACE, "digits")]
    assert "tolerations" not in live["spec"]["template"]["spec"]
    assert "env" not in live["spec"]["template"]["spec"]["containers"][0]

    # Taken over once: the next change is an apply alone.
    assert not [w for w in reconcile() if w[0] in ("apply", "managedFields")]
    edit_serving(kube, cache, env=[{"name": "EXTRA", "value": "2"}])
    assert [w for w in reconcile() if w[1] == "Deployment"] == [("apply", "Deployment", "digits")]
    assert kube.reads == [], "no read at all"


def test_a_conflicting_take_over_is_retried_not_refused(
    kube: RecordingKube, cache: Cache, reconcile: Callable[[], list[tuple[str, str, str]]]
) -> None:
    """The cache was behind (another manager's entry now comes first), so the patch from the cache
    fails its test and the take-over reads the object; someone writes between that read and our
    patch: a conflict for the queue's back-off, never a ChildRejected, and nothing applied with the
    stale ownership. The retry reads again and takes over."""
    reconcile()
    finish_job(kube, cache)
    reconcile()
    reconcile()
    edit_serving(kube, cache, env=[{"name": "EXTRA", "value": "1"}])
    stored = kube.objects[("Deployment", NAMESPACE, "digits")]
    stored["metadata"]["managedFields"].insert(0, {**stored["metadata"]["managedFields"][0], "manager": "kubectl"})
    real_get = kube.get

    def get_then_someone_writes(kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        obj = real_get(kind, namespace, name)
        kube._stored(kube.objects[(kind, namespace or "", name)])  # a new resourceVersion
        return obj

    kube.get = get_then_someone_writes  # type: ignore[method-assign]
    with pytest.raises(ApiError) as raised:
        reconcile()
    assert raised.value.status == 409 and not raised.value.refused
    assert ("apply", "Deployment", "digits") not in kube.writes
    kube.get = real_get  # type: ignore[method-assign]
    writes = reconcile()
    assert ("managedFields", "Deployment", "digits") in writes and ("apply", "Deployment", "digits") in writes
    assert kube.reads == [("Deployment", "digits")] * 2
    moved = kube.managed_fields_sent[-1]
    assert [(e["manager"], e["operation"]) for e in moved] == [("kubectl", "Update"), (FIELD_MANAGER, "Apply")]


def test_a_removed_field_is_noticed_though_every_field_we_set_is_live(
    kube: RecordingKube, cache: Cache, reconcile: Callable[[], list[tuple[str, str, str]]]
) -> None:
    """A Service annotation dropped from the spec changes no field we still set: only the applied
    digest tells the Service is not what we would write now."""
    md = copy.deepcopy(cache.get("ModelDeployment", NAMESPACE, "digits"))
    assert md is not None
    md["spec"]["service"] = {"annotations": {"example.com/team": "ml"}}
    watched(kube, cache, md)
    reconcile()
    finish_job(kube, cache)
    reconcile()
    reconcile()
    del md["spec"]["service"]
    watched(kube, cache, md)
    writes = [w for w in reconcile() if w[0] in ("apply", "managedFields")]
    assert writes == [("managedFields", "Service", "digits"), ("apply", "Service", "digits")]
    owned = kube.managed_fields_sent[0][0]["fieldsV1"]["f:metadata"]["f:annotations"]
    assert "f:example.com/team" in owned, "the annotation is now the apply's, so the apply removes it"
    assert "example.com/team" not in kube.objects[("Service", NAMESPACE, "digits")]["metadata"].get("annotations", {})


def test_a_child_gone_before_its_take_over_is_not_applied_back(
    kube: RecordingKube, cache: Cache, reconcile: Callable[[], list[tuple[str, str, str]]]
) -> None:
    """The take-over finds no object (deleted, its watch event not in yet): an apply would create it
    outside the create path; nothing is written, the delete event brings the create."""
    reconcile()
    finish_job(kube, cache)
    reconcile()
    reconcile()
    del kube.objects[("Deployment", NAMESPACE, "digits")]
    edit_serving(kube, cache, env=[{"name": "EXTRA", "value": "1"}])
    assert not [w for w in reconcile() if w[1] == "Deployment"]
    assert kube.reads == [], "the patch from the cache found it gone (404)"


def deployment_rolled_out(kube: RecordingKube, cache: Cache) -> None:
    """The Deployment controller's watch event: every pod of the Deployment's current spec is ready."""
    deployment = copy.deepcopy(cache.get("Deployment", NAMESPACE, "digits"))
    assert deployment is not None
    replicas = deployment["spec"].get("replicas", 1)
    deployment["status"] = {
        "observedGeneration": deployment["metadata"].get("generation", 0),
        "replicas": replicas,
        "readyReplicas": replicas,
        "updatedReplicas": replicas,
        "availableReplicas": replicas,
        "conditions": [{"type": "Available", "status": "True"}, {"type": "Progressing", "status": "True"}],
    }
    watched(kube, cache, deployment)


def test_the_pass_that_applies_an_edit_reports_it_rolling_out_not_ready(
    kube: RecordingKube, cache: Cache, reconcile: Callable[[], list[tuple[str, str, str]]]
) -> None:
    """An edit that keeps the artifact (an env var) changes the pod template: the status written by
    the pass that applies it must say the new generation is rolling out. It used to be computed from
    what was observed before the apply, and claimed Ready for the new generation before the
    Deployment controller had even seen it."""
    reconcile()
    finish_job(kube, cache)
    reconcile()
    deployment_rolled_out(kube, cache)
    reconcile()
    status = kube.objects[("ModelDeployment", NAMESPACE, "digits")]["status"]
    assert next(c for c in status["conditions"] if c["type"] == "Ready")["reason"] == "Ready"

    edit_serving(kube, cache, env=[{"name": "EXTRA", "value": "1"}])
    writes = reconcile()
    assert ("apply", "Deployment", "digits") in writes
    status = kube.objects[("ModelDeployment", NAMESPACE, "digits")]["status"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["observedGeneration"] == 2
    assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == ("True", "RollingOut"), conditions
    assert conditions["ServingReady"]["reason"] == "RollingOut"
    # The Deployment controller rolls the new pods out: Ready again, for the new generation.
    deployment_rolled_out(kube, cache)
    reconcile()
    status = kube.objects[("ModelDeployment", NAMESPACE, "digits")]["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["reason"], ready["observedGeneration"]) == ("Ready", 2)
