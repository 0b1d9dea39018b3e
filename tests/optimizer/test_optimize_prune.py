"""Magnitude pruning reaches its target per family (dense vs conv) and fine-tuning keeps it."""

from __future__ import annotations

import json
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from modeldeploy.contract.formats import PruningSchedule
from modeldeploy.optimize.data import Dataset
from modeldeploy.optimize.logs import ProgressLog
from modeldeploy.optimize.prune import magnitude_mask, prunable_kernels, prune


def load(path):
    return keras.models.load_model(path, compile=False)


def dataset(path):
    with np.load(path) as data:
        return Dataset(uri=str(path), x=data["x"].astype("float32"), y=data["y"].astype("int64"))


def kernels_by_family(model):
    return {
        family: {k.layer: np.asarray(k.variable.numpy()) for k in prunable_kernels(model) if k.family == family}
        for family in ("dense", "conv")
    }


def sparsity(weights):
    return float(np.mean(weights == 0))


def test_magnitude_mask_zeroes_exactly_the_smallest_weights():
    weights = np.array([[0.5, -0.1, 0.3], [-0.9, 0.05, 0.2]])
    mask = magnitude_mask(weights, 0.5)
    assert mask.tolist() == [[1, 0, 1], [1, 0, 0]]  # |0.05|, |-0.1|, |0.2| go
    assert magnitude_mask(weights, 0.0).min() == 1.0


def test_families_are_found_in_the_cnn(cnn):
    families = {k.layer: k.family for k in prunable_kernels(load(cnn.keras_path))}
    assert families == {
        "conv_1": "conv", "conv_2": "conv", "conv_3": "conv", "dense_1": "dense", "classes": "dense",
    }  # fmt: skip


@pytest.mark.parametrize(("dense", "conv"), [(0.7, 0.0), (0.0, 0.6), (0.5, 0.9)])
def test_each_family_gets_its_own_target(cnn, dense, conv):
    model = load(cnn.keras_path)
    report = prune(model, dense_sparsity=dense, conv_sparsity=conv, fine_tune_epochs=0, train=None, log=ProgressLog())
    weights = kernels_by_family(model)
    for family, target in (("dense", dense), ("conv", conv)):
        for layer, values in weights[family].items():
            # exactly round(target x size) zeros per layer; an untouched family stays dense
            assert sparsity(values) == pytest.approx(target, abs=1.0 / values.size), (family, layer)
        assert report.family_sparsity(family) == pytest.approx(target, abs=1e-3)
    assert {layer.layer: layer.sparsity for layer in report.layers} == pytest.approx(
        {layer: sparsity(values) for family in weights.values() for layer, values in family.items()}
    )


def test_fine_tuning_keeps_the_masks_and_still_learns(cnn):
    model = load(cnn.keras_path)
    train = dataset(cnn.train_path)
    before = kernels_by_family(model)
    report = prune(model, dense_sparsity=0.8, conv_sparsity=0.8, fine_tune_epochs=2, train=train, log=ProgressLog())
    after = kernels_by_family(model)
    for family in ("dense", "conv"):
        for layer, values in after[family].items():
            assert sparsity(values) >= 0.8 - 1.0 / values.size, layer
            kept = values != 0
            # the survivors are the largest weights of the original and were updated by training
            assert np.abs(before[family][layer][kept]).min() >= np.abs(before[family][layer][~kept]).max()
            assert not np.allclose(values[kept], before[family][layer][kept])
    assert report.fine_tune_loss is not None and report.fine_tune_epochs == 2


def test_without_the_masks_fine_tuning_would_regrow_pruned_weights(cnn):
    """The control for the test above: the callback is what holds the sparsity."""
    model = load(cnn.keras_path)
    prune(
        model, dense_sparsity=0.8, conv_sparsity=0.8, fine_tune_epochs=1, train=dataset(cnn.train_path),
        log=ProgressLog(), keep_masks=False,
    )  # fmt: skip
    for family in kernels_by_family(model).values():
        for values in family.values():
            assert sparsity(values) < 0.5  # far below the 0.8 the masks hold (dead ReLU inputs keep some)


