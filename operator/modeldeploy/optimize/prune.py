"""Magnitude pruning for Keras 3 models, with dense and conv layers pruned to separate targets.

tensorflow-model-optimization prunes only tf_keras (Keras 2) models and rejects Keras 3 ones, so
this is our own: for each Dense kernel (target `dense`, the seed's alpha) and each convolution
kernel (target `conv`, the seed's beta) a mask zeroes the smallest-magnitude weights, exactly
round(target x size) of them per layer (one shot). Fine-tuning (Adam, cosine-decayed rate) runs with
a callback that multiplies every masked kernel by its mask after every batch, so the optimizer
cannot grow pruned weights back.
Sparsity is then measured on the weights that get exported (zeros / size), per layer and per family,
never assumed. Biases, normalisation and embedding weights are not pruned.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from modeldeploy.optimize.data import Dataset
from modeldeploy.optimize.logs import ProgressLog

Family = Literal["dense", "conv"]
FINE_TUNE_LEARNING_RATE = 1e-3  # Adam's default, decayed to 0 along a cosine over the fine-tuning
FINE_TUNE_BATCH_SIZE = 32


@dataclass(frozen=True)
class LayerSparsity:
    layer: str
    weight: str
    family: Family
    target: float
    sparsity: float  # measured: zeros / size
    size: int


@dataclass(frozen=True)
class PruneReport:
    layers: tuple[LayerSparsity, ...]
    fine_tune_epochs: int
    fine_tune_loss: float | None

    def family_sparsity(self, family: Family) -> float:
        """Measured sparsity over all kernels of a family, weighted by size; 0.0 without any."""
        members = [layer for layer in self.layers if layer.family == family]
        total = sum(layer.size for layer in members)
        if total == 0:
            return 0.0
        return sum(layer.sparsity * layer.size for layer in members) / total

    def family_size(self, family: Family) -> int:
        return sum(layer.size for layer in self.layers if layer.family == family)


@dataclass
class _Kernel:
    layer: str
    variable: Any
    family: Family
    mask: npt.NDArray[np.float32] | None = None


def _layer_types() -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    import keras

    layers = keras.layers
    dense = tuple(getattr(layers, name) for name in ("Dense", "EinsumDense") if hasattr(layers, name))
    conv_names = (
        "Conv1D",
        "Conv2D",
        "Conv3D",
        "Conv1DTranspose",
        "Conv2DTranspose",
        "Conv3DTranspose",
        "DepthwiseConv1D",
        "DepthwiseConv2D",
        "SeparableConv1D",
        "SeparableConv2D",
    )
    conv = tuple(getattr(layers, name) for name in conv_names if hasattr(layers, name))
    return dense, conv


def _walk(layer: Any, seen: set[int]) -> Iterator[Any]:
    if id(layer) in seen:
        return
    seen.add(id(layer))
    yield layer
    for child in getattr(layer, "layers", None) or ():
        yield from _walk(child, seen)


def prunable_kernels(model: Any) -> list[_Kernel]:
    """Every float kernel of a Dense-like or convolution layer, nested models included."""
    dense_types, conv_types = _layer_types()
    kernels: list[_Kernel] = []
    seen_variables: set[int] = set()
    for layer in _walk(model, set()):
        if isinstance(layer, dense_types):
            family: Family = "dense"
        elif isinstance(layer, conv_types):
            family = "conv"
        else:
            continue
        for variable in layer.weights:
            name = str(variable.name)
            if not name.endswith("kernel") or name.startswith("lora") or id(variable) in seen_variables:
                continue
            if not np.issubdtype(np.dtype(str(variable.dtype)), np.floating):
                continue  # already quantized by Keras; nothing to prune
            seen_variables.add(id(variable))
            kernels.append(_Kernel(layer=str(layer.name), variable=variable, family=family))
    return kernels


def magnitude_mask(weights: npt.NDArray[Any], sparsity: float) -> npt.NDArray[np.float32]:
    """1 where the weight is kept, 0 for the round(sparsity x size) smallest |w| (ties by position)."""
    flat = np.abs(np.asarray(weights, dtype=np.float64)).reshape(-1)
    count = round(sparsity * flat.size)
    mask = np.ones(flat.size, dtype=np.float32)
    if count > 0:
        order = np.argsort(flat, kind="stable")
        mask[order[:count]] = 0.0
    return mask.reshape(np.shape(weights))


def _apply(kernels: list[_Kernel]) -> None:
    for kernel in kernels:
        if kernel.mask is not None:
            kernel.variable.assign(np.asarray(kernel.variable.numpy()) * kernel.mask)


def _measure(kernels: list[_Kernel], targets: dict[Family, float]) -> tuple[LayerSparsity, ...]:
    result = []
    for kernel in kernels:
        values = np.asarray(kernel.variable.numpy())
        result.append(
            LayerSparsity(
                layer=kernel.layer,
                weight=str(kernel.variable.path if hasattr(kernel.variable, "path") else kernel.variable.name),
                family=kernel.family,
                target=targets[kernel.family],
                sparsity=float(np.count_nonzero(values == 0) / values.size),
                size=int(values.size),
            )
        )
    return tuple(result)


def _loss_for(model: Any, x: npt.NDArray[Any]) -> Any:
    """Cross-entropy matching the output: probabilities (softmax/sigmoid) or logits."""
    import keras

    scores = np.asarray(model(x[: min(len(x), 64)], training=False))
    if scores.shape[-1] == 1:
        logits = bool(np.any(scores < 0) or np.any(scores > 1))
        return keras.losses.BinaryCrossentropy(from_logits=logits)
    probabilities = bool(np.all(scores >= 0) and np.allclose(scores.sum(axis=-1), 1.0, atol=1e-3))
    return keras.losses.SparseCategoricalCrossentropy(from_logits=not probabilities)


def _keep_masks_callback(kernels: list[_Kernel], log: ProgressLog, epochs: int) -> Any:
    import keras

    class KeepMasks(keras.callbacks.Callback):  # type: ignore[misc]
        """Re-apply the masks after every optimizer step, so pruned weights stay zero."""

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            _apply(kernels)

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            loss = (logs or {}).get("loss")
            log.info(f"epoch {epoch + 1}/{epochs}", stage="fine-tune", loss=None if loss is None else round(loss, 4))

    return KeepMasks()


def prune(
    model: Any,
    *,
    dense_sparsity: float,
    conv_sparsity: float,
    fine_tune_epochs: int,
    train: Dataset | None,
    log: ProgressLog,
    keep_masks: bool = True,
    seed: int = 0,
) -> PruneReport:
    """Prune `model` in place, fine-tune it with masks kept, and measure what was achieved.

    `keep_masks=False` exists for tests that show the masks are what keeps the sparsity.
    """
    import keras

    targets: dict[Family, float] = {"dense": dense_sparsity, "conv": conv_sparsity}
    kernels = prunable_kernels(model)
    for kernel in kernels:
        target = targets[kernel.family]
        if target > 0:
            kernel.mask = magnitude_mask(np.asarray(kernel.variable.numpy()), target)
    _apply(kernels)
    for family, target in targets.items():
        if target > 0 and not any(k.family == family for k in kernels):
            log.warning(f"no {family} layers to prune; --{family}-sparsity {target} has no effect", stage="prune")

    loss_value: float | None = None
    if fine_tune_epochs > 0 and train is not None:
        keras.utils.set_random_seed(seed)
        steps = fine_tune_epochs * -(-len(train) // FINE_TUNE_BATCH_SIZE)
        # A cosine decay was steadier than a constant rate on the reference models (less variance
        # across seeds, and no loss at 50 % and 80 % sparsity with 5 epochs).
        schedule = keras.optimizers.schedules.CosineDecay(FINE_TUNE_LEARNING_RATE, decay_steps=steps)
        model.compile(optimizer=keras.optimizers.Adam(schedule), loss=_loss_for(model, train.x))
        callbacks = [_keep_masks_callback(kernels, log, fine_tune_epochs)] if keep_masks else []
        history = model.fit(
            train.x,
            train.y,
            epochs=fine_tune_epochs,
            batch_size=FINE_TUNE_BATCH_SIZE,
            shuffle=True,
            verbose=0,
            callbacks=callbacks,
        )
        losses = history.history.get("loss") or []
        loss_value = float(losses[-1]) if losses else None
        if keep_masks:
            _apply(kernels)  # belt and braces: what is exported is masked
    return PruneReport(layers=_measure(kernels, targets), fine_tune_epochs=fine_tune_epochs, fine_tune_loss=loss_value)
