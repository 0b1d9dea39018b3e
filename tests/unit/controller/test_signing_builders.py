"""Signed models in the children: the Job mounts the source's trust anchor and the signing private
key (one key each, read-only) and passes them as flags; the serving pods' verify-model init
container gets only the public key; the status records who signed; the operator-wide default."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import kubernetes_validate
import pytest

from modeldeploy.api import InvalidModelDeployment, ModelDeployment, parse_model_deployment
from modeldeploy.api.status import ModelDeploymentStatus, OptimizationResult
from modeldeploy.contract.summary import OptimizerSummary
from modeldeploy.controller.builders import Owner, build_job, desired_artifact
from modeldeploy.controller.builders.artifacts import artifact_hash, claims_read, needs_job, with_signing_default
from modeldeploy.controller.builders.deployment import build_deployment
from modeldeploy.controller.builders.names import job_name
from modeldeploy.controller.plan import plan, previous_artifact
from modeldeploy.controller.status import status_of
from modeldeploy.controller.views import DeploymentView, JobView, Observed

K8S_VERSION = "1.36.0"
OWNER = Owner(name="digits", uid="0b5e7a5c-0000-4000-8000-000000000001")
SIGNED = {"artifacts": {"uri": "pvc://models/modeldeploy/digits", "signingKeySecret": "model-signing"}}
SOURCE_KEY = {"model": {"signature": {"publicKey": {"configMapName": "approvers", "key": "release.pub"}}}}


def pod_of(manifest: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = manifest["spec"]["template"]["spec"]
    return pod


def volume(pod: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [v for v in pod["volumes"] if v["name"] == name]
    return found


def test_the_job_signs_with_only_the_private_key_mounted_read_only(make_md: Callable[..., ModelDeployment]) -> None:
    job = build_job(make_md(spec=SIGNED), OWNER)
    pod = pod_of(job)
    (container,) = pod["containers"]
    assert "--signing-key=/etc/modeldeploy/signing/signing.key" in container["args"]
    assert volume(pod, "signing-key")["secret"] == {
        "secretName": "model-signing",
        "items": [{"key": "signing.key", "path": "signing.key"}],
        "defaultMode": 0o440,
    }
    assert {"name": "signing-key", "mountPath": "/etc/modeldeploy/signing", "readOnly": True} in container[
        "volumeMounts"
    ]
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)


def test_the_job_verifies_the_source_with_a_public_key_from_a_config_map(
    make_md: Callable[..., ModelDeployment],
) -> None:
    md = make_md(spec=SOURCE_KEY)
    pod = pod_of(build_job(md, OWNER))
    args = pod["containers"][0]["args"]
    # the default signature URI: the model's + .sig, on the claim the Job mounts
    assert "--source-signature=file:///mnt/pvc/models/digits.keras.sig" in args
    assert "--source-public-key=/etc/modeldeploy/source-trust/public-key.pem" in args
    assert volume(pod, "source-trust")["configMap"] == {
        "name": "approvers",
        "items": [{"key": "release.pub", "path": "public-key.pem"}],
        "defaultMode": 0o440,
    }
    assert not any(a.startswith("--signing-key") for a in args), "not signing what it publishes"


def test_a_signature_on_another_claim_is_mounted_and_a_certificate_chain_comes_from_a_secret(
    make_md: Callable[..., ModelDeployment],
) -> None:
    md = make_md(
        spec={
            "model": {
                "signature": {
                    "uri": "pvc://signatures/digits.sig",
                    "certificateChain": {"secretName": "approver-ca", "key": "ca.pem"},
                }
            }
        }
    )
    assert claims_read(md.spec) == ["models", "signatures"]
    pod = pod_of(build_job(md, OWNER))
    args = pod["containers"][0]["args"]
    assert "--source-signature=file:///mnt/pvc/signatures/digits.sig" in args
    assert "--source-certificate-chain=/etc/modeldeploy/source-trust/certificate-chain.pem" in args
    assert volume(pod, "source-trust")["secret"]["items"] == [{"key": "ca.pem", "path": "certificate-chain.pem"}]


def test_a_signed_savedmodel_is_never_served_as_is(make_md: Callable[..., ModelDeployment]) -> None:
    as_is = {
        "model": {"storageUri": "pvc://models/digits-sm", "format": "savedmodel"},
        "optimization": {"enabled": False},
    }
    assert not needs_job(make_md(spec=as_is).spec)
    source_signed = make_md(spec={**as_is, "model": {**as_is["model"], **SOURCE_KEY["model"]}})
    assert needs_job(source_signed.spec), "only the Job verifies the source signature"
    assert desired_artifact(source_signed.name, source_signed.spec).optimized
    assert (
        "--source-signature=file:///mnt/pvc/models/digits-sm.sig"
        in build_job(source_signed, OWNER)["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    assert needs_job(make_md(spec={**as_is, **SIGNED}).spec), "only the Job signs what is served"


def test_keyless_needs_no_volume(make_md: Callable[..., ModelDeployment]) -> None:
    keyless = {"identity": "release@example.com", "oidcIssuer": "https://accounts.google.com"}
    pod = pod_of(build_job(make_md(spec={"model": {"signature": {"keyless": keyless}}}), OWNER))
    args = pod["containers"][0]["args"]
    assert "--source-identity=release@example.com" in args
    assert "--source-oidc-issuer=https://accounts.google.com" in args
    assert not any(v["name"] == "source-trust" for v in pod["volumes"])


@pytest.mark.parametrize(
    ("signature", "message"),
    [
        ({}, "give exactly one of publicKey, certificateChain and keyless"),
        (
            {"publicKey": {"secretName": "a", "key": "k"}, "certificateChain": {"secretName": "a", "key": "c"}},
            "give exactly one of publicKey, certificateChain and keyless",
        ),
        ({"publicKey": {"key": "k"}}, "give exactly one of secretName and configMapName"),
        ({"publicKey": {"secretName": "a", "configMapName": "b", "key": "k"}}, "exactly one of secretName"),
    ],
)
def test_an_ambiguous_signature_spec_is_refused(
    minimal: dict[str, Any], signature: dict[str, Any], message: str
) -> None:
    minimal["spec"]["model"]["signature"] = signature
    with pytest.raises(InvalidModelDeployment, match=message):
        parse_model_deployment(minimal)


def test_the_verify_container_gets_only_the_public_key(make_md: Callable[..., ModelDeployment]) -> None:
    md = make_md(spec=SIGNED)
    artifact = dataclasses.replace(desired_artifact(md.name, md.spec), manifest_sha256="a" * 64)
    assert artifact.signing_key_secret == "model-signing"
    deployment = build_deployment(md, artifact, "checksum", OWNER)
    pod = pod_of(deployment)
    (verify,) = pod["initContainers"]
    assert "--public-key=/etc/modeldeploy/signing/signing.pub" in verify["args"]
    assert f"--manifest-sha256={'a' * 64}" in verify["args"]
    assert volume(pod, "signing-public-key")["secret"]["items"] == [{"key": "signing.pub", "path": "signing.pub"}]
    assert {"name": "signing-public-key", "mountPath": "/etc/modeldeploy/signing", "readOnly": True} in verify[
        "volumeMounts"
    ]
    serving = pod["containers"][0]
    assert not any(m["name"] == "signing-public-key" for m in serving["volumeMounts"]), "TF Serving needs no key"
    assert not any("signing.key" in str(v) for v in pod["volumes"]), "the private key never reaches serving pods"
    kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_an_unsigned_artifact_is_verified_by_digest_only(make_md: Callable[..., ModelDeployment]) -> None:
    md = make_md()
    artifact = dataclasses.replace(desired_artifact(md.name, md.spec), manifest_sha256="a" * 64)
    (verify,) = pod_of(build_deployment(md, artifact, "checksum", OWNER))["initContainers"]
    assert not any(a.startswith("--public-key") for a in verify["args"])


def test_the_operator_default_applies_only_where_the_spec_names_no_secret(
    make_md: Callable[..., ModelDeployment],
) -> None:
    plain = make_md()
    defaulted = with_signing_default(plain, "team-signing")
    assert defaulted.spec.artifacts is not None and defaulted.spec.artifacts.signing_key_secret == "team-signing"
    assert defaulted.spec.artifacts_uri("digits") == plain.spec.artifacts_uri("digits")
    own = make_md(spec=SIGNED)
    assert with_signing_default(own, "team-signing").spec.artifacts.signing_key_secret == "model-signing"  # type: ignore[union-attr]
    assert with_signing_default(plain, None) is plain
    # Signing produces another artifact (another Job); unsigned specs keep their hash.
    assert artifact_hash(defaulted.spec) != artifact_hash(plain.spec)
    assert artifact_hash(make_md(spec=SOURCE_KEY).spec) != artifact_hash(plain.spec)


def test_status_records_the_signer_and_ready_says_who_signed(make_md: Callable[..., ModelDeployment]) -> None:
    md = make_md(spec=SIGNED)
    digest = desired_artifact(md.name, md.spec, md.namespace).hash
    summary = OptimizerSummary.model_validate(
        {
            "result": "Succeeded",
            "version": 1,
            "format": "savedmodel",
            "manifestSha256": "b" * 64,
            "signer": "key sha256:0123456789abcdef",
            "signatureSha256": "c" * 64,
            "sourceSigner": "CN=approver",
        }
    )
    job = JobView(job_name(md.name, digest), digest, "Succeeded", summary=summary)  # type: ignore[arg-type]
    deployment = DeploymentView("digits", digest, 2, 2, 1, 1, 1, True, "", "", "")
    observed = Observed(jobs={digest: job}, deployment=deployment)
    decided = plan(md, observed, ModelDeploymentStatus(), OWNER)
    status = status_of(md, decided, observed, ModelDeploymentStatus(), "2026-12-01T12:00:00Z").status
    assert status.optimization is not None
    assert status.optimization.signer == "key sha256:0123456789abcdef"
    assert status.optimization.signature_sha256 == "c" * 64
    assert status.optimization.source_signer == "CN=approver"
    ready = {c.type: c for c in status.conditions}["Ready"]
    assert ready.reason == "Ready" and "signed by key sha256:0123456789abcdef (model.sig sha256 cccccccccccc" in (
        ready.message
    )
    (verify,) = pod_of(next(c for c in decided.apply if c["kind"] == "Deployment"))["initContainers"]
    assert "--public-key=/etc/modeldeploy/signing/signing.pub" in verify["args"]


def test_a_previous_signed_artifact_stays_verified_by_signature(make_md: Callable[..., ModelDeployment]) -> None:
    md = make_md(spec=SIGNED)
    previous = ModelDeploymentStatus(
        served_artifact="abc",
        served_uri="pvc://models/modeldeploy/digits/abc/1",
        served_version=1,
        optimization=OptimizationResult(manifest_sha256="b" * 64, signature_sha256="c" * 64),
    )
    artifact = previous_artifact(md, previous)
    assert artifact is not None and artifact.signing_key_secret == "model-signing"
    unsigned = previous.model_copy(update={"optimization": OptimizationResult(manifest_sha256="b" * 64)})
    artifact = previous_artifact(md, unsigned)
    assert artifact is not None and artifact.signing_key_secret is None
