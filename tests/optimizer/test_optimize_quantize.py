"""Each quantization mode yields a model.tflite that loads, predicts, and is really quantized."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from modeldeploy.optimize.export import verify_sums


def tflite_predict(path: Path, x: np.ndarray) -> tuple[np.ndarray, Interpreter]:
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    assert inp["dtype"] == np.float32 and out["dtype"] == np.float32  # request format unchanged
    scores = []
    for row in x:
        interpreter.set_tensor(inp["index"], row[None, ...].astype(np.float32))
        interpreter.invoke()
        scores.append(interpreter.get_tensor(out["index"])[0].copy())
    return np.asarray(scores), interpreter


def load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as data:
        return data["x"], data["y"]


# Largest model.tflite / baseline SavedModel byte ratio each mode must reach (float32 = 1.0).
MAX_SIZE_RATIO = {"dynamic": 0.35, "float16": 0.55, "int8": 0.35}


@pytest.mark.parametrize("mode", ["dynamic", "float16", "int8"])
def test_quantized_tflite_loads_predicts_and_shrinks(optimize, mlp, tmp_path, mode):
    out = tmp_path / "models"
    run = optimize(
        "--source", f"file://{mlp.keras_path}", "--format", "keras", "--output", out, "--version", "3",
        "--quantization", mode, "--train-data", mlp.train_path, "--eval-data", mlp.eval_path,
    )  # fmt: skip
    assert run.code == 0, run.stderr
    version = out / "3"
    x, y = load_npz(mlp.eval_path)
    scores, interpreter = tflite_predict(version / "model.tflite", x)
    accuracy = float(np.mean(scores.argmax(axis=1) == y))
    assert accuracy >= mlp.eval_accuracy - 0.02

    report = json.loads((version / "report.json").read_text())
    assert report["format"] == f"tflite-{mode}"
    assert report["sizes"]["optimized"]["bytes"] == (version / "model.tflite").stat().st_size
    ratio = report["sizes"]["optimized"]["bytes"] / report["sizes"]["baselineSavedModel"]["bytes"]
    assert ratio <= MAX_SIZE_RATIO[mode]
    assert report["evaluation"]["after"] == pytest.approx(accuracy, abs=1e-6)
    assert report["conversionCheck"]["passed"] is True and report["conversionCheck"]["data"] == "eval-data"

    # TF Serving's --prefer_tflite_model serves the same request format through this signature.
    assert interpreter.get_signature_list() == {"serving_default": {"inputs": ["pixels"], "outputs": ["output_0"]}}
    weight_types = {detail["dtype"] for detail in interpreter.get_tensor_details()}
    if mode == "int8":
        assert np.int8 in weight_types and np.int32 in weight_types  # activations and biases too
        assert report["quantization"]["representativeData"] == "train-data"
    if mode == "float16":
        assert np.float16 in weight_types

    message = run.termination
    digest = hashlib.sha256((version / "model.tflite").read_bytes()).hexdigest()
    assert message["result"] == "Succeeded" and message["format"] == f"tflite-{mode}"
    assert message["artifactSha256"] == digest == report["artifactSha256"]
    assert message["manifestSha256"] == hashlib.sha256((version / "SHA256SUMS").read_bytes()).hexdigest()
    assert message["accuracyBefore"] == pytest.approx(mlp.eval_accuracy, abs=1e-3)
    assert message["optimizedBytes"] < message["originalBytes"]
    verify_sums(version)  # every artifact listed and matching


def test_no_quantization_publishes_a_servable_savedmodel(optimize, mlp, tmp_path):
    out = tmp_path / "models"
    run = optimize("--source", mlp.keras_path, "--output", out, "--version", "1", "--eval-data", mlp.eval_path)
    assert run.code == 0, run.stderr
    version = out / "1"
    assert not (version / "model.tflite").exists()
    assert sorted(p.name for p in version.iterdir()) == [
        "SHA256SUMS", "assets", "fingerprint.pb", "report.json", "saved_model.pb", "variables",
    ]  # fmt: skip
    loaded = tf.saved_model.load(str(version))
    serve = loaded.signatures["serving_default"]
    x, y = load_npz(mlp.eval_path)
    (name,) = serve.structured_input_signature[1]
    scores = serve(**{name: tf.constant(x)})["output_0"].numpy()
    assert float(np.mean(scores.argmax(1) == y)) == pytest.approx(mlp.eval_accuracy, abs=1e-6)
    message = run.termination
    assert message["format"] == "savedmodel"
    assert message["artifactSha256"] == hashlib.sha256((version / "saved_model.pb").read_bytes()).hexdigest()
    assert message["gate"] == "Passed" and message["sparsity"] == {"dense": 0.0, "conv": 0.0}


def test_int8_cnn_calibrates_on_eval_data_when_no_train_data(optimize, cnn, tmp_path):
    out = tmp_path / "models"
    run = optimize(
        "--source", cnn.keras_path, "--output", out, "--version", "1",
        "--quantization", "int8", "--eval-data", cnn.eval_path,
    )  # fmt: skip
    assert run.code == 0, run.stderr
    report = json.loads((out / "1" / "report.json").read_text())
    assert report["quantization"]["representativeData"] == "eval-data"
    x, y = load_npz(cnn.eval_path)
    scores, _ = tflite_predict(out / "1" / "model.tflite", x)
    assert float(np.mean(scores.argmax(axis=1) == y)) >= cnn.eval_accuracy - 0.02


def test_without_eval_data_there_is_no_gate_and_the_report_says_so(optimize, mlp, tmp_path):
    out = tmp_path / "models"
    run = optimize("--source", mlp.keras_path, "--output", out, "--version", "1", "--quantization", "dynamic")
    assert run.code == 0, run.stderr
    report = json.loads((out / "1" / "report.json").read_text())
    assert report["evaluation"]["evaluated"] is False
    assert "quality gate not applied" in report["evaluation"]["note"]
    assert report["latency"]["data"] == "synthetic"
    message = run.termination
    assert message["gate"] == "Skipped" and "accuracyBefore" not in message  # unset fields are left out
