"""The pure decisions behind issue 11's defects 5-7, tested directly on typed input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modeldeploy.contract.formats import ModelFormat, Quantization
from modeldeploy.contract.owner import ArtifactOwner
from modeldeploy.optimize.job import native_level
from modeldeploy.optimize.options import Options, default_termination_message_path
from modeldeploy.optimize.quantize import converter_problem
from modeldeploy.optimize.reuse import recorded_options, reuse_refusal
from modeldeploy.optimize.signing import Trust


def options(**changes) -> Options:
    base = {
        "source": "s3://bucket/m.keras", "format": ModelFormat.KERAS, "sha256": None, "output": Path("/out"),
        "version": 1, "dense_sparsity": 0.8, "conv_sparsity": 0.0, "fine_tune_epochs": 2,
        "train_data": "https://host/train.npz?X-Amz-Signature=secret", "quantization": Quantization.INT8,
        "eval_data": None, "metric": "accuracy", "max_accuracy_drop": 0.01, "pvc_root": Path("/mnt/pvc"),
        "termination_message_path": None, "log_format": "text",
    }  # fmt: skip
    return Options(**{**base, **changes})


SHA = "a" * 64


def report_of(opts: Options, sha256: str = SHA) -> dict:
    return {"source": {"sha256": sha256}, "options": recorded_options(opts)}


def test_recorded_options_name_what_the_version_is_built_from_and_no_secret():
    recorded = recorded_options(options())
    assert recorded["quantization"] == "int8" and recorded["denseSparsity"] == 0.8
    assert recorded["trainData"] == "https://host/train.npz?..."  # the presigned query string is not kept
    assert not {"source", "output", "version", "logFormat", "terminationMessagePath"} & set(recorded)


def test_the_same_model_and_options_are_reusable_wherever_the_run_reads_and_writes():
    here = options(source="file:///other/place/m.keras", output=Path("/elsewhere"), log_format="json")
    assert reuse_refusal(report_of(options()), recorded_options(here), SHA) is None
    assert reuse_refusal(report_of(options()), recorded_options(here), None) is None  # digest not compared


@pytest.mark.parametrize(
    ("here", "sha256", "mentions"),
    [
        ({"quantization": Quantization.DYNAMIC}, SHA, "quantization 'int8' there, 'dynamic' here"),
        ({"fine_tune_epochs": 0}, SHA, "fineTuneEpochs 2 there, 0 here"),
        ({"eval_data": "s3://b/eval.npz"}, SHA, "evalData None there, 's3://b/eval.npz' here"),
        ({}, "b" * 64, f"sha256 {SHA}, this run's model has sha256 {'b' * 64}"),
    ],
)
def test_another_model_or_other_options_are_refused_naming_the_difference(here, sha256, mentions):
    refusal = reuse_refusal(report_of(options()), recorded_options(options(**here)), sha256)
    assert refusal is not None and mentions in refusal


def test_a_signed_run_records_its_trust_anchor_and_a_recreated_owner_reuses(tmp_path: Path):
    """A run verifying its source records the anchor as plain JSON (report.json is JSON); the owner
    is not what a version is built from: a re-created ModelDeployment of the same name reuses it."""
    key = tmp_path / "signing.pub"
    signed = options(source_trust=Trust(public_key=key), source_signature="s3://bucket/m.keras.sig")
    recorded = recorded_options(signed)
    assert recorded["sourceTrust"]["publicKey"] == str(key)
    json.dumps(recorded)  # raised TypeError (Trust is not JSON serializable) before
    first = options(owner=ArtifactOwner(namespace="ml", name="digits", uid="first-life"))
    again = options(owner=ArtifactOwner(namespace="ml", name="digits", uid="second-life"))
    assert reuse_refusal(report_of(first), recorded_options(again), SHA) is None


def test_a_report_without_options_is_not_reusable():
    refusal = reuse_refusal({"source": {"sha256": SHA}}, recorded_options(options()), SHA)
    assert refusal is not None and "records no options" in refusal


def test_the_termination_message_path_defaults_to_kubernetes_only_in_a_pod():
    assert default_termination_message_path({}) is None
    assert default_termination_message_path({"KUBERNETES_SERVICE_HOST": "10.96.0.1"}) == Path("/dev/termination-log")


MLIR = (
    "Could not translate MLIR to FlatBuffer./usr/bin/pytest:6:1: error: 'tf.MatMul' op is neither a custom op "
    'nor a flex op\nloc(callsite(fused["MatMul:", "sequential/dense/MatMul@__inference_serve_261"] at callsite('
    + "x" * 2000
    + ")): error: 'tf.MatMul' op is neither a custom op nor a flex op\nerror: failed while converting: 'main'"
)


def test_a_converter_failure_is_one_short_line_naming_the_ops():
    problem = converter_problem(RuntimeError(MLIR))
    assert problem.startswith("no TFLite kernel for op tf.MatMul ") and "float16" in problem
    assert "loc(" not in problem and len(problem) < 300


def test_other_converter_errors_keep_the_errors_without_call_sites():
    problem = converter_problem(RuntimeError("loc(callsite(" + "y" * 900 + ")): error: 'tfl.gather' op is bad\n"))
    assert problem == "'tfl.gather' op is bad"
    assert converter_problem(RuntimeError("plain failure\nsecond line")) == "plain failure"


@pytest.mark.parametrize(
    ("line", "level"),
    [
        ("I0000 00:00:1796156280.565903   12307 port.cc:153] oneDNN custom operations are on.", "info"),
        ("W0000 00:00:1796156280.565903   12307 tf_tfl_flatbuffer_helpers.cc:365] Ignored output_format.", "warning"),
        ("E0000 00:00:17 something failed", "error"),
        ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR", "warning"),
        ("loc(callsite(fused[...]))", "info"),
    ],
)
def test_native_lines_keep_their_level(line, level):
    assert native_level(line) == level
