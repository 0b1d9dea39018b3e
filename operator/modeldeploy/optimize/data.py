"""Training and evaluation data: a .npz with arrays `x` (examples) and `y` (integer class labels).

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
from modeldeploy.optimize.errors import OptimizeError
from modeldeploy.optimize.storage import display_uri


@dataclass(frozen=True)
class Dataset:
    uri: str
    x: npt.NDArray[Any]
    y: npt.NDArray[np.int64]

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
    if y.ndim != 1:
        raise _invalid(uri, f"y must be one class index per example, got shape {y.shape}")
    if len(y) != len(x):
        raise _invalid(uri, f"x has {len(x)} examples but y has {len(y)} labels")
    if not np.issubdtype(y.dtype, np.number) or not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
        raise _invalid(uri, "y must hold integer class indices")
    if np.any(y < 0):
        raise _invalid(uri, "y holds negative class indices")
    if not np.all(np.isfinite(x.astype(np.float64))):
        raise _invalid(uri, "x holds NaN or infinite values")
    return Dataset(uri=uri, x=x, y=y.astype(np.int64))


def fit_to_model(dataset: Dataset, input_shape: tuple[int | None, ...], input_dtype: str, num_classes: int) -> Dataset:
    """Check the dataset against the model's per-example input shape and class count; cast x."""
    shape = tuple(dataset.x.shape[1:])
    compatible = len(shape) == len(input_shape) and all(
        want is None or want == got for want, got in zip(input_shape, shape, strict=True)
    )
    if not compatible:
        pretty = tuple("None" if d is None else d for d in input_shape)
        raise _invalid(dataset.uri, f"examples have shape {shape}, the model expects {pretty}".replace("'", ""))
    top = int(dataset.y.max())
    if top >= max(num_classes, 2):
        raise _invalid(dataset.uri, f"label {top} is out of range: the model has {num_classes} output classes")
    return Dataset(uri=dataset.uri, x=dataset.x.astype(input_dtype), y=dataset.y)
