"""A small typed wrapper over the official client's HTTP layer.

Why not the generated typed APIs: the operator works with plain manifest dicts (what the pure
builders produce), needs server-side apply for every kind, and must count its own requests (to
prove a no-op reconcile writes nothing). One generic path table does all three; the official
client still does configuration, authentication, TLS and retries.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from modeldeploy.k8s.kinds import FIELD_MANAGER, KINDS

REPORTING_CONTROLLER = "modeldeploy.io/operator"
ManagedFields = list[dict[str, Any]]  # metadata.managedFields (named here: a method of KubeClient is called list)
JsonPatch = list[dict[str, Any]]  # RFC 6902 operations
# Which operator replica posted an Event (kubectl describe shows it): the pod's name in a cluster.
REPORTING_INSTANCE = f"{FIELD_MANAGER}-{socket.gethostname()}"[:128]


# Answers that say the request itself is wrong (invalid, forbidden, refused by admission): sending it
# again unchanged gets the same answer. A namespace being deleted also answers 403; that one passes.
REFUSALS = frozenset({400, 403, 422})
NAMESPACE_TERMINATING = "NamespaceTerminating"


class ApiError(Exception):
    """A request the API server refused, with its status code, message, Status reason and the fields
    it names (`details.causes[].field`)."""

    def __init__(
        self,
        status: int,
        method: str,
        path: str,
        message: str,
        reason: str = "",
        fields: tuple[str, ...] = (),
        causes: tuple[str, ...] = (),
    ) -> None:
        super().__init__(f"{method} {path}: {status} {message}")
        self.status = status
        self.message = message
        self.reason = reason
        self.fields = fields
        self.causes = causes  # details.causes[].reason

    @property
    def refused(self) -> bool:
        """The API server refused the object as written (not a conflict, an outage, a missing object
        or a namespace on its way out)."""
        return self.status in REFUSALS and NAMESPACE_TERMINATING not in self.causes


def is_unavailable(exc: BaseException) -> bool:
    """The API server did not answer, or answered that it cannot now (429, 5xx): a condition that
    passes by itself, unlike a refusal of what we sent."""
    if isinstance(exc, ApiError):
        return exc.status == 429 or exc.status >= 500
    return isinstance(exc, ConnectionError | TimeoutError | urllib3.exceptions.HTTPError)


def api_error(status: int, method: str, path: str, raw: bytes) -> ApiError:
    """An ApiError from an answer's body: a Status object when the API server wrote one."""
    message, reason, fields, causes = raw.decode(errors="replace"), "", tuple[str, ...](), tuple[str, ...]()
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        body = json.loads(raw)
        message = str(body.get("message", message))
        reason = str(body.get("reason", ""))
        listed = (body.get("details") or {}).get("causes") or []
        fields = tuple(dict.fromkeys(str(c["field"]) for c in listed if c.get("field")))
        causes = tuple(str(c["reason"]) for c in listed if c.get("reason"))
    return ApiError(status, method, path, message, reason, fields, causes)


def load_client(
    kubeconfig: str | None = None, on_request: Callable[[str], None] | None = None, connections: int | None = None
) -> KubeClient:
    """In-cluster credentials when running in a pod, else the kubeconfig (KUBECONFIG or given);
    `connections`: how many the pool keeps open (None: the library's default, 5 per CPU)."""
    configuration = k8s_client.Configuration()
    if connections is not None:
        configuration.connection_pool_maxsize = connections
    if kubeconfig is None:
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
        except k8s_config.ConfigException:
            k8s_config.load_kube_config(client_configuration=configuration)
    else:
        k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    return KubeClient(k8s_client.ApiClient(configuration), on_request)


