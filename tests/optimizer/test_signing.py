"""OpenSSF model signatures with real keys made in the test: the optimizer's signer and verifier
(`optimize/signing.py`), which the Job uses on the source model and the verify-model init
container on the published folder. Every way a folder can differ from what was signed is refused
with the file named: changed, added, removed; so are a wrong key, an untrusted CA and an expired
certificate."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

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
