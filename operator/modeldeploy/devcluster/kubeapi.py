"""The harness's own few API calls: readiness probes, creating the fake Nodes, TokenRequest.

Why it exists: the harness polls several endpoints many times while a cluster starts, and may create
thousands of Nodes. A kubectl process per call costs ~150 ms and the kubernetes client is a heavy
import that the operator's own code, not the harness, should own; a keep-alive stdlib HTTPS
connection with the admin's client certificate does this in milliseconds. Only `harness.py` uses it.
"""

from __future__ import annotations

import http.client
import json
import ssl
from pathlib import Path
from typing import Any


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


class KubeApi:
    """One keep-alive HTTPS connection to a loopback endpoint (kube-apiserver, or a component's /healthz)."""

    def __init__(self, port: int, context: ssl.SSLContext, *, timeout: float = 10.0) -> None:
        self._port = port
        self._context = context
        self._timeout = timeout
        self._conn: http.client.HTTPSConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> KubeApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, str]:
        """Send one request; returns (status, body text). Reconnects once if the kept-alive socket died."""
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
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
