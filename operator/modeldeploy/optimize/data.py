"""Training and evaluation data: a .npz with arrays `x` (examples) and `y` (class labels or
regression targets, see `accuracy.decide_task`), and optionally `slice` (a group per example, integers
or strings: the quality gate also measures each group, see `slices`).

Checked before any TensorFlow work so a bad dataset fails fast with reason InvalidDataset and a
message that says which file and what is wrong: not a .npz, a missing array, no examples, x and y of
different lengths, labels that are not class indices, or examples whose shape is not the model's
input shape. NumPy only.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from modeldeploy.contract.failures import Failure
from modeldeploy.optimize.accuracy import Task, decide_task
from modeldeploy.optimize.errors import OptimizeError
from modeldeploy.optimize.slices import slice_column_problem
from modeldeploy.optimize.storage import display_uri


@dataclass(frozen=True)
class Dataset:
    uri: str
    x: npt.NDArray[Any]
    y: npt.NDArray[Any]
    slices: npt.NDArray[Any] | None = None  # the optional `slice` array: a group label per example

    def __len__(self) -> int:
        return len(self.x)


def _invalid(uri: str, problem: str) -> OptimizeError:
    return OptimizeError(Failure.INVALID_DATASET, f"dataset {display_uri(uri)}: {problem}")


def load_npz(path: Path, uri: str) -> Dataset:
    """Read and sanity-check x and y; pickled object arrays are refused (they can run code)."""
    if path.is_dir():
        raise _invalid(uri, "is a folder, expected a .npz file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise _invalid(uri, "is a single .npy array, expected a .npz with arrays x and y")
            missing = [name for name in ("x", "y") if name not in archive.files]
            if missing:
                raise _invalid(uri, f"has no array {' or '.join(missing)} (found: {', '.join(archive.files)})")
            x = archive["x"]
            y = archive["y"]
            slices = archive["slice"] if "slice" in archive.files else None
    except OptimizeError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise _invalid(uri, f"not a readable .npz file ({exc})") from None
    if x.ndim == 0 or len(x) == 0:
        raise _invalid(uri, "x has no examples")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise _invalid(uri, f"x must be numeric, got dtype {x.dtype}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.reshape(-1)
    if y.ndim not in (1, 2):
        raise _invalid(uri, f"y must be one label or target (or a row of targets) per example, got shape {y.shape}")
    if len(y) != len(x):
        raise _invalid(uri, f"x has {len(x)} examples but y has {len(y)} labels")
    if not (np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_) or not np.all(np.isfinite(y)):
        raise _invalid(uri, "y must hold numbers: class indices or regression targets")
    if slices is not None and (problem := slice_column_problem(slices, len(x))):
        raise _invalid(uri, problem)
    if not np.all(np.isfinite(x.astype(np.float64))):
        raise _invalid(uri, "x holds NaN or infinite values")
    return Dataset(uri=uri, x=x, y=y, slices=slices)


def fit_to_model(
    dataset: Dataset,
    input_shape: tuple[int | None, ...],
    input_dtype: str,
    num_classes: int,
    task: Task | None = Task.CLASSIFICATION,
    purpose: str = "fine-tuning",
) -> Dataset:
    """Check the dataset against the model's per-example input shape and outputs; cast x and y.

    `task` is what `purpose` (fine-tuning, or the quality gate's metric) needs y to hold; None when
    y is not read (int8 calibration uses x only).
    """
    shape = tuple(dataset.x.shape[1:])
    compatible = len(shape) == len(input_shape) and all(
        want is None or want == got for want, got in zip(input_shape, shape, strict=True)
    )
    if not compatible:
        pretty = tuple("None" if d is None else d for d in input_shape)
        raise _invalid(dataset.uri, f"examples have shape {shape}, the model expects {pretty}".replace("'", ""))
    if task is None:
        return Dataset(uri=dataset.uri, x=dataset.x.astype(input_dtype), y=dataset.y, slices=dataset.slices)
    try:
        found = decide_task(dataset.y, num_classes, task)
    except ValueError as exc:
        raise _invalid(dataset.uri, str(exc)) from None
    if found is not task:
        advice = f" (use metric {_METRICS_FOR[found]})" if purpose.startswith("metric") else ""
        raise _invalid(dataset.uri, f"{purpose} needs {_HOLDS[task]}, y holds {_HOLDS[found]}{advice}")
    y = dataset.y.astype(np.int64).reshape(-1) if task is Task.CLASSIFICATION else dataset.y.astype(np.float64)
    return Dataset(uri=dataset.uri, x=dataset.x.astype(input_dtype), y=y, slices=dataset.slices)


_HOLDS = {Task.CLASSIFICATION: "class labels", Task.REGRESSION: "regression targets"}
_METRICS_FOR = {Task.CLASSIFICATION: "accuracy, topKAccuracy or auc", Task.REGRESSION: "mse or mae"}
