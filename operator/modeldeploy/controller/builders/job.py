"""The optimization Job: runs `modeldeploy optimize` once for one artifact.

The pod reads the model and datasets (PVCs mounted read-only, remote URIs fetched with the
credentials Secret as environment), writes `<artifact store>/<hash>/<version>/` on the artifacts
claim, and leaves a one-line JSON summary as its termination message, which the operator reads
from the pod status (no extra RBAC, no log scraping).
"""

from __future__ import annotations

from typing import Any

from modeldeploy.api import ModelDeployment
from modeldeploy.api.spec import pvc_parts, uri_scheme
from modeldeploy.contract.formats import Quantization
from modeldeploy.contract.layout import (
    SIGNING_DIR,
    SIGNING_PRIVATE_KEY,
    SOURCE_TRUST_DIR,
    TERMINATION_MESSAGE_PATH,
    TRUST_CHAIN_FILE,
    TRUST_PUBLIC_KEY_FILE,
)
from modeldeploy.contract.owner import ArtifactOwner, owner_flag
from modeldeploy.contract.redact import SECRET_ENV_PREFIX
from modeldeploy.controller.builders import names
from modeldeploy.controller.builders.artifacts import (
    artifact_hash,
    claims_read,
    output_base,
    pvc_mount_path,
    signature_uri,
    signing_key_secret,
)
from modeldeploy.controller.builders.labels import (
    ARTIFACT_LABEL,
    MODEL_VERSION_ANNOTATION,
    OPTIMIZER,
    WORKLOAD_CHECKOV_SKIPS,
    Owner,
    child_labels,
    metadata,
)
from modeldeploy.controller.builders.manifest import Manifest
from modeldeploy.controller.builders.security import container_security_context, pod_security_context
from modeldeploy.controller.builders.volumes import empty_dir, host_path_volume, key_file_volume, mount, pvc_volume

SOURCE_TRUST_VOLUME = "source-trust"
SIGNING_KEY_VOLUME = "signing-key"


def pod_uri(uri: str) -> str:
    """pvc://CLAIM/PATH as the file the pod sees where the claim is mounted; other URIs unchanged."""
    if uri_scheme(uri) != "pvc":
        return uri
    claim, path = pvc_parts(uri)
    return f"file://{pvc_mount_path(claim)}/{path}"


def artifact_owner(md: ModelDeployment) -> ArtifactOwner:
    """Whose artifact folders the Jobs write or clean (an object rendered offline is in `default`)."""
    return ArtifactOwner(namespace=md.namespace or "default", name=md.name, uid=md.metadata.uid or "")


def secret_env(secret: str) -> list[dict[str, Any]]:
    """The credentials Secret as environment: as it is (for boto3 and the GCS client), and again under
    SECRET_ENV_PREFIX, so the program knows exactly which values to keep out of its messages."""
    return [{"secretRef": {"name": secret}}, {"prefix": SECRET_ENV_PREFIX, "secretRef": {"name": secret}}]


def optimizer_args(md: ModelDeployment) -> list[str]:
    """The optimizer's command line (the contract with `modeldeploy optimize`)."""
    spec = md.spec
    opt = spec.optimization
    args = [
        "optimize",
        f"--source={pod_uri(spec.model.storage_uri)}",
        f"--format={spec.model.format.value}",
        f"--output={output_base(md.name, spec, md.namespace)}",
        f"--version={spec.model.version}",
        f"--termination-message-path={TERMINATION_MESSAGE_PATH}",
        "--log-format=text",
        "--reuse-complete-version",  # a retried pod reports what its first attempt published
        f"--owner={owner_flag(artifact_owner(md))}",
    ]
    if spec.model.sha256:
        args.append(f"--sha256={spec.model.sha256}")
    args += _signature_args(md)
    if opt.enabled:
        args += [
            f"--dense-sparsity={opt.pruning.dense_sparsity}",
            f"--conv-sparsity={opt.pruning.conv_sparsity}",
            f"--fine-tune-epochs={opt.pruning.fine_tune_epochs}",
            f"--quantization={opt.quantization.value}",
        ]
        # Only when set: the command line of a spec that does not use them stays what it was.
        if opt.pruning.schedule is not None:
            args.append(f"--pruning-schedule={opt.pruning.schedule.value}")
        if opt.pruning.keep_classifier_dense:
            args.append("--keep-classifier-dense")
        if opt.pruning.dense_block_size != 1:
            args.append(f"--dense-block-size={opt.pruning.dense_block_size}")
        if opt.pruning.train_data_uri:
            args.append(f"--train-data={pod_uri(opt.pruning.train_data_uri)}")
        if opt.evaluation.dataset_uri:
            args += [
                f"--eval-data={pod_uri(opt.evaluation.dataset_uri)}",
                f"--metric={opt.evaluation.metric.value}",
                f"--max-accuracy-drop={opt.evaluation.max_accuracy_drop}",
                f"--top-k={opt.evaluation.top_k}",
                f"--min-slice-examples={opt.evaluation.min_slice_examples}",
            ]
            if opt.evaluation.max_slice_accuracy_drop is not None:
                args.append(f"--max-slice-accuracy-drop={opt.evaluation.max_slice_accuracy_drop}")
    else:
        args.append(f"--quantization={Quantization.NONE.value}")  # conversion to SavedModel only
    return args


