"""OpenSSF model signatures: sign a published version folder, verify a source model or a folder.

The format is the OpenSSF Model Signing specification (the `model-signing` library): a sigstore
bundle whose DSSE payload lists the sha256 of every file of the model. The optimizer uses this
module twice (it verifies the source model before any work, and signs the version folder it
publishes) and `modeldeploy verify`, the serving pods' init container, verifies that folder before
TF Serving may load it. Everything the library raises becomes a `SignatureProblem` whose message
names the file, key, certificate or identity that failed, in one line.

Two checks are ours on top of the library: a certificate must be valid now (the library checks the
chain at the certificate's own notBefore, so an expired certificate would pass), and a manifest
mismatch is reported as file names (added, missing, changed) instead of raw digests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from modeldeploy.contract import sums
from modeldeploy.contract.layout import SUMS_FILE

_MISMATCH = "Signature mismatch"


class SignatureProblem(Exception):
    """The signature is missing (`missing`) or does not verify; the message says what failed."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(" ".join(message.split()))
        self.message = " ".join(message.split())
        self.missing = missing


@dataclass(frozen=True)
class Trust:
    """What a signature must verify against: exactly one of a public key, a certificate chain (the
    signer's certificate must chain to it), or a keyless sigstore identity (needs the internet)."""

    public_key: Path | None = None
    certificate_chain: Path | None = None
    identity: str | None = None
    oidc_issuer: str | None = None

    def __post_init__(self) -> None:
        chosen = [self.public_key is not None, self.certificate_chain is not None, self.identity is not None]
        if sum(chosen) != 1:
            raise ValueError("give exactly one of a public key, a certificate chain or a sigstore identity")
        if self.identity is not None and not self.oidc_issuer:
            raise ValueError("a sigstore identity needs its OIDC issuer")


@dataclass(frozen=True)
class Signed:
    """Who signed, and the sha256 of the signature bundle."""

    signer: str
    signature_sha256: str


