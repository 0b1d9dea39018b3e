"""Magnitude pruning for Keras 3 models, with dense and conv kernels pruned to separate targets.

tensorflow-model-optimization prunes only tf_keras (Keras 2) models and rejects Keras 3 ones, so
this is our own. Every trainable kernel of the model is found by variable, not by top-level layer:
the EinsumDense kernels a MultiHeadAttention holds as attributes, the layer inside a TimeDistributed
or Bidirectional wrapper (an LSTM cell's kernel and recurrent kernel), nested models. A kernel owned
by a convolution layer is in the `conv` family (target `conv`, the seed's beta), every other kernel
in the `dense` family (target `dense`, the seed's alpha). A mask zeroes the smallest-magnitude
weights of each kernel, exactly round(target x size) of them.

Two schedules: OneShot prunes to the target at once, then fine-tunes; PolynomialDecay (the default
when fine-tuning) ramps the sparsity from 0 to the target along TF-MOT's cubic polynomial over the
first RAMP_FRACTION of the fine-tuning steps, re-masking every few steps, and lets the rest of the
fine-tuning recover at the target: the network adapts while the weights go, which one-shot pruning
at 80 % does not allow. Fine-tuning (Adam, cosine-decayed rate) runs with a callback that multiplies
every kernel by its mask after every batch, so the optimizer cannot grow pruned weights back.
`dense_block` prunes dense kernels in blocks of consecutive inputs, which TFLite's sparse
fully-connected kernels execute without rebuilding the dense weights (see `quantize`).
`keep_classifier_dense` leaves the output layer's kernel untouched (target 0): the few weights that
decide between classes are where pruning hurts most per weight.
Sparsity is then measured on the weights that get exported (zeros / size), per kernel and over all
kernels of a family, never assumed. Biases, normalisation and embedding weights are not pruned.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from modeldeploy.contract.formats import PruningSchedule
from modeldeploy.optimize.data import Dataset
from modeldeploy.optimize.logs import ProgressLog

Family = Literal["dense", "conv"]
FINE_TUNE_LEARNING_RATE = 1e-3  # Adam's default, decayed to 0 along a cosine over the fine-tuning
FINE_TUNE_BATCH_SIZE = 32
POLYNOMIAL_POWER = 3  # TF-MOT's default: most of the pruning happens early, while the rate is high
# The ramp ends here (as a fraction of the fine-tuning steps); the remaining steps train at the
# target sparsity, so the network recovers from the last masks before it is exported.
RAMP_FRACTION = 2 / 3
RAMP_UPDATES = 16  # how many times the masks are recomputed along the ramp


@dataclass(frozen=True)
class LayerSparsity:
    layer: str  # the layer that owns the kernel (a MultiHeadAttention's `query`, an LSTM cell...)
    weight: str  # the variable's path in the model: unique, says where the layer sits
    family: Family
    target: float
    sparsity: float  # measured: zeros / size
    size: int


@dataclass(frozen=True)
class PruneReport:
    layers: tuple[LayerSparsity, ...]
    fine_tune_epochs: int
    fine_tune_loss: float | None
    schedule: PruningSchedule = PruningSchedule.ONE_SHOT
    kept_dense: tuple[str, ...] = ()  # kernels left unpruned on purpose (keep_classifier_dense)
    dense_block: int = 1

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
    target: float = 0.0
    block: int = 1


def polynomial_decay_sparsity(
    step: int,
    *,
    initial: float,
    final: float,
    begin_step: int,
    end_step: int,
    power: float = POLYNOMIAL_POWER,
) -> float:
    """TF-MOT's PolynomialDecay: the sparsity at `step`, from `initial` at begin_step to `final` at end_step.

    sparsity = final + (initial - final) * (1 - (step - begin) / (end - begin)) ** power, with the
    step clamped to [begin, end]: `initial` before the ramp, `final` after it.
    """
    if end_step <= begin_step:
        return final if step >= begin_step else initial
    progress = (min(max(step, begin_step), end_step) - begin_step) / (end_step - begin_step)
    return float(final + (initial - final) * (1.0 - progress) ** power)


def _conv_types() -> tuple[Any, ...]:
    import keras

    layers = keras.layers
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
    return tuple(getattr(layers, name) for name in conv_names if hasattr(layers, name))


def _owners(model: Any) -> dict[int, Any]:
    """Each variable's owning layer, found through every tracked sub-layer (attributes included).

    Keras 3 tracks a layer assigned as an attribute (MultiHeadAttention's `_query_dense`, a
    wrapper's inner layer, an RNN's cell) in its `_layers`, which `_flatten_layers` walks; the
    layers a model lists in `.layers` are only the top of that tree.
    """
    flatten = getattr(model, "_flatten_layers", None)
    layers = list(flatten(include_self=True, recursive=True)) if callable(flatten) else [model]
    owners: dict[int, Any] = {}
    for layer in layers:
        for variable in getattr(layer, "_trainable_variables", None) or ():
            owners.setdefault(id(variable), layer)
    return owners


def _is_kernel(variable: Any) -> bool:
    name = str(variable.name)
    if not name.endswith("kernel") or name.startswith("lora"):  # kernel, recurrent_kernel, depthwise_kernel...
        return False
    if len(tuple(variable.shape)) < 2:
        return False
    return bool(np.issubdtype(np.dtype(str(variable.dtype)), np.floating))  # not already quantized by Keras


def _weight_name(variable: Any) -> str:
    return str(variable.path if hasattr(variable, "path") else variable.name)


def prunable_kernels(model: Any) -> list[_Kernel]:
    """Every trainable float kernel of the model, wherever its layer sits, with its family."""
    conv_types = _conv_types()
    owners = _owners(model)
    kernels: list[_Kernel] = []
    seen: set[int] = set()
    for variable in model.trainable_variables:
        if id(variable) in seen or not _is_kernel(variable):
            continue
        seen.add(id(variable))
        owner = owners.get(id(variable))
        family: Family = "conv" if isinstance(owner, conv_types) else "dense"
        layer = str(owner.name) if owner is not None else _weight_name(variable).rsplit("/", 2)[0]
        kernels.append(_Kernel(layer=layer, variable=variable, family=family))
    return kernels


def classifier_kernels(model: Any, kernels: list[_Kernel]) -> list[_Kernel]:
    """The kernels of the layer that computes the model's output (its final classifier).

    A functional or Sequential model names its output layer; when that layer has no kernel (a
    Softmax or Activation after the last Dense) or the model is subclassed, the layer of the last
    kernel in the model's variable order is taken, which is the output layer in the usual case.
    """
    if not kernels:
        return []
    outputs = getattr(model, "outputs", None) or []
    history = getattr(outputs[0], "_keras_history", None) if len(outputs) == 1 else None
    operation = getattr(history, "operation", None)
    if operation is not None:
        owned = {id(v) for v in getattr(operation, "trainable_variables", None) or ()}
        chosen = [kernel for kernel in kernels if id(kernel.variable) in owned]
        if chosen:
            return chosen
    last = kernels[-1].layer
    return [kernel for kernel in kernels if kernel.layer == last]


def magnitude_mask(weights: npt.NDArray[Any], sparsity: float) -> npt.NDArray[np.float32]:
    """1 where the weight is kept, 0 for the round(sparsity x size) smallest |w| (ties by position)."""
    flat = np.abs(np.asarray(weights, dtype=np.float64)).reshape(-1)
    count = round(sparsity * flat.size)
    mask = np.ones(flat.size, dtype=np.float32)
    if count > 0:
        order = np.argsort(flat, kind="stable")
        mask[order[:count]] = 0.0
    return mask.reshape(np.shape(weights))


def block_mask(weights: npt.NDArray[Any], sparsity: float, block: int) -> npt.NDArray[np.float32]:
    """Like `magnitude_mask`, in blocks of `block` consecutive inputs of one output unit.

    A Dense kernel is (inputs, units); TFLite stores it as (units, inputs), so a block here is a
    1 x block block there, the shape its sparse fully-connected kernels execute. The blocks with the
    smallest summed |w| go, round(sparsity x blocks) of them. A kernel that is not 2-D or whose
    inputs do not divide into blocks is pruned weight by weight.
    """
    shape = np.shape(weights)
    if block <= 1 or len(shape) != 2 or shape[0] % block:
        return magnitude_mask(weights, sparsity)
    inputs, units = shape
    scores = np.abs(np.asarray(weights, dtype=np.float64)).reshape(inputs // block, block, units).sum(axis=1)
    kept = magnitude_mask(scores, sparsity)
    return np.repeat(kept[:, None, :], block, axis=1).reshape(shape)


def _apply(kernels: list[_Kernel]) -> None:
    for kernel in kernels:
        if kernel.mask is not None:
            kernel.variable.assign(np.asarray(kernel.variable.numpy()) * kernel.mask)


def _remask(kernels: list[_Kernel], sparsity_at: Callable[[float], float] | None = None) -> None:
    """Recompute every pruned kernel's mask at its sparsity now, and apply it.

    The masked weights are zeros, the smallest magnitudes, so a growing sparsity keeps them pruned.
    """
    for kernel in kernels:
        if kernel.target <= 0:
            continue
        sparsity = kernel.target if sparsity_at is None else sparsity_at(kernel.target)
        kernel.mask = block_mask(np.asarray(kernel.variable.numpy()), sparsity, kernel.block)
    _apply(kernels)


def _measure(kernels: list[_Kernel]) -> tuple[LayerSparsity, ...]:
    result = []
    for kernel in kernels:
        values = np.asarray(kernel.variable.numpy())
        result.append(
            LayerSparsity(
                layer=kernel.layer,
                weight=_weight_name(kernel.variable),
                family=kernel.family,
                target=kernel.target,
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


@dataclass(frozen=True)
class Ramp:
    """Where the gradual schedule prunes: masks are recomputed at every `frequency`-th step up to `end_step`."""

    end_step: int
    frequency: int

    @staticmethod
    def over(total_steps: int) -> Ramp:
        end_step = max(1, math.floor(total_steps * RAMP_FRACTION))
        return Ramp(end_step=end_step, frequency=max(1, end_step // RAMP_UPDATES))

    def updates_at(self, step: int) -> bool:
        return 0 < step <= self.end_step and (step % self.frequency == 0 or step == self.end_step)

    def sparsity(self, step: int, target: float) -> float:
        return polynomial_decay_sparsity(step, initial=0.0, final=target, begin_step=0, end_step=self.end_step)


def _fine_tune_callback(kernels: list[_Kernel], log: ProgressLog, epochs: int, ramp: Ramp | None) -> Any:
    import keras

    class KeepMasks(keras.callbacks.Callback):  # type: ignore[misc]
        """Re-apply the masks after every optimizer step, so pruned weights stay zero; along a
        gradual ramp, first recompute them at the schedule's sparsity for this step."""

        step = 0

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            self.step += 1
            if ramp is not None and ramp.updates_at(self.step):
                step = self.step
                _remask(kernels, sparsity_at=lambda target: ramp.sparsity(step, target))
            else:
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
    schedule: PruningSchedule = PruningSchedule.ONE_SHOT,
    keep_classifier_dense: bool = False,
    dense_block: int = 1,
) -> PruneReport:
    """Prune `model` in place, fine-tune it with masks kept, and measure what was achieved.

    PolynomialDecay needs fine-tuning (epochs and data); without it the pruning is one shot.
    `dense_block` > 1 prunes 2-D dense kernels in blocks (see `block_mask`).
    `keep_masks=False` exists for tests that show the masks are what keeps the sparsity.
    """
    import keras

    targets: dict[Family, float] = {"dense": dense_sparsity, "conv": conv_sparsity}
    kernels = prunable_kernels(model)
    kept = classifier_kernels(model, kernels) if keep_classifier_dense else []
    kept_ids = {id(kernel.variable) for kernel in kept}
    for kernel in kernels:
        kernel.target = 0.0 if id(kernel.variable) in kept_ids else targets[kernel.family]
        kernel.block = dense_block if kernel.family == "dense" else 1
    for family, target in targets.items():
        if target > 0 and not any(k.family == family and k.target > 0 for k in kernels):
            log.warning(f"no {family} kernels to prune; --{family}-sparsity {target} has no effect", stage="prune")

    fine_tunes = fine_tune_epochs > 0 and train is not None
    gradual = schedule is PruningSchedule.POLYNOMIAL_DECAY and fine_tunes
    ramp: Ramp | None = None
    if train is not None and gradual:
        ramp = Ramp.over(fine_tune_epochs * -(-len(train) // FINE_TUNE_BATCH_SIZE))
        log.info(
            f"gradual pruning: sparsity ramps from 0 to the target over {ramp.end_step} steps "
            f"(masks updated every {ramp.frequency})",
            stage="prune",
        )
    else:
        _remask(kernels)

    loss_value: float | None = None
    if fine_tunes and train is not None:
        keras.utils.set_random_seed(seed)
        steps = fine_tune_epochs * -(-len(train) // FINE_TUNE_BATCH_SIZE)
        # A cosine decay was steadier than a constant rate on the reference models (less variance
        # across seeds, and no loss at 50 % and 80 % sparsity with 5 epochs).
        rate = keras.optimizers.schedules.CosineDecay(FINE_TUNE_LEARNING_RATE, decay_steps=steps)
        model.compile(optimizer=keras.optimizers.Adam(rate), loss=_loss_for(model, train.x))
        callbacks = [_fine_tune_callback(kernels, log, fine_tune_epochs, ramp)] if keep_masks else []
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
            # What is exported is masked at the target, whatever the last step of the ramp was.
            if ramp is not None:
                _remask(kernels)
            else:
                _apply(kernels)
    return PruneReport(
        layers=_measure(kernels),
        fine_tune_epochs=fine_tune_epochs,
        fine_tune_loss=loss_value,
        schedule=PruningSchedule.POLYNOMIAL_DECAY if gradual else PruningSchedule.ONE_SHOT,
        kept_dense=tuple(_weight_name(kernel.variable) for kernel in kept),
        dense_block=dense_block,
    )