def _signature_args(md: ModelDeployment) -> list[str]:
    """Verify the source model's signature with the mounted trust anchor; sign the published folder."""
    args: list[str] = []
    signature, uri = md.spec.model.signature, signature_uri(md.spec)
    if signature is not None and uri is not None:
        args.append(f"--source-signature={pod_uri(uri)}")
        if signature.public_key is not None:
            args.append(f"--source-public-key={SOURCE_TRUST_DIR / TRUST_PUBLIC_KEY_FILE}")
        elif signature.certificate_chain is not None:
            args.append(f"--source-certificate-chain={SOURCE_TRUST_DIR / TRUST_CHAIN_FILE}")
        elif signature.keyless is not None:
            args += [
                f"--source-identity={signature.keyless.identity}",
                f"--source-oidc-issuer={signature.keyless.oidc_issuer}",
            ]
    if signing_key_secret(md.spec) is not None:
        args.append(f"--signing-key={SIGNING_DIR / SIGNING_PRIVATE_KEY}")
    return args


def _key_volumes(md: ModelDeployment) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The source's trust anchor and the signing private key, each one key of its object, read-only."""
    volumes, mounts = [], []
    signature = md.spec.model.signature
    anchor = signature and (signature.public_key or signature.certificate_chain)
    if signature is not None and anchor:
        path = TRUST_PUBLIC_KEY_FILE if signature.public_key is not None else TRUST_CHAIN_FILE
        volumes.append(
            key_file_volume(
                SOURCE_TRUST_VOLUME,
                secret=anchor.secret_name,
                config_map=anchor.config_map_name,
                key=anchor.key,
                path=path,
            )
        )
        mounts.append(mount(SOURCE_TRUST_VOLUME, str(SOURCE_TRUST_DIR), read_only=True))
    secret = signing_key_secret(md.spec)
    if secret is not None:
        volumes.append(
            key_file_volume(
                SIGNING_KEY_VOLUME, secret=secret, config_map=None, key=SIGNING_PRIVATE_KEY, path=SIGNING_PRIVATE_KEY
            )
        )
        mounts.append(mount(SIGNING_KEY_VOLUME, str(SIGNING_DIR), read_only=True))
    return volumes, mounts


def _volumes(md: ModelDeployment) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    spec = md.spec
    out_claim, _ = pvc_parts(spec.artifacts_uri(md.name))
    volumes = [empty_dir("tmp", "4Gi")]
    mounts = [mount("tmp", "/tmp", read_only=False)]
    for claim in sorted(set(claims_read(spec)) | {out_claim}):
        volume = pvc_volume(claim, read_only=claim != out_claim)
        volumes.append(volume)
        mounts.append(mount(volume["name"], pvc_mount_path(claim), read_only=claim != out_claim))
    opt = spec.optimization
    for uri in (spec.model.storage_uri, opt.pruning.train_data_uri, opt.evaluation.dataset_uri, signature_uri(spec)):
        if uri and uri_scheme(uri) == "file":
            path = uri.removeprefix("file://")
            volume = host_path_volume(path)
            if volume not in volumes:
                volumes.append(volume)
                mounts.append(mount(volume["name"], path, read_only=True))
    key_volumes, key_mounts = _key_volumes(md)
    return volumes + key_volumes, mounts + key_mounts


def build_job(md: ModelDeployment, owner: Owner | None) -> Manifest:
    spec = md.spec
    opt = spec.optimization
    digest = artifact_hash(spec, md.name, md.namespace)
    labels = {**child_labels(md.name, OPTIMIZER, spec.model.version), ARTIFACT_LABEL: digest}
    volumes, mounts = _volumes(md)
    container: dict[str, Any] = {
        "name": "optimizer",
        "image": opt.image,
        "command": ["modeldeploy"],
        "args": optimizer_args(md),
        "env": [
            {"name": "HOME", "value": "/tmp"},  # Keras writes ~/.keras; the root fs is read-only
            {"name": "TF_CPP_MIN_LOG_LEVEL", "value": "1"},
            {"name": "PYTHONUNBUFFERED", "value": "1"},  # progress reaches `kubectl logs -f` at once
        ],
        "resources": opt.resources.to_api(),
        "securityContext": container_security_context(),
        "volumeMounts": mounts,
        "terminationMessagePath": str(TERMINATION_MESSAGE_PATH),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if spec.model.credentials_secret:
        container["envFrom"] = secret_env(spec.model.credentials_secret)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,  # the optimizer never talks to the API server
        "securityContext": pod_security_context(),
        "containers": [container],
        "volumes": volumes,
    }
    serving = spec.serving
    if serving.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in serving.image_pull_secrets]
    if serving.node_selector:
        pod_spec["nodeSelector"] = dict(serving.node_selector)
    if serving.tolerations:
        pod_spec["tolerations"] = list(serving.tolerations)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(
            names.job_name(md.name, digest),
            md.namespace,
            labels,
            owner,
            {MODEL_VERSION_ANNOTATION: str(spec.model.version), **WORKLOAD_CHECKOV_SKIPS},
        ),
        "spec": {
            "backoffLimit": opt.backoff_limit,
            "activeDeadlineSeconds": opt.active_deadline_seconds,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