def key_fingerprint(public_key_pem: bytes) -> str:
    """The signer identity of a key: the sha256 of its PEM SubjectPublicKeyInfo (the bundle's key hint)."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_public_key(public_key_pem)
    canonical = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "key sha256:" + hashlib.sha256(canonical).hexdigest()[:16]


def sign_folder(folder: Path, private_key: Path, signature: Path) -> Signed:
    """Sign every file of `folder` except the signature itself and SHA256SUMS (written afterwards)."""
    import model_signing
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(private_key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise SignatureProblem(f"cannot read the signing key {private_key}: {exc}") from None
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    ignored = [Path(signature.name), Path(SUMS_FILE)] if signature.parent == folder else [Path(SUMS_FILE)]
    hashing = model_signing.hashing.Config().use_file_serialization(ignore_paths=ignored)
    try:
        config = model_signing.signing.Config().set_hashing_config(hashing)
        config.use_elliptic_key_signer(private_key=private_key).sign(folder, signature)
    except (OSError, ValueError) as exc:
        raise SignatureProblem(f"cannot sign {folder} with {private_key}: {exc}") from None
    return Signed(key_fingerprint(public_pem), sums.sha256_file(signature))


def verify(model: Path, signature: Path, trust: Trust, now: datetime | None = None) -> Signed:
    """Verify that `model` (a file or a folder) is exactly what `signature` signed, by the trusted signer."""
    if not signature.is_file():
        raise SignatureProblem(f"signature {signature} not found", missing=True)
    bundle = _read_bundle(signature)
    if trust.certificate_chain is not None:
        _check_validity(bundle, signature, now or datetime.now(UTC))
    import model_signing

    config = model_signing.verifying.Config()
    try:
        if trust.public_key is not None:
            config.use_elliptic_key_verifier(public_key=trust.public_key)
            signer = key_fingerprint(trust.public_key.read_bytes())
        elif trust.certificate_chain is not None:
            config.use_certificate_verifier(certificate_chain=[trust.certificate_chain])
            signer = _certificate_identity(bundle)
        else:
            assert trust.identity is not None and trust.oidc_issuer is not None
            config.use_sigstore_verifier(identity=trust.identity, oidc_issuer=trust.oidc_issuer)
            signer = f"{trust.identity} ({trust.oidc_issuer})"
    except (OSError, ValueError) as exc:
        raise SignatureProblem(f"cannot read the trusted key or certificates: {exc}") from None
    try:
        config.verify(model, signature)
    except Exception as exc:
        text = str(exc).strip()
        if text.startswith(_MISMATCH):
            differences = _differences(model, bundle) or [text]
            message = f"{model} differs from its signature {signature.name}: " + "; ".join(differences)
            raise SignatureProblem(message) from None
        raise SignatureProblem(_why(exc, signature, trust)) from None
    return Signed(signer, sums.sha256_file(signature))


def _read_bundle(signature: Path) -> dict[str, Any]:
    try:
        bundle = json.loads(signature.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SignatureProblem(f"signature {signature} is not a sigstore bundle: {exc}") from None
    if not isinstance(bundle, dict) or "dsseEnvelope" not in bundle:
        raise SignatureProblem(f"signature {signature} is not a sigstore bundle with a DSSE envelope")
    return bundle


def _why(exc: Exception, signature: Path, trust: Trust) -> str:
    """A one-line reason for a failed verification (the library's exceptions carry little text)."""
    detail = str(exc).strip() or type(exc).__name__
    if trust.public_key is not None:
        return f"signature {signature} was not made with the public key {trust.public_key.name}: {detail}"
    if trust.certificate_chain is not None:
        return (
            f"signature {signature}: the signing certificate is not trusted by {trust.certificate_chain.name}: {detail}"
        )
    return f"signature {signature} was not made by {trust.identity} ({trust.oidc_issuer}): {detail}"


def _certificates(bundle: dict[str, Any]) -> list[Any]:
    from cryptography import x509

    chain = bundle.get("verificationMaterial", {}).get("x509CertificateChain", {}).get("certificates", [])
    out = []
    for entry in chain:
        try:
            out.append(x509.load_der_x509_certificate(base64.b64decode(entry.get("rawBytes", ""))))
        except (ValueError, binascii.Error) as exc:
            raise SignatureProblem(f"the signature's certificate chain is unreadable: {exc}") from None
    if not out:
        raise SignatureProblem("the signature carries no certificate (was it signed with a bare key?)")
    return out


def _check_validity(bundle: dict[str, Any], signature: Path, now: datetime) -> None:
    for certificate in _certificates(bundle):
        subject = certificate.subject.rfc4514_string()
        if certificate.not_valid_after_utc < now:
            raise SignatureProblem(
                f"signature {signature}: certificate {subject} expired on {certificate.not_valid_after_utc:%Y-%m-%d}"
            )
        if certificate.not_valid_before_utc > now:
            raise SignatureProblem(
                f"signature {signature}: certificate {subject} is not valid before "
                f"{certificate.not_valid_before_utc:%Y-%m-%d}"
            )


def _certificate_identity(bundle: dict[str, Any]) -> str:
    """The signing certificate's subject, and its e-mail or URI names when it has any."""
    from cryptography import x509

    leaf = _certificates(bundle)[0]
    names: list[str] = []
    try:
        alternative = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [
            *alternative.get_values_for_type(x509.RFC822Name),
            *alternative.get_values_for_type(x509.UniformResourceIdentifier),
        ]
    except x509.ExtensionNotFound:
        pass
    subject = leaf.subject.rfc4514_string()
    return f"{subject} ({', '.join(names)})" if names else subject


def _differences(model: Path, bundle: dict[str, Any]) -> list[str]:
    """Added, missing and changed files between the model and the signed manifest (authentic here:
    the library checked the signature before it compared the files)."""
    try:
        payload = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
        predicate = payload["predicate"]
        signed = {r["name"]: r["digest"] for r in predicate["resources"] if r.get("algorithm") == "sha256"}
        ignored = [PurePosixPath(p) for p in predicate.get("serialization", {}).get("ignore_paths", [])]
    except (KeyError, TypeError, ValueError, binascii.Error):
        return []
    if model.is_file():  # a one-file model is signed as the resource "."
        if len(signed) != 1:
            return []
        changed = sums.sha256_file(model) != next(iter(signed.values()))
        return [f"{model.name}: content changed"] if changed else []
    else:
        found = {
            name: digest
            for name, digest in sums.tree_manifest(model)
            if not any(PurePosixPath(name) == p or p in PurePosixPath(name).parents for p in ignored)
        }
    out = [f"{name}: added (not signed)" for name in sorted(set(found) - set(signed))]
    out += [f"{name}: missing" for name in sorted(set(signed) - set(found))]
    out += [f"{name}: content changed" for name in sorted(set(found) & set(signed)) if found[name] != signed[name]]
    return out
