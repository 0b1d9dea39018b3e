"""Real signing material made in the test: ECDSA P-256 keys and a small CA (root -> signing
certificate), written as PEM files the way a user would put them in a Secret or ConfigMap."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path


@dataclass(frozen=True)
class SigningCA:
    root: Path  # the CA certificate (what verifiers trust)
    key: Path  # the signer's private key
    certificate: Path  # the signer's certificate, issued by root


def private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_pair(folder: Path, name: str = "signing") -> KeyPair:
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    pair = KeyPair(folder / f"{name}.key", folder / f"{name}.pub")
    pair.private.write_bytes(private_pem(key))
    pair.public.write_bytes(public_pem(key))
    return pair


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "modeldeploy tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_ca(folder: Path, *, signer: str = "model-approver", expired: bool = False) -> SigningCA:
    """A root CA and one code-signing certificate for `signer` (with an e-mail name); `expired`: the
    signing certificate's validity ended yesterday."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = (
        x509.CertificateBuilder()
        .subject_name(_name("modeldeploy test root"))
        .issuer_name(_name("modeldeploy test root"))
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=30))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    start, end = (
        (now - datetime.timedelta(days=10), now - datetime.timedelta(days=1))
        if expired
        else (
            now - datetime.timedelta(days=1),
            now + datetime.timedelta(days=10),
        )
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(signer))
        .issuer_name(root.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(f"{signer}@example.com")]), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    ca = SigningCA(folder / "ca.pem", folder / f"{signer}.key", folder / f"{signer}.pem")
    ca.root.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    ca.key.write_bytes(private_pem(leaf_key))
    ca.certificate.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    return ca


def sign_with_key(model: Path, signature: Path, private_key: Path) -> None:
    """Sign as a model producer would (the library's defaults; the signature beside the model)."""
    import model_signing

    model_signing.signing.Config().use_elliptic_key_signer(private_key=private_key).sign(model, signature)


def sign_with_certificate(model: Path, signature: Path, ca: SigningCA) -> None:
    import model_signing

    model_signing.signing.Config().use_certificate_signer(
        private_key=ca.key, signing_certificate=ca.certificate, certificate_chain=[ca.root]
    ).sign(model, signature)
