"""The inputs the conversion check generates when the run has no data (NumPy only, no TensorFlow)."""

from __future__ import annotations

import numpy as np
import pytest

from modeldeploy.optimize.convert import ModelSignature
from modeldeploy.optimize.pipeline import SYNTHETIC_UNKNOWN_DIM, _synthetic


def signature(shape: tuple[int | None, ...], dtype: str) -> ModelSignature:
    return ModelSignature(input_name="x", input_shape=shape, input_dtype=dtype, output_name="y", num_classes=2)


@pytest.mark.parametrize("dtype", ["int32", "int64", "uint8", "bool"])
def test_generated_integer_inputs_are_valid_ids_and_not_all_the_same(dtype: str) -> None:
    x = _synthetic(signature((12,), dtype), 50)
    assert x.shape == (50, 12) and x.dtype == np.dtype(dtype)
    # Ids 0 and 1 only (valid for any Embedding), both present, and the examples differ from one
    # another: random floats cast to an integer type were all 0.
    assert set(np.unique(x).astype(int)) == {0, 1}
    assert len({example.tobytes() for example in x}) > 40


def test_generated_float_inputs_cover_the_unit_interval_and_unknown_dimensions_get_a_size() -> None:
    x = _synthetic(signature((None, 3), "float32"), 20)
    assert x.shape == (20, SYNTHETIC_UNKNOWN_DIM, 3) and x.dtype == np.float32
    assert 0.0 <= x.min() < 0.1 and 0.9 < x.max() < 1.0
