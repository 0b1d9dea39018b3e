"""Loading the user's model (.keras, legacy .h5 or SavedModel) and writing SavedModels for serving.

TF Serving loads `<version>/saved_model.pb` + `variables/` and calls its `serving_default`
signature. Keras 3's own `model.export()` stores every variable twice (as `variables` and
`_all_variables`), doubling the artifact, so `export_saved_model` writes a minimal tf.Module that
tracks each variable once and has a single `serving_default` signature with a batch dimension.
Failures become ModelLoadFailed (the bytes are not a model of that format) or UnsupportedModel (a
model we cannot optimize: unknown custom layer, Python lambda, several inputs or outputs).

A Keras model trained under a mixed-precision policy (`mixed_float16`, `mixed_bfloat16`) computes
in half precision over float32 variables; the TFLite converter has no kernels for its float16
MatMul and convolutions. `float32_compute` rebuilds such a model with the float32 policy and the
same weights (the variables are float32 already, so nothing is lost), and the run continues on it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modeldeploy.contract.failures import Failure
from modeldeploy.contract.formats import ModelFormat
from modeldeploy.optimize.errors import OptimizeError
from modeldeploy.optimize.storage import display_uri, unpack_archive

SIGNATURE_KEY = "serving_default"
OUTPUT_KEY = "output_0"
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_UNKNOWN_CLASS = re.compile(r"Could not locate (?:class|function) '([^']+)'")


@dataclass(frozen=True)
class ModelSignature:
    """What requests look like: one input tensor per example, one score vector out."""

    input_name: str
    input_shape: tuple[int | None, ...]  # per example, without the batch dimension
    input_dtype: str
    output_name: str
    num_classes: int


def _load_failed(uri: str, problem: str) -> OptimizeError:
    return OptimizeError(Failure.MODEL_LOAD_FAILED, f"model {display_uri(uri)}: {problem}")


def _unsupported(uri: str, problem: str) -> OptimizeError:
    return OptimizeError(Failure.UNSUPPORTED_MODEL, f"model {display_uri(uri)}: {problem}")


def _is_hdf5(path: Path) -> bool:
    # HDF5 allows a user block of 512, 1024, 2048... bytes before the signature.
    with path.open("rb") as handle:
        offset = 0
        while True:
            handle.seek(offset)
            head = handle.read(len(_HDF5_SIGNATURE))
            if head == _HDF5_SIGNATURE:
                return True
            if len(head) < len(_HDF5_SIGNATURE):
                return False
            offset = 512 if offset == 0 else offset * 2


def _with_suffix(path: Path, suffix: str, workdir: Path) -> Path:
    """Keras picks the reader by file suffix; give it a link with the right one when needed."""
    if path.name.lower().endswith(suffix if suffix != ".h5" else (".h5", ".hdf5")):
        return path
    workdir.mkdir(parents=True, exist_ok=True)
    link = workdir / f"model{suffix}"
    link.unlink(missing_ok=True)
    os.symlink(path.resolve(), link)
    return link


def load_keras_model(path: Path, fmt: ModelFormat, workdir: Path, uri: str) -> Any:
    """Load a .keras or .h5 file without compiling it (the optimizer state is never needed)."""
    import zipfile

    import keras

    if path.is_dir():
        raise _load_failed(uri, f"is a folder; --format {fmt.value} expects a single file")
    if fmt is ModelFormat.KERAS:
        if not zipfile.is_zipfile(path):
            raise _load_failed(uri, "not a .keras file (a .keras file is a zip archive)")
        target = _with_suffix(path, ".keras", workdir)
    else:
        if not _is_hdf5(path):
            raise _load_failed(uri, "not an HDF5 (.h5) file")
        target = _with_suffix(path, ".h5", workdir)
    try:
        model = keras.models.load_model(target, compile=False)
    except Exception as exc:  # Keras raises whatever its readers raise
        text = str(exc)
        unknown = _UNKNOWN_CLASS.search(text)
        if unknown:
            raise _unsupported(
                uri, f"unknown layer or object {unknown.group(1)!r}: custom code is not available here"
            ) from None
        if "Lambda" in text and "safe_mode" in text:
            raise _unsupported(uri, "a Lambda layer holds Python code; refused (Keras safe mode)") from None
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        raise _load_failed(uri, f"cannot load the {fmt.value} model ({first[:300]})") from None
    if not isinstance(model, keras.Model):
        raise _unsupported(uri, f"holds a {type(model).__name__}, not a Keras model")
    return model


_HALF_PRECISION_POLICIES = frozenset({"mixed_float16", "mixed_bfloat16", "float16", "bfloat16"})


def _float32_policies(config: Any, found: set[str]) -> Any:
    """The serialized model with every half-precision dtype policy replaced by float32 (noted in `found`)."""
    if isinstance(config, dict):
        inner = config.get("config")
        if (
            str(config.get("class_name", "")).endswith("DTypePolicy")
            and isinstance(inner, dict)
            and inner.get("name") in _HALF_PRECISION_POLICIES
        ):
            found.add(str(inner["name"]))
            return {**config, "config": {**inner, "name": "float32"}}
        return {key: _float32_policies(value, found) for key, value in config.items()}
    if isinstance(config, list):
        return [_float32_policies(value, found) for value in config]
    return config


def float32_compute(model: Any, uri: str) -> tuple[Any, str | None]:
    """The model computing in float32, and the policy it had when that was a half-precision one."""
    import keras

    found: set[str] = set()
    config = _float32_policies(keras.saving.serialize_keras_object(model), found)
    if not found:
        return model, None
    policies = sorted(found)
    try:
        rebuilt = keras.saving.deserialize_keras_object(config)
        rebuilt.set_weights(model.get_weights())
    except Exception as exc:  # whatever a layer's from_config raises
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise _unsupported(
            uri, f"computes in {', '.join(policies)} and could not be rebuilt in float32 ({first[:200]})"
        ) from None
    return rebuilt, ", ".join(policies)


def keras_signature(model: Any, uri: str) -> ModelSignature:
    """Check the model is a single-input, single-output classifier and describe its input."""
    try:
        inputs = list(model.inputs)
        outputs = list(model.outputs)
    except (AttributeError, ValueError, TypeError):
        raise _unsupported(uri, "has no known inputs (a subclassed model that was never built)") from None
    if len(inputs) != 1 or len(outputs) != 1:
        raise _unsupported(uri, f"has {len(inputs)} inputs and {len(outputs)} outputs; one of each is supported")
    shape = tuple(inputs[0].shape)
    out_shape = tuple(outputs[0].shape)
    if len(out_shape) != 2 or out_shape[-1] is None:
        raise _unsupported(uri, f"output shape {out_shape} is not (batch, classes)")
    name = re.sub(r"[^A-Za-z0-9_.\-/]", "_", str(inputs[0].name)) or "inputs"
    if not name[0].isalnum():
        name = f"input{name}"
    return ModelSignature(
        input_name=name,
        input_shape=tuple(None if d is None else int(d) for d in shape[1:]),
        input_dtype=str(inputs[0].dtype),
        output_name=OUTPUT_KEY,
        num_classes=int(out_shape[-1]),
    )


def export_saved_model(model: Any, signature: ModelSignature, out_dir: Path) -> None:
    """Write a SavedModel whose `serving_default` signature maps {input_name} -> {output_0}."""
    import tensorflow as tf

    module = tf.Module()
    # Track the backing tf.Variables once; the optimizer's variables are not part of the model.
    module.model_variables = [variable.value for variable in model.variables]
    spec = tf.TensorSpec((None, *signature.input_shape), signature.input_dtype, name=signature.input_name)

    @tf.function(input_signature=[spec])  # type: ignore[untyped-decorator]
    def serve(inputs: Any) -> dict[str, Any]:
        outputs = model(inputs, training=False)
        if isinstance(outputs, (list, tuple)):
            outputs = outputs[0]
        return {OUTPUT_KEY: outputs}

    module.serve = serve
    tf.saved_model.save(module, str(out_dir), signatures={SIGNATURE_KEY: serve.get_concrete_function()})


def locate_saved_model(path: Path, workdir: Path, uri: str) -> Path:
    """The folder holding saved_model.pb: the source itself, its only subfolder, or an archive's."""
    if path.is_file():
        path = unpack_archive(path, workdir / "unpacked", f"model {display_uri(uri)}")
    if (path / "saved_model.pb").is_file():
        return path
    candidates = sorted(p.parent for p in path.glob("*/saved_model.pb"))
    if len(candidates) == 1:
        return candidates[0]
    if path.suffix in (".keras", ".h5"):
        raise _load_failed(uri, "has no saved_model.pb; did you mean --format keras or h5?")
    raise _load_failed(uri, "has no saved_model.pb (not a SavedModel folder)")


