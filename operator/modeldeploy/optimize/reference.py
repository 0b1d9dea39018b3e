"""Reference models made without any download: a dense MLP and a small CNN on scikit-learn's digits.

The examples, the optimizer tests and `benchmarks/optimize.py` need real trained models, and
nothing may be fetched from a model hub, so they are trained here in seconds on the 8x8 digits
images bundled with scikit-learn (1,797 images, 10 classes): a stratified 80/20 split, pixels scaled
to 0..1. Writes to --out:
  mlp.keras, mlp.h5   Dense 64 -> 512 -> 512 -> 10 (301,066 parameters), input (64,)
  cnn.keras, cnn.h5   Conv 32, 64, pool, conv 128, pool, Dense 64 -> 10, input (8, 8, 1)
  mlp-train.npz, mlp-eval.npz, cnn-train.npz, cnn-eval.npz   arrays x and y for each input shape
  reference.json      accuracies and sha256 of every file
With --large (for `benchmarks/optimize.py`; minutes, not seconds), also the models users bring:
  cnn224.keras, cnn224.h5       Conv 16/2, 32, 64, 64 with pooling, Dense 128 -> 10, input (224, 224, 3)
  mobilenet.keras, mobilenet.h5 keras.applications.MobileNetV2 (weights=None, alpha 0.35), input
                                (MOBILENET_SIZE, MOBILENET_SIZE, 3)
  cnn224-*.npz, mobilenet-*.npz the digits resized (bilinear) and repeated over 3 channels: the
                                first LARGE_TRAIN training images (memory: 0.6 MB each at 224) and
                                the whole eval split
Run: `python -m modeldeploy.optimize.reference --out DIR [--large]`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from modeldeploy.contract.sums import sha256_file

DEFAULT_EPOCHS = 30
SEED = 0
LARGE_SIZE = 224
MOBILENET_SIZE = 96  # a quarter of 224's pixels (depthwise convolutions train slowly on CPU)
LARGE_TRAIN = 720
LARGE_EPOCHS = {"cnn224": 8, "mobilenet": 12}


@dataclass(frozen=True)
class Split:
    x_train: npt.NDArray[np.float32]
    y_train: npt.NDArray[np.int64]
    x_eval: npt.NDArray[np.float32]
    y_eval: npt.NDArray[np.int64]


@dataclass(frozen=True)
class ReferenceModel:
    name: str
    keras_path: Path
    h5_path: Path
    train_path: Path
    eval_path: Path
    eval_accuracy: float
    params: int


def digits_split(seed: int = SEED) -> Split:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_eval, y_train, y_eval = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    return Split(x_train, y_train, x_eval, y_eval)


def build_mlp() -> Any:
    import keras

    return keras.Sequential(
        [
            keras.Input((64,), name="pixels"),
            keras.layers.Dense(512, activation="relu", name="dense_1"),
            keras.layers.Dense(512, activation="relu", name="dense_2"),
            keras.layers.Dense(10, activation="softmax", name="classes"),
        ],
        name="digits_mlp",
    )


def build_cnn() -> Any:
    import keras

    return keras.Sequential(
        [
            keras.Input((8, 8, 1), name="image"),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv_1"),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv_2"),
            keras.layers.MaxPooling2D(2, name="pool_1"),
            keras.layers.Conv2D(128, 3, padding="same", activation="relu", name="conv_3"),
            keras.layers.MaxPooling2D(2, name="pool_2"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(64, activation="relu", name="dense_1"),
            keras.layers.Dense(10, activation="softmax", name="classes"),
        ],
        name="digits_cnn",
    )


def build_cnn224() -> Any:
    import keras

    return keras.Sequential(
        [
            keras.Input((LARGE_SIZE, LARGE_SIZE, 3), name="image"),
            keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv_1"),
            keras.layers.MaxPooling2D(2, name="pool_1"),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv_2"),
            keras.layers.MaxPooling2D(2, name="pool_2"),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv_3"),
            keras.layers.MaxPooling2D(2, name="pool_3"),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv_4"),
            keras.layers.MaxPooling2D(2, name="pool_4"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(128, activation="relu", name="dense_1"),
            keras.layers.Dense(10, activation="softmax", name="classes"),
        ],
        name="digits_cnn224",
    )


def build_mobilenet() -> Any:
    import keras

    model = keras.applications.MobileNetV2(
        input_shape=(MOBILENET_SIZE, MOBILENET_SIZE, 3), alpha=0.35, weights=None, classes=10
    )
    # Keras' MobileNetV2 keeps 0.999 of its BatchNormalization statistics per step: after a few
    # hundred steps of brief training they are still the initial ones, and the model in inference
    # mode is at chance (0.10 measured). 0.9 follows the batches.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    return model


def resized(x: npt.NDArray[np.float32], size: int) -> npt.NDArray[np.float32]:
    """8x8 digits as size x size x 3 images (bilinear), in chunks to bound the peak memory."""
    import tensorflow as tf

    images = x.reshape(-1, 8, 8, 1)
    out = np.empty((len(images), size, size, 3), dtype=np.float32)
    for start in range(0, len(images), 128):
        chunk = tf.image.resize(images[start : start + 128], (size, size), method="bilinear").numpy()
        out[start : start + 128] = np.repeat(np.clip(chunk, 0.0, 1.0), 3, axis=-1)
    return out


def _train(build: Callable[[], Any], x: npt.NDArray[Any], y: npt.NDArray[Any], epochs: int, seed: int) -> Any:
    import keras

    keras.utils.set_random_seed(seed)
    model = build()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=epochs, batch_size=32, shuffle=True, verbose=0)
    # Save a fresh, never-compiled copy: no optimizer state in the artifact.
    clean = build()
    clean.set_weights(model.get_weights())
    return clean


def _accuracy(model: Any, x: npt.NDArray[Any], y: npt.NDArray[Any]) -> float:
    scores = np.asarray(model.predict(x, batch_size=256, verbose=0))
    return float(np.mean(np.argmax(scores, axis=-1) == y))


def _write_model(
    out: Path, name: str, build: Callable[[], Any], split: Split, epochs: int, seed: int
) -> ReferenceModel:
    train_path, eval_path = out / f"{name}-train.npz", out / f"{name}-eval.npz"
    np.savez_compressed(train_path, x=split.x_train, y=split.y_train)
    np.savez_compressed(eval_path, x=split.x_eval, y=split.y_eval)
    model = _train(build, split.x_train, split.y_train, epochs, seed)
    keras_path, h5_path = out / f"{name}.keras", out / f"{name}.h5"
    model.save(keras_path)
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)  # "HDF5 is legacy": we write it on purpose, for the tests
    try:
        model.save(h5_path)
    finally:
        absl_logger.setLevel(level)
    return ReferenceModel(
        name=name,
        keras_path=keras_path,
        h5_path=h5_path,
        train_path=train_path,
        eval_path=eval_path,
        eval_accuracy=_accuracy(model, split.x_eval, split.y_eval),
        params=int(model.count_params()),
    )


def _write_manifest(out: Path, models: dict[str, ReferenceModel], seed: int, epochs: dict[str, int]) -> None:
    manifest = {
        "dataset": "sklearn.datasets.load_digits, stratified 80/20 split",
        "seed": seed,
        "epochs": epochs,
        "models": {
            name: {
                "params": int(ref.params),
                "evalAccuracy": round(ref.eval_accuracy, 4),
                "files": {
                    path.name: sha256_file(path)
                    for path in (ref.keras_path, ref.h5_path, ref.train_path, ref.eval_path)
                },
            }
            for name, ref in models.items()
        },
    }
    (out / "reference.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def make_reference(
    out: Path, epochs: int = DEFAULT_EPOCHS, seed: int = SEED, *, large: bool = False
) -> dict[str, ReferenceModel]:
    """Train the models and write them with their datasets to `out`; returns what was written.

    `large` adds the 224x224x3 CNN and the MobileNetV2 (see the module docstring).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    out.mkdir(parents=True, exist_ok=True)
    split = digits_split(seed)
    models: dict[str, ReferenceModel] = {}
    trained: dict[str, int] = {}
    for name, build, shape in (("mlp", build_mlp, (64,)), ("cnn", build_cnn, (8, 8, 1))):
        shaped = Split(split.x_train.reshape(-1, *shape), split.y_train, split.x_eval.reshape(-1, *shape), split.y_eval)
        models[name] = _write_model(out, name, build, shaped, epochs, seed)
        trained[name] = epochs
    if large:
        for name, build, size in (("cnn224", build_cnn224, LARGE_SIZE), ("mobilenet", build_mobilenet, MOBILENET_SIZE)):
            images = Split(
                resized(split.x_train[:LARGE_TRAIN], size),
                split.y_train[:LARGE_TRAIN],
                resized(split.x_eval, size),
                split.y_eval,
            )
            models[name] = _write_model(out, name, build, images, LARGE_EPOCHS[name], seed)
            trained[name] = LARGE_EPOCHS[name]
            del images
    _write_manifest(out, models, seed, trained)
    return models


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modeldeploy.optimize.reference", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", required=True, type=Path, help="folder to write the models and datasets to")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help=f"training epochs ({DEFAULT_EPOCHS})")
    parser.add_argument("--seed", type=int, default=SEED, help=f"random seed ({SEED})")
    parser.add_argument("--large", action="store_true", help="also the 224x224x3 CNN and the MobileNetV2 (minutes)")
    args = parser.parse_args(argv)
    for ref in make_reference(args.out, epochs=args.epochs, seed=args.seed, large=args.large).values():
        print(f"{ref.name}: {ref.keras_path} (eval accuracy {ref.eval_accuracy:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
