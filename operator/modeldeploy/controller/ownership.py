"""Which fields of a child the operator owns, and how it takes over the ones it owns by a create.

A child is created with a POST (never adopted: a name someone else holds is a conflict), and the API
server records the fields of that POST under an `Update` entry of our field manager; every later
write is a server-side apply, recorded under an `Apply` entry. Server-side apply removes a field
only when the applier owned it through an earlier apply: a field set by the POST alone (a
nodeSelector, a toleration, an env var, a resource limit) would stay on the child forever after
the spec drops it. `upgraded_managed_fields` moves the fields of our `Update` entry into our `Apply`
entry, as client-go's `csaupgrade.UpgradeManagedFields` does, so the next apply without a field
removes it. Pure: the reconciler reads the object, sends the result and applies.

The one exception: fields the create set but the apply deliberately leaves out. Under an HPA the
Deployment is created with `spec.replicas` (minReplicas, not 1) and applied without (the HPA owns
them); owned through Apply and applied without, `spec.replicas` would be removed and the Deployment
would drop to 1 replica. Those fields are dropped from our ownership instead, and stay as they are.

The cache drops managedFields for memory; `owns_by_update` is the one bit of them it keeps, with,
in the usual case (one `Update` entry of ours and no `Apply` entry yet: a child as its create left
it), that entry's position: then `take_over_patch` moves the fields without reading the object, a
JSON patch that renames the entry's operation after testing it is still ours. A test that fails
(the cache was behind) costs a read and the full computation, as before.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from modeldeploy.k8s.kinds import FIELD_MANAGER

APPLY = "Apply"
UPDATE = "Update"
# What the cache keeps of managedFields: this top-level key, True, on an object of which our field
# manager owns fields through a create or a merge patch (absent otherwise: one bit, not the list).
OWNED_BY_UPDATE = "modeldeployOwnsByUpdate"
# ... and, when that is our one Update entry and we have no Apply entry, its index in managedFields.
UPDATE_ENTRY = "modeldeployUpdateEntry"
FieldPath = tuple[str, ...]  # dict keys from the object's root, e.g. ("spec", "replicas")


def _ours(entry: Mapping[str, Any], operation: str) -> bool:
    # A subresource entry (status, scale) records another kind of write: never ours to move.
    return (
        entry.get("manager") == FIELD_MANAGER and entry.get("operation") == operation and not entry.get("subresource")
    )


def owns_by_update(managed_fields: Iterable[Mapping[str, Any]] | None) -> bool:
    """Does our field manager own fields of this object through a create or a merge patch?"""
    return any(_ours(entry, UPDATE) for entry in managed_fields or ())


def update_entry_index(managed_fields: Iterable[Mapping[str, Any]] | None) -> int | None:
    """The index of our one `Update` entry when renaming it to `Apply` is the whole take-over: there
    is exactly one, and no `Apply` entry of ours to merge it into. None otherwise."""
    entries = list(managed_fields or ())
    updates = [i for i, entry in enumerate(entries) if _ours(entry, UPDATE)]
    if len(updates) != 1 or any(_ours(entry, APPLY) for entry in entries):
        return None
    return updates[0]


def cached_update_entry(obj: Mapping[str, Any]) -> int | None:
    """The index `update_entry_index` found when the (slim) object was cached, if any."""
    index = obj.get(UPDATE_ENTRY)
    return index if isinstance(index, int) else None


def _pointer(*tokens: str | int) -> str:
    # JSON pointer escaping (RFC 6901): a field key may hold "/" (an annotation) or "~"
    return "".join("/" + str(t).replace("~", "~0").replace("/", "~1") for t in tokens)


def take_over_patch(index: int, api_version: str, keep_out: Iterable[FieldPath] = ()) -> list[dict[str, Any]]:
    """A JSON patch that turns our `Update` entry at `index` into our `Apply` entry, without the fields
    of `keep_out`: what `upgraded_managed_fields` computes for a child as its create left it, sent
    without reading the object. Its tests fail (422) when the entry at `index` is no longer ours, of
    `api_version` and an Update; a field of `keep_out` is added, then removed, so that its absence
    is no failure (its parent's absence is: that entry is not what the create of it recorded)."""
    entry = ("metadata", "managedFields", index)
    ops: list[dict[str, Any]] = [
        {"op": "test", "path": _pointer(*entry, "manager"), "value": FIELD_MANAGER},
        {"op": "test", "path": _pointer(*entry, "operation"), "value": UPDATE},
        {"op": "test", "path": _pointer(*entry, "apiVersion"), "value": api_version},
        {"op": "replace", "path": _pointer(*entry, "operation"), "value": APPLY},
    ]
    for path in keep_out:
        field = _pointer(*entry, "fieldsV1", *(f"f:{key}" for key in path))
        ops += [{"op": "add", "path": field, "value": {}}, {"op": "remove", "path": field}]
    return ops


def marked(obj: Mapping[str, Any]) -> bool:
    """Is a cached (slim) object marked as owned by our field manager through an `Update` entry?"""
    return obj.get(OWNED_BY_UPDATE) is True


def left_out(created: Mapping[str, Any] | None, applied: Mapping[str, Any]) -> list[FieldPath]:
    """The fields the create manifest sets and the applied one leaves out (dict keys only: a list
    is applied whole or by merge key, never left out entry by entry)."""
    if created is None:
        return []
    out: list[FieldPath] = []
    for key, value in created.items():
        if key not in applied:
            out.append((key,))
        elif isinstance(value, Mapping) and isinstance(applied[key], Mapping):
            out += [(key, *rest) for rest in left_out(value, applied[key])]
    return out


def _union(into: dict[str, Any], other: Mapping[str, Any]) -> None:
    """Union of two fieldsV1 trees: every member of either (a key with {} is a leaf member, "." marks
    a member that also has children)."""
    for key, child in other.items():
        if key in into and isinstance(into[key], dict) and isinstance(child, Mapping):
            _union(into[key], child)
        else:
            into[key] = copy.deepcopy(dict(child)) if isinstance(child, Mapping) else child


def _without(fields: dict[str, Any], path: FieldPath) -> None:
    """Remove a field (and what is under it) from a fieldsV1 tree, and the parents it leaves empty
    (an empty parent would read as a leaf member of its own)."""
    head, rest = f"f:{path[0]}", path[1:]
    if head not in fields:
        return
    if rest:
        child = fields[head]
        if isinstance(child, dict):
            _without(child, rest)
            if child:
                return
    del fields[head]


def upgraded_managed_fields(
    managed_fields: list[dict[str, Any]] | None, api_version: str, keep_out: Iterable[FieldPath] = ()
) -> list[dict[str, Any]] | None:
    """The managedFields after moving the fields of our `Update` entries (of `api_version`) into our
    `Apply` entry (created in the newest `Update` entry's place if there is none and something
    moves), without the fields of `keep_out`; our `Update` entries are dropped, every other entry
    stays as it is. None when there is no `Update` entry of ours: nothing to do."""
    entries = [copy.deepcopy(e) for e in managed_fields or []]
    updates = [e for e in entries if _ours(e, UPDATE)]
    if not updates:
        return None
    moved: dict[str, Any] = {}
    for entry in updates:
        if entry.get("apiVersion") == api_version:
            _union(moved, entry.get("fieldsV1") or {})
    for path in keep_out:
        _without(moved, path)
    target = next((e for e in entries if _ours(e, APPLY)), None)
    out: list[dict[str, Any]] = []
    for entry in entries:
        if entry is target:
            _union(entry.setdefault("fieldsV1", {}), moved)
        if entry is updates[0] and target is None and moved:
            # managedFields are newest first: the Apply entry takes the newest Update entry's place
            target = {**entry, "operation": APPLY, "apiVersion": api_version, "fieldsType": "FieldsV1"}
            target["fieldsV1"] = moved
            out.append(target)
        elif not _ours(entry, UPDATE):
            out.append(entry)
    return out


__all__ = [
    "APPLY",
    "OWNED_BY_UPDATE",
    "UPDATE",
    "UPDATE_ENTRY",
    "FieldPath",
    "cached_update_entry",
    "left_out",
    "marked",
    "owns_by_update",
    "take_over_patch",
    "update_entry_index",
    "upgraded_managed_fields",
]
