"""The optimizer's peak memory: the Keras model is freed before the TFLite converter runs.

The converter holds several copies of the weights at once (the SavedModel it loads, its own reload
of it, the MLIR module, the float flatbuffer it calibrates, the quantized one); the Keras model alive
next to them was one more copy at the peak (benchmarks/optimize.py measures the 100 MB model).
These tests check that the pipeline lets go of the model, and that what it needed the model for
still works.
"""

from __future__ import annotations

import json
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modeldeploy.optimize import pipeline
from modeldeploy.optimize.evaluate import KerasPredictor
from modeldeploy.optimize.fidelity import CHECK_EXAMPLES


@pytest.fixture
def watched(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Record a weak reference to the Keras model the pipeline loads and whether it is alive at conversion."""
    seen: dict[str, Any] = {"model": None, "alive_at_conversion": []}
    load, convert = pipeline.load_keras_model, pipeline.quantize

    def load_and_watch(*args: Any, **kwargs: Any) -> Any:
        model = load(*args, **kwargs)
        seen["model"] = weakref.ref(model)
        return model

    def convert_and_look(*args: Any, **kwargs: Any) -> bytes:
        seen["alive_at_conversion"].append(seen["model"] is not None and seen["model"]() is not None)
        return convert(*args, **kwargs)

    monkeypatch.setattr(pipeline, "load_keras_model", load_and_watch)
    monkeypatch.setattr(pipeline, "quantize", convert_and_look)
    return seen


def test_the_keras_model_is_freed_before_conversion_and_the_check_still_compares_with_it(
    optimize, mlp, tmp_path: Path, watched: dict[str, Any]
) -> None:
    out = tmp_path / "out"
    run = optimize(
        "--source", mlp.keras_path, "--output", out, "--version", "1", "--quantization", "int8",
        "--train-data", mlp.train_path, "--eval-data", mlp.eval_path,
    )  # fmt: skip
    assert run.code == 0, run.stderr
    assert watched["alive_at_conversion"] == [False]
    fidelity = json.loads((out / "1" / "report.json").read_text())["conversionCheck"]
    # Compared on the eval data with the Keras model's outputs taken before it was freed.
    assert fidelity["passed"] is True and fidelity["examples"] == min(len(np.load(mlp.eval_path)["y"]), CHECK_EXAMPLES)


def test_a_pruned_model_is_freed_after_pruning_and_both_encodings_are_converted(
    optimize, mlp, tmp_path: Path, watched: dict[str, Any]
) -> None:
    run = optimize(
        "--source", mlp.keras_path, "--output", tmp_path / "out", "--version", "1", "--quantization", "dynamic",
        "--dense-sparsity", "0.5", "--eval-data", mlp.eval_path,
    )  # fmt: skip
    assert run.code == 0, run.stderr
    assert watched["alive_at_conversion"] == [False, False]  # the dense and the sparse conversion


def test_a_dataset_the_original_cannot_run_is_still_reported_by_the_check(
    optimize, mlp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The original now runs before conversion; its failure is still the check's InvalidDataset."""

    def refuse(self: Any, x: Any) -> Any:
        raise ValueError("Input 0 of layer dense is incompatible with the layer")

    monkeypatch.setattr(KerasPredictor, "predict", refuse)
    run = optimize(
        "--source", mlp.keras_path, "--output", tmp_path / "out", "--version", "1", "--quantization", "dynamic",
        "--eval-data", mlp.eval_path,
    )  # fmt: skip
    assert run.code != 0
    assert "check: failed after" in run.stdout and "quantize: done in" in run.stdout
    assert run.termination["reason"] == "InvalidDataset"
    assert "running the original model on eval-data failed: Input 0 of layer dense" in run.stderr
