"""OpenSSF model signatures with real keys made in the test: the optimizer's signer and verifier
(`optimize/signing.py`), which the Job uses on the source model and the verify-model init
container on the published folder. Every way a folder can differ from what was signed is refused
with the file named: changed, added, removed; so are a wrong key, an untrusted CA and an expired
certificate."""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path

import pytest

from modeldeploy.cli import main
from modeldeploy.cli.verify import EXIT_TAMPERED
from modeldeploy.contract.failures import Failure
from modeldeploy.contract.layout import SIGNATURE_FILE, SUMS_FILE
from modeldeploy.contract.sums import write_sums
from modeldeploy.optimize.signing import SignatureProblem, Trust, key_fingerprint, sign_folder, verify
from testkeys import key_pair, make_ca, sign_with_certificate, sign_with_key


def version_folder(root: Path) -> Path:
    folder = root / "1"
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"graph" * 100)
    (folder / "variables" / "variables.index").write_bytes(b"index")
    (folder / "model.tflite").write_bytes(b"tflite" * 50)
    (folder / "report.json").write_text("{}")
    return folder


def published(root: Path, private_key: Path) -> Path:
    """What the optimizer publishes: files, then model.sig, then SHA256SUMS listing both."""
    folder = version_folder(root)
    sign_folder(folder, private_key, folder / SIGNATURE_FILE)
    write_sums(folder)
    return folder


def test_a_published_folder_verifies_with_its_public_key(tmp_path: Path) -> None:
    keys = key_pair(tmp_path / "keys")
    folder = published(tmp_path, keys.private)
    assert SIGNATURE_FILE in (folder / SUMS_FILE).read_text()  # the digest of SHA256SUMS pins the bundle
    verified = verify(folder, folder / SIGNATURE_FILE, Trust(public_key=keys.public))
    assert verified.signer == key_fingerprint(keys.public.read_bytes())
    assert verified.signer.startswith("key sha256:") and len(verified.signature_sha256) == 64


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda f: (f / "model.tflite").write_bytes(b"evil"), "model.tflite: content changed"),
        (lambda f: (f / "variables" / "evil.so").write_bytes(b"x"), "variables/evil.so: added (not signed)"),
        (lambda f: (f / "variables" / "variables.index").unlink(), "variables/variables.index: missing"),
    ],
    ids=["tampered", "added", "removed"],
)
def test_a_folder_that_differs_from_its_signature_is_refused_naming_the_file(
    tmp_path: Path, change: object, expected: str
) -> None:
    keys = key_pair(tmp_path / "keys")
    folder = published(tmp_path, keys.private)
    change(folder)  # type: ignore[operator]
    with pytest.raises(SignatureProblem) as refused:
        verify(folder, folder / SIGNATURE_FILE, Trust(public_key=keys.public))
    assert expected in refused.value.message
    assert not refused.value.missing


def test_a_folder_re_signed_with_a_foreign_key_is_refused(tmp_path: Path) -> None:
    ours, foreign = key_pair(tmp_path / "ours", "ours"), key_pair(tmp_path / "foreign", "foreign")
    folder = published(tmp_path, ours.private)
    (folder / "model.tflite").write_bytes(b"evil")
    (folder / SIGNATURE_FILE).unlink()
    sign_folder(folder, foreign.private, folder / SIGNATURE_FILE)
    with pytest.raises(SignatureProblem, match=r"not made with the public key ours\.pub"):
        verify(folder, folder / SIGNATURE_FILE, Trust(public_key=ours.public))


def test_a_missing_signature_is_reported_as_missing(tmp_path: Path) -> None:
    keys = key_pair(tmp_path / "keys")
    folder = version_folder(tmp_path)
    with pytest.raises(SignatureProblem) as refused:
        verify(folder, folder / SIGNATURE_FILE, Trust(public_key=keys.public))
    assert refused.value.missing and "model.sig not found" in refused.value.message


def test_garbage_in_place_of_a_signature_is_invalid(tmp_path: Path) -> None:
    keys = key_pair(tmp_path / "keys")
    folder = version_folder(tmp_path)
    (folder / SIGNATURE_FILE).write_text("not json")
    with pytest.raises(SignatureProblem, match="is not a sigstore bundle") as refused:
        verify(folder, folder / SIGNATURE_FILE, Trust(public_key=keys.public))
    assert not refused.value.missing


def test_a_source_file_signed_by_a_producer_verifies(tmp_path: Path) -> None:
    keys = key_pair(tmp_path / "keys")
    model = tmp_path / "digits.keras"
    model.write_bytes(b"keras zip" * 1000)
    sign_with_key(model, tmp_path / "digits.keras.sig", keys.private)
    assert verify(model, tmp_path / "digits.keras.sig", Trust(public_key=keys.public)).signer.startswith("key ")
    model.write_bytes(b"keras zip" * 999)
    with pytest.raises(SignatureProblem, match=r"digits\.keras: content changed"):
        verify(model, tmp_path / "digits.keras.sig", Trust(public_key=keys.public))


