"""Training and evaluation data: a .npz with arrays `x` (examples) and `y` (class labels or
regression targets, see `accuracy.decide_task`), and optionally `slice` (a group per example, integers
or strings: the quality gate also measures each group, see `slices`).

Checked before any TensorFlow work so a bad dataset fails fast with reason InvalidDataset and a
message that says which file and what is wrong: not a .npz, a missing array, no examples, x and y of
different lengths, labels that are not class indices, examples whose shape is not the model's
input shape, or float examples for a model whose input is integer (token ids). NumPy only.
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


_NPZ_MAGIC = b"PK\x03\x04"  # a .npz is a zip archive of .npy files
_NPY_MAGIC = b"\x93NUMPY"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"


def _check_container(path: Path, uri: str) -> None:
    """Refuse what is not a .npz by its first bytes, before NumPy guesses (it would take anything
    else for a pickle and advise `allow_pickle`, which is never enabled: a pickle can run code)."""
    with path.open("rb") as handle:
        head = handle.read(len(_NPY_MAGIC))
    if head.startswith(_NPY_MAGIC):
        raise _invalid(uri, "is a single .npy array; expected a .npz with arrays x and y (numpy.savez(path, x=x, y=y))")
    if not (head.startswith(_NPZ_MAGIC) or head.startswith(_EMPTY_ZIP_MAGIC)):
        raise _invalid(uri, "is not a .npz file (a zip archive); expected a .npz with arrays x and y")


def load_npz(path: Path, uri: str) -> Dataset:
    """Read and sanity-check x and y; pickled object arrays are refused (they can run code)."""
    if path.is_dir():
        raise _invalid(uri, "is a folder, expected a .npz file")
    _check_container(path, uri)
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
    except ValueError as exc:
        if "allow_pickle" in str(exc):  # an object array: only pickle could read it
            raise _invalid(uri, "holds an array of Python objects (pickled); refused: save numeric arrays") from None
        raise _invalid(uri, f"not a readable .npz file ({exc})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
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
        return Dataset(
            uri=dataset.uri, x=_as_input_dtype(dataset, np.dtype(input_dtype)), y=dataset.y, slices=dataset.slices
        )
    try:
        found = decide_task(dataset.y, num_classes, task)
    except ValueError as exc:
        raise _invalid(dataset.uri, str(exc)) from None
    if found is not task:
        advice = f" (use metric {_METRICS_FOR[found]})" if purpose.startswith("metric") else ""
        raise _invalid(dataset.uri, f"{purpose} needs {_HOLDS[task]}, y holds {_HOLDS[found]}{advice}")
    y = dataset.y.astype(np.int64).reshape(-1) if task is Task.CLASSIFICATION else dataset.y.astype(np.float64)
    return Dataset(uri=dataset.uri, x=_as_input_dtype(dataset, np.dtype(input_dtype)), y=y, slices=dataset.slices)


_HOLDS = {Task.CLASSIFICATION: "class labels", Task.REGRESSION: "regression targets"}
_METRICS_FOR = {Task.CLASSIFICATION: "accuracy, topKAccuracy or auc", Task.REGRESSION: "mse or mae"}


def _as_input_dtype(dataset: Dataset, want: np.dtype[Any]) -> npt.NDArray[Any]:
    """x in the model's input dtype. Integer inputs (token ids, say) take integers only, within the
    type's range: casting 3.7 to 3, or 2**40 to a wrapped int32, would feed the model other ids."""
    x = dataset.x
    if np.issubdtype(want, np.integer):
        if not np.issubdtype(x.dtype, np.integer):
            raise _invalid(
                dataset.uri,
                f"array x holds {x.dtype} values but the model's input is {want}: "
                "save integer ids (a cast would truncate them)",
            )
        limits = np.iinfo(want)
        low, high = int(x.min()), int(x.max())
        if low < limits.min or high > limits.max:
            raise _invalid(
                dataset.uri, f"array x holds values from {low} to {high}, outside the model's input type {want}"
            )
    return x.astype(want)
