"""Magnitude pruning reaches its target per family (dense vs conv) and fine-tuning keeps it."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

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
