"""The dev cluster's own API client: readiness probes, fake Nodes, TokenRequest, and what the executor needs.

Why it exists: the harness polls several endpoints many times while a cluster starts, may create
thousands of Nodes, and the executor lists pods and patches their status every half second. A kubectl
process per call costs ~150 ms, and the product's client (modeldeploy.k8s) is the operator's, shaped by
what the operator may touch; a keep-alive stdlib HTTPS connection with the admin's client certificate
does all of this in milliseconds and keeps test needs (reading Secrets) out of the product.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode


class ApiError(RuntimeError):
    """A non-2xx answer; `status` is the HTTP code, the message carries the server's Status message."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        message = body
        try:
            decoded = json.loads(body)
            if isinstance(decoded, dict) and "message" in decoded:
                message = str(decoded["message"])
        except ValueError:
            pass
        super().__init__(f"{method} {path}: HTTP {status}: {message.strip()}")
        self.status = status


def tls_context(ca_cert: Path, client_cert: Path | None = None, client_key: Path | None = None) -> ssl.SSLContext:
    """Trust only the cluster's CA; present the client certificate when given."""
    context = ssl.create_default_context(cafile=str(ca_cert))
    if client_cert is not None:
        context.load_cert_chain(str(client_cert), str(client_key) if client_key else None)
    return context


def http_ok(port: int, path: str) -> bool:
    """True when plain-HTTP GET 127.0.0.1:port/path answers 200 (etcd's /health; it serves no TLS here)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


class KubeApi:
    """One keep-alive HTTPS connection to a loopback endpoint (kube-apiserver, or a component's /healthz).

    Thread-safe: requests are serialized on the one connection (the executor's loop and its pod
    threads share a client; each call takes milliseconds on loopback).
    """

    def __init__(self, port: int, context: ssl.SSLContext, *, timeout: float = 10.0) -> None:
        self._port = port
        self._context = context
        self._timeout = timeout
        self._conn: http.client.HTTPSConnection | None = None
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> KubeApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self, method: str, path: str, body: Any = None, *, content_type: str = "application/json"
    ) -> tuple[int, str]:
        """Send one request; returns (status, body text). Reconnects once if the kept-alive socket died."""
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = content_type
        with self._lock:
            for attempt in (1, 2):
                if self._conn is None:
                    self._conn = http.client.HTTPSConnection(
                        "127.0.0.1", self._port, context=self._context, timeout=self._timeout
                    )
                try:
                    self._conn.request(method, path, body=payload, headers=headers)
                    response = self._conn.getresponse()
                    return response.status, response.read().decode(errors="replace")
                except (http.client.RemoteDisconnected, http.client.CannotSendRequest, BrokenPipeError):
                    self.close()
                    if attempt == 2:
                        raise
                except BaseException:
                    self.close()
                    raise
        raise AssertionError("unreachable")

    def probe(self, path: str) -> bool:
        """True when GET path answers 200 (connection refused, TLS not up yet or 5xx: False)."""
        try:
            status, _ = self.request("GET", path)
        except (OSError, http.client.HTTPException):
            return False
        return status == 200

    def get(self, path: str) -> Any:
        status, text = self.request("GET", path)
        if not 200 <= status < 300:
            raise ApiError("GET", path, status, text)
        return json.loads(text)

    def post(self, path: str, body: Any) -> Any:
        status, text = self.request("POST", path, body)
        if not 200 <= status < 300:
            raise ApiError("POST", path, status, text)
        return json.loads(text)

    def patch(self, path: str, body: Any, *, content_type: str = "application/merge-patch+json") -> Any:
        status, text = self.request("PATCH", path, body, content_type=content_type)
        if not 200 <= status < 300:
            raise ApiError("PATCH", path, status, text)
        return json.loads(text)

    def watch(self, path: str, resource_version: str, timeout_seconds: int) -> WatchStream:
        """A watch of a collection from `resource_version`, on a connection of its own (a benchmark
        follows changes this way instead of LISTing the collection again and again)."""
        query = urlencode({"watch": "1", "resourceVersion": resource_version, "timeoutSeconds": timeout_seconds})
        conn = http.client.HTTPSConnection("127.0.0.1", self._port, context=self._context, timeout=timeout_seconds + 30)
        conn.request("GET", f"{path}?{query}", headers={"Accept": "application/json"})
        response = conn.getresponse()
        if response.status != 200:
            text = response.read().decode(errors="replace")
            conn.close()
            raise ApiError("GET", path, response.status, text)
        return WatchStream(conn, response)

    # -- the core/v1 calls the executor makes ----------------------------------------------------------

    def list_pods(self, namespace: str | None, label_selector: str) -> list[dict[str, Any]]:
        """Pods matching `label_selector`, in `namespace` or (None) all namespaces."""
        scope = f"/namespaces/{quote(namespace)}" if namespace else ""
        items: list[dict[str, Any]] = self.get(f"/api/v1{scope}/pods?{urlencode({'labelSelector': label_selector})}")[
            "items"
        ]
        return items

    def _get_or_none(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        path = f"/api/v1/namespaces/{quote(namespace)}/{plural}/{quote(name)}"
        status, text = self.request("GET", path)
        if status == 404:
            return None
        if not 200 <= status < 300:
            raise ApiError("GET", path, status, text)
        obj: dict[str, Any] = json.loads(text)
        return obj

    def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Secret, or None when it does not exist."""
        return self._get_or_none("secrets", namespace, name)

    def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The ConfigMap, or None when it does not exist."""
        return self._get_or_none("configmaps", namespace, name)

    def patch_pod_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Merge `status` into the pod's status subresource (what a kubelet reports)."""
        self.patch(f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(name)}/status", {"status": status})


class WatchStream:
    """The events of one watch, one JSON object per line; `close` (from any thread) ends the iteration."""

    def __init__(self, conn: http.client.HTTPSConnection, response: http.client.HTTPResponse) -> None:
        self._conn = conn
        self._response = response

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            for line in self._response:
                if line.strip():
                    event: dict[str, Any] = json.loads(line)
                    yield event
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            # closed, or the server ended the stream (AttributeError: http.client's reader finding
            # the connection closed from another thread)
            return

    def close(self) -> None:
        # close() alone leaves a reader blocked in another thread (the response holds the socket);
        # shutdown wakes it.
        sock = self._conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._conn.close()
