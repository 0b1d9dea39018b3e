"""gs:// through the GCS JSON API, against a small local server that speaks its two endpoints
(object media download and prefix listing with pagination), as STORAGE_EMULATOR_HOST points it."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from modeldeploy.contract.failures import Failure
from modeldeploy.contract.sums import sha256_tree
from modeldeploy.optimize.errors import OptimizeError
from modeldeploy.optimize.storage import fetch

pytestmark = pytest.mark.optimizer
TOKEN = "ya29.local-test-token"
BUCKETS: dict[str, dict[str, bytes]] = {
    "public": {
        "digits/mlp.keras": b"keras bytes",
        "digits/sm/saved_model.pb": b"graph",
        "digits/sm/variables/variables.index": b"index",
        "digits/sm/variables/variables.data-00000-of-00001": b"data",
    },
    "private": {"m.keras": b"secret model"},
}


class FakeGcs(BaseHTTPRequestHandler):
    def log_message(self, *_: object) -> None:  # keep pytest's output clean
        pass

    def _send(self, code: int, body: bytes, kind: str = "application/octet-stream") -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        parts = url.path.split("/")  # ['', 'storage', 'v1', 'b', BUCKET, 'o', NAME?]
        if parts[1:4] != ["storage", "v1", "b"] or len(parts) < 6 or parts[5] != "o":
            return self._send(400, b"bad path")
        bucket = urllib.parse.unquote(parts[4])
        if bucket not in BUCKETS:
            return self._send(404, b'{"error": "no such bucket"}')
        if bucket == "private" and self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._send(403, b'{"error": "forbidden"}')
        objects = BUCKETS[bucket]
        if len(parts) > 6:
            name = urllib.parse.unquote("/".join(parts[6:]))
            return self._send(200, objects[name]) if name in objects else self._send(404, b"{}")
        query = urllib.parse.parse_qs(url.query)
        names = sorted(n for n in objects if n.startswith(query.get("prefix", [""])[0]))
        start = int(query.get("pageToken", ["0"])[0])
        page: dict[str, object] = {"items": [{"name": n} for n in names[start : start + 2]]}
        if start + 2 < len(names):
            page["nextPageToken"] = str(start + 2)  # two per page: the client must follow tokens
        return self._send(200, json.dumps(page).encode(), "application/json")


@pytest.fixture
def gcs(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGcs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.delenv("GOOGLE_OAUTH_ACCESS_TOKEN", raising=False)
    yield "gs"
    server.shutdown()
    server.server_close()
    thread.join()


def test_an_object(gcs: str, tmp_path: Path) -> None:
    fetched = fetch("gs://public/digits/mlp.keras", tmp_path, pvc_root=tmp_path, what="model")
    assert fetched.path.read_bytes() == b"keras bytes"


def test_a_savedmodel_folder_over_several_pages(gcs: str, tmp_path: Path) -> None:
    fetched = fetch("gs://public/digits/sm", tmp_path / "work", pvc_root=tmp_path, what="model")
    assert (fetched.path / "saved_model.pb").read_bytes() == b"graph"
    assert (fetched.path / "variables" / "variables.data-00000-of-00001").read_bytes() == b"data"
    assert fetched.sha256 == sha256_tree(fetched.path)


def test_a_private_bucket_needs_the_token(gcs: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(OptimizeError) as refused:
        fetch("gs://private/m.keras", tmp_path, pvc_root=tmp_path, what="model")
    assert refused.value.failure is Failure.FETCH_FAILED
    assert "access denied (HTTP 403); set GOOGLE_OAUTH_ACCESS_TOKEN" in refused.value.message
    monkeypatch.setenv("GOOGLE_OAUTH_ACCESS_TOKEN", TOKEN)
    assert fetch("gs://private/m.keras", tmp_path, pvc_root=tmp_path, what="model").path.read_bytes() == b"secret model"


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("gs://public/nothing/here", "no object 'nothing/here' and nothing under 'nothing/here/'"),
        ("gs://missing-bucket/m.keras", "bucket 'missing-bucket' does not exist"),
    ],
)
def test_missing_things_are_fetch_failures(gcs: str, tmp_path: Path, uri: str, problem: str) -> None:
    with pytest.raises(OptimizeError) as failed:
        fetch(uri, tmp_path, pvc_root=tmp_path, what="model")
    assert failed.value.failure is Failure.FETCH_FAILED and problem in failed.value.message
