"""Bad input fails with its class's exit code, one line on stderr, a termination message, no artifact."""

from __future__ import annotations

import hashlib
import json
import re

import keras
import numpy as np
import pytest

from modeldeploy.contract.failures import Failure


def assert_failed(run, reason: Failure, *, mentions: str, out=None):
    assert run.code == reason.exit_code, (run.code, run.stderr)
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith(f"modeldeploy optimize: {reason.value}: ")
    assert mentions in lines[0]
    assert "Traceback" not in run.stderr + run.stdout
    message = run.termination
    assert message["result"] == "Failed" and message["reason"] == reason.value
    assert mentions in message["message"]
    if out is not None:
        assert not out.exists(), sorted(out.rglob("*"))


def test_exit_codes_are_distinct_and_reasons_pascal_case():
    codes = [failure.exit_code for failure in Failure]
    assert len(codes) == len(set(codes)) and 0 not in codes
    assert all(re.fullmatch(r"(?:[A-Z][a-z0-9]+)+", reason.value) for reason in Failure)
    assert Failure.QUALITY_GATE_FAILED.exit_code == 20 and Failure.CHECKSUM_MISMATCH.exit_code == 11


def test_sha256_is_verified(optimize, mlp, tmp_path):
    out = tmp_path / "out"
    good = hashlib.sha256(mlp.keras_path.read_bytes()).hexdigest()
    bad = good[:-1] + ("0" if good[-1] != "0" else "1")
    run = optimize("--source", mlp.keras_path, "--sha256", bad, "--output", out, "--version", "1")
    assert_failed(run, Failure.CHECKSUM_MISMATCH, mentions=f"expected {bad}", out=out)
    assert good in run.stderr
    assert optimize("--source", mlp.keras_path, "--sha256", good.upper(), "--output", out, "--version", "1").code == 0


@pytest.mark.parametrize(
    ("name", "content", "fmt", "mentions"),
    [
        ("model.keras", b"this is not a zip archive", "keras", "not a .keras file"),
        ("model.h5", b"\x89HDF\r\n\x1a\n" + b"\x00" * 64, "h5", "cannot load the h5 model"),
        ("model.h5", b"plain text", "h5", "not an HDF5"),
    ],
)
def test_corrupt_model_fails_to_load(optimize, tmp_path, name, content, fmt, mentions):
    (tmp_path / name).write_bytes(content)
    out = tmp_path / "out"
    run = optimize("--source", tmp_path / name, "--format", fmt, "--output", out, "--version", "1")
    assert_failed(run, Failure.MODEL_LOAD_FAILED, mentions=mentions, out=out)


def test_truncated_keras_file_fails_to_load(optimize, mlp, tmp_path):
    data = mlp.keras_path.read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    run = optimize("--source", tmp_path / "cut.keras", "--output", tmp_path / "out", "--version", "1")
    assert_failed(run, Failure.MODEL_LOAD_FAILED, mentions="cut.keras", out=tmp_path / "out")


def test_unknown_custom_layer_is_unsupported(optimize, tmp_path):
    @keras.saving.register_keras_serializable(package="modeldeploy_test")
    class Doubler(keras.layers.Layer):
        def call(self, inputs):
            return inputs * 2

    model = keras.Sequential([keras.Input((4,)), Doubler(), keras.layers.Dense(3, activation="softmax")])
    model.save(tmp_path / "custom.keras")
    keras.saving.get_custom_objects().pop("modeldeploy_test>Doubler")  # the optimizer image lacks the code
    run = optimize("--source", tmp_path / "custom.keras", "--output", tmp_path / "out", "--version", "1")
    assert_failed(run, Failure.UNSUPPORTED_MODEL, mentions="'Doubler'", out=tmp_path / "out")


def test_two_input_model_is_unsupported(optimize, tmp_path):
    a, b = keras.Input((4,)), keras.Input((4,))
    model = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Concatenate()([a, b])))
    model.save(tmp_path / "two.keras")
    run = optimize("--source", tmp_path / "two.keras", "--output", tmp_path / "out", "--version", "1")
    assert_failed(run, Failure.UNSUPPORTED_MODEL, mentions="2 inputs", out=tmp_path / "out")


