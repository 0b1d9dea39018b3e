"""Sparse TFLite: a pruned model is published with sparse weights only when TFLite runs them sparse."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modeldeploy.contract.formats import Quantization
from modeldeploy.optimize.quantize import choose_encoding, op_names


def run_pruned_int8(optimize, mlp, out, *extra):
    run = optimize(
        "--source", mlp.keras_path, "--output", out, "--version", "1", "--dense-sparsity", "0.8",
        "--quantization", "int8", "--train-data", mlp.train_path, "--eval-data", mlp.eval_path,
        "--max-accuracy-drop", "0.05", *extra,
    )  # fmt: skip
    assert run.code == 0, run.stderr
    return json.loads((out / "1" / "report.json").read_text()), run


def test_block_pruned_int8_model_is_published_sparse(optimize, mlp, tmp_path):
    out = tmp_path / "models"
    # Whole blocks going at once cost more than single weights: fine-tuning (gradual) wins them back.
    report, run = run_pruned_int8(optimize, mlp, out, "--dense-block-size", "16", "--fine-tune-epochs", "3")
    assert report["pruning"]["denseBlockSize"] == 16
    weights = report["quantization"]["weights"]
    assert weights["encoding"] == "sparse", weights
    assert weights["densifyOps"] == 0 and weights["sparseBytes"] < 0.5 * weights["denseBytes"]
    published = (out / "1" / "model.tflite").read_bytes()
    assert len(published) == weights["sparseBytes"] == report["sizes"]["optimized"]["bytes"]
    assert "DENSIFY" not in op_names(published)
    # the sparse model is what the conversion check and the quality gate judged
    assert report["conversionCheck"]["passed"] and report["evaluation"]["gate"] == "Passed"
    assert report["sizes"]["ratioRaw"] >= 6
    assert run.termination["optimizedBytes"] == len(published)


def test_unstructured_sparsity_keeps_the_dense_encoding_that_runs_without_densify(optimize, mlp, tmp_path):
    out = tmp_path / "models"
    report, _ = run_pruned_int8(optimize, mlp, out)
    weights = report["quantization"]["weights"]
    # The converter can store it sparse (a smaller file) only by rebuilding it dense at load time.
    assert weights["encoding"] == "dense" and weights["densifyOps"] > 0
    assert weights["sparseBytes"] < weights["denseBytes"] == report["sizes"]["optimized"]["bytes"]
    assert "DENSIFY" in weights["reason"]


def test_a_sparse_conversion_that_does_not_load_is_not_kept(mlp):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(__import__("keras").models.load_model(mlp.keras_path))
    dense = bytes(converter.convert())
    with np.load(mlp.eval_path) as data:
        x = data["x"].astype("float32")
    kept, encoding = choose_encoding(dense, dense[: len(dense) // 2], Quantization.DYNAMIC, x)
    assert kept == dense and not encoding.sparse
    assert encoding.reason.startswith("the sparse model fails")
    kept, encoding = choose_encoding(dense, None, Quantization.DYNAMIC, x)
    assert kept == dense and encoding.reason == "the sparse conversion failed"


@pytest.mark.parametrize("mode", ["dynamic", "float16"])
def test_pruned_models_without_blocks_stay_valid_in_other_modes(optimize, mlp, tmp_path, mode):
    out = tmp_path / "models"
    run = optimize(
        "--source", mlp.keras_path, "--output", out, "--version", "1", "--dense-sparsity", "0.8",
        "--quantization", mode, "--dense-block-size", "4",
    )  # fmt: skip
    assert run.code == 0, run.stderr
    report = json.loads((out / "1" / "report.json").read_text())
    weights = report["quantization"]["weights"]
    published = (out / "1" / "model.tflite").read_bytes()
    assert len(published) == (weights["sparseBytes"] if weights["encoding"] == "sparse" else weights["denseBytes"])
    assert report["conversionCheck"]["passed"]
