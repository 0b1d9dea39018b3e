"""The published model computes what the original does: conversion is checked, never trusted.

Issue 11: a SavedModel written by `tf.saved_model.save(keras_model)` (not `model.export`) used to
convert to a tiny model.tflite whose resource variables were never initialised (NaN for every
input), and was published with exit 0. Now such SavedModels convert correctly, and any converted
model whose outputs are NaN/Inf or too far from the original's fails with ConversionMismatch.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from modeldeploy.contract.failures import Failure
from modeldeploy.contract.formats import Quantization
from modeldeploy.optimize import pipeline
from modeldeploy.optimize.reference import build_mlp


@pytest.fixture(scope="module")
def mlp_tf_saved(mlp, tmp_path_factory) -> Path:
    """The MLP saved the way that used to convert to NaN: tf.saved_model.save on the Keras model."""
    folder = tmp_path_factory.mktemp("tf-saved") / "mlp"
    tf.saved_model.save(keras.models.load_model(mlp.keras_path, compile=False), str(folder))
    return folder


def assert_failed(run, reason: Failure, *, mentions: str, out: Path) -> None:
    """As in test_optimize_failures: its exit code, one line on stderr, the summary, nothing written."""
    assert run.code == reason.exit_code, (run.code, run.stderr)
    assert run.stderr.count("\n") == 1 and run.stderr.startswith(f"modeldeploy optimize: {reason.value}: ")
    assert mentions in run.stderr, run.stderr
    message = run.termination
    assert message["result"] == "Failed" and message["reason"] == reason.value and mentions in message["message"]
    assert not out.exists(), sorted(out.rglob("*"))


def load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as data:
        return data["x"], data["y"]


def keras_scores(mlp, x: np.ndarray) -> np.ndarray:
    return np.asarray(keras.models.load_model(mlp.keras_path, compile=False)(x, training=False))


def legacy_convert(saved_model_dir: Path) -> bytes:
    """What the optimizer did before the fix: from_saved_model, which leaves the variables unset."""
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir), signature_keys=["serving_default"])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return bytes(converter.convert())


@pytest.mark.parametrize("mode", ["dynamic", "int8"])
def test_a_tf_saved_model_save_savedmodel_converts_to_a_correct_tflite(optimize, mlp, mlp_tf_saved, tmp_path, mode):
    out = tmp_path / "out"
    data = ["--train-data", mlp.train_path] if mode == "int8" else []  # dynamic: no data at all, as in the issue
    run = optimize(
        "--source", mlp_tf_saved, "--format", "savedmodel", "--output", out, "--version", "1",
        "--quantization", mode, *data,
    )  # fmt: skip
    assert run.code == 0, run.stderr
    x, y = load_npz(mlp.eval_path)
    scores = tflite_predict_bytes((out / "1" / "model.tflite").read_bytes(), x)
    assert np.all(np.isfinite(scores)), "the published model outputs NaN"
    original = keras_scores(mlp, x)
    assert np.abs(scores - original).max() < 0.1
    assert np.mean(scores.argmax(1) == original.argmax(1)) >= 0.98
    assert float(np.mean(scores.argmax(1) == y)) >= mlp.eval_accuracy - 0.02
    report = json.loads((out / "1" / "report.json").read_text())
    check = report["conversionCheck"]
    assert check["passed"] is True and check["nonFinite"] == 0
    assert check["data"] == ("train-data" if mode == "int8" else "synthetic")
    assert check["maxRelativeError"] <= check["tolerance"]["maxRelativeError"]


def test_a_converter_result_that_outputs_nan_is_never_published(optimize, mlp, mlp_tf_saved, tmp_path, monkeypatch):
    broken = legacy_convert(mlp_tf_saved)
    x, _ = load_npz(mlp.eval_path)
    assert np.all(np.isnan(tflite_predict_bytes(broken, x[:3]))), "the legacy conversion no longer yields NaN"
    monkeypatch.setattr(pipeline, "quantize", lambda *args, **kwargs: broken)
    out = tmp_path / "serving" / "digits"
    run = optimize(
        "--source", mlp_tf_saved, "--format", "savedmodel", "--output", out, "--version", "1",
        "--quantization", "dynamic", "--eval-data", mlp.eval_path,
    )  # fmt: skip
    # Not QualityGateFailed: the conversion is what broke, and the message says which check failed.
    # Its unset variables hold whatever memory held: NaN on some runs, finite garbage on others.
    assert_failed(run, Failure.CONVERSION_MISMATCH, mentions="model.tflite (dynamic)", out=out)
    assert "NaN or Inf" in run.stderr or "differs from the original" in run.stderr, run.stderr
    assert Failure.CONVERSION_MISMATCH.exit_code == 17
    assert not (tmp_path / "serving").exists()


def test_a_model_that_outputs_nan_is_named_as_such(optimize, mlp, tmp_path, monkeypatch):
    model = keras.models.load_model(mlp.keras_path, compile=False)
    kernel = model.layers[-1].kernel
    kernel.assign(np.full(kernel.shape, np.nan, dtype="float32"))  # every output NaN, deterministically
    nan_model = bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    monkeypatch.setattr(pipeline, "quantize", lambda *args, **kwargs: nan_model)
    out = tmp_path / "out"
    run = optimize(
        "--source", mlp.keras_path, "--output", out, "--version", "1", "--quantization", "dynamic",
        "--eval-data", mlp.eval_path,
    )  # fmt: skip
    assert_failed(run, Failure.CONVERSION_MISMATCH, mentions="NaN or Inf for 360 of 360 eval-data examples", out=out)


def test_a_finite_but_wrong_model_is_a_conversion_mismatch(optimize, mlp, tmp_path, monkeypatch):
    keras.utils.set_random_seed(1)
    untrained = build_mlp()  # same shapes, random weights: loads and runs, computes something else
    converter = tf.lite.TFLiteConverter.from_keras_model(untrained)
    wrong = bytes(converter.convert())
    monkeypatch.setattr(pipeline, "quantize", lambda *args, **kwargs: wrong)
    out = tmp_path / "out"
    run = optimize("--source", mlp.keras_path, "--output", out, "--version", "1", "--quantization", "float16")
    assert_failed(run, Failure.CONVERSION_MISMATCH, mentions="of the original's output range", out=out)
    assert "synthetic" in run.termination["message"] and "float16" in run.termination["message"]


def tflite_predict_bytes(content: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content)
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, x.astype(np.float32))
    interpreter.invoke()
    return np.array(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))


def test_the_cnn_passes_the_int8_check_on_eval_data(optimize, cnn, tmp_path):
    # The MLP's runs per mode are in test_optimize_quantize.py; the CNN's int8 has the largest error.
    out = tmp_path / "out"
    run = optimize(
        "--source", cnn.keras_path, "--output", out, "--version", "1", "--quantization", "int8",
        "--eval-data", cnn.eval_path,
    )  # fmt: skip
    assert run.code == 0, run.stderr
    check = json.loads((out / "1" / "report.json").read_text())["conversionCheck"]
    assert check["data"] == "eval-data" and check["examples"] == 360
    assert check["topClassAgreement"] >= check["tolerance"]["minTopClassAgreement"]
    assert Quantization(check["mode"]) is Quantization.INT8


@pytest.mark.parametrize("data", ["eval-data", "synthetic"])
def test_variable_spatial_input_is_optimized(optimize, tmp_path, data):
    # Issue 11, defect 3: a (None, None, 3) input used to fail in the latency step (the batch-1
    # interpreter was never resized to the example's shape).
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((None, None, 3), name="image"),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(4, activation="softmax"),
        ]
    )
    model.save(tmp_path / "any-size.keras")
    flags: list[str | Path] = []
    if data == "eval-data":
        rng = np.random.default_rng(0)
        np.savez(tmp_path / "eval.npz", x=rng.random((24, 12, 10, 3), dtype=np.float32), y=rng.integers(0, 4, 24))
        flags = ["--eval-data", tmp_path / "eval.npz", "--max-accuracy-drop", "1"]
    out = tmp_path / "out"
    run = optimize(
        "--source", tmp_path / "any-size.keras", "--output", out, "--version", "1", "--quantization", "dynamic", *flags
    )
    assert run.code == 0, run.stderr
    report = json.loads((out / "1" / "report.json").read_text())
    assert report["latency"]["data"] == data and report["conversionCheck"]["passed"] is True
    x = np.random.default_rng(1).random((1, 20, 16, 3), dtype=np.float32)  # any size still works once published
    served = tflite_predict_bytes((out / "1" / "model.tflite").read_bytes(), x)
    assert np.abs(served - np.asarray(model(x))).max() < 0.05
