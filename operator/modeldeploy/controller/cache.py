"""What the operator knows about the cluster, fed by the watch streams, read by every reconcile.

A reconcile reads the ModelDeployment, its children, its pods and the claims it mounts from here,
never from the API server: the watches kopf already runs keep it current, and every write the
operator makes stores the API server's answer at once, so the next reconcile sees its own writes
even before their watch events arrive. An older version of an object (by resourceVersion) never
replaces a newer one.

Memory: objects are kept slim. Only the fields the views and the drift check read survive
(`slim`): no managedFields (one marker instead, when our own create still owns fields: see
`controller.ownership`), no status of kinds whose status we never read, and for pods only
their labels and container states. They are stored as deflated compact JSON, a quarter of what the
same data takes as Python dicts; a reconcile inflates the few it reads (well under a millisecond).
Children are indexed by the ModelDeployment that owns them (its label), claims by namespace, so a
lookup never scans the cluster.
"""

from __future__ import annotations

import json
import threading
import zlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from modeldeploy.controller.builders.labels import MODEL_DEPLOYMENT_LABEL
from modeldeploy.controller.ownership import OWNED_BY_UPDATE, UPDATE_ENTRY, owns_by_update, update_entry_index

Key = tuple[str, str]  # (namespace, name)
Obj = dict[str, Any]

MODEL_DEPLOYMENT = "ModelDeployment"
CLAIM = "PersistentVolumeClaim"
POD = "Pod"

_META_KEPT = (
    "name",
    "namespace",
    "uid",
    "labels",
    "annotations",
    "ownerReferences",
    "generation",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
)
_STATUS_READ = frozenset({MODEL_DEPLOYMENT, "Deployment", "Job"})
_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _slim_meta(meta: Obj) -> Obj:
    out = {k: meta[k] for k in _META_KEPT if k in meta}
    if _LAST_APPLIED in out.get("annotations", {}):
        out["annotations"] = {k: v for k, v in out["annotations"].items() if k != _LAST_APPLIED}
    return out


def _slim_container_status(status: Obj) -> Obj:
    # restartCount: a canary's restarts abort its rollout (issue 12)
    return {k: status[k] for k in ("name", "state", "lastState", "restartCount") if k in status}