@pytest.mark.parametrize(
    ("arrays", "mentions"),
    [
        ({"x": np.zeros((0, 64), "float32"), "y": np.zeros((0,), "int64")}, "no examples"),
        ({"x": np.zeros((5, 8, 8, 1), "float32"), "y": np.zeros((5,), "int64")}, "the model expects (64,)"),
        ({"x": np.zeros((5, 64), "float32")}, "no array y"),
        ({"x": np.zeros((5, 64), "float32"), "y": np.zeros((4,), "int64")}, "5 examples but y has 4"),
        ({"x": np.zeros((5, 64), "float32"), "y": np.full((5,), 12)}, "label 12 is out of range"),
    ],
    ids=["empty", "wrong-shape", "missing-y", "length-mismatch", "label-range"],
)
def test_invalid_eval_dataset(optimize, mlp, tmp_path, arrays, mentions):
    np.savez(tmp_path / "eval.npz", **arrays)
    out = tmp_path / "out"
    run = optimize("--source", mlp.keras_path, "--eval-data", tmp_path / "eval.npz", "--output", out, "--version", "1")
    assert_failed(run, Failure.INVALID_DATASET, mentions=mentions, out=out)
    assert "eval.npz" in run.stderr


def test_train_data_that_is_not_npz_is_invalid(optimize, mlp, tmp_path):
    (tmp_path / "train.npz").write_text("x,y\n1,2\n")
    run = optimize(
        "--source", mlp.keras_path, "--output", tmp_path / "out", "--version", "1",
        "--dense-sparsity", "0.5", "--fine-tune-epochs", "1", "--train-data", tmp_path / "train.npz",
    )  # fmt: skip
    assert_failed(run, Failure.INVALID_DATASET, mentions="is not a .npz file", out=tmp_path / "out")


def test_quality_gate_failure_writes_nothing(optimize, mlp, tmp_path):
    out = tmp_path / "serving" / "digits"
    run = optimize(
        "--source", mlp.keras_path, "--output", out, "--version", "1", "--eval-data", mlp.eval_path,
        "--dense-sparsity", "0.95", "--max-accuracy-drop", "0.001",
    )  # fmt: skip
    assert_failed(run, Failure.QUALITY_GATE_FAILED, mentions="above maxAccuracyDrop 0.1 points", out=out)
    assert re.search(r"accuracy dropped \d+\.\d points \(0\.\d{3} -> 0\.\d{3}\)", run.stderr), run.stderr
    assert not (tmp_path / "serving").exists()  # not even the base folder


def test_missing_source_is_a_fetch_failure(optimize, tmp_path):
    run = optimize("--source", f"file://{tmp_path}/nope.keras", "--output", tmp_path / "out", "--version", "1")
    assert_failed(run, Failure.FETCH_FAILED, mentions="nope.keras", out=tmp_path / "out")


def test_existing_version_is_never_clobbered(optimize, mlp, tmp_path):
    out = tmp_path / "out"
    (out / "1").mkdir(parents=True)
    (out / "1" / "saved_model.pb").write_bytes(b"the version TF Serving is serving")
    run = optimize("--source", mlp.keras_path, "--output", out, "--version", "1")
    assert_failed(run, Failure.VERSION_EXISTS, mentions=str(out / "1"))
    assert [p.name for p in out.iterdir()] == ["1"]
    assert (out / "1" / "saved_model.pb").read_bytes() == b"the version TF Serving is serving"
    # Asked to reuse a complete version, a folder without a matching SHA256SUMS is still refused.
    again = optimize("--source", mlp.keras_path, "--output", out, "--version", "1", "--reuse-complete-version")
    assert_failed(again, Failure.VERSION_EXISTS, mentions=str(out / "1"))