def test_a_certificate_signature_verifies_against_its_ca_and_names_the_signer(tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "ca", signer="approver")
    folder = version_folder(tmp_path)
    sign_with_certificate(folder, tmp_path / "model.sig", ca)
    verified = verify(folder, tmp_path / "model.sig", Trust(certificate_chain=ca.root))
    assert "CN=approver" in verified.signer and "approver@example.com" in verified.signer


def test_a_certificate_from_another_ca_is_refused(tmp_path: Path) -> None:
    ca, other = make_ca(tmp_path / "ca"), make_ca(tmp_path / "other")
    folder = version_folder(tmp_path)
    sign_with_certificate(folder, tmp_path / "model.sig", ca)
    with pytest.raises(SignatureProblem, match=r"not trusted by ca\.pem"):
        verify(folder, tmp_path / "model.sig", Trust(certificate_chain=other.root))


def test_an_expired_certificate_is_refused(tmp_path: Path) -> None:
    # The library checks the chain at the certificate's own notBefore: without our check this passes.
    ca = make_ca(tmp_path / "ca", signer="retired", expired=True)
    folder = version_folder(tmp_path)
    sign_with_certificate(folder, tmp_path / "model.sig", ca)
    yesterday = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)).date()
    with pytest.raises(SignatureProblem, match=f"certificate .*CN=retired.* expired on {yesterday}"):
        verify(folder, tmp_path / "model.sig", Trust(certificate_chain=ca.root))


def test_a_key_signature_is_refused_where_a_certificate_is_required(tmp_path: Path) -> None:
    keys, ca = key_pair(tmp_path / "keys"), make_ca(tmp_path / "ca")
    folder = published(tmp_path, keys.private)
    with pytest.raises(SignatureProblem, match="carries no certificate"):
        verify(folder, folder / SIGNATURE_FILE, Trust(certificate_chain=ca.root))