def slim(kind: str, body: Obj) -> Obj:
    """The parts of an object a reconcile reads; everything else is dropped to save memory."""
    meta = body.get("metadata", {})
    out: Obj = {"kind": kind, "metadata": _slim_meta(meta)}
    if "apiVersion" in body:
        out["apiVersion"] = body["apiVersion"]
    if owns_by_update(meta.get("managedFields")):
        # the one bit of managedFields a reconcile needs: fields we own through a create, which an
        # apply alone never removes (controller/ownership.py)
        out[OWNED_BY_UPDATE] = True
        if (index := update_entry_index(meta.get("managedFields"))) is not None:
            out[UPDATE_ENTRY] = index  # lets the take-over skip reading the object
    if kind == CLAIM:
        # its existence, and whether it is bound yet
        phase = body.get("status", {}).get("phase")
        if phase:
            out["status"] = {"phase": phase}
        return out
    if kind == POD:
        status = body.get("status", {})
        out["status"] = {
            "containerStatuses": [_slim_container_status(s) for s in status.get("containerStatuses") or []],
            "initContainerStatuses": [_slim_container_status(s) for s in status.get("initContainerStatuses") or []],
            "conditions": [c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"],
        }
        return out
    for part in ("spec", "data"):
        if part in body:
            out[part] = body[part]
    if kind in _STATUS_READ and "status" in body:
        out["status"] = body["status"]
    return out


def _version(obj: Obj) -> int | None:
    value = obj.get("metadata", {}).get("resourceVersion")
    return int(value) if isinstance(value, str) and value.isdigit() else None


@dataclass(frozen=True)
class _Entry:
    version: int | None
    owner: str | None  # the ModelDeployment label's value
    pending: bool  # a claim not bound to a volume yet
    blob: bytes  # the slim object as compact JSON, deflated

    def load(self) -> Obj:
        obj: Obj = json.loads(zlib.decompress(self.blob))
        return obj


def owner_of(kind: str, body: Obj) -> str | None:
    """The ModelDeployment an object belongs to, by its label (a ModelDeployment belongs to none)."""
    if kind == MODEL_DEPLOYMENT:
        return None
    owner: str | None = (body.get("metadata", {}).get("labels") or {}).get(MODEL_DEPLOYMENT_LABEL)
    return owner


def _entry(kind: str, obj: Obj) -> _Entry:
    blob = zlib.compress(json.dumps(obj, separators=(",", ":")).encode(), 1)
    pending = kind == CLAIM and obj.get("status", {}).get("phase") == "Pending"
    return _Entry(_version(obj), owner_of(kind, obj), pending, blob)


@dataclass(frozen=True)
class Snapshot:
    """One ModelDeployment and everything of it the cache holds, at one moment."""

    model_deployment: Obj | None
    children: dict[str, list[Obj]]  # kind -> objects labelled with the ModelDeployment's name
    claims: frozenset[str]  # claims that exist in the namespace
    pending_claims: frozenset[str] = frozenset()  # of those, the ones not bound to a volume yet

    def of_kind(self, kind: str) -> list[Obj]:
        return self.children.get(kind, [])


@dataclass(eq=False, repr=False)
class Cache:
    _objects: dict[tuple[str, str, str], _Entry] = field(default_factory=dict)  # (kind, namespace, name)
    _by_owner: dict[Key, set[tuple[str, str]]] = field(default_factory=lambda: defaultdict(set))  # -> (kind, name)
    _claims: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # namespace -> claims
    _pending_claims: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # namespace -> Pending
    _claim_users: dict[Key, set[str]] = field(default_factory=lambda: defaultdict(set))  # (ns, claim) -> MDs
    _md_claims: dict[Key, frozenset[str]] = field(default_factory=dict)  # (ns, MD) -> claims it mounts
    # (ns, MD) -> the last body of a deleted ModelDeployment, until its artifact cleanup Job exists
    _deleted: dict[Key, Obj] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- writes (watch events and our own writes' answers) -----------------------------------------------

    def upsert(self, kind: str, body: Obj) -> bool:
        """Store the object unless the cache holds a newer version; True when stored."""
        obj = slim(kind, body)
        meta = obj["metadata"]
        namespace, name = meta.get("namespace", ""), meta["name"]
        key = (kind, namespace, name)
        entry = _entry(kind, obj)
        with self._lock:
            old = self._objects.get(key)
            if old is not None:
                if entry.version is not None and old.version is not None and entry.version < old.version:
                    return False
                self._unindex_locked(key, old)
            self._objects[key] = entry
            self._index_locked(key, entry)
        return True

    def delete(self, kind: str, namespace: str, name: str) -> None:
        key = (kind, namespace, name)
        with self._lock:
            old = self._objects.pop(key, None)
            if old is not None:
                self._unindex_locked(key, old)
            if kind == MODEL_DEPLOYMENT:
                self._forget_claims_locked(namespace, name)

    def remember_deleted(self, body: Obj) -> None:
        """A ModelDeployment's deletion, seen on the watch: its reconcile creates the cleanup Job."""
        meta = body.get("metadata", {})
        with self._lock:
            self._deleted[(meta.get("namespace", ""), meta.get("name", ""))] = body

    def take_deleted(self, namespace: str, name: str) -> Obj | None:
        with self._lock:
            return self._deleted.pop((namespace, name), None)

    def replace_all(self, kind: str, namespace: str | None, bodies: Iterable[Obj]) -> None:
        """A fresh LIST of a kind (in a namespace, or everywhere): drop what it no longer holds."""
        fresh = {(b["metadata"].get("namespace", ""), b["metadata"]["name"]): b for b in bodies}
        with self._lock:
            stale = [
                k
                for k in self._objects
                if k[0] == kind and (namespace is None or k[1] == namespace) and k[1:] not in fresh
            ]
        for _, ns, name in stale:
            self.delete(kind, ns, name)
        for body in fresh.values():
            self.upsert(kind, body)

    def record_claims(self, namespace: str, md_name: str, claims: Iterable[str]) -> None:
        """Which claims a ModelDeployment mounts, so a claim's event wakes exactly its users."""
        with self._lock:
            self._forget_claims_locked(namespace, md_name)
            self._md_claims[(namespace, md_name)] = frozenset(claims)
            for claim in self._md_claims[(namespace, md_name)]:
                self._claim_users[(namespace, claim)].add(md_name)

    def _forget_claims_locked(self, namespace: str, md_name: str) -> None:
        for claim in self._md_claims.pop((namespace, md_name), frozenset()):
            users = self._claim_users.get((namespace, claim))
            if users is not None:
                users.discard(md_name)
                if not users:
                    del self._claim_users[(namespace, claim)]

    # -- reads ------------------------------------------------------------------------------------------

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        with self._lock:
            entry = self._objects.get((kind, namespace, name))
        return entry.load() if entry is not None else None

    def snapshot(self, namespace: str, md_name: str) -> Snapshot:
        with self._lock:
            md = self._objects.get((MODEL_DEPLOYMENT, namespace, md_name))
            entries = [
                (kind, self._objects.get((kind, namespace, name)))
                for kind, name in sorted(self._by_owner.get((namespace, md_name), ()))
            ]
            claims = frozenset(self._claims.get(namespace, ()))
            pending = frozenset(self._pending_claims.get(namespace, ()))
        children: dict[str, list[Obj]] = defaultdict(list)
        for kind, entry in entries:
            if entry is not None:
                children[kind].append(entry.load())
        return Snapshot(md.load() if md is not None else None, dict(children), claims, pending)

    def model_deployment_keys(self) -> list[Key]:
        with self._lock:
            return [(ns, name) for kind, ns, name in self._objects if kind == MODEL_DEPLOYMENT]

    def users_of_claim(self, namespace: str, claim: str) -> list[Key]:
        with self._lock:
            return [(namespace, md) for md in sorted(self._claim_users.get((namespace, claim), ()))]

    def counts(self) -> dict[str, int]:
        """Objects held, by kind (the operator's metrics publish it)."""
        out: dict[str, int] = defaultdict(int)
        with self._lock:
            for kind, _, _ in self._objects:
                out[kind] += 1
        return dict(out)

    # -- indexes ----------------------------------------------------------------------------------------

    def _index_locked(self, key: tuple[str, str, str], entry: _Entry) -> None:
        kind, namespace, name = key
        if kind == CLAIM:
            self._claims[namespace].add(name)
            if entry.pending:
                self._pending_claims[namespace].add(name)
            return
        if entry.owner:
            self._by_owner[(namespace, entry.owner)].add((kind, name))

    def _unindex_locked(self, key: tuple[str, str, str], entry: _Entry) -> None:
        kind, namespace, name = key
        if kind == CLAIM:
            self._claims[namespace].discard(name)
            self._pending_claims[namespace].discard(name)
            return
        if entry.owner is None:
            return
        owner_key = (namespace, entry.owner)
        children = self._by_owner.get(owner_key)
        if children is not None:
            children.discard((kind, name))
            if not children:
                del self._by_owner[owner_key]