class KubeClient:
    """Read, apply, create, delete and patch status, by kind, with request counting."""

    def __init__(self, api_client: k8s_client.ApiClient, on_request: Callable[[str], None] | None = None) -> None:
        self.api = api_client
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        # The operator counts requests in its Prometheus metrics; this package stays below it.
        self.on_request = on_request

    def close(self) -> None:
        self.api.close()

    # -- plumbing -------------------------------------------------------------------------------
    def _path(self, kind: str, namespace: str | None, name: str | None = None, sub: str | None = None) -> str:
        spec = KINDS[kind]
        path = spec.path_prefix + (f"/namespaces/{quote(namespace)}" if namespace else "") + f"/{spec.plural}"
        if name:
            path += f"/{quote(name)}"
        if sub:
            path += f"/{sub}"
        return path

    def _call(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        with self._lock:
            self.requests[method] += 1
        if self.on_request is not None:
            self.on_request(method)
        url = self.api.configuration.host + path + (f"?{urlencode(query)}" if query else "")
        headers = {"Accept": "application/json", "Content-Type": content_type}
        self.api.update_params_for_auth(headers, [], ["BearerToken"], path, method, body)
        response = self.api.call_api(method, url, header_params=headers, body=body)
        raw = response.read()
        if response.status >= 400:
            raise api_error(response.status, method, path, raw)
        return json.loads(raw) if raw else None

    # -- reads ----------------------------------------------------------------------------------
    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self._call("GET", self._path(kind, namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return obj

    def served(self, kind: str) -> bool:
        """Does the API server serve this kind? Discovery of its group version (a CRD's kind is absent
        until someone installs the CRD): 404 when the group version is unknown."""
        spec = KINDS[kind]
        try:
            found = self._call("GET", spec.path_prefix)
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return any(r.get("name") == spec.plural for r in (found or {}).get("resources", []))

    def list(
        self, kind: str, namespace: str | None, label_selector: str | None = None, field_selector: str | None = None
    ) -> list[dict[str, Any]]:
        query = {"labelSelector": label_selector} if label_selector else {}
        if field_selector:
            query["fieldSelector"] = field_selector
        result = self._call("GET", self._path(kind, namespace), query or None)
        items: list[dict[str, Any]] = result.get("items", [])
        return items

    # -- writes ---------------------------------------------------------------------------------
    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply under our field manager; we own exactly the fields we set."""
        meta = manifest["metadata"]
        path = self._path(manifest["kind"], meta.get("namespace"), meta["name"])
        query = {"fieldManager": FIELD_MANAGER, "force": "true"}
        obj: dict[str, Any] = self._call("PATCH", path, query, manifest, "application/apply-patch+yaml")
        return obj

    def merge_patch(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A JSON merge patch: lists in it replace the live lists whole (what apply cannot do to a list
        entry another manager owns)."""
        path = self._path(kind, namespace, name)
        query = {"fieldManager": FIELD_MANAGER}
        obj: dict[str, Any] = self._call("PATCH", path, query, patch, "application/merge-patch+json")
        return obj

    def replace_managed_fields(
        self, kind: str, namespace: str, name: str, resource_version: str, managed_fields: ManagedFields
    ) -> dict[str, Any]:
        """Replace an object's managedFields if it is still at `resource_version`: a JSON patch whose
        `test` of the resourceVersion fails when anyone wrote in between (the field ownership we
        computed would then be stale). The API server answers a failed test 422 with a generic
        message, as it answers an invalid object; when the object did move on (one more read, only
        then), it is a conflict instead (409): retried, never a refusal of the child."""
        path = self._path(kind, namespace, name)
        patch: JsonPatch = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": resource_version},
            {"op": "replace", "path": "/metadata/managedFields", "value": managed_fields},
        ]
        try:
            obj = self._json_patch(path, patch)
        except ApiError as exc:
            if exc.status != 422:
                raise
            current = self.get(kind, namespace, name)
            if current is not None and current["metadata"].get("resourceVersion") == resource_version:
                raise  # not a stale read: the patch itself was refused
            message = f"{kind} {namespace}/{name} changed since resourceVersion {resource_version}"
            raise ApiError(409, "PATCH", path, message, "Conflict") from exc
        return obj

    def patch_managed_fields(self, kind: str, namespace: str, name: str, patch: JsonPatch) -> dict[str, Any] | None:
        """Send a JSON patch of an object's managedFields computed from what the cache holds; None when
        the API server refuses it (422: one of its tests failed, the cache was behind), so the caller
        reads the object and computes the change again. A 404 (the object is gone) is raised."""
        try:
            return self._json_patch(self._path(kind, namespace, name), patch)
        except ApiError as exc:
            if exc.status == 422:
                return None
            raise

    def _json_patch(self, path: str, patch: JsonPatch) -> dict[str, Any]:
        obj: dict[str, Any] = self._call(
            "PATCH", path, {"fieldManager": FIELD_MANAGER}, patch, "application/json-patch+json"
        )
        return obj

    def create(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        """Create; None when it already exists (a retry of the same deterministic name)."""
        meta = manifest["metadata"]
        try:
            obj: dict[str, Any] = self._call(
                "POST", self._path(manifest["kind"], meta.get("namespace")), {"fieldManager": FIELD_MANAGER}, manifest
            )
        except ApiError as exc:
            if exc.status == 409:
                return None
            raise
        return obj

    def delete(self, kind: str, namespace: str | None, name: str) -> bool:
        """Delete with background propagation (a Job's pods go too); False when already gone."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        try:
            self._call("DELETE", self._path(kind, namespace, name), body=body)
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        """Replace our part of status with a merge patch on the status subresource; returns the object."""
        path = self._path(kind, namespace, name, "status")
        obj: dict[str, Any] = self._call("PATCH", path, None, {"status": status}, "application/merge-patch+json")
        return obj

    def emit_event(
        self, regarding: dict[str, Any], event_type: str, reason: str, note: str, action: str, now: str
    ) -> None:
        """Post an Event through core/v1: the only API that takes both eventTime (with the reporting
        controller, instance and action) and lastTimestamp, which `kubectl describe` sorts by (an
        Event with eventTime alone sorts as the zero time, in name order). `now` is a MicroTime."""
        meta = regarding["metadata"]
        namespace = meta.get("namespace") or "default"
        seconds = now[:19] + "Z"
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            # kubectl's convention: <object>.<unique suffix>
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
            "eventTime": now,
            "firstTimestamp": seconds,
            "lastTimestamp": seconds,
            "count": 1,
            "reportingComponent": REPORTING_CONTROLLER,
            "reportingInstance": REPORTING_INSTANCE,
            "source": {"component": REPORTING_CONTROLLER},
            "action": action,
            "reason": reason,
            "message": note[:1024],
            "type": event_type,
            "involvedObject": {
                "apiVersion": regarding["apiVersion"],
                "kind": regarding["kind"],
                "name": meta["name"],
                "namespace": namespace,
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
        }
        self._call("POST", self._path("Event", namespace), body=event)