def test_trust_needs_exactly_one_anchor(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Trust()
    with pytest.raises(ValueError, match="OIDC issuer"):
        Trust(identity="someone@example.com")


# -- the optimization run: the source is verified before any work, the published folder is signed --------


def assert_failed(run, reason: Failure, *, mentions: str, out: Path) -> None:  # type: ignore[no-untyped-def]
    """One line on stderr and the termination summary name the failure; nothing is published."""
    assert run.code == reason.exit_code, (run.code, run.stderr)
    (line,) = run.stderr.splitlines()
    assert line.startswith(f"modeldeploy optimize: {reason.value}: ") and mentions in line, line
    assert run.termination["reason"] == reason.value and mentions in run.termination["message"]
    assert not out.exists(), sorted(out.rglob("*"))


def copy_model(mlp: object, tmp_path: Path) -> Path:
    model = tmp_path / "source" / "digits.keras"
    model.parent.mkdir(parents=True)
    model.write_bytes(mlp.keras_path.read_bytes())  # type: ignore[attr-defined]
    return model


def test_a_signed_source_is_optimized_and_the_published_folder_signed(optimize, mlp, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    producer, ours = key_pair(tmp_path / "producer", "producer"), key_pair(tmp_path / "ours", "ours")
    model = copy_model(mlp, tmp_path)
    sign_with_key(model, Path(f"{model}.sig"), producer.private)
    out = tmp_path / "out"
    run = optimize(
        "--source", model, "--output", out, "--version", "1", "--quantization", "dynamic",
        "--source-public-key", producer.public, "--signing-key", ours.private,
    )  # fmt: skip
    assert run.code == 0, run.stderr
    folder = out / "1"
    summary = run.termination
    assert summary["sourceSigner"] == key_fingerprint(producer.public.read_bytes())
    assert summary["signer"] == key_fingerprint(ours.public.read_bytes())
    assert summary["signatureSha256"] == hashlib.sha256((folder / SIGNATURE_FILE).read_bytes()).hexdigest()
    assert SIGNATURE_FILE in (folder / SUMS_FILE).read_text()
    verified = verify(folder, folder / SIGNATURE_FILE, Trust(public_key=ours.public))
    assert verified.signer == summary["signer"]
    report = json.loads((folder / "report.json").read_text())
    assert report["signing"] == {"signer": summary["signer"], "sourceSigner": summary["sourceSigner"]}


def test_a_source_without_its_signature_fails_with_signature_missing(optimize, mlp, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    producer = key_pair(tmp_path / "producer", "producer")
    model = copy_model(mlp, tmp_path)
    out = tmp_path / "out"
    run = optimize("--source", model, "--output", out, "--version", "1", "--source-public-key", producer.public)
    assert_failed(run, Failure.SIGNATURE_MISSING, mentions="digits.keras.sig", out=out)
    assert run.code == 19


def test_a_source_changed_after_signing_fails_with_signature_invalid(optimize, mlp, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    producer = key_pair(tmp_path / "producer", "producer")
    model = copy_model(mlp, tmp_path)
    sign_with_key(model, Path(f"{model}.sig"), producer.private)
    model.write_bytes(model.read_bytes() + b"\0")
    out = tmp_path / "out"
    run = optimize("--source", model, "--output", out, "--version", "1", "--source-public-key", producer.public)
    assert_failed(run, Failure.SIGNATURE_INVALID, mentions="digits.keras: content changed", out=out)
    assert run.code == 18


def test_a_source_signed_by_someone_else_fails_naming_the_key(optimize, mlp, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    producer, stranger = key_pair(tmp_path / "producer", "producer"), key_pair(tmp_path / "stranger", "stranger")
    model = copy_model(mlp, tmp_path)
    sign_with_key(model, tmp_path / "elsewhere.sig", stranger.private)
    out = tmp_path / "out"
    run = optimize(
        "--source", model, "--output", out, "--version", "1",
        "--source-signature", tmp_path / "elsewhere.sig", "--source-public-key", producer.public,
    )  # fmt: skip
    assert_failed(run, Failure.SIGNATURE_INVALID, mentions="not made with the public key producer.pub", out=out)


def test_a_source_signed_with_an_expired_certificate_fails(optimize, mlp, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ca = make_ca(tmp_path / "ca", signer="retired", expired=True)
    model = copy_model(mlp, tmp_path)
    sign_with_certificate(model, Path(f"{model}.sig"), ca)
    out = tmp_path / "out"
    run = optimize("--source", model, "--output", out, "--version", "1", "--source-certificate-chain", ca.root)
    assert_failed(run, Failure.SIGNATURE_INVALID, mentions="CN=retired", out=out)
    assert "expired" in run.stderr


def test_a_bad_signing_key_fails_before_any_work(optimize, mlp, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "bad.key").write_text("not a key")
    out = tmp_path / "out"
    run = optimize("--source", mlp.keras_path, "--output", out, "--version", "1", "--signing-key", tmp_path / "bad.key")
    assert_failed(run, Failure.EXPORT_FAILED, mentions="cannot read the signing key", out=out)
    assert "stage=load" not in run.stdout and "load" not in run.stdout.split("fetch")[0]


# -- modeldeploy verify: the init container, and by hand -------------------------------------------------


def run_verify(folder: Path, *flags: str | Path) -> tuple[int, str]:
    termination = folder.parent / "termination"
    code = main(["verify", "--dir", str(folder), *map(str, flags), "--termination-message-path", str(termination)])
    return code, termination.read_text() if termination.exists() else ""


def test_verify_accepts_a_signed_folder_and_refuses_a_re_signed_one(tmp_path: Path) -> None:
    ours, foreign = key_pair(tmp_path / "ours", "ours"), key_pair(tmp_path / "foreign", "foreign")
    folder = published(tmp_path, ours.private)
    digest = hashlib.sha256((folder / SUMS_FILE).read_bytes()).hexdigest()
    assert run_verify(folder, "--manifest-sha256", digest, "--public-key", ours.public) == (0, "")
    assert run_verify(folder, "--public-key", ours.public) == (0, ""), "by hand, without the digest"
    # Someone swaps the model, then re-signs and rewrites SHA256SUMS consistently with another key.
    (folder / "model.tflite").write_bytes(b"evil")
    (folder / SIGNATURE_FILE).unlink()
    sign_folder(folder, foreign.private, folder / SIGNATURE_FILE)
    write_sums(folder)
    code, message = run_verify(folder, "--public-key", ours.public)
    assert code == EXIT_TAMPERED and message.startswith("ArtifactTampered: ")
    assert "not made with the public key ours.pub" in message


def test_verify_without_a_signature_refuses_when_a_key_is_given(tmp_path: Path) -> None:
    keys = key_pair(tmp_path / "keys")
    folder = version_folder(tmp_path)
    write_sums(folder)
    digest = hashlib.sha256((folder / SUMS_FILE).read_bytes()).hexdigest()
    code, message = run_verify(folder, "--manifest-sha256", digest, "--public-key", keys.public)
    assert code == EXIT_TAMPERED and "model.sig not found" in message


def test_verify_needs_something_to_check(tmp_path: Path) -> None:
    folder = version_folder(tmp_path)
    assert run_verify(folder)[0] == 2
