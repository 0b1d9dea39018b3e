"""Inputs: .keras, legacy .h5 and SavedModel (folder or archive), from file:// and pvc://."""

from __future__ import annotations

import json
import shutil
import tarfile

import keras
import pytest

from modeldeploy.contract.failures import Failure
from modeldeploy.optimize.convert import export_saved_model, keras_signature


@pytest.fixture(scope="module")
def mlp_saved_model(mlp, tmp_path_factory):
    folder = tmp_path_factory.mktemp("savedmodel") / "mlp"
    model = keras.models.load_model(mlp.keras_path, compile=False)
    export_saved_model(model, keras_signature(model, str(mlp.keras_path)), folder)
    return folder


def test_h5_input(optimize, mlp, tmp_path):
    out = tmp_path / "out"
    run = optimize(
        "--source", f"file://{mlp.h5_path}", "--format", "h5", "--output", out, "--version", "1",
        "--quantization", "dynamic", "--eval-data", mlp.eval_path,
    )  # fmt: skip
    assert run.code == 0, run.stderr
    report = json.loads((out / "1" / "report.json").read_text())
    assert report["source"]["format"] == "h5"
    assert report["evaluation"]["before"] == pytest.approx(mlp.eval_accuracy, abs=1e-6)


def test_keras_input_from_a_pvc_with_the_format_inferred(optimize, mlp, tmp_path):
    pvc_root = tmp_path / "pvc"
    (pvc_root / "models" / "digits").mkdir(parents=True)
    shutil.copy(mlp.keras_path, pvc_root / "models" / "digits" / "model.keras")
    shutil.copy(mlp.eval_path, pvc_root / "models" / "eval.npz")
    run = optimize(
        "--source", "pvc://models/digits/model.keras", "--pvc-root", pvc_root, "--eval-data", "pvc://models/eval.npz",
        "--output", "pvc://models/serving", "--version", "7",
    )  # fmt: skip
    assert run.code == 0, run.stderr
    assert (pvc_root / "models" / "serving" / "7" / "saved_model.pb").is_file()
    report = json.loads((pvc_root / "models" / "serving" / "7" / "report.json").read_text())
    assert report["source"] == {
        "uri": "pvc://models/digits/model.keras",
        "format": "keras",
        "sha256": report["source"]["sha256"],
        "bytes": mlp.keras_path.stat().st_size,
    }


def test_savedmodel_folder_input_is_quantized(optimize, mlp, mlp_saved_model, tmp_path):
    out = tmp_path / "out"
    run = optimize(
        "--source", f"file://{mlp_saved_model}", "--format", "savedmodel", "--output", out, "--version", "1",
        "--quantization", "int8", "--train-data", mlp.train_path, "--eval-data", mlp.eval_path,
    )  # fmt: skip
    assert run.code == 0, run.stderr
    assert run.termination["accuracyBefore"] == pytest.approx(mlp.eval_accuracy, abs=1e-3)
    assert run.termination["accuracyAfter"] >= mlp.eval_accuracy - 0.02
    assert (out / "1" / "model.tflite").is_file()


def test_savedmodel_archive_input_and_previous_outputs_are_not_carried_over(optimize, mlp, tmp_path):
    # A published version folder (with model.tflite, report.json, SHA256SUMS) used as the next source.
    first = tmp_path / "first"
    assert (
        optimize("--source", mlp.keras_path, "--output", first, "--version", "1", "--quantization", "dynamic").code == 0
    )
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(first / "1", arcname="digits")
    out = tmp_path / "out"
    run = optimize("--source", archive, "--format", "savedmodel", "--output", out, "--version", "2")
    assert run.code == 0, run.stderr
    assert not (out / "2" / "model.tflite").exists()  # quantization none: the old tflite is not copied
    assert json.loads((out / "2" / "report.json").read_text())["version"] == 2


def test_pruning_a_savedmodel_is_refused_as_unsupported(optimize, mlp_saved_model, tmp_path):
    run = optimize(
        "--source", mlp_saved_model, "--format", "savedmodel", "--output", tmp_path / "out", "--version", "1",
        "--dense-sparsity", "0.5",
    )  # fmt: skip
    assert run.code == Failure.UNSUPPORTED_MODEL.exit_code == 13
    assert "pruning needs the Keras model" in run.stderr
    assert not (tmp_path / "out").exists()