def test_cli_exports_pruned_weights_and_reports_them_per_layer(optimize, mlp, tmp_path):
    out = tmp_path / "models"
    run = optimize(
        "--source", mlp.keras_path, "--output", out, "--version", "1",
        "--dense-sparsity", "0.8", "--fine-tune-epochs", "2", "--train-data", mlp.train_path,
        "--eval-data", mlp.eval_path, "--max-accuracy-drop", "0.02",
    )  # fmt: skip
    assert run.code == 0, run.stderr
    report = json.loads((out / "1" / "report.json").read_text())
    layers = report["pruning"]["layers"]
    assert [layer["family"] for layer in layers] == ["dense"] * 3
    assert all(layer["sparsity"] >= 0.8 - 1e-4 and layer["target"] == 0.8 for layer in layers)
    assert report["pruning"]["achieved"]["dense"] == pytest.approx(0.8, abs=1e-3)
    assert run.termination["sparsity"] == {"dense": 0.8, "conv": 0.0}
    # Measured again on what TF Serving will load, not on the in-memory model:
    reader = tf.train.load_checkpoint(str(out / "1" / "variables" / "variables"))
    kernels = [reader.get_tensor(name) for name, shape in reader.get_variable_to_shape_map().items() if len(shape) == 2]
    assert len(kernels) == 3
    assert all(sparsity(kernel) >= 0.8 - 1e-4 for kernel in kernels)
    # Pruning alone shrinks the compressed size only.
    sizes = report["sizes"]
    assert sizes["optimized"]["gzipBytes"] < 0.6 * sizes["baselineSavedModel"]["gzipBytes"]


def attribute_kernels_model():
    """Kernels a top-level walk misses: attention projections, wrapped layers, an LSTM cell, a nested model."""
    keras.backend.clear_session()  # the LSTMs Keras names are then named as in a fresh process
    inputs = keras.Input((6, 8), name="tokens")
    x = keras.layers.MultiHeadAttention(num_heads=2, key_dim=8, name="attention")(inputs, inputs)
    x = keras.layers.TimeDistributed(keras.layers.Dense(16, name="per_step"), name="time_distributed")(x)
    x = keras.layers.Bidirectional(keras.layers.LSTM(8), name="bidirectional")(x)
    nested = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, name="nested_dense")], name="nested")
    x = nested(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="classes")(x)
    return keras.Model(inputs, outputs, name="attribute_kernels")


def every_kernel(model):
    """Every trainable kernel variable by path: what any pruning must cover."""
    return {v.path: np.asarray(v.numpy()) for v in model.trainable_variables if v.name.endswith("kernel")}


def token_data(count=96):
    rng = np.random.default_rng(0)
    return Dataset(uri="memory", x=rng.random((count, 6, 8)).astype("float32"), y=rng.integers(0, 3, count))


def test_every_trainable_kernel_is_pruned_wherever_its_layer_sits():
    model = attribute_kernels_model()
    report = prune(model, dense_sparsity=0.8, conv_sparsity=0.0, fine_tune_epochs=0, train=None, log=ProgressLog())
    kernels = every_kernel(model)
    assert {"attention/query/kernel", "attention/value/kernel", "attention/attention_output/kernel"} <= set(kernels)
    assert {"time_distributed/per_step/kernel", "nested/nested_dense/kernel"} <= set(kernels)
    assert {"bidirectional/forward_lstm/lstm_cell/recurrent_kernel"} <= set(kernels)
    for path, values in kernels.items():
        assert sparsity(values) == pytest.approx(0.8, abs=1.0 / values.size), path
    # The report lists each kernel once, and its family figure is measured over all of them.
    assert sorted(layer.weight for layer in report.layers) == sorted(kernels)
    total = sum(values.size for values in kernels.values())
    measured = sum(np.count_nonzero(values == 0) for values in kernels.values()) / total
    assert report.family_sparsity("dense") == pytest.approx(measured)
    assert report.family_size("dense") == total


def test_fine_tuning_holds_the_masks_of_attribute_kernels():
    model = attribute_kernels_model()
    prune(
        model, dense_sparsity=0.7, conv_sparsity=0.0, fine_tune_epochs=2, train=token_data(), log=ProgressLog(),
    )  # fmt: skip
    for path, values in every_kernel(model).items():
        assert sparsity(values) >= 0.7 - 1.0 / values.size, path


def test_kernels_inside_wrappers_are_classified_by_their_own_layer():
    inputs = keras.Input((4, 8, 8, 1))
    x = keras.layers.TimeDistributed(keras.layers.Conv2D(4, 3, name="frame_conv"), name="frames")(inputs)
    x = keras.layers.TimeDistributed(keras.layers.Flatten())(x)
    outputs = keras.layers.Dense(2, name="classes")(keras.layers.GlobalAveragePooling1D()(x))
    families = {k.layer: k.family for k in prunable_kernels(keras.Model(inputs, outputs))}
    assert families == {"frame_conv": "conv", "classes": "dense"}


