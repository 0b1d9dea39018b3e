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

A pruned model is converted a second time with the converter's EXPERIMENTAL_SPARSITY, which stores
a kernel that is sparse enough in a sparse encoding (values and indices), and `choose_encoding`
keeps it only when it is valid (it runs, and `fidelity`'s rule holds against the dense conversion
on the same inputs), smaller, and executed as it is stored. The last condition matters: for a
kernel whose sparsity pattern no TFLite kernel executes (int8 with unstructured sparsity, in TF
2.21), the converter inserts DENSIFY ops that rebuild the dense weights when the interpreter
starts, so the pod holds both copies and runs slower: a smaller file, not a smaller model. Kernels
pruned in 1x16 blocks (`pruning.denseBlockSize`) are executed sparse by int8 fully-connected ops;
1x4 blocks by float ones.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from modeldeploy.contract.failures import Failure
from modeldeploy.contract.formats import Quantization
from modeldeploy.optimize.convert import SIGNATURE_KEY
from modeldeploy.optimize.errors import OptimizeError
from modeldeploy.optimize.fidelity import CHECK_EXAMPLES, compare_outputs

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


def quantize(
    saved_model_dir: Path, mode: Quantization, representative: npt.NDArray[Any] | None = None, *, sparse: bool = False
) -> bytes:
    """Convert the SavedModel's serving signature to a TFLite flatbuffer in the given mode.

    `sparse` adds the converter's sparsity optimization (sparse encoding of sparse kernels).
    """
    import tensorflow as tf

    if mode is Quantization.NONE:
        raise ValueError("quantize() needs a quantization mode")
    loaded = tf.saved_model.load(str(saved_model_dir))  # owns the variables: alive until convert() is done
    converter = tf.lite.TFLiteConverter.from_concrete_functions([loaded.signatures[SIGNATURE_KEY]], loaded)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if sparse:
        converter.optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
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


@dataclass(frozen=True)
class Encoding:
    """Which encoding of a pruned model's weights was kept, and why; the sizes of both."""

    sparse: bool
    dense_bytes: int
    sparse_bytes: int | None  # None: the sparse conversion failed
    densify_ops: int | None  # DENSIFY ops of the sparse conversion: weights rebuilt dense at load
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "encoding": "sparse" if self.sparse else "dense",
            "denseBytes": self.dense_bytes,
            "sparseBytes": self.sparse_bytes,
            "densifyOps": self.densify_ops,
            "reason": self.reason,
        }


def op_names(content: bytes) -> list[str]:
    """The flatbuffer's ops in execution order, as the interpreter lists them."""
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*tf\.lite\.Interpreter is deprecated", category=UserWarning)
        interpreter = tf.lite.Interpreter(model_content=content)
    return [str(op["op_name"]) for op in interpreter._get_ops_details()]


def choose_encoding(
    dense: bytes, sparse: bytes | None, mode: Quantization, inputs: npt.NDArray[Any]
) -> tuple[bytes, Encoding]:
    """The sparse conversion when it is valid, smaller, and runs on its sparse weights; else the dense one."""
    from modeldeploy.optimize.evaluate import TFLitePredictor

    if sparse is None:
        return dense, Encoding(sparse=False, dense_bytes=len(dense), sparse_bytes=None, densify_ops=None,
                               reason="the sparse conversion failed")  # fmt: skip
    try:
        densify: int | None = op_names(sparse).count("DENSIFY")
    except (ValueError, RuntimeError) as exc:  # not a flatbuffer the interpreter can read
        densify = None
        unreadable: str | None = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    else:
        unreadable = None

    def keep_dense(reason: str) -> tuple[bytes, Encoding]:
        return dense, Encoding(
            sparse=False, dense_bytes=len(dense), sparse_bytes=len(sparse), densify_ops=densify, reason=reason
        )

    if unreadable is not None:
        return keep_dense(f"the sparse model fails: {unreadable[:200]}")
    if len(sparse) >= len(dense):
        return keep_dense("no kernel is sparse enough for a smaller sparse encoding")
    if densify:
        return keep_dense(
            f"the sparse encoding needs {densify} DENSIFY ops (weights rebuilt dense at load): a smaller "
            "file, not a smaller model in memory, and slower; prune in blocks (denseBlockSize) for sparse kernels"
        )
    x = inputs[:CHECK_EXAMPLES]
    try:
        check = compare_outputs(
            TFLitePredictor(dense).predict(x),
            TFLitePredictor(sparse).predict(x),
            mode,
            artifact="sparse",
            data="inputs",
        )
    except (ValueError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return keep_dense(f"the sparse model fails: {first[:200]}")
    if not check.passed:
        return keep_dense(f"the sparse model differs: {check.message()}")
    return sparse, Encoding(
        sparse=True, dense_bytes=len(dense), sparse_bytes=len(sparse), densify_ops=0,
        reason="smaller, executed sparse, same outputs as the dense conversion",
    )  # fmt: skip