def test_a_retried_job_reuses_the_version_its_first_attempt_published(optimize, mlp, tmp_path):
    out = tmp_path / "out"
    first = optimize(
        "--source",
        mlp.keras_path,
        "--output",
        out,
        "--version",
        "1",
        "--quantization",
        "dynamic",
        "--eval-data",
        mlp.eval_path,
    )
    assert first.code == 0
    again = optimize(
        "--source",
        mlp.keras_path,
        "--output",
        out,
        "--version",
        "1",
        "--quantization",
        "dynamic",
        "--eval-data",
        mlp.eval_path,
        "--reuse-complete-version",
    )
    assert again.code == 0, again.stderr
    reused, original = again.termination, first.termination
    assert reused.pop("reused") is True
    for volatile in ("durationSeconds",):
        reused.pop(volatile), original.pop(volatile)
    assert reused == original, "the same summary as the attempt that published"
    (out / "1" / "model.tflite").write_bytes(b"tampered")
    tampered = optimize("--source", mlp.keras_path, "--output", out, "--version", "1", "--reuse-complete-version")
    assert_failed(tampered, Failure.VERSION_EXISTS, mentions=str(out / "1"))


@pytest.mark.parametrize(
    ("flags", "mentions"),
    [
        (["--dense-sparsity", "1.2"], "--dense-sparsity: must be within 0..0.95"),
        (["--conv-sparsity", "lots"], "--conv-sparsity: must be a number"),
        (["--quantization", "int4"], "--quantization: must be one of none|dynamic|float16|int8"),
        (["--version", "0"], "--version: must be at least 1"),
        (["--fine-tune-epochs", "2"], "--fine-tune-epochs: 2 epochs need --train-data"),
        (["--quantization", "int8"], "int8 needs representative data"),
        (["--metric", "f1"], "--metric: must be one of accuracy"),
        (["--sha256", "abc"], "--sha256: must be 64 hex digits"),
        (["--format", "onnx"], "--format: must be one of keras|h5|savedmodel"),
        (["--source", "ftp://host/m.keras"], "unsupported scheme 'ftp'"),
        (["--source", "pvc://claim/../other/m.keras"], "may not leave the claim"),
    ],
)
def test_invalid_arguments(optimize, tmp_path, flags, mentions):
    base = {"--source": "/models/m.keras", "--output": str(tmp_path / "out"), "--version": "1"}
    argv = [item for key, value in base.items() if key not in flags for item in (key, value)] + flags
    run = optimize(*argv)
    assert_failed(run, Failure.INVALID_ARGUMENTS, mentions=mentions, out=tmp_path / "out")


def test_missing_required_flag(optimize, tmp_path):
    run = optimize("--output", tmp_path / "out", "--version", "1")
    assert_failed(run, Failure.INVALID_ARGUMENTS, mentions="--source: is required")


def test_termination_message_is_skipped_when_its_folder_is_missing(optimize, mlp, tmp_path):
    missing = tmp_path / "no-such-dir" / "termination-log"
    run = optimize("--source", mlp.keras_path, "--output", tmp_path / "out", "--version", "0",
                   "--termination-message-path", missing)  # fmt: skip
    assert run.code == 2 and not missing.parent.exists()
    assert "termination" not in run.stdout


def test_long_messages_are_cut_to_fit_the_termination_limit(optimize, tmp_path):
    run = optimize("--source", "/" + "a" * 5000 + ".keras", "--output", tmp_path / "out", "--version", "1")
    assert run.code == Failure.FETCH_FAILED.exit_code
    message = json.loads(run.termination_path.read_text())
    assert message["reason"] == "FetchFailed" and message["message"].endswith("...")


# Issue 11, defect 5: datasets that are not .npz archives get a message saying what is expected.
def test_a_npy_dataset_is_refused_saying_what_is_expected(optimize, mlp, tmp_path):
    np.save(tmp_path / "eval.npy", np.zeros((5, 64), "float32"))
    out = tmp_path / "out"
    run = optimize("--source", mlp.keras_path, "--eval-data", tmp_path / "eval.npy", "--output", out, "--version", "1")
    assert_failed(run, Failure.INVALID_DATASET, mentions="expected a .npz with arrays x and y", out=out)
    assert "eval.npy" in run.stderr


def test_random_bytes_are_refused_without_pickle_advice(optimize, mlp, tmp_path):
    (tmp_path / "eval.npz").write_bytes(bytes(range(256)) * 3)
    out = tmp_path / "out"
    run = optimize("--source", mlp.keras_path, "--eval-data", tmp_path / "eval.npz", "--output", out, "--version", "1")
    assert_failed(run, Failure.INVALID_DATASET, mentions="not a .npz file", out=out)
    assert "eval.npz" in run.stderr and "pickle" not in run.stderr.lower()


