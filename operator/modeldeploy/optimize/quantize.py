"""Post-training quantization with the TFLite converter, into the `model.tflite` TF Serving prefers.

Modes: `dynamic` (int8 weights, float activations), `float16` (half-precision weights) and `int8`
(full integer: weights and activations, calibrated on representative examples from the training
data, else the evaluation data, in the model's input dtype). The int8 model keeps float32 input
and output (quantize and dequantize ops at its edges) so the request format stays that of the
SavedModel: TF Serving's `--prefer_tflite_model` can swap one for the other without clients
noticing; an integer input (token ids) stays integer. A converter failure (an op with no int8
kernel, say) is UnsupportedModel, its message cut to the MLIR errors without their call sites.

The converter is given the loaded `serving_default` concrete function, not the SavedModel folder:
`from_saved_model` keeps variables as resource variables when it cannot freeze them, and for a
SavedModel written by `tf.saved_model.save(keras_model)` (TF 2.21, Keras 3) it produced READ_VARIABLE
ops on variables nothing initialises (NaN for every input; int8 calibration failed on them).
`from_concrete_functions` freezes the variables' values into constants whatever wrote the
SavedModel, with the same signature name, inputs and outputs (for our own exports: the same size and outputs).
`fidelity` checks the result anyway.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from modeldeploy.contract.failures import Failure
from modeldeploy.contract.formats import Quantization
from modeldeploy.optimize.convert import SIGNATURE_KEY
from modeldeploy.optimize.errors import OptimizeError

REPRESENTATIVE_SAMPLES = 200


def artifact_format(mode: Quantization) -> str:
    """The `format` word of the report: what TF Serving will load."""
    return "savedmodel" if mode is Quantization.NONE else f"tflite-{mode.value}"


def representative_sample(x: npt.NDArray[Any], seed: int = 0) -> npt.NDArray[Any]:
    """Up to REPRESENTATIVE_SAMPLES examples drawn evenly at random (fixed seed: reproducible)."""
    if len(x) <= REPRESENTATIVE_SAMPLES:
        return x
    chosen = np.random.default_rng(seed).choice(len(x), REPRESENTATIVE_SAMPLES, replace=False)
    return x[np.sort(chosen)]


def quantize(saved_model_dir: Path, mode: Quantization, representative: npt.NDArray[Any] | None = None) -> bytes:
    """Convert the SavedModel's serving signature to a TFLite flatbuffer in the given mode."""
    import tensorflow as tf

    if mode is Quantization.NONE:
        raise ValueError("quantize() needs a quantization mode")
    loaded = tf.saved_model.load(str(saved_model_dir))  # owns the variables: alive until convert() is done
    converter = tf.lite.TFLiteConverter.from_concrete_functions([loaded.signatures[SIGNATURE_KEY]], loaded)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode is Quantization.FLOAT16:
        converter.target_spec.supported_types = [tf.float16]
    elif mode is Quantization.INT8:
        if representative is None or len(representative) == 0:
            raise OptimizeError(Failure.INVALID_ARGUMENTS, "int8 quantization needs representative data")
        # In the model's own input dtype (fit_to_model cast it): token ids stay integers.
        examples = np.asarray(representative)

        def dataset() -> Iterator[list[npt.NDArray[Any]]]:
            for index in range(len(examples)):
                yield [examples[index : index + 1]]

        converter.representative_dataset = dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # inference_input_type / inference_output_type stay float32: see the module docstring.
    try:
        return bytes(converter.convert())
    except Exception as exc:  # ConverterError and friends
        raise OptimizeError(
            Failure.UNSUPPORTED_MODEL, f"TFLite conversion ({mode.value}) failed: {converter_problem(exc)}"
        ) from None


_MLIR_ERROR = re.compile(r"error: ([^\n]+)")
_NO_KERNEL = re.compile(r"'([\w.]+)' op is neither a custom op nor a flex op")
_PROBLEM_CHARS = 300


def converter_problem(exc: BaseException) -> str:
    """The converter's complaint in one short line: the MLIR errors without their call-site dumps."""
    text = str(exc).strip()
    unconvertible = sorted(set(_NO_KERNEL.findall(text)))
    if unconvertible:
        return (
            f"no TFLite kernel for {'op' if len(unconvertible) == 1 else 'ops'} {', '.join(unconvertible)} "
            "with this model's types "
            "(a float16 or float64 compute graph, say: save the model computing in float32)"
        )[: _PROBLEM_CHARS * 2]
    errors = list(dict.fromkeys(_MLIR_ERROR.findall(text)))
    first = "; ".join(errors[:2]) if errors else (text.splitlines() or [type(exc).__name__])[0]
    return first[:_PROBLEM_CHARS]
