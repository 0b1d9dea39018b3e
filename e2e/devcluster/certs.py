"""The key material of one local control plane: a throw-away CA and what it signs.

Why it exists: kube-apiserver only speaks TLS, authenticates its admin by client certificate and signs
ServiceAccount tokens with a key of its own; kubeadm or kind would normally make these. The control plane
(`controlplane.py`) calls `write_pki()` once per cluster, into the cluster's private folder.

ECDSA P-256 keys throughout: Kubernetes accepts them everywhere (serving, client auth, ES256 tokens)
and they take milliseconds to generate, which matters for a warm start measured in seconds.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: The names the serving certificate is valid for: loopback, plus the in-cluster names of the
#: `kubernetes` Service (pods never run here, but tools that read the kubeconfig may use them).
_SERVING_DNS = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)

#: The admin identity: the group system:masters bypasses RBAC, as kubeadm's admin.conf does.
ADMIN_USER = "modeldeploy-admin"
ADMIN_GROUP = "system:masters"
#: The only common name --requestheader-allowed-names accepts, so no other client cert of this CA
#: can assert X-Remote-User headers.
FRONT_PROXY_USER = "front-proxy-client"


@dataclass(frozen=True)
class Pki:
    """Paths of the PEM files one control plane uses (all inside its private folder)."""

    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    front_proxy_cert: Path  # kube-apiserver's client cert towards aggregated API servers
    front_proxy_key: Path
    sa_key: Path  # the ServiceAccount token signing key (private)
    sa_pub: Path  # its public half, which kube-apiserver verifies tokens with

    @classmethod
    def in_folder(cls, folder: Path) -> Pki:
        """Where write_pki() puts each file (also how `python -m devcluster status` finds them again)."""
        return cls(
            ca_cert=folder / "ca.crt",
            ca_key=folder / "ca.key",
            serving_cert=folder / "apiserver.crt",
            serving_key=folder / "apiserver.key",
            admin_cert=folder / "admin.crt",
            admin_key=folder / "admin.key",
            front_proxy_cert=folder / "front-proxy-client.crt",
            front_proxy_key=folder / "front-proxy-client.key",
            sa_key=folder / "sa.key",
            sa_pub=folder / "sa.pub",
        )


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, days: int
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # A minute of slack: the clocks are the same, but certificate checks are strict about "not yet valid".
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=days))
    )


def write_pki(folder: Path, *, days: int = 365) -> Pki:
    """Create a fresh CA, a serving cert for 127.0.0.1/localhost, an admin client cert and an SA key pair."""
    folder.mkdir(parents=True, exist_ok=True)

    ca_key = _new_key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "modeldeploy-dev-ca")])
    ca_cert = (
        _builder(ca_name, ca_name, ca_key, days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(
        subject: x509.Name, usage: x509.ObjectIdentifier, san: x509.SubjectAlternativeName | None
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = _new_key()
        builder = (
            _builder(subject, ca_name, key, days)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if san is not None:
            builder = builder.add_extension(san, critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    serving_san = x509.SubjectAlternativeName(
        [x509.DNSName(name) for name in _SERVING_DNS]
        + [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("10.96.0.1"))]
    )
    serving_cert, serving_key = leaf(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
        ExtendedKeyUsageOID.SERVER_AUTH,
        serving_san,
    )
    admin_cert, admin_key = leaf(
        x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, ADMIN_GROUP),
                x509.NameAttribute(NameOID.COMMON_NAME, ADMIN_USER),
            ]
        ),
        ExtendedKeyUsageOID.CLIENT_AUTH,
        None,
    )
    # The aggregation layer: kube-apiserver proxies to aggregated API servers (metrics, for the HPA) with
    # this certificate and the X-Remote-* headers; they trust it through --requestheader-client-ca-file.
    front_proxy_cert, front_proxy_key = leaf(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, FRONT_PROXY_USER)]),
        ExtendedKeyUsageOID.CLIENT_AUTH,
        None,
    )
    sa_key = _new_key()

    pki = Pki.in_folder(folder)
    _write(pki.ca_cert, _cert_pem(ca_cert))
    _write(pki.ca_key, _key_pem(ca_key), private=True)
    _write(pki.serving_cert, _cert_pem(serving_cert))
    _write(pki.serving_key, _key_pem(serving_key), private=True)
    _write(pki.admin_cert, _cert_pem(admin_cert))
    _write(pki.admin_key, _key_pem(admin_key), private=True)
    _write(pki.front_proxy_cert, _cert_pem(front_proxy_cert))
    _write(pki.front_proxy_key, _key_pem(front_proxy_key), private=True)
    _write(pki.sa_key, _key_pem(sa_key), private=True)
    _write(
        pki.sa_pub,
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
    )
    return pki
