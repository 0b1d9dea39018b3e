"""Models whose input is not float32, and models computing in float16 (issue 11, defects 4 and 7).

A token model (int32 ids into an Embedding) must calibrate int8 on its own integer ids, and refuse
float data instead of truncating 3.7 to token 3. A mixed-precision model (Keras `mixed_float16`
policy) must convert (computing in float32) instead of failing with the converter's MLIR dump.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from modeldeploy.contract.failures import Failure

VOCABULARY = 40
SEQUENCE = 12


def assert_failed(run, reason: Failure, *, mentions: list[str], out: Path) -> None:
    assert run.code == reason.exit_code, (run.code, run.stderr)
    assert run.stderr.count("\n") == 1 and run.stderr.startswith(f"modeldeploy optimize: {reason.value}: ")
    for text in mentions:
        assert text in run.stderr, run.stderr
    assert run.termination["reason"] == reason.value
    assert not out.exists()


@pytest.fixture(scope="module")
def token_model(tmp_path_factory) -> dict[str, Path]:
    """A tiny trained classifier over int32 token ids, its int32 datasets, and a float copy."""
    folder = tmp_path_factory.mktemp("tokens")
    rng = np.random.default_rng(0)
    x = rng.integers(0, VOCABULARY, (300, SEQUENCE)).astype(np.int32)
    y = (x[:, 0] >= VOCABULARY // 2).astype(np.int64)  # the first token decides: learnable in a few epochs
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SEQUENCE,), dtype="int32", name="tokens")
    hidden = keras.layers.Flatten()(keras.layers.Embedding(VOCABULARY, 8)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(hidden))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    model.save(folder / "tokens.keras")
    np.savez(folder / "train.npz", x=x[:200], y=y[:200])
    np.savez(folder / "eval.npz", x=x[200:], y=y[200:])
    np.savez(folder / "eval-float.npz", x=x[200:].astype(np.float32) + 0.7, y=y[200:])
    np.savez(folder / "eval-int64.npz", x=x[200:].astype(np.int64), y=y[200:])
    return {
        "model": folder / "tokens.keras",
        "train": folder / "train.npz",
        "eval": folder / "eval.npz",
        "eval-float": folder / "eval-float.npz",
        "eval-int64": folder / "eval-int64.npz",
    }


def test_int8_calibrates_an_integer_input_model_on_its_integer_ids(optimize, token_model, tmp_path):
    out = tmp_path / "out"
    run = optimize(
        "--source", token_model["model"], "--output", out, "--version", "1", "--quantization", "int8",
        "--train-data", token_model["train"], "--eval-data", token_model["eval"], "--max-accuracy-drop", "0.05",
    )  # fmt: skip
    assert run.code == 0, run.stderr
    report = json.loads((out / "1" / "report.json").read_text())
    assert report["format"] == "tflite-int8" and report["conversionCheck"]["passed"]
    assert report["evaluation"]["after"] >= 0.9, report["evaluation"]

    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(out / "1" / "model.tflite"))
    assert interpreter.get_input_details()[0]["dtype"] == np.int32  # requests stay token ids


def test_integer_ids_of_a_wider_integer_type_are_accepted(optimize, token_model, tmp_path):
    run = optimize(
        "--source", token_model["model"], "--output", tmp_path / "out", "--version", "1",
        "--eval-data", token_model["eval-int64"],
    )  # fmt: skip
    assert run.code == 0, run.stderr


def test_without_data_an_integer_input_model_is_checked_on_generated_ids(optimize, token_model, tmp_path):
    out = tmp_path / "out"
    run = optimize("--source", token_model["model"], "--output", out, "--version", "1", "--quantization", "dynamic")
    assert run.code == 0, run.stderr
    check = json.loads((out / "1" / "report.json").read_text())["conversionCheck"]
    # Token ids 0 and 1 go through both the SavedModel and the TFLite model (any larger id could be
    # past the vocabulary), and the two agree.
    assert check["passed"] and check["data"] == "synthetic", check


def test_without_data_a_conversion_that_breaks_nonzero_ids_is_a_mismatch(optimize, token_model, tmp_path, monkeypatch):
    """The generated ids must not all be 0: a converted model right for token 0 only is refused."""
    import tensorflow as tf

    from modeldeploy.optimize import pipeline

    model = keras.models.load_model(token_model["model"])
    embedding = next(layer for layer in model.layers if isinstance(layer, keras.layers.Embedding))
    (table,) = embedding.get_weights()
    table[1:] = np.random.default_rng(1).normal(0.0, 5.0, table[1:].shape)  # every token but 0 changed
    embedding.set_weights([table])
    wrong = bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    monkeypatch.setattr(pipeline, "quantize", lambda *args, **kwargs: wrong)
    out = tmp_path / "out"
    run = optimize("--source", token_model["model"], "--output", out, "--version", "1", "--quantization", "dynamic")
    assert_failed(run, Failure.CONVERSION_MISMATCH, mentions=["synthetic"], out=out)


def test_float_data_for_an_integer_input_model_is_refused(optimize, token_model, tmp_path):
    out = tmp_path / "out"
    run = optimize(
        "--source", token_model["model"], "--output", out, "--version", "1", "--eval-data", token_model["eval-float"]
    )
    assert_failed(run, Failure.INVALID_DATASET, mentions=["eval-float.npz", "array x", "float32", "int32"], out=out)


def test_integer_ids_out_of_the_input_type_range_are_refused(optimize, token_model, tmp_path):
    with np.load(token_model["eval"]) as data:
        x, y = data["x"].astype(np.int64), data["y"]
    x[3, 2] = 2**40
    np.savez(tmp_path / "huge.npz", x=x, y=y)
    out = tmp_path / "out"
    run = optimize(
        "--source", token_model["model"], "--output", out, "--version", "1", "--eval-data", tmp_path / "huge.npz"
    )
    assert_failed(run, Failure.INVALID_DATASET, mentions=["huge.npz", "array x", "int32"], out=out)


@pytest.fixture(scope="module")
def mixed_precision_model(tmp_path_factory) -> dict[str, Path]:
    """A classifier built under the mixed_float16 policy (float16 compute, float32 variables)."""
    folder = tmp_path_factory.mktemp("mixed")
    rng = np.random.default_rng(1)
    x = rng.random((200, 16)).astype(np.float32)
    y = (x[:, 0] > 0.5).astype(np.int64)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [keras.Input((16,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(2, activation="softmax")]
        )
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(x, y, epochs=10, verbose=0)
        model.save(folder / "mixed.keras")
    finally:
        keras.mixed_precision.set_global_policy(previous)
    np.savez(folder / "data.npz", x=x, y=y)
    return {"model": folder / "mixed.keras", "data": folder / "data.npz"}


@pytest.mark.parametrize("mode", ["dynamic", "int8"])
def test_a_mixed_precision_model_converts_computing_in_float32(optimize, mixed_precision_model, tmp_path, mode):
    out = tmp_path / "out"
    run = optimize(
        "--source", mixed_precision_model["model"], "--output", out, "--version", "1", "--quantization", mode,
        "--train-data", mixed_precision_model["data"], "--eval-data", mixed_precision_model["data"],
    )  # fmt: skip
    assert run.code == 0, run.stderr
    assert "mixed_float16" in run.stdout and "float32" in run.stdout  # the log says what was done
    assert "MLIR" not in run.stdout + run.stderr
    report = json.loads((out / "1" / "report.json").read_text())
    assert report["conversionCheck"]["passed"] and report["evaluation"]["gate"] == "Passed"


def test_a_mixed_precision_savedmodel_fails_with_a_short_clear_message(optimize, mixed_precision_model, tmp_path):
    """A SavedModel cannot be rebuilt like a Keras model: its float16 graph is refused in one short line."""
    import tensorflow as tf

    saved = tmp_path / "mixed-savedmodel"
    tf.saved_model.save(keras.models.load_model(mixed_precision_model["model"], compile=False), str(saved))
    out = tmp_path / "out"
    run = optimize(
        "--source", saved, "--format", "savedmodel", "--output", out, "--version", "1", "--quantization", "dynamic"
    )
    assert_failed(
        run, Failure.UNSUPPORTED_MODEL, mentions=["no TFLite kernel for ops", "tf.MatMul", "float32"], out=out
    )
    assert "MLIR" not in run.stderr and len(run.stderr) < 400