def test_an_object_array_is_refused_and_never_unpickled(optimize, mlp, tmp_path):
    np.savez(tmp_path / "eval.npz", x=np.array([{"a": 1}] * 5, dtype=object), y=np.zeros(5, "int64"))
    out = tmp_path / "out"
    run = optimize("--source", mlp.keras_path, "--eval-data", tmp_path / "eval.npz", "--output", out, "--version", "1")
    assert_failed(run, Failure.INVALID_DATASET, mentions="Python objects", out=out)
    assert "allow_pickle" not in run.stderr


# Issue 11, defect 7: a bad dataset or output folder is reported before the model is even loaded.
def test_dataset_errors_come_before_the_model_is_loaded(optimize, tmp_path):
    (tmp_path / "corrupt.keras").write_bytes(b"not a zip: loading this model would fail")
    np.save(tmp_path / "eval.npy", np.zeros((5, 64), "float32"))
    run = optimize(
        "--source", tmp_path / "corrupt.keras", "--eval-data", tmp_path / "eval.npy",
        "--output", tmp_path / "out", "--version", "1",
    )  # fmt: skip
    assert_failed(run, Failure.INVALID_DATASET, mentions="eval.npy", out=tmp_path / "out")
    assert "load: started" not in run.stdout


def test_an_output_folder_that_cannot_be_created_is_reported_before_the_model_is_loaded(optimize, tmp_path):
    (tmp_path / "corrupt.keras").write_bytes(b"not a zip: loading this model would fail")
    (tmp_path / "a-file").write_text("not a folder")
    out = tmp_path / "a-file" / "serving"
    run = optimize("--source", tmp_path / "corrupt.keras", "--output", out, "--version", "1")
    assert_failed(run, Failure.EXPORT_FAILED, mentions=str(tmp_path / "a-file"))
    assert "load: started" not in run.stdout


# Issue 11, defect 7: argparse's own errors take the documented one-line road too.
@pytest.mark.parametrize(
    ("flags", "mentions"),
    [
        (["--bogus", "1"], "unrecognized arguments: --bogus 1"),
        (["--source"], "argument --source: expected one argument"),
        (["--reuse-complete-version=yes"], "--reuse-complete-version: ignored explicit argument"),
    ],
)
def test_argparse_errors_are_invalid_arguments_on_one_line(optimize, tmp_path, flags, mentions):
    run = optimize("--output", tmp_path / "out", "--version", "1", *flags)
    assert_failed(run, Failure.INVALID_ARGUMENTS, mentions=mentions, out=tmp_path / "out")
    assert "usage:" not in run.stderr


# Issue 11, defect 5: a version folder built from another model or other options is not "reused".
def test_reuse_refuses_a_version_built_with_other_options(optimize, mlp, tmp_path):
    out = tmp_path / "out"
    first = optimize("--source", mlp.keras_path, "--output", out, "--version", "1", "--quantization", "dynamic")
    assert first.code == 0, first.stderr
    again = optimize(
        "--source", mlp.keras_path, "--output", out, "--version", "1", "--quantization", "float16",
        "--reuse-complete-version",
    )  # fmt: skip
    assert_failed(again, Failure.VERSION_EXISTS, mentions="quantization")
    assert "dynamic" in again.stderr and "float16" in again.stderr
    report = json.loads((out / "1" / "report.json").read_text())
    assert report["options"]["quantization"] == "dynamic"


def test_reuse_refuses_a_version_built_from_another_model(optimize, mlp, cnn, tmp_path):
    out = tmp_path / "out"
    assert optimize("--source", mlp.keras_path, "--output", out, "--version", "1").code == 0
    other = tmp_path / "model.keras"  # same name and options, other content
    other.write_bytes(cnn.keras_path.read_bytes())
    again = optimize("--source", other, "--output", out, "--version", "1", "--reuse-complete-version")
    assert_failed(again, Failure.VERSION_EXISTS, mentions="sha256")
    expected = hashlib.sha256(cnn.keras_path.read_bytes()).hexdigest()
    pinned = optimize(
        "--source", other, "--sha256", expected, "--output", out, "--version", "1", "--reuse-complete-version"
    )
    assert_failed(pinned, Failure.VERSION_EXISTS, mentions="sha256")