def saved_model_signature(saved_model_dir: Path, uri: str) -> ModelSignature:
    """Load the SavedModel and describe its `serving_default` signature."""
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(saved_model_dir))
    except Exception as exc:  # TF raises a zoo of errors for broken protos
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise _load_failed(uri, f"cannot load the SavedModel ({first[:300]})") from None
    signatures = dict(loaded.signatures)
    if SIGNATURE_KEY not in signatures:
        found = ", ".join(sorted(signatures)) or "none"
        raise _unsupported(uri, f"has no {SIGNATURE_KEY!r} signature (found: {found})")
    function = signatures[SIGNATURE_KEY]
    args, kwargs = function.structured_input_signature
    outputs = function.structured_outputs
    if args or len(kwargs) != 1 or not isinstance(outputs, dict) or len(outputs) != 1:
        raise _unsupported(uri, f"signature {SIGNATURE_KEY!r} must have one input and one output")
    (input_name, input_spec), (output_name, output_spec) = next(iter(kwargs.items())), next(iter(outputs.items()))
    in_shape = input_spec.shape.as_list()
    out_shape = output_spec.shape.as_list()
    if not in_shape or len(out_shape) != 2 or out_shape[-1] is None:
        raise _unsupported(uri, f"signature shapes {in_shape} -> {out_shape} are not (batch, ...) -> (batch, classes)")
    return ModelSignature(
        input_name=str(input_name),
        input_shape=tuple(in_shape[1:]),
        input_dtype=str(input_spec.dtype.name),
        output_name=str(output_name),
        num_classes=int(out_shape[-1]),
    )