def test_cli_reports_attribute_kernels_and_the_family_over_all_of_them(optimize, tmp_path):
    source = tmp_path / "attention.keras"
    attribute_kernels_model().save(source)
    out = tmp_path / "models"
    run = optimize("--source", source, "--output", out, "--version", "1", "--dense-sparsity", "0.8")
    assert run.code == 0, run.stderr
    report = json.loads((out / "1" / "report.json").read_text())
    listed = {layer["weight"] for layer in report["pruning"]["layers"]}
    # (a reloaded model's paths drop the wrapper's prefix, and Keras numbers the LSTMs it names
    # when a process built several: compare the ends)
    for end in (
        r"attention/key/kernel",
        r"per_step/kernel",
        r"backward_lstm(_\d+)?/lstm_cell/recurrent_kernel",
        r"nested_dense/kernel",
    ):
        assert any(re.search(f"(^|/){end}$", path) for path in listed), (end, listed)
    # What TF Serving loads: the exported checkpoint holds one tensor at the target per kernel
    # listed (its variables are unnamed; the untrained biases are all zeros, the rest dense).
    reader = tf.train.load_checkpoint(str(out / "1" / "variables" / "variables"))
    tensors = [reader.get_tensor(name) for name in reader.get_variable_to_shape_map()]
    arrays = [t for t in tensors if isinstance(t, np.ndarray) and t.dtype == np.float32 and t.size > 1]
    pruned = [t for t in arrays if 0.75 < sparsity(t) < 0.85]
    assert len(pruned) == len(listed)
    zeros = sum(np.count_nonzero(t == 0) for t in pruned) / sum(t.size for t in pruned)
    assert report["pruning"]["achieved"]["dense"] == pytest.approx(zeros, abs=1e-4)
    assert zeros == pytest.approx(0.8, abs=1e-3)


def test_gradual_pruning_reaches_the_target_and_chooses_along_the_way(cnn):
    model = load(cnn.keras_path)
    before = kernels_by_family(model)
    report = prune(
        model, dense_sparsity=0.8, conv_sparsity=0.5, fine_tune_epochs=2, train=dataset(cnn.train_path),
        log=ProgressLog(), schedule=PruningSchedule.POLYNOMIAL_DECAY,
    )  # fmt: skip
    assert report.schedule is PruningSchedule.POLYNOMIAL_DECAY
    after = kernels_by_family(model)
    moved = 0
    for family, target in (("dense", 0.8), ("conv", 0.5)):
        for layer, values in after[family].items():
            assert sparsity(values) == pytest.approx(target, abs=1.0 / values.size), layer
            one_shot_kept = magnitude_mask(before[family][layer], target).astype(bool)
            moved += int(np.count_nonzero((values != 0) != one_shot_kept))
        assert report.family_sparsity(family) == pytest.approx(target, abs=1e-3)
    # The masks were chosen while training went on, not once from the original weights.
    assert moved > 0


def test_keep_classifier_dense_leaves_the_output_layer_alone(cnn):
    model = load(cnn.keras_path)
    report = prune(
        model, dense_sparsity=0.8, conv_sparsity=0.0, fine_tune_epochs=0, train=None, log=ProgressLog(),
        keep_classifier_dense=True,
    )  # fmt: skip
    weights = kernels_by_family(model)["dense"]
    assert sparsity(weights["classes"]) == 0.0
    assert sparsity(weights["dense_1"]) == pytest.approx(0.8, abs=1e-3)
    assert report.kept_dense == ("classes/kernel",)
    by_layer = {layer.layer: layer for layer in report.layers}
    assert by_layer["classes"].target == 0.0 and by_layer["dense_1"].target == 0.8
    # the family figure counts the kept kernel: measured over all dense kernels
    assert report.family_sparsity("dense") < 0.8


def test_cli_prunes_gradually_when_fine_tuning(optimize, mlp, tmp_path):
    out = tmp_path / "models"
    run = optimize(
        "--source", mlp.keras_path, "--output", out, "--version", "1", "--dense-sparsity", "0.8",
        "--fine-tune-epochs", "2", "--train-data", mlp.train_path, "--keep-classifier-dense",
    )  # fmt: skip
    assert run.code == 0, run.stderr
    pruning = json.loads((out / "1" / "report.json").read_text())["pruning"]
    assert pruning["schedule"] == "PolynomialDecay"
    assert pruning["keptDense"] == ["classes/kernel"]
    assert [(layer["layer"], layer["target"]) for layer in pruning["layers"]] == [
        ("dense_1", 0.8), ("dense_2", 0.8), ("classes", 0.0),
    ]  # fmt: skip
    assert all(abs(layer["sparsity"] - layer["target"]) < 1e-4 for layer in pruning["layers"])
