"""The eval .npz's y and slice arrays as the optimizer reads them (NumPy only, no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modeldeploy.optimize.accuracy import Task
from modeldeploy.optimize.data import Dataset, fit_to_model, load_npz
from modeldeploy.optimize.errors import OptimizeError


def load_npz_with(tmp_path: Path, **extra: np.ndarray) -> Dataset:
    """x of 3 examples of 2 features, y the class indices 0, 1, 0, and any extra arrays."""
    np.savez(tmp_path / "eval.npz", x=np.zeros((3, 2), "float32"), y=np.array([0, 1, 0]), **extra)
    return load_npz(tmp_path / "eval.npz", "file:///data/eval.npz")


def test_a_slice_array_of_strings_is_kept_beside_x_and_y(tmp_path: Path) -> None:
    dataset = load_npz_with(tmp_path, slice=np.array(["day", "night", "day"]))
    fitted = fit_to_model(dataset, (2,), "float32", 2)
    assert fitted.slices is not None and list(fitted.slices) == ["day", "night", "day"]
    assert fitted.y.dtype == np.int64


def test_regression_targets_are_read_for_an_error_metric_and_refused_for_accuracy(tmp_path: Path) -> None:
    np.savez(tmp_path / "eval.npz", x=np.zeros((3, 2), "float32"), y=np.array([0.5, 1.5, -2.0], "float32"))
    dataset = load_npz(tmp_path / "eval.npz", "file:///data/eval.npz")
    fitted = fit_to_model(dataset, (2,), "float32", 1, Task.REGRESSION, "metric mse")
    assert fitted.y.dtype == np.float64
    with pytest.raises(OptimizeError) as refused:
        fit_to_model(dataset, (2,), "float32", 1, Task.CLASSIFICATION, "metric accuracy")
    assert refused.value.message == (
        "dataset file:///data/eval.npz: metric accuracy needs class labels, y holds regression targets "
        "(use metric mse or mae)"
    )
    with pytest.raises(OptimizeError, match=r"fine-tuning needs class labels, y holds regression targets$"):
        fit_to_model(dataset, (2,), "float32", 1)
    # int8 calibration reads x only: a regression model's train data is fine there.
    assert fit_to_model(dataset, (2,), "float32", 1, None).y is dataset.y


def test_class_indices_are_refused_for_an_error_metric(tmp_path: Path) -> None:
    dataset = load_npz_with(tmp_path)
    with pytest.raises(OptimizeError, match="y holds class labels \\(use metric accuracy, topKAccuracy or auc\\)"):
        fit_to_model(dataset, (2,), "float32", 10, Task.REGRESSION, "metric mse")


def test_a_bad_slice_array_is_an_invalid_dataset_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(OptimizeError, match=r"eval\.npz: slice must hold integers or strings"):
        load_npz_with(tmp_path, slice=np.array([0.5, 1.0, 2.0]))
