"""Fetching from s3:// (a moto server started here), http(s):// (a local http.server), and checksums.

Only loopback addresses are used: moto listens on 127.0.0.1, AWS_ENDPOINT_URL points boto3 at it,
and AWS_EC2_METADATA_DISABLED keeps botocore from asking the instance-metadata address for
credentials when a test removes them.
"""

from __future__ import annotations

import functools
import http.server
import json
import socket
import subprocess
import threading

import boto3
import pytest

from modeldeploy.contract.failures import Failure
from modeldeploy.contract.sums import sha256_tree
from modeldeploy.optimize.errors import OptimizeError
from modeldeploy.optimize.storage import display_uri, fetch, resolve_pvc


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(moto_endpoint, monkeypatch, tmp_path):
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    client = boto3.client("s3")
    bucket = f"models-{free_port()}"
    client.create_bucket(Bucket=bucket)
    return client, bucket


def test_s3_model_and_datasets(optimize, s3, mlp, tmp_path):
    client, bucket = s3
    client.upload_file(str(mlp.keras_path), bucket, "digits/model.keras")
    client.upload_file(str(mlp.eval_path), bucket, "data/eval.npz")
    out = tmp_path / "out"
    run = optimize(
        "--source", f"s3://{bucket}/digits/model.keras", "--eval-data", f"s3://{bucket}/data/eval.npz",
        "--output", out, "--version", "1", "--quantization", "dynamic",
    )  # fmt: skip
    assert run.code == 0, run.stderr
    report = json.loads((out / "1" / "report.json").read_text())
    assert report["source"]["uri"] == f"s3://{bucket}/digits/model.keras"
    assert report["evaluation"]["before"] == pytest.approx(mlp.eval_accuracy, abs=1e-6)


def test_s3_savedmodel_prefix(optimize, s3, mlp, tmp_path):
    client, bucket = s3
    first = tmp_path / "first"
    assert optimize("--source", mlp.keras_path, "--output", first, "--version", "1").code == 0
    for path in (first / "1").rglob("*"):
        if path.is_file():
            client.upload_file(str(path), bucket, f"exported/digits/{path.relative_to(first / '1').as_posix()}")
    expected = sha256_tree(first / "1")
    out = tmp_path / "out"
    run = optimize(
        "--source", f"s3://{bucket}/exported/digits", "--format", "savedmodel", "--sha256", expected,
        "--output", out, "--version", "2", "--quantization", "float16", "--eval-data", mlp.eval_path,
    )  # fmt: skip
    assert run.code == 0, run.stderr
    assert run.termination["format"] == "tflite-float16"


@pytest.mark.parametrize(
    ("uri", "mentions"),
    [
        ("s3://{bucket}/absent.keras", "no object 'absent.keras'"),
        ("s3://no-such-bucket-here/model.keras", "bucket 'no-such-bucket-here' does not exist"),
    ],
)
def test_s3_missing_object_or_bucket(optimize, s3, tmp_path, uri, mentions):
    _, bucket = s3
    run = optimize("--source", uri.format(bucket=bucket), "--output", tmp_path / "out", "--version", "1")
    assert run.code == Failure.FETCH_FAILED.exit_code, run.stderr
    assert mentions in run.stderr and len(run.stderr.splitlines()) == 1
    assert run.termination["reason"] == "FetchFailed"


def test_s3_without_credentials(optimize, s3, monkeypatch, mlp, tmp_path):
    client, bucket = s3
    client.upload_file(str(mlp.keras_path), bucket, "model.keras")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    run = optimize("--source", f"s3://{bucket}/model.keras", "--output", tmp_path / "out", "--version", "1")
    assert run.code == Failure.FETCH_FAILED.exit_code, run.stderr
    assert "no AWS credentials" in run.stderr
    assert not (tmp_path / "out").exists()


@pytest.fixture
def http_root(tmp_path):
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_model_with_checksum(optimize, http_root, mlp, tmp_path):
    root, base = http_root
    (root / "m.keras").write_bytes(mlp.keras_path.read_bytes())
    (root / "eval.npz").write_bytes(mlp.eval_path.read_bytes())
    digest = fetch(str(mlp.keras_path), tmp_path, pvc_root=tmp_path, what="model").sha256
    run = optimize(
        "--source", f"{base}/m.keras", "--sha256", digest, "--eval-data", f"{base}/eval.npz",
        "--output", tmp_path / "out", "--version", "1",
    )  # fmt: skip
    assert run.code == 0, run.stderr


