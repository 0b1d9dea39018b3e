"""Builders: golden output for each example, and the properties each child must have."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from md_examples import EXAMPLES, load_example
from modeldeploy.api import ModelDeployment, parse_model_deployment
from modeldeploy.controller.builders import Owner, build_hpa, build_pdb, desired_artifact, render_all
from modeldeploy.controller.builders.artifacts import artifact_hash
from modeldeploy.controller.builders.cleanup import build_delete_cleanup_job
from modeldeploy.controller.builders.job import build_job
from modeldeploy.controller.builders.tfserving import batching_config, model_config, server_args

GOLDEN = Path(__file__).parent / "golden"
OWNER = Owner(name="digits", uid="0b5e7a5c-0000-4000-8000-000000000001")


def by_kind(children: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for child in children:
        key = child["kind"] if child["kind"] != "ConfigMap" else f"ConfigMap/{child['metadata']['name']}"
        out[key] = child
    return out


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_golden_render(example: Path) -> None:
    """The whole rendered output, reviewed once and frozen (UPDATE_GOLDEN=1 rewrites it)."""
    rendered = yaml.safe_dump_all(render_all(parse_model_deployment(load_example(example))), sort_keys=False)
    golden = GOLDEN / f"{example.stem}.yaml"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(rendered)
    assert golden.exists(), "run UPDATE_GOLDEN=1 pytest tests/unit/controller/test_builders.py and review the diff"
    assert rendered == golden.read_text()


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_examples_render_every_kind(example: Path) -> None:
    kinds = [c["kind"] for c in render_all(parse_model_deployment(load_example(example)))]
    assert kinds[:2] == ["NetworkPolicy", "Job"]
    assert {"ConfigMap", "Deployment", "Service"} <= set(kinds)


def test_every_child_has_owner_labels_and_namespace(make_md: Callable[..., ModelDeployment]) -> None:
    md = make_md(spec={"autoscaling": {"maxReplicas": 4}})
    children = render_all(md, OWNER)
    assert {c["kind"] for c in children} == {
        "Job",
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }
    for child in children:
        meta = child["metadata"]
        assert meta["namespace"] == "ml"
        assert meta["ownerReferences"] == [OWNER.reference()]
        assert meta["ownerReferences"][0]["controller"] is True
        assert meta["labels"]["app.kubernetes.io/instance"] == "digits"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "modeldeploy-operator"


def test_pods_meet_the_restricted_pod_security_level(make_md: Callable[..., ModelDeployment]) -> None:
    md = make_md(
        spec={
            "model": {"storageUri": "s3://bucket/m", "format": "savedmodel"},
            "optimization": {"enabled": False},
            "artifacts": {"uri": "pvc://art"},
        }
    )
    for child in render_all(md) + render_all(make_md()):
        if child["kind"] not in ("Job", "Deployment"):
            continue
        pod = child["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"] + pod.get("initContainers", []):
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["readOnlyRootFilesystem"] is True
            writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
            assert "/tmp" in writable, f"{container['name']} needs a writable /tmp"
        assert not any("hostPath" in v for v in pod["volumes"])


def test_tf_serving_container_follows_the_reference(make_md: Callable[..., ModelDeployment]) -> None:
    md = make_md(spec={"serving": {"resources": {"limits": {"cpu": "2500m"}}, "batching": {"enabled": True}}})
    deployment = by_kind(render_all(md))["Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["tensorflow_model_server"]
    assert {p["containerPort"] for p in container["ports"]} == {8500, 8501}
    args = container["args"]
    assert "--rest_api_port=8501" in args and "--port=8500" in args
    assert "--tensorflow_intra_op_parallelism=3" in args and "--rest_api_num_threads=12" in args
    assert "--enable_batching=true" in args
    assert "--batching_parameters_file=/etc/tfserving/batching.config" in args
    assert "--monitoring_config_file=/etc/tfserving/monitoring.config" in args
    assert container["readinessProbe"]["httpGet"]["path"] == "/v1/models/digits/metadata"
    assert container["startupProbe"]["httpGet"]["path"] == "/v1/models/digits/metadata"
    assert container["livenessProbe"] == {
        "tcpSocket": {"port": "grpc"},
        "periodSeconds": 10,
        "failureThreshold": 3,
    }
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    artifact = desired_artifact(md.name, md.spec, md.namespace)
    assert mounts["/models/digits/1"]["readOnly"] is True
    assert mounts["/models/digits/1"]["subPath"] == f"modeldeploy/digits/{artifact.hash}/1"


def test_batching_without_the_flag_is_never_configured(make_md: Callable[..., ModelDeployment]) -> None:
    # Setting --batching_parameters_file without --enable_batching is a startup error.
    args = server_args(make_md().spec.serving)
    assert not any(a.startswith("--batching_parameters_file") for a in args)


def test_config_texts(make_md: Callable[..., ModelDeployment]) -> None:
    md = make_md(
        spec={
            "model": {"version": 7},
            "serving": {
                "batching": {
                    "enabled": True,
                    "maxBatchSize": 16,
                    "allowedBatchSizes": [4, 8, 16],
                    "numBatchThreads": 2,
                }
            },
        }
    )
    text = model_config(desired_artifact(md.name, md.spec))
    assert 'name: "digits"' in text and 'base_path: "/models/digits"' in text and "versions: 7" in text
    batching = batching_config(md.spec.serving)
    assert "max_batch_size { value: 16 }" in batching and "num_batch_threads { value: 2 }" in batching
    assert batching.splitlines()[-3:] == [
        "allowed_batch_sizes: 4",
        "allowed_batch_sizes: 8",
        "allowed_batch_sizes: 16",
    ]


def test_replicas_belong_to_the_hpa_when_autoscaling(make_md: Callable[..., ModelDeployment]) -> None:
    auto = by_kind(render_all(make_md()))
    assert "replicas" not in auto["Deployment"]["spec"]
    assert auto["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == "digits"
    fixed = by_kind(render_all(make_md(spec={"autoscaling": {"enabled": False}, "serving": {"replicas": 3}})))
    assert fixed["Deployment"]["spec"]["replicas"] == 3 and "HorizontalPodAutoscaler" not in fixed
    assert fixed["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1


def test_pdb_only_with_more_than_one_replica(make_md: Callable[..., ModelDeployment]) -> None:
    assert build_pdb(make_md(spec={"autoscaling": {"enabled": False}}), None) is None
    assert build_pdb(make_md(spec={"autoscaling": {"maxReplicas": 1}}), None) is None
    assert build_hpa(make_md(spec={"autoscaling": {"enabled": False}}), None) is None


def test_custom_metrics_and_behavior_pass_through(make_md: Callable[..., ModelDeployment]) -> None:
    metric = {
        "type": "Pods",
        "pods": {"metric": {"name": "rps"}, "target": {"type": "AverageValue", "averageValue": "10"}},
    }
    behavior = {"scaleDown": {"stabilizationWindowSeconds": 60}}
    hpa = build_hpa(make_md(spec={"autoscaling": {"metrics": [metric], "behavior": behavior}}), None)
    assert hpa is not None and hpa["spec"]["metrics"] == [metric] and hpa["spec"]["behavior"] == behavior


def test_artifact_hash_tracks_only_what_changes_the_result(make_md: Callable[..., ModelDeployment]) -> None:
    base = artifact_hash(make_md().spec)
    assert artifact_hash(make_md(spec={"optimization": {"activeDeadlineSeconds": 600}}).spec) == base
    assert artifact_hash(make_md(spec={"serving": {"replicas": 4}}).spec) == base
    assert artifact_hash(make_md(spec={"model": {"version": 2}}).spec) != base
    assert artifact_hash(make_md(spec={"optimization": {"quantization": "float16"}}).spec) != base


def test_artifact_identity_includes_who_fetches_the_source(make_md: Callable[..., ModelDeployment]) -> None:
    """Same URIs, different credentials Secret, namespace or ModelDeployment: never one shared artifact
    (one could be Ready on a model fetched with the other's credentials)."""
    shared = {"model": {"storageUri": "s3://bucket/digits.keras"}, "artifacts": {"uri": "pvc://artifacts/shared"}}

    def digest(secret: str | None, name: str = "digits", namespace: str = "ml") -> str:
        spec = {**shared, "model": {**shared["model"], "credentialsSecret": secret}}
        md = make_md(metadata={"name": name, "namespace": namespace}, spec=spec)
        job = by_kind(render_all(md, OWNER))["Job"]
        return str(job["metadata"]["labels"]["modeldeploy.io/artifact"])

    base = digest("team-a-creds")
    assert digest("team-a-creds") == base
    assert digest("team-b-creds") != base
    assert digest(None) != base
    assert digest("team-a-creds", namespace="other") != base
    assert digest("team-a-creds", name="digits-2") != base


def test_savedmodel_without_optimization_is_served_as_is(make_md: Callable[..., ModelDeployment]) -> None:
    md = make_md(
        spec={
            "model": {"storageUri": "pvc://models/sm/digits", "format": "savedmodel"},
            "optimization": {"enabled": False},
        }
    )
    children = by_kind(render_all(md))
    assert "Job" not in children
    mounts = children["Deployment"]["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {
        "name": "pvc-models",
        "mountPath": "/models/digits/1",
        "readOnly": True,
        "subPath": "sm/digits",
    } in mounts


def test_keras_without_optimization_still_converts(make_md: Callable[..., ModelDeployment]) -> None:
    job = by_kind(render_all(make_md(spec={"optimization": {"enabled": False}})))["Job"]
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--quantization=none" in args and not any(a.startswith("--dense-sparsity") for a in args)


def test_remote_savedmodel_is_fetched_by_an_init_container(make_md: Callable[..., ModelDeployment]) -> None:
    md = make_md(
        spec={
            "model": {
                "storageUri": "s3://bucket/digits",
                "format": "savedmodel",
                "credentialsSecret": "s3-creds",
            },
            "optimization": {"enabled": False},
            "artifacts": {"uri": "pvc://art"},
        }
    )
    pod = by_kind(render_all(md))["Deployment"]["spec"]["template"]["spec"]
    (fetch,) = pod["initContainers"]
    assert fetch["args"] == ["fetch", "--source=s3://bucket/digits", "--dest=/models/digits/1"]
    # the Secret twice: as it is for the clients, under the prefix so `fetch` knows what to redact
    assert fetch["envFrom"] == [
        {"secretRef": {"name": "s3-creds"}},
        {"prefix": "MODELDEPLOY_SECRET_", "secretRef": {"name": "s3-creds"}},
    ]


def test_job_mounts_source_read_only_and_artifacts_writable(make_md: Callable[..., ModelDeployment]) -> None:
    md = make_md(
        spec={
            "artifacts": {"uri": "pvc://artifacts/team-a"},
            "optimization": {"evaluation": {"datasetUri": "pvc://data/eval.npz"}},
        }
    )
    pod = by_kind(render_all(md))["Job"]["spec"]["template"]["spec"]
    claims = {
        v["persistentVolumeClaim"]["claimName"]: v["persistentVolumeClaim"]["readOnly"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == {"models": True, "data": True, "artifacts": False}
    args = pod["containers"][0]["args"]
    assert f"--output=/mnt/pvc/artifacts/team-a/{artifact_hash(md.spec, md.name, md.namespace)}" in args
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False


def test_network_policy_admits_only_the_serving_ports(make_md: Callable[..., ModelDeployment]) -> None:
    policy = by_kind(render_all(make_md()))["NetworkPolicy"]
    assert policy["spec"]["podSelector"] == {"matchLabels": {"modeldeploy.io/model-deployment": "digits"}}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert [p["port"] for p in policy["spec"]["ingress"][0]["ports"]] == [8500, 8501]
    assert "from" not in policy["spec"]["ingress"][0], "any client may call the model"


def test_the_job_passes_the_slice_gate_and_the_hash_of_older_specs_is_kept(
    make_md: Callable[..., ModelDeployment],
) -> None:
    evaluation = {"datasetUri": "pvc://models/eval.npz"}
    plain = make_md(spec={"optimization": {"evaluation": evaluation}})
    args = build_job(plain, None)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--top-k=5" in args and "--min-slice-examples=30" in args
    assert not any(arg.startswith("--max-slice-accuracy-drop") for arg in args), "unset: not gated"
    # Fields added with the sliced gate count only when set: an upgrade re-optimizes nothing.
    assert artifact_hash(make_md().spec) == "a71506e7f33e63d7"
    assert artifact_hash(plain.spec) == "bdcc4304f852e3e9"
    gated = make_md(spec={"optimization": {"evaluation": {**evaluation, "maxSliceAccuracyDrop": 0.05}}})
    args = build_job(gated, None)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--max-slice-accuracy-drop=0.05" in args
    assert artifact_hash(gated.spec) != artifact_hash(plain.spec)
    top3 = make_md(spec={"optimization": {"evaluation": {**evaluation, "topK": 3}}})
    assert artifact_hash(top3.spec) != artifact_hash(plain.spec)


def test_the_cleanup_after_a_delete_outlives_its_model_deployment(make_md: Callable[..., ModelDeployment]) -> None:
    """No owner reference (garbage collection would remove it with the deleted object before it runs),
    a TTL so it removes itself, and only the folders this life of the object built."""
    md = make_md(metadata={"name": "digits", "namespace": "ml", "uid": "0b5e7a5c-1111"})
    job = build_delete_cleanup_job(md)
    assert "ownerReferences" not in job["metadata"] and job["spec"]["ttlSecondsAfterFinished"] > 0
    assert job["metadata"]["name"] == "digits-cleanup-0b5e7a5c"
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "artifact-cleanup"
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["args"] == [
        "prune-artifacts",
        "--root=/mnt/pvc/models/modeldeploy/digits",
        "--owner=ml/digits/0b5e7a5c-1111",
        "--retain=0",
        "--this-life-only",
        "--remove-empty-root",
    ]
    assert pod["volumes"][0]["persistentVolumeClaim"] == {"claimName": "models", "readOnly": False}
    assert pod["automountServiceAccountToken"] is False


def _optimizer_args(md: ModelDeployment) -> list[str]:
    args: list[str] = by_kind(render_all(md))["Job"]["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


def test_pruning_schedule_and_classifier_flags_reach_the_job(make_md: Callable[..., ModelDeployment]) -> None:
    pruning = {"denseSparsity": 0.8, "fineTuneEpochs": 2, "trainDataUri": "pvc://models/train.npz"}
    plain = make_md(spec={"optimization": {"pruning": pruning}})
    assert not any(a.startswith(("--pruning-schedule", "--keep-classifier-dense")) for a in _optimizer_args(plain))
    chosen = make_md(
        spec={"optimization": {"pruning": {**pruning, "schedule": "OneShot", "keepClassifierDense": True}}}
    )
    args = _optimizer_args(chosen)
    assert "--pruning-schedule=OneShot" in args and "--keep-classifier-dense" in args
    # Each setting is part of what the Job realises: another value is another artifact.
    assert artifact_hash(chosen.spec) != artifact_hash(plain.spec)
    gradual = make_md(spec={"optimization": {"pruning": {**pruning, "schedule": "PolynomialDecay"}}})
    assert "--pruning-schedule=PolynomialDecay" in _optimizer_args(gradual)
    assert artifact_hash(gradual.spec) != artifact_hash(plain.spec)
