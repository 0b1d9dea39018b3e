"""The per-example latency measurement times the model, not the harness's introspection.

The report's p50 is one interpreter call per example. It used to ask the interpreter for its input
details on every call (8.5 µs of Python dict building, more than a whole int8 MLP invoke), which
was counted as model latency on both sides and cut int8's speed-up over float32 (issue 11).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modeldeploy.optimize.evaluate import TFLitePredictor, measure_latency


def tflite_model(input_shape: tuple[int | None, ...]) -> bytes:
    """A small float32 model.tflite, its weights frozen into constants (random, but fixed)."""
    import keras
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    model = keras.Sequential([keras.Input(input_shape), keras.layers.Dense(4, activation="softmax")])
    function = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec([None, *input_shape], tf.float32)
    )
    frozen = convert_variables_to_constants_v2(function)
    return bytes(tf.lite.TFLiteConverter.from_concrete_functions([frozen], model).convert())


class CountingInterpreter:
    """Passes every call through to the real interpreter, counting the introspection calls."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.details_calls = 0

    def get_input_details(self) -> Any:
        self.details_calls += 1
        return self._real.get_input_details()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_latency_calls_only_set_invoke_get_per_example() -> None:
    predictor = TFLitePredictor(tflite_model((6,)))
    counting = CountingInterpreter(predictor._single)
    predictor._single = counting
    x = np.random.default_rng(0).random((30, 6), dtype=np.float32)
    latency = measure_latency(predictor, x)
    assert latency.examples == 30
    assert counting.details_calls == 0
    # Still the model's outputs, example by example.
    expected = predictor.predict(x)
    one = np.concatenate([predictor.predict_one(x[i : i + 1]) for i in range(len(x))])
    np.testing.assert_allclose(one, expected, rtol=1e-6)


def test_an_example_of_another_shape_still_resizes_the_interpreter_once() -> None:
    predictor = TFLitePredictor(tflite_model((None, 3)))  # (batch, steps, 3): steps unknown
    counting = CountingInterpreter(predictor._single)
    predictor._single = counting
    rng = np.random.default_rng(1)
    short, long = rng.random((1, 2, 3), dtype=np.float32), rng.random((1, 5, 3), dtype=np.float32)
    assert predictor.predict_one(long).shape == (1, 5, 4)
    assert predictor.predict_one(long).shape == (1, 5, 4)
    assert predictor.predict_one(short).shape == (1, 2, 4)
    np.testing.assert_allclose(predictor.predict_one(long), predictor.predict(long), rtol=1e-6)
    assert counting.details_calls == 0