def test_http_not_found(optimize, http_root, tmp_path):
    _, base = http_root
    run = optimize("--source", f"{base}/gone.keras", "--output", tmp_path / "out", "--version", "1")
    assert run.code == Failure.FETCH_FAILED.exit_code
    assert "HTTP 404" in run.stderr and "gone.keras" in run.stderr


def test_unreachable_http_server(optimize, tmp_path):
    run = optimize("--source", f"http://127.0.0.1:{free_port()}/m.keras", "--output", tmp_path / "o", "--version", "1")
    assert run.code == Failure.FETCH_FAILED.exit_code
    assert "unreachable" in run.stderr


def test_folder_digest_matches_the_documented_shell_command(tmp_path):
    (tmp_path / "variables").mkdir()
    (tmp_path / "saved_model.pb").write_bytes(b"graph")
    (tmp_path / "variables" / "variables.index").write_bytes(b"index")
    (tmp_path / "Zeta").write_bytes(b"upper case sorts first in C order")
    shell = subprocess.run(
        ["bash", "-c", "cd \"$1\" && find . -type f -printf '%P\\n' | LC_ALL=C sort | xargs -d '\\n' sha256sum "
         "| sha256sum", "_", str(tmp_path)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    assert sha256_tree(tmp_path) == shell.stdout.split()[0]


def test_display_uri_hides_secrets():
    assert display_uri("https://user:pw@host:8443/m.keras?X-Amz-Signature=s") == "https://host:8443/m.keras?..."
    assert display_uri("s3://bucket/key") == "s3://bucket/key"


def test_pvc_paths_stay_inside_the_claim(tmp_path):
    assert resolve_pvc("pvc://models/a/b.keras", tmp_path) == tmp_path / "models" / "a" / "b.keras"
    for bad in ("pvc://models/../etc/passwd", "pvc:///no-claim", "pvc://../x"):
        with pytest.raises(OptimizeError) as caught:
            resolve_pvc(bad, tmp_path)
        assert caught.value.failure is Failure.INVALID_ARGUMENTS


def test_http_url_without_a_suffix_uses_the_declared_format(optimize, http_root, mlp, tmp_path):
    root, base = http_root
    (root / "blob").write_bytes(mlp.h5_path.read_bytes())
    run = optimize("--source", f"{base}/blob", "--format", "h5", "--output", tmp_path / "out", "--version", "1")
    assert run.code == 0, run.stderr
    run = optimize("--source", f"{base}/blob", "--format", "keras", "--output", tmp_path / "out", "--version", "2")
    assert run.code == Failure.MODEL_LOAD_FAILED.exit_code  # an HDF5 file is not a .keras zip
    assert "not a .keras file" in run.stderr


@pytest.mark.parametrize("secret_endpoint", [True, False], ids=["endpoint-from-secret", "endpoint-by-hand"])
def test_a_failed_fetch_never_echoes_the_secret(optimize, s3, moto_endpoint, monkeypatch, tmp_path, secret_endpoint):
    """An endpoint URL with user:password@ (as it may come from the credentials Secret) must not reach
    the termination message (status, Events), stdout or stderr (logs) when the fetch fails."""
    _, bucket = s3
    endpoint = moto_endpoint.replace("http://", "http://user:s3cr3t-passw0rd@")
    # the bucket exists, but a free port answers nothing: the fetch fails with the endpoint in hand
    closed = f"{endpoint.rsplit(':', 1)[0]}:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", closed)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    if secret_endpoint:  # the Job's second envFrom: the Secret's copy under the prefix
        monkeypatch.setenv("MODELDEPLOY_SECRET_AWS_ENDPOINT_URL", closed)
        monkeypatch.setenv("MODELDEPLOY_SECRET_AWS_SECRET_ACCESS_KEY", "testing")
    run = optimize("--source", f"s3://{bucket}/model.keras", "--output", tmp_path / "out", "--version", "1")
    assert run.code == Failure.FETCH_FAILED.exit_code, run.stderr
    message = run.termination["message"]
    print(message)
    for text in (message, run.stdout, run.stderr, run.termination_path.read_text()):
        assert "s3cr3t" not in text and "user:" not in text, text
    assert "unreachable" in message and "127.0.0.1" in message, "the message still says where it failed"
