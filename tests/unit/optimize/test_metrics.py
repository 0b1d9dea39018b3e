"""The quality metrics, the slices and both gates as pure functions of labels and outputs (NumPy, no TensorFlow)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from modeldeploy.api.spec import DEFAULT_MIN_SLICE_EXAMPLES, DEFAULT_TOP_K, Evaluation, Metric
from modeldeploy.optimize import accuracy as acc
from modeldeploy.optimize import options
from modeldeploy.optimize.accuracy import METRICS, Scoring, Task
from modeldeploy.optimize.errors import OptimizeError
from modeldeploy.optimize.evaluate import gate_failure, judge, scoring_for
from modeldeploy.optimize.slices import measure_slices, slice_column_problem, value_text, worst_slice

CLASSIFY = Scoring(Task.CLASSIFICATION)


def test_the_api_offers_exactly_the_metrics_the_optimizer_computes() -> None:
    assert [metric.value for metric in Metric] == list(METRICS)
    assert Evaluation().top_k == DEFAULT_TOP_K == acc.DEFAULT_TOP_K
    assert Evaluation().min_slice_examples == DEFAULT_MIN_SLICE_EXAMPLES == options.DEFAULT_MIN_SLICE_EXAMPLES
    assert Evaluation().max_slice_accuracy_drop is None


def test_a_single_logit_is_read_by_its_sign_not_at_one_half() -> None:
    logits = np.array([[-2.0], [-0.3], [0.2], [0.4], [3.0]])
    labels = np.array([0, 0, 1, 1, 1])
    threshold = acc.decision_threshold(logits)
    assert threshold == acc.LOGIT_THRESHOLD
    assert acc.accuracy(labels, logits, Scoring(Task.CLASSIFICATION, threshold=threshold)) == 1.0
    assert acc.accuracy(labels, logits, CLASSIFY) == 0.6, "what the 0.5 threshold made of it"


def test_probabilities_and_sigmoid_models_keep_one_half() -> None:
    probabilities = np.array([[0.1], [0.45], [0.55], [0.9]])
    assert acc.decision_threshold(probabilities) == acc.PROBABILITY_THRESHOLD
    # A sigmoid model decides even when NaN or rounding puts an output outside [0, 1].
    assert acc.decision_threshold(np.array([[1.2], [np.nan]]), ends_in_sigmoid=True) == acc.PROBABILITY_THRESHOLD
    assert acc.decision_threshold(np.array([[np.nan], [0.3]])) == acc.PROBABILITY_THRESHOLD


def test_scoring_decides_on_the_original_and_refuses_metrics_that_do_not_fit() -> None:
    assert scoring_for(METRICS["accuracy"], np.array([[-1.0], [2.0]]), sigmoid=False, top_k=5).threshold == 0.0
    assert scoring_for(METRICS["accuracy"], np.array([[0.2], [0.9]]), sigmoid=False, top_k=5).threshold == 0.5
    with pytest.raises(OptimizeError, match="topK 5 needs a model with more than 5 classes, the model has 3"):
        scoring_for(METRICS["topKAccuracy"], np.zeros((4, 3)), sigmoid=False, top_k=5)
    with pytest.raises(OptimizeError, match="auc needs a binary model"):
        scoring_for(METRICS["auc"], np.zeros((4, 3)), sigmoid=False, top_k=5)


@pytest.mark.parametrize(
    ("y", "outputs", "prefer", "task"),
    [
        (np.array([0, 3, 9]), 10, Task.CLASSIFICATION, Task.CLASSIFICATION),
        (np.array([0.0, 3.0, 9.0]), 10, Task.CLASSIFICATION, Task.CLASSIFICATION),  # float labels, integral
        (np.array([0, 1, 1]), 1, Task.CLASSIFICATION, Task.CLASSIFICATION),
        (np.array([0, 1, 1]), 1, Task.REGRESSION, Task.REGRESSION),  # the one ambiguity: the metric decides
        (np.array([0.5, 1.7, -2.0]), 1, Task.CLASSIFICATION, Task.REGRESSION),
        (np.array([0, 2, 7]), 1, Task.CLASSIFICATION, Task.REGRESSION),  # counts, not classes of one unit
        (np.zeros((3, 4)), 4, Task.REGRESSION, Task.REGRESSION),
    ],
)
def test_classification_or_regression_follows_y_and_the_outputs(y, outputs, prefer, task) -> None:
    assert acc.decide_task(y, outputs, prefer) is task


@pytest.mark.parametrize(
    ("y", "outputs", "problem"),
    [
        (np.array([0.5, 1.0]), 10, "integer class indices"),
        (np.array([0, 12]), 10, "label 12 is out of range: the model has 10 output classes"),
        (np.array([-1, 2]), 10, "negative class indices"),
        (np.zeros((3, 2)), 4, "y has 2 values per example, the model has 4 outputs"),
    ],
)
def test_y_that_fits_neither_reading_is_named(y, outputs, problem) -> None:
    with pytest.raises(ValueError, match=problem):
        acc.decide_task(y, outputs, Task.CLASSIFICATION)


def test_top_k_accuracy() -> None:
    scores = np.array([[0.1, 0.5, 0.4], [0.6, 0.3, 0.1], [0.2, 0.3, 0.5]])
    labels = np.array([2, 2, 0])  # ranks of the true class: 2nd, 3rd, 3rd
    assert acc.top_k_accuracy(labels, scores, Scoring(Task.CLASSIFICATION, top_k=2)) == pytest.approx(1 / 3)
    assert acc.top_k_accuracy(labels, scores, Scoring(Task.CLASSIFICATION, top_k=3)) == 1.0


def test_auc_matches_scikit_learn_with_ties_and_both_output_layouts() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.normal(labels * 0.7, 1.0), 1)  # rounded: many ties
    expected = roc_auc_score(labels, scores)
    assert acc.auc(labels, scores[:, None], CLASSIFY) == pytest.approx(expected)
    two_columns = np.stack([-scores / 2, scores / 2], axis=1)
    assert acc.auc(labels, two_columns, CLASSIFY) == pytest.approx(expected)
    assert acc.auc(np.ones(5), np.zeros((5, 1)), CLASSIFY) is None, "undefined without both classes"


def test_mse_and_mae_judge_relative_change() -> None:
    regress = Scoring(Task.REGRESSION)
    y = np.array([1.0, 2.0, 3.0])
    assert acc.mse(y, np.array([[1.0], [2.0], [5.0]]), regress) == pytest.approx(4 / 3)
    assert acc.mae(y, np.array([[1.0], [2.0], [5.0]]), regress) == pytest.approx(2 / 3)
    assert acc.change(METRICS["mse"], 0.02, 0.021) == pytest.approx(0.05)  # 5 % worse
    assert acc.change(METRICS["accuracy"], 0.95, 0.93) == pytest.approx(0.02)  # 2 points worse
    assert acc.change(METRICS["mae"], 0.5, 0.4) < 0  # better


def _two_models() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """100 examples, 3 classes; the 'after' model gets 8 of the 40 'b' examples of class 2 wrong."""
    labels = np.array([0] * 30 + [1] * 30 + [2] * 40)
    before = np.eye(3)[labels]
    after = before.copy()
    after[60:68] = np.eye(3)[0]
    slices = np.array(["a"] * 60 + ["b"] * 38 + ["c"] * 2)
    return labels, before, after, slices


def test_slices_are_measured_per_class_and_per_slice_value() -> None:
    labels, before, after, slices = _two_models()
    measured = measure_slices(METRICS["accuracy"], CLASSIFY, labels, before, after, slices, min_examples=30)
    by_name = {part.name: part for part in measured}
    assert list(by_name) == ["class=0", "class=1", "class=2", "slice=a", "slice=b", "slice=c"]
    assert by_name["class=2"].after == pytest.approx(0.8) and by_name["class=2"].drop == pytest.approx(0.2)
    assert by_name["slice=b"].drop == pytest.approx(8 / 38)
    assert by_name["slice=c"].gated is False and by_name["slice=c"].examples == 2
    worst = worst_slice(measured)
    assert worst is not None and worst.name == "slice=b"


def test_a_tiny_slice_does_not_fail_the_gate_on_noise() -> None:
    labels = np.array([0] * 50 + [1] * 50)
    before = np.eye(2)[labels]
    after = before.copy()
    after[0] = [0, 1]  # one miss, in the 2-example slice "tiny"
    slices = np.array(["tiny"] * 2 + ["rest"] * 98)
    judged = judge(
        METRICS["accuracy"], CLASSIFY, labels, before, after,
        slices=slices, max_drop=0.01, max_slice_drop=0.05, min_slice_examples=30,
    )  # fmt: skip
    assert judged.slices.passed and gate_failure(judged.gate, judged.slices) is None
    tiny = next(part for part in judged.slices.slices if part.name == "slice=tiny")
    assert tiny.drop == pytest.approx(0.5) and not tiny.gated


def test_the_gate_failure_names_the_worst_slice_its_values_and_the_threshold() -> None:
    labels, before, after, slices = _two_models()
    judged = judge(
        METRICS["accuracy"], CLASSIFY, labels, before, after,
        slices=slices, max_drop=0.1, max_slice_drop=0.15, min_slice_examples=30,
    )  # fmt: skip
    assert judged.gate.passed and not judged.slices.passed
    assert gate_failure(judged.gate, judged.slices) == (
        "worst slice slice=b (38 examples): accuracy dropped 21.1 points (1.000 -> 0.789), above "
        "maxSliceAccuracyDrop 15.0 points; overall accuracy dropped 8.0 points (1.000 -> 0.920), "
        "within maxAccuracyDrop 10.0 points"
    )
    assert set(judged.metrics) == {"accuracy"}, "top-k needs more than 5 classes, AUC two"


def test_without_max_slice_drop_slices_are_reported_not_gated() -> None:
    labels, before, after, slices = _two_models()
    judged = judge(
        METRICS["accuracy"], CLASSIFY, labels, before, after,
        slices=slices, max_drop=0.1, max_slice_drop=None, min_slice_examples=30,
    )  # fmt: skip
    assert judged.slices.passed and not judged.slices.applied
    assert judged.slices.message().startswith("worst slice slice=b (38 examples): accuracy dropped 21.1 points")
    assert "maxSliceAccuracyDrop" not in judged.slices.message()


def test_regression_is_sliced_by_the_slice_column_only_and_worded_as_a_rise() -> None:
    y = np.linspace(0, 1, 60)
    before = (y + 0.1)[:, None]
    after = before.copy()
    after[:30] += 0.1  # group 1 doubles its error
    judged = judge(
        METRICS["mse"], Scoring(Task.REGRESSION), y, before, after,
        slices=np.repeat([1, 2], 30), max_drop=0.01, max_slice_drop=0.5, min_slice_examples=30,
    )  # fmt: skip
    assert judged.slices.classes == () and set(judged.metrics) == {"mse", "mae"}
    failure = gate_failure(judged.gate, judged.slices)
    assert failure is not None
    assert failure.startswith(
        "worst slice slice=1 (30 examples): mse rose 300.0% (0.01 -> 0.04), above maxSliceAccuracyDrop 50.0%"
    )


@pytest.mark.parametrize(
    ("column", "problem"),
    [
        (np.array([0.5, 1.0, 2.0]), "integers or strings, got fractional numbers"),
        (np.array([1, 2]), "x has 3 examples but slice has 2 values"),
        (np.zeros((3, 1)), "one value per example"),
        (np.arange(3, dtype="complex64"), "got dtype complex64"),
    ],
)
def test_unusable_slice_columns_are_named(column, problem) -> None:
    message = slice_column_problem(column, 3)
    assert message is not None and problem in message


def test_usable_slice_columns_and_their_names() -> None:
    assert slice_column_problem(np.array(["day", "night", "day"]), 3) is None
    assert slice_column_problem(np.array([b"a", b"b", b"a"]), 3) is None
    assert slice_column_problem(np.array([1.0, 2.0, 1.0]), 3) is None  # integral floats are integers
    assert slice_column_problem(np.arange(1001), 1001) is not None, "an id column is not a slice"
    assert [value_text(v) for v in (np.int64(3), np.float64(2.0), b"night", np.str_("x" * 100))] == [
        "3",
        "2",
        "night",
        "x" * 61 + "...",
    ]
