"""Field ownership: the take-over of the fields our create owns, the applied digest, the cache's marker."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import pytest

from modeldeploy.controller.builders.labels import APPLIED_DIGEST_ANNOTATION, applied_digest, with_applied_digest
from modeldeploy.controller.cache import Cache, slim
from modeldeploy.controller.ownership import (
    cached_update_entry,
    left_out,
    marked,
    owns_by_update,
    take_over_patch,
    update_entry_index,
    upgraded_managed_fields,
)
from modeldeploy.k8s.kinds import FIELD_MANAGER

OURS = FIELD_MANAGER


def entry(manager: str, operation: str, fields: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "manager": manager,
        "operation": operation,
        "apiVersion": "apps/v1",
        "time": "2026-12-01T12:00:00Z",
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
        **extra,
    }


CREATED = {
    "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
    "f:spec": {
        "f:replicas": {},
        "f:template": {"f:spec": {"f:nodeSelector": {".": {}, "f:gpu": {}}, "f:containers": {}}},
    },
}
APPLIED = {
    "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
    "f:spec": {"f:template": {"f:spec": {"f:containers": {}}}},
}
SCALER = entry("kube-controller-manager", "Update", {"f:spec": {"f:replicas": {}}}, subresource="scale")
STATUS = entry("kube-controller-manager", "Update", {"f:status": {"f:replicas": {}}}, subresource="status")
TUNER = entry("tuner", "Apply", {"f:spec": {"f:template": {"f:spec": {"f:priorityClassName": {}}}}})


def test_the_create_s_fields_merge_into_our_apply_entry_and_its_update_entry_goes() -> None:
    before = [entry(OURS, "Apply", APPLIED), TUNER, STATUS, entry(OURS, "Update", CREATED), SCALER]
    after = upgraded_managed_fields(copy.deepcopy(before), "apps/v1")
    assert after is not None
    assert [(e["manager"], e["operation"], e.get("subresource")) for e in after] == [
        (OURS, "Apply", None),
        ("tuner", "Apply", None),
        ("kube-controller-manager", "Update", "status"),
        ("kube-controller-manager", "Update", "scale"),
    ]
    assert after[0]["fieldsV1"] == CREATED, "the union of both sets (APPLIED is a subset of CREATED)"
    assert after[1:] == [TUNER, STATUS, SCALER], "other managers' entries untouched"


def test_without_an_apply_entry_the_update_entry_becomes_one() -> None:
    before = [STATUS, entry(OURS, "Update", CREATED, apiVersion="apps/v1")]
    after = upgraded_managed_fields(before, "apps/v1")
    assert after is not None
    assert after[0] == STATUS
    assert {k: v for k, v in after[1].items() if k != "fieldsV1"} == {
        "manager": OURS,
        "operation": "Apply",
        "apiVersion": "apps/v1",
        "time": "2026-12-01T12:00:00Z",
        "fieldsType": "FieldsV1",
    }
    assert after[1]["fieldsV1"] == CREATED


def test_fields_the_apply_leaves_out_on_purpose_are_not_taken_over() -> None:
    """The HPA's replicas: created with minReplicas, applied without; owned through Apply they would be
    removed by the next apply (the Deployment at 1 replica)."""
    before = [entry(OURS, "Apply", APPLIED), entry(OURS, "Update", CREATED), SCALER]
    after = upgraded_managed_fields(before, "apps/v1", [("spec", "replicas")])
    assert after is not None
    ours = after[0]["fieldsV1"]
    assert "f:replicas" not in ours["f:spec"]
    assert ours["f:spec"]["f:template"]["f:spec"]["f:nodeSelector"] == {".": {}, "f:gpu": {}}
    assert after[1] == SCALER
    # A field left out whose parent holds nothing else takes its parent along (no empty leaf member).
    lonely = upgraded_managed_fields([entry(OURS, "Update", {"f:spec": {"f:replicas": {}}})], "apps/v1", [("spec",)])
    assert lonely == [], "nothing moves: no empty Apply entry"
    nested = upgraded_managed_fields(
        [entry(OURS, "Update", {"f:spec": {"f:replicas": {}}, "f:data": {}})], "apps/v1", [("spec", "replicas")]
    )
    assert nested is not None and nested[0]["fieldsV1"] == {"f:data": {}}


def test_nothing_to_take_over_without_an_update_entry_of_ours() -> None:
    assert upgraded_managed_fields([entry(OURS, "Apply", APPLIED), SCALER], "apps/v1") is None
    assert upgraded_managed_fields(None, "apps/v1") is None
    theirs = [entry("kubectl-client-side-apply", "Update", CREATED), entry(OURS, "Update", CREATED, subresource="x")]
    assert upgraded_managed_fields(theirs, "apps/v1") is None


def test_left_out_names_what_the_create_sets_and_the_apply_does_not() -> None:
    applied = {"metadata": {"name": "d"}, "spec": {"template": {"spec": {}}}}
    created = {"metadata": {"name": "d"}, "spec": {"replicas": 2, "template": {"spec": {}}}}
    assert left_out(created, applied) == [("spec", "replicas")]
    assert left_out(None, applied) == []
    assert left_out(applied, applied) == []


def test_the_applied_digest_is_stable_ignores_itself_and_changes_when_a_field_goes() -> None:
    manifest: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "annotations": {"a": "1"}},
        "spec": {"template": {"spec": {"nodeSelector": {"gpu": "h100"}, "containers": [{"name": "c"}]}}},
    }
    digest = applied_digest(manifest)
    assert len(digest) == 16 and digest == applied_digest(copy.deepcopy(manifest))
    stamped = with_applied_digest(manifest)
    assert stamped["metadata"]["annotations"] == {"a": "1", APPLIED_DIGEST_ANNOTATION: digest}
    assert applied_digest(stamped) == digest, "computed without its own annotation"
    assert "template" not in stamped["metadata"] and "annotations" not in stamped["spec"]["template"], "no pod restart"
    reordered = {
        "spec": manifest["spec"],
        "metadata": manifest["metadata"],
        "kind": "Deployment",
        "apiVersion": "apps/v1",
    }
    assert applied_digest(reordered) == digest
    removed = copy.deepcopy(manifest)
    del removed["spec"]["template"]["spec"]["nodeSelector"]
    assert applied_digest(removed) != digest
    # A manifest created from another than the one applied carries the applied one's digest.
    initial = {**manifest, "spec": {**manifest["spec"], "replicas": 2}}
    assert with_applied_digest(initial, manifest)["metadata"]["annotations"][APPLIED_DIGEST_ANNOTATION] == digest
    assert manifest["metadata"]["annotations"] == {"a": "1"}, "the input is not changed"


def test_the_cache_keeps_one_marker_of_managed_fields() -> None:
    def service(*entries: dict[str, Any]) -> dict[str, Any]:
        meta = {"name": "s", "namespace": "ml", "resourceVersion": "1", "managedFields": list(entries)}
        return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": {}}

    created = slim("Service", service(entry(OURS, "Update", CREATED), SCALER))
    assert marked(created) and "managedFields" not in created["metadata"]
    applied = slim("Service", service(entry(OURS, "Apply", APPLIED), entry("kubectl", "Update", CREATED)))
    assert not marked(applied) and applied == {
        "kind": "Service",
        "apiVersion": "v1",
        "metadata": {"name": "s", "namespace": "ml", "resourceVersion": "1"},
        "spec": {},
    }, "nothing kept of managedFields when our create owns nothing"
    assert not marked(slim("Service", service(entry(OURS, "Update", CREATED, subresource="status"))))
    cache = Cache()
    cache.upsert("Service", service(entry(OURS, "Update", CREATED)))
    assert marked(cache.get("Service", "ml", "s") or {})
    assert owns_by_update([entry(OURS, "Update", {})]) and not owns_by_update(None)
    # Where the create's entry is, when renaming it is the whole take-over; nothing otherwise.
    assert cached_update_entry(created) == 0 and cached_update_entry(applied) is None
    both = slim("Service", service(entry(OURS, "Apply", APPLIED), entry(OURS, "Update", CREATED)))
    assert marked(both) and cached_update_entry(both) is None, "an Apply entry to merge into: read first"


def test_the_entry_a_patch_alone_can_take_over() -> None:
    assert update_entry_index([STATUS, entry(OURS, "Update", CREATED)]) == 1
    assert update_entry_index([entry(OURS, "Update", CREATED), entry(OURS, "Update", APPLIED)]) is None
    assert update_entry_index([entry(OURS, "Apply", APPLIED), entry(OURS, "Update", CREATED)]) is None
    assert update_entry_index([entry(OURS, "Update", CREATED, subresource="status")]) is None
    assert update_entry_index(None) is None


@pytest.mark.parametrize("keep_out", [[], [("spec", "replicas")], [("spec", "paused")]])
def test_the_patch_from_the_cache_takes_over_as_the_full_computation_does(keep_out: list[tuple[str, ...]]) -> None:
    """On a child as its create left it, the JSON patch sent without a read gives the managedFields
    `upgraded_managed_fields` computes from the read object (a kept-out field its create did not set,
    `spec.paused`, is no failure)."""
    entries = [STATUS, entry(OURS, "Update", CREATED), SCALER]
    obj = {"metadata": {"name": "d", "managedFields": entries}}
    index = update_entry_index(entries)
    assert index == 1
    patched = jsonpatch.apply_patch(obj, take_over_patch(index, "apps/v1", keep_out))
    assert patched["metadata"]["managedFields"] == upgraded_managed_fields(entries, "apps/v1", keep_out)
    assert obj["metadata"]["managedFields"] == entries, "the input is not changed"


@pytest.mark.parametrize(
    ("entries", "api_version"),
    [
        ([entry("kubectl", "Update", CREATED), entry(OURS, "Update", CREATED)], "apps/v1"),  # moved
        ([entry(OURS, "Apply", CREATED)], "apps/v1"),  # already taken over
        ([entry(OURS, "Update", CREATED)], "apps/v2"),  # another version
    ],
)
def test_the_patch_from_the_cache_fails_when_the_cache_was_behind(
    entries: list[dict[str, Any]], api_version: str
) -> None:
    obj = {"metadata": {"managedFields": entries}}
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(obj, take_over_patch(0, api_version))


def test_the_patch_escapes_field_keys() -> None:
    """An annotation key holds "/": a JSON pointer token escapes it, and "~" too."""
    fields = {"f:metadata": {"f:annotations": {".": {}, "f:example.com/team": {}, "f:a~b": {}, "f:c": {}}}}
    obj = {"metadata": {"managedFields": [entry(OURS, "Update", fields)]}}
    keep_out = [("metadata", "annotations", "example.com/team"), ("metadata", "annotations", "a~b")]
    patched = jsonpatch.apply_patch(obj, take_over_patch(0, "apps/v1", keep_out))
    left = {"f:metadata": {"f:annotations": {".": {}, "f:c": {}}}}
    assert patched["metadata"]["managedFields"][0]["fieldsV1"] == left
