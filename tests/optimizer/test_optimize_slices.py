"""The sliced quality gate and the other metrics, end to end through `modeldeploy optimize`.

The doctored model is a linear classifier whose "night" examples are decided by two nearly equal
weights (1.0 and 1.0001): float16 quantization rounds both to 1.0, so 8 of the 40 night examples
flip while the 960 day examples do not. Overall accuracy drops 0.8 point (within maxAccuracyDrop
0.01); the night slice drops 20 points. The conversion check passes (the outputs move by 1e-4).
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from modeldeploy.contract.failures import Failure

DAY, NIGHT, HURT = 960, 40, 8


@pytest.fixture(scope="module")
def doctored(tmp_path_factory):
    folder = tmp_path_factory.mktemp("doctored")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, use_bias=False)])
    kernel = np.array([[1.0, -1.0], [-1.0, 1.0], [1.0, 1.0001], [0.0, 0.0]], "float32")
    model.layers[0].kernel.assign(kernel)
    model.save(folder / "doctored.keras")

    rng = np.random.default_rng(7)
    normal = rng.uniform(0.0, 1.0, (DAY + NIGHT - HURT, 4)).astype("float32")
    normal[:, 2:] = 0.0
    normal[:, 0] += np.where(normal[:, 0] > normal[:, 1], 0.1, -0.1)  # a margin no rounding can cross
    hurt = np.tile(np.array([[0.0, 0.0, 1.0, 0.0]], "float32"), (HURT, 1))  # class 1 by 1e-4
    x = np.concatenate([normal, hurt])
    y = np.concatenate([(normal[:, 0] <= normal[:, 1]).astype("int64"), np.ones(HURT, "int64")])
    slices = np.array(["day"] * DAY + ["night"] * NIGHT)
    np.savez(folder / "eval.npz", x=x, y=y, slice=slices)
    return folder


def _run(optimize, doctored, tmp_path, *flags):
    out = tmp_path / "out"
    run = optimize(
        "--source", doctored / "doctored.keras", "--output", out, "--version", "1",
        "--quantization", "float16", "--eval-data", doctored / "eval.npz", "--max-accuracy-drop", "0.01", *flags,
    )  # fmt: skip
    return run, out


def test_the_sliced_gate_fails_on_the_hurt_slice_while_the_average_passes(optimize, doctored, tmp_path):
    run, out = _run(optimize, doctored, tmp_path, "--max-slice-accuracy-drop", "0.1")
    assert run.code == Failure.QUALITY_GATE_FAILED.exit_code, run.stderr
    line = run.stderr.strip()
    assert line.startswith("modeldeploy optimize: QualityGateFailed: worst slice slice=night (40 examples): ")
    assert "accuracy dropped 20.0 points (1.000 -> 0.800), above maxSliceAccuracyDrop 10.0 points" in line
    assert "overall accuracy dropped 0.8 point" in line and "within maxAccuracyDrop 1.0 point" in line
    assert run.termination["reason"] == "QualityGateFailed" and "slice=night" in run.termination["message"]
    assert not out.exists(), "nothing is published when the sliced gate fails"


def test_the_same_run_passes_without_a_slice_gate_and_reports_every_slice(optimize, doctored, tmp_path):
    run, out = _run(optimize, doctored, tmp_path)
    assert run.code == 0, run.stderr
    evaluation = json.loads((out / "1" / "report.json").read_text())["evaluation"]
    assert evaluation["gate"] == "Passed" and evaluation["drop"] == pytest.approx(HURT / (DAY + NIGHT))
    slices = {part["name"]: part for part in evaluation["slices"]}
    assert set(slices) == {"slice=day", "slice=night"}
    assert slices["slice=night"]["after"] == pytest.approx(0.8)
    assert slices["slice=day"]["drop"] == 0.0
    classes = {part["name"]: part["examples"] for part in evaluation["classes"]}
    assert set(classes) == {"class=0", "class=1"} and sum(classes.values()) == DAY + NIGHT
    assert evaluation["sliceGate"]["gate"] == "Skipped" and evaluation["sliceGate"]["maxDrop"] is None
    worst = evaluation["sliceGate"]["worstSlice"]
    assert (worst["name"], worst["before"], worst["after"], worst["examples"]) == ("slice=night", 1.0, 0.8, 40)
    assert evaluation["metrics"]["accuracy"]["before"] == 1.0 and "auc" in evaluation["metrics"]
    assert run.termination["worstSlice"] == {"name": "slice=night", "before": 1.0, "after": 0.8, "examples": 40}


def test_a_slice_below_min_slice_examples_is_reported_not_gated(optimize, doctored, tmp_path):
    run, out = _run(optimize, doctored, tmp_path, "--max-slice-accuracy-drop", "0.1", "--min-slice-examples", "50")
    assert run.code == 0, run.stderr
    evaluation = json.loads((out / "1" / "report.json").read_text())["evaluation"]
    night = next(part for part in evaluation["slices"] if part["name"] == "slice=night")
    assert night["gated"] is False and night["drop"] == pytest.approx(0.2)
    assert evaluation["sliceGate"]["gate"] == "Passed"
    assert evaluation["sliceGate"]["worstSlice"]["name"] == "class=1"  # the hurt examples are class 1


@pytest.fixture(scope="module")
def single_logit(tmp_path_factory):
    """One linear output unit (a logit): class 1 when it is positive, trained with from_logits=True."""
    folder = tmp_path_factory.mktemp("binary")
    for name, activation in (("logit", None), ("sigmoid", "sigmoid")):
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, activation=activation)])
        model.layers[0].kernel.assign(np.array([[1.0], [-1.0]], "float32"))
        model.save(folder / f"{name}.keras")
    rng = np.random.default_rng(3)
    x = rng.uniform(-1.0, 1.0, (400, 2)).astype("float32")
    x = x[np.abs(x[:, 0] - x[:, 1]) > 0.01]
    y = (x[:, 0] - x[:, 1] > 0).astype("int64")
    assert np.mean((x[:, 0] - x[:, 1] > 0) & (x[:, 0] - x[:, 1] <= 0.5)) > 0.1  # logits in (0, 0.5]: the bug's cases
    np.savez(folder / "eval.npz", x=x, y=y)
    return folder


@pytest.mark.parametrize(("name", "threshold"), [("logit", 0.0), ("sigmoid", 0.5)])
def test_a_single_output_binary_model_is_read_as_logit_or_probability(
    optimize, single_logit, tmp_path, name, threshold
):
    out = tmp_path / "out"
    run = optimize(
        "--source", single_logit / f"{name}.keras", "--output", out, "--version", "1",
        "--eval-data", single_logit / "eval.npz",
    )  # fmt: skip
    assert run.code == 0, run.stderr
    evaluation = json.loads((out / "1" / "report.json").read_text())["evaluation"]
    assert evaluation["before"] == 1.0, "a perfect classifier is scored perfect, logit or probability"
    kind = "logit" if threshold == 0.0 else "probability"
    assert evaluation["decision"] == {"task": "classification", "binaryOutput": kind, "binaryThreshold": threshold}
    assert evaluation["metrics"]["auc"] == {"before": 1.0, "after": 1.0}


def test_auc_gates_a_binary_model(optimize, single_logit, tmp_path):
    out = tmp_path / "out"
    run = optimize(
        "--source", single_logit / "logit.keras", "--output", out, "--version", "1",
        "--eval-data", single_logit / "eval.npz", "--metric", "auc", "--quantization", "dynamic",
    )  # fmt: skip
    assert run.code == 0, run.stderr
    assert run.termination["metric"] == "auc" and run.termination["accuracyBefore"] == 1.0
    assert "worstSlice" not in run.termination  # AUC is undefined on one class: no class slices


@pytest.fixture(scope="module")
def regression(tmp_path_factory):
    folder = tmp_path_factory.mktemp("regression")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.layers[0].kernel.assign(np.array([[2.0], [-1.0], [0.5]], "float32"))
    model.save(folder / "regression.keras")
    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 3)).astype("float32")
    y = (x @ np.array([2.0, -1.0, 0.5]) + rng.normal(scale=0.1, size=300)).astype("float32")
    group = np.where(x[:, 0] > 0, 1, 2)
    np.savez(folder / "eval.npz", x=x, y=y, slice=group)
    return folder


def test_a_regression_model_is_gated_on_mse(optimize, regression, tmp_path):
    out = tmp_path / "out"
    run = optimize(
        "--source", regression / "regression.keras", "--output", out, "--version", "1",
        "--eval-data", regression / "eval.npz", "--metric", "mse", "--quantization", "float16",
        "--max-slice-accuracy-drop", "0.05",
    )  # fmt: skip
    assert run.code == 0, run.stderr
    evaluation = json.loads((out / "1" / "report.json").read_text())["evaluation"]
    assert evaluation["decision"] == {"task": "regression"}
    assert set(evaluation["metrics"]) == {"mse", "mae"}
    assert evaluation["before"] == pytest.approx(0.01, rel=0.3)  # the noise's variance
    assert evaluation["classes"] == [] and {part["name"] for part in evaluation["slices"]} == {"slice=1", "slice=2"}
    assert evaluation["sliceGate"]["gate"] == "Passed"


def test_accuracy_on_regression_targets_is_refused_by_name(optimize, regression, tmp_path):
    out = tmp_path / "out"
    run = optimize(
        "--source", regression / "regression.keras", "--output", out, "--version", "1",
        "--eval-data", regression / "eval.npz",
    )  # fmt: skip
    assert run.code == Failure.INVALID_DATASET.exit_code, run.stderr
    assert "metric accuracy needs class labels, y holds regression targets (use metric mse or mae)" in run.stderr
    assert not out.exists()


def test_top_k_accuracy_and_a_k_too_large(optimize, mlp, tmp_path):
    run = optimize(
        "--source", mlp.keras_path, "--output", tmp_path / "a", "--version", "1",
        "--eval-data", mlp.eval_path, "--metric", "topKAccuracy", "--top-k", "3",
    )  # fmt: skip
    assert run.code == 0, run.stderr
    evaluation = json.loads((tmp_path / "a" / "1" / "report.json").read_text())["evaluation"]
    assert evaluation["before"] >= evaluation["metrics"]["accuracy"]["before"] >= mlp.eval_accuracy - 1e-6
    assert len(evaluation["classes"]) == 10 and "auc" not in evaluation["metrics"]

    run = optimize(
        "--source", mlp.keras_path, "--output", tmp_path / "b", "--version", "1",
        "--eval-data", mlp.eval_path, "--metric", "topKAccuracy", "--top-k", "10",
    )  # fmt: skip
    assert run.code == Failure.INVALID_ARGUMENTS.exit_code, run.stderr
    assert "topKAccuracy with topK 10 needs a model with more than 10 classes, the model has 10" in run.stderr


@pytest.mark.parametrize(
    ("slices", "mentions"),
    [
        (np.linspace(0, 1, 5), "slice must hold integers or strings"),
        (np.zeros(4, "int64"), "x has 5 examples but slice has 4 values"),
        (np.zeros((5, 2), "int64"), "slice must hold one value per example"),
    ],
    ids=["fractions", "length", "shape"],
)
def test_an_unusable_slice_array_is_an_invalid_dataset(optimize, mlp, tmp_path, slices, mentions):
    np.savez(tmp_path / "eval.npz", x=np.zeros((5, 64), "float32"), y=np.zeros(5, "int64"), slice=slices)
    out = tmp_path / "out"
    run = optimize("--source", mlp.keras_path, "--eval-data", tmp_path / "eval.npz", "--output", out, "--version", "1")
    assert run.code == Failure.INVALID_DATASET.exit_code, run.stderr
    assert mentions in run.stderr and "eval.npz" in run.stderr
