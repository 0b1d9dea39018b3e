"""Benchmark of `modeldeploy optimize` on the reference models: size, accuracy, latency, wall time.

For each reference model (the digits MLP and CNN; with --large also a 224x224x3 CNN and a
MobileNetV2 on the digits resized; all trained here without any download) and each method, runs
the real optimization pipeline and prints a markdown table:
raw and gzip size and how many times smaller than the baseline SavedModel, accuracy and its change
in points, p50 latency per example and the speed-up over the baseline SavedModel (its serving
signature called on one example; TFLite: interpreter invoke on one example), and the wall time of
the optimization itself (prune + fine-tune + quantize) and of the whole run. Pruning is gradual
(PolynomialDecay) unless the method says one-shot; "1x16" prunes dense kernels in blocks, which
int8 TFLite keeps sparse; "classifier dense" leaves the output layer unpruned
(`--keep-classifier-dense`). Then it optimizes a generated 100 MB model (int8) by the CLI in a
child process for its wall time and peak memory: the RSS summed over the child's process tree, sampled
every 50 ms (what the pod's cgroup counts), overall and per stage; and checks the goals.

The int8 goal compares like with like: the published int8 model.tflite and the same model
converted to float32 TFLite, both on the same interpreter (LiteRT, its default XNNPACK delegate,
one thread), timed per example in the same process, alternately, for --rounds rounds of
LATENCY_EXAMPLES examples each; the speed-up is the ratio of the two medians of the round p50s
(the machine is shared: a single pass of each, minutes apart, measured the load, not the model).
The goal line gives the same ratio in the thread's CPU time as well, and the goal is met only when
both ratios reach it: under load a longer invoke is preempted more often, which inflates the slower
side's wall-time p50 (the 224 CNN once measured 9.0x in wall time, 2.4x in CPU time).

    python benchmarks/optimize.py [--cache .cache/reference-models] [--fine-tune-epochs 5] [--large]
        [--models mlp,cnn] [--methods none,int8] [--rounds 7]
    python benchmarks/optimize.py --only-big    # the 100 MB model alone
    python benchmarks/optimize.py --stock       # int8 speed-up of stock MobileNetV2s, random weights
    python benchmarks/optimize.py --layers      # int8 speed-up of single layers, arithmetic alone

`--stock` answers whether the int8 latency goal is reachable on a MobileNetV2 at all on this CPU:
Keras's own MobileNetV2 (alpha 0.35 at 96x96x3, as the reference model, and the full alpha 1.0 at
224x224x3) with random weights (no download, no training: latency does not depend on the weights),
converted by the optimizer's int8 path and timed like for like as above.

`--layers` answers why: each layer of the reference models (and two wide convolutions for
contrast) alone, float32 against int8 with int8 input and output (no QUANTIZE/DEQUANTIZE: the
layer's arithmetic only), alternately, on the same interpreter settings; a table of the CPU-time
p50s, both speed-ups and the multiply-accumulates per second each side reaches.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from modeldeploy.contract.formats import ModelFormat, PruningSchedule, Quantization
from modeldeploy.contract.layout import TFLITE_FILE
from modeldeploy.optimize.errors import OptimizeError
from modeldeploy.optimize.logs import ProgressLog
from modeldeploy.optimize.options import Options
from modeldeploy.optimize.reference import ReferenceModel, make_reference

GRADUAL, ONE_SHOT = PruningSchedule.POLYNOMIAL_DECAY, PruningSchedule.ONE_SHOT


@dataclass(frozen=True)
class Method:
    name: str
    sparsity: float  # dense; conv too unless conv_sparsity says
    quantization: Quantization
    schedule: PruningSchedule = GRADUAL
    fine_tune: bool = True
    block: int = 1
    conv_sparsity: float | None = None
    keep_classifier_dense: bool = False  # `--keep-classifier-dense`: the output layer is not pruned


METHODS = (
    Method("none", 0.0, Quantization.NONE),
    Method("prune 50%", 0.5, Quantization.NONE),
    Method("prune 80% one-shot", 0.8, Quantization.NONE, ONE_SHOT),
    Method("prune 80%", 0.8, Quantization.NONE),
    Method("dynamic", 0.0, Quantization.DYNAMIC),
    Method("float16", 0.0, Quantization.FLOAT16),
    Method("int8", 0.0, Quantization.INT8),
    Method("prune 80% + int8", 0.8, Quantization.INT8),
    Method("prune 80% 1x16 + int8", 0.8, Quantization.INT8, block=16),
    Method("prune 80% 1x16 + int8 (classifier dense)", 0.8, Quantization.INT8, block=16, keep_classifier_dense=True),
)
# The setting for image models: conv 0.5, dense 0.8.
LARGE_METHODS = (
    Method("none", 0.0, Quantization.NONE),
    Method("c0.5/d0.8 one-shot, no fine-tuning", 0.8, Quantization.NONE, ONE_SHOT, fine_tune=False, conv_sparsity=0.5),
    Method("c0.5/d0.8 one-shot", 0.8, Quantization.NONE, ONE_SHOT, conv_sparsity=0.5),
    Method("c0.5/d0.8 gradual", 0.8, Quantization.NONE, conv_sparsity=0.5),
    Method(
        "c0.5/d0.8 gradual (classifier dense)", 0.8, Quantization.NONE, conv_sparsity=0.5, keep_classifier_dense=True
    ),
    Method("int8", 0.0, Quantization.INT8),
    Method("c0.5/d0.8 gradual + int8", 0.8, Quantization.INT8, conv_sparsity=0.5),
)

GOALS = (
    "MLP prune 80% + int8 >= 10x smaller gzip and >= 6x smaller raw; <= 1 point drop with gradual pruning at "
    "conv 0.5 / dense 0.8 on the 224 CNN; int8 p50 >= 2.5x faster than float32 TFLite; "
    "a 100 MB model optimized (int8) in <= 2 min and <= 2 GB peak memory"
)


@dataclass(frozen=True)
class Row:
    method: str
    format: str
    raw: int
    gzip: int
    raw_ratio: float
    gzip_ratio: float
    accuracy: float
    delta_points: float
    p50_us: float
    baseline_p50_us: float
    speedup: float
    optimize_s: float
    total_s: float
    encoding: str = "dense"


def reference_models(cache: Path, *, large: bool) -> dict[str, ReferenceModel]:
    models = {}
    names = ("mlp", "cnn", "cnn224", "mobilenet") if large else ("mlp", "cnn")
    if all((cache / f"{name}.keras").is_file() for name in names) and (cache / "reference.json").is_file():
        manifest = json.loads((cache / "reference.json").read_text())
        for name, entry in manifest["models"].items():
            models[name] = ReferenceModel(
                name=name,
                keras_path=cache / f"{name}.keras",
                h5_path=cache / f"{name}.h5",
                train_path=cache / f"{name}-train.npz",
                eval_path=cache / f"{name}-eval.npz",
                eval_accuracy=float(entry["evalAccuracy"]),
                params=int(entry["params"]),
            )
        return models
    print(f"training the reference models into {cache} ...", file=sys.stderr, flush=True)
    return make_reference(cache, large=large)


def method_output(model: ReferenceModel, method_name: str, work: Path) -> Path:
    return work / model.name / "".join(c for c in method_name if c.isalnum())


def run_method(model: ReferenceModel, method: Method, epochs: int, work: Path) -> Row:
    from modeldeploy.optimize import pipeline

    output = method_output(model, method.name, work)
    options = Options(
        source=str(model.keras_path),
        format=ModelFormat.KERAS,
        sha256=None,
        output=output,
        version=1,
        dense_sparsity=method.sparsity,
        conv_sparsity=method.sparsity if method.conv_sparsity is None else method.conv_sparsity,
        fine_tune_epochs=epochs if method.sparsity > 0 and method.fine_tune else 0,
        train_data=str(model.train_path),
        quantization=method.quantization,
        eval_data=str(model.eval_path),
        metric="accuracy",
        max_accuracy_drop=1.0,  # measure, do not gate
        pvc_root=work,
        termination_message_path=None,
        log_format="text",
        pruning_schedule=method.schedule if method.sparsity > 0 and method.fine_tune else ONE_SHOT,
        dense_block_size=method.block,
        keep_classifier_dense=method.keep_classifier_dense,
    )
    log = ProgressLog(stream=io.StringIO())
    try:
        report = pipeline.run(options, log).report
    except OptimizeError as failed:  # a refused model is a result too: say why in the table
        nan = float("nan")
        return Row(method.name, f"refused: {failed}"[:160], 0, 0, nan, nan, nan, nan, nan, nan, nan, nan, nan)
    data = report.to_json()
    sizes = data["sizes"]
    evaluation = data["evaluation"]
    latency = data["latency"]
    stages = data["stages"]
    return Row(
        method=method.name,
        format=data["format"],
        raw=sizes["optimized"]["bytes"],
        gzip=sizes["optimized"]["gzipBytes"],
        raw_ratio=sizes["ratioRaw"],
        gzip_ratio=sizes["ratioGzip"],
        accuracy=evaluation["after"],
        delta_points=(evaluation["after"] - evaluation["before"]) * 100,
        p50_us=latency["optimized"]["p50Ms"] * 1000,
        baseline_p50_us=latency["baseline"]["p50Ms"] * 1000,
        speedup=latency["baseline"]["p50Ms"] / latency["optimized"]["p50Ms"],
        optimize_s=stages.get("prune", 0.0) + stages.get("quantize", 0.0),
        total_s=data["durationSeconds"],
        encoding=data["quantization"].get("weights", {}).get("encoding", "dense"),
    )


def float_tflite_row(model: ReferenceModel, work: Path, baseline: Row) -> tuple[Row, bytes]:
    """For context, not a product mode: the same model as an unquantized float32 TFLite file.

    It separates the gain of the TFLite runtime (no TensorFlow graph call per request) from the
    gain of quantization. Returns the row and the float32 model.tflite (the int8 goal's peer).
    """
    import time

    import keras
    import numpy as np

    from modeldeploy.optimize.convert import export_saved_model, keras_signature
    from modeldeploy.optimize.evaluate import SavedModelPredictor, TFLitePredictor, measure_latency, size_of

    started = time.monotonic()
    keras_model = keras.models.load_model(model.keras_path, compile=False)
    signature = keras_signature(keras_model, str(model.keras_path))
    saved_model = work / f"{model.name}-float-savedmodel"
    export_saved_model(keras_model, signature, saved_model)
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=["serving_default"])
    content = bytes(converter.convert())
    convert_s = time.monotonic() - started
    (work / f"{model.name}-float.tflite").write_bytes(content)
    size = size_of(work / f"{model.name}-float.tflite")
    with np.load(model.eval_path) as data:
        x, y = data["x"].astype("float32"), data["y"]
    predictor = TFLitePredictor(content)
    accuracy = float(np.mean(np.argmax(predictor.predict(x), axis=-1) == y))
    reference = SavedModelPredictor(saved_model, signature)
    base_p50 = measure_latency(reference, x).p50_ms * 1000
    p50 = measure_latency(predictor, x).p50_ms * 1000
    row = Row(
        method="(context) tflite float32",
        format="tflite, no quantization",
        raw=size.bytes,
        gzip=size.gzip_bytes,
        raw_ratio=baseline.raw / size.bytes,
        gzip_ratio=baseline.gzip / size.gzip_bytes,
        accuracy=accuracy,
        delta_points=(accuracy - baseline.accuracy) * 100,
        p50_us=p50,
        baseline_p50_us=base_p50,
        speedup=base_p50 / p50,
        optimize_s=convert_s,
        total_s=time.monotonic() - started,
    )
    return row, content


@dataclass(frozen=True)
class LikeForLike:
    """int8 against float32 TFLite, measured alternately in one process: p50 µs of every round.

    Wall time (what a client waits) and the thread's CPU time (what the model costs: on a shared
    machine a longer invoke is more often preempted, so under load wall time inflates the slower
    side's p50 more than the faster one's). Both interpreters run on one thread (LiteRT's default).
    """

    float_p50_us: tuple[float, ...]
    int8_p50_us: tuple[float, ...]
    float_cpu_p50_us: tuple[float, ...]
    int8_cpu_p50_us: tuple[float, ...]

    @staticmethod
    def _median(values: tuple[float, ...]) -> float:
        import statistics

        return statistics.median(values)

    @property
    def speedup(self) -> float:
        """The ratio of the wall-time medians: one loaded round on either side moves it least."""
        return self._median(self.float_p50_us) / self._median(self.int8_p50_us)

    @property
    def cpu_speedup(self) -> float:
        return self._median(self.float_cpu_p50_us) / self._median(self.int8_cpu_p50_us)

    def line(self, name: str) -> str:
        rounds = ", ".join(f"{f / q:.2f}" for f, q in zip(self.float_p50_us, self.int8_p50_us, strict=True))
        return (
            f"{name}: float32 TFLite p50 {self._median(self.float_p50_us):.1f} µs, int8 "
            f"{self._median(self.int8_p50_us):.1f} µs (medians of {len(self.int8_p50_us)} alternating rounds): "
            f"{self.speedup:.2f}x; per round {rounds}; CPU time {self._median(self.float_cpu_p50_us):.1f} / "
            f"{self._median(self.int8_cpu_p50_us):.1f} µs: {self.cpu_speedup:.2f}x"
        )


def cpu_p50_us(predictor: Any, x: Any) -> float:
    """measure_latency's loop timed by the thread's CPU clock: the model's cost without the waits."""
    import statistics

    from modeldeploy.optimize.evaluate import LATENCY_EXAMPLES, LATENCY_WARMUP

    examples = x[:LATENCY_EXAMPLES]
    for index in range(min(LATENCY_WARMUP, len(examples))):
        predictor.predict_one(examples[index : index + 1])
    spent = []
    for index in range(len(examples)):
        one = examples[index : index + 1]
        start = time.thread_time_ns()
        predictor.predict_one(one)
        spent.append(time.thread_time_ns() - start)
    return statistics.median(spent) / 1000


def like_for_like(float_content: bytes, int8_content: bytes, eval_path: Path, rounds: int) -> LikeForLike:
    """Both models on the same interpreter settings, alternately, on the same examples."""
    import numpy as np

    from modeldeploy.optimize.evaluate import TFLitePredictor, measure_latency

    with np.load(eval_path) as data:
        x = data["x"].astype("float32")
    predictors = TFLitePredictor(float_content), TFLitePredictor(int8_content)
    return alternate(
        lambda side: (measure_latency(predictors[side], x).p50_ms * 1000, cpu_p50_us(predictors[side], x)), rounds
    )


def alternate(measure: Callable[[int], tuple[float, float]], rounds: int) -> LikeForLike:
    """`measure(side)`, the wall and CPU p50 µs of float32 (side 0) or int8 (side 1), in alternating rounds."""
    wall: tuple[list[float], list[float]] = ([], [])
    cpu: tuple[list[float], list[float]] = ([], [])
    for index in range(rounds):
        # Alternate which goes first: a load change during a round does not always hit the same side.
        order = (0, 1) if index % 2 == 0 else (1, 0)
        for side in order:
            side_wall, side_cpu = measure(side)
            wall[side].append(side_wall)
            cpu[side].append(side_cpu)
    return LikeForLike(tuple(wall[0]), tuple(wall[1]), tuple(cpu[0]), tuple(cpu[1]))


#: (name, alpha, input side) of the stock architectures `--stock` times
STOCK_MODELS = (("MobileNetV2 alpha 0.35, 96x96x3", 0.35, 96), ("MobileNetV2 alpha 1.0, 224x224x3", 1.0, 224))


def stock_speedups(work: Path, rounds: int) -> list[str]:
    """The int8 speed-up of the optimizer's conversion on stock Keras MobileNetV2s, random weights."""
    import keras
    import numpy as np
    import tensorflow as tf

    from modeldeploy.optimize.convert import export_saved_model, keras_signature
    from modeldeploy.optimize.evaluate import LATENCY_EXAMPLES
    from modeldeploy.optimize.quantize import quantize, representative_sample

    lines = []
    for name, alpha, side in STOCK_MODELS:
        print(f"stock {name} ...", file=sys.stderr, flush=True)
        model = keras.applications.MobileNetV2(input_shape=(side, side, 3), alpha=alpha, weights=None, classes=10)
        saved_model = work / f"stock-{alpha}-{side}"
        export_saved_model(model, keras_signature(model, name), saved_model)
        x = np.random.default_rng(0).random((LATENCY_EXAMPLES, side, side, 3), dtype=np.float32)
        eval_path = work / f"stock-{alpha}-{side}.npz"
        np.savez(eval_path, x=x, y=np.zeros(len(x), dtype=np.int64))
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=["serving_default"])
        float_content = bytes(converter.convert())
        int8_content = quantize(saved_model, Quantization.INT8, representative_sample(x))
        like = like_for_like(float_content, int8_content, eval_path, rounds)
        goal = "met" if min(like.speedup, like.cpu_speedup) >= 2.5 else "MISSED"
        lines.append(f"- {goal}: {like.line(name + ' (stock, random weights)')}")
    return lines


@dataclass(frozen=True)
class SweepLayer:
    """One layer timed alone by `--layers`: what it is and the input it takes ('same' padding)."""

    name: str
    input_shape: tuple[int, ...]
    kind: str  # conv, depthwise or dense
    filters: int = 0
    kernel: int = 3
    strides: int = 1

    @property
    def depth(self) -> int:
        """Multiply-accumulates per output value: input channels x kernel area (1 for depthwise)."""
        if self.kind == "dense":
            return self.input_shape[0]
        channels = 1 if self.kind == "depthwise" else self.input_shape[-1]
        return channels * self.kernel * self.kernel

    @property
    def macs(self) -> int:
        """Multiply-accumulates per example: output values x depth."""
        if self.kind == "dense":
            return self.depth * self.filters
        height, width, channels = self.input_shape
        per_pixel = channels if self.kind == "depthwise" else self.filters
        return -(-height // self.strides) * -(-width // self.strides) * per_pixel * self.depth


#: The 224 CNN's four convolutions and its first Dense; the reference MobileNetV2's (alpha 0.35 at
#: 96x96) and the stock alpha 1.0 at 224x224's block_1 (1x1 expand, depthwise) and block_13 (1x1
#: project); two wide convolutions for contrast. What sets int8's gain is the depth of each output's
#: sum, input channels x kernel area (`SweepLayer.depth`).
SWEEP_LAYERS = (
    SweepLayer("224 CNN conv_1: 3->16, 3x3 stride 2, 224x224", (224, 224, 3), "conv", 16, 3, 2),
    SweepLayer("224 CNN conv_2: 16->32, 3x3, 56x56", (56, 56, 16), "conv", 32),
    SweepLayer("224 CNN conv_3: 32->64, 3x3, 28x28", (28, 28, 32), "conv", 64),
    SweepLayer("224 CNN conv_4: 64->64, 3x3, 14x14", (14, 14, 64), "conv", 64),
    SweepLayer("224 CNN dense_1: 3136->128", (3136,), "dense", 128),
    SweepLayer("MobileNetV2 0.35/96 block_1 expand: 8->48, 1x1, 48x48", (48, 48, 8), "conv", 48, 1),
    SweepLayer("MobileNetV2 0.35/96 block_1 depthwise: 48 ch, 3x3 s2", (48, 48, 48), "depthwise", 0, 3, 2),
    SweepLayer("MobileNetV2 0.35/96 block_13 project: 192->56, 1x1, 3x3", (3, 3, 192), "conv", 56, 1),
    SweepLayer(
        "stock MobileNetV2 1.0/224 block_1 expand: 16->96, 1x1, 112x112",
        (112, 112, 16),
        "conv",
        96,
        1,
    ),
    SweepLayer(
        "stock MobileNetV2 1.0/224 block_1 depthwise: 96 ch, 3x3 s2",
        (112, 112, 96),
        "depthwise",
        0,
        3,
        2,
    ),
    SweepLayer("stock MobileNetV2 1.0/224 block_13 project: 576->160, 1x1, 7x7", (7, 7, 576), "conv", 160, 1),
    SweepLayer("wide conv: 128->128, 3x3, 28x28", (28, 28, 128), "conv", 128),
    SweepLayer("wide conv: 256->256, 1x1, 28x28", (28, 28, 256), "conv", 256, 1),
)


def sweep_models(layer: SweepLayer, examples: int = 40) -> tuple[bytes, bytes, Any, Any]:
    """The layer (with its ReLU) as float32 TFLite and as int8 TFLite with int8 input and output.

    int8 at the edges leaves out the QUANTIZE/DEQUANTIZE a published model has (it keeps float32
    requests), so the ratio is that of the layer's arithmetic alone. Returns both models and their
    inputs: random floats, and the same quantized with the int8 model's input scale and zero point.
    """
    import keras
    import numpy as np
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    inputs = keras.Input(layer.input_shape)
    if layer.kind == "dense":
        outputs = keras.layers.Dense(layer.filters, activation="relu")(inputs)
    elif layer.kind == "depthwise":
        outputs = keras.layers.DepthwiseConv2D(layer.kernel, layer.strides, padding="same", activation="relu")(inputs)
    else:
        outputs = keras.layers.Conv2D(layer.filters, layer.kernel, layer.strides, padding="same", activation="relu")(
            inputs
        )
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(0).random((examples, *layer.input_shape), dtype=np.float32)
    float_content = bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([example[None]] for example in x[:20])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    with warnings.catch_warnings():
        # The converter asks for input statistics it then takes from the representative dataset.
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs", category=UserWarning)
        int8_content = bytes(converter.convert())
    scale, zero_point = Interpreter(model_content=int8_content).get_input_details()[0]["quantization"]
    x_int8 = np.clip(np.round(x / scale + zero_point), -128, 127).astype(np.int8)
    return float_content, int8_content, x, x_int8


def _invoke_p50s(interpreter: Any, inputs: Any) -> tuple[float, float]:
    """p50 µs of the invoke alone, one per input, in wall time and in the thread's CPU time.

    Not `measure_latency`: its per-example call also copies the output out, and a layer's output is
    a whole activation map, 4x bigger in float32 than in int8 (a 112x112x96 one took longer to copy
    than to compute), which is not what the layer costs inside a model."""
    import statistics

    index = interpreter.get_input_details()[0]["index"]
    wall, cpu = [], []
    for example in inputs:
        interpreter.set_tensor(index, example[None])
        start_wall, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
        interpreter.invoke()
        cpu.append(time.thread_time_ns() - start_cpu)
        wall.append(time.perf_counter_ns() - start_wall)
    return statistics.median(wall) / 1000, statistics.median(cpu) / 1000


def sweep_layer(layer: SweepLayer, rounds: int) -> LikeForLike:
    """float32 against int8 for one layer alone, in alternating rounds like `like_for_like`."""
    from ai_edge_litert.interpreter import Interpreter

    float_content, int8_content, x, x_int8 = sweep_models(layer)
    interpreters = Interpreter(model_content=float_content), Interpreter(model_content=int8_content)
    inputs = x, x_int8
    for interpreter, examples in zip(interpreters, inputs, strict=True):
        interpreter.allocate_tensors()
        _invoke_p50s(interpreter, examples[:5])  # warm-up: XNNPACK packs the weights on the first invoke
    return alternate(lambda side: _invoke_p50s(interpreters[side], inputs[side]), rounds)


def sweep_table(results: list[tuple[SweepLayer, LikeForLike]]) -> str:
    """Markdown: per layer, its sum depth, float32 and int8 CPU-time p50, the speed-ups, MACs per second."""
    lines = [
        "| layer | MMAC | sum depth | float32 CPU µs | int8 CPU µs | speed-up, wall | speed-up, CPU time "
        "| float32 GMAC/s | int8 GMAC/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for layer, like in results:
        float_us = LikeForLike._median(like.float_cpu_p50_us)
        int8_us = LikeForLike._median(like.int8_cpu_p50_us)
        lines.append(
            f"| {layer.name} | {layer.macs / 1e6:.1f} | {layer.depth} | {float_us:.1f} | {int8_us:.1f} | "
            f"{like.speedup:.2f}x | {like.cpu_speedup:.2f}x | {layer.macs / float_us / 1e3:.0f} | "
            f"{layer.macs / int8_us / 1e3:.0f} |"
        )
    return "\n".join(lines)


def table(model: ReferenceModel, rows: list[Row], context: Row, epochs: int) -> str:
    base = rows[0]
    raw, gz, baseline_p50_us = base.raw, base.gzip, base.baseline_p50_us
    lines = [
        f"### {model.name.upper()} ({model.params:,} parameters; baseline SavedModel {raw:,} B raw, "
        f"{gz:,} B gzip, accuracy {base.accuracy:.4f}, p50 {baseline_p50_us:.0f} µs; {epochs} fine-tuning epochs)",
        "",
        "| method | artifact | raw bytes | gzip bytes | raw x smaller | gzip x smaller | accuracy | Δ points "
        "| p50 µs/example | speed-up | optimize s | run s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in [*rows, context]:
        artifact = f"{r.format}, sparse" if r.encoding == "sparse" else r.format
        lines.append(
            f"| {r.method} | {artifact} | {r.raw:,} | {r.gzip:,} | {r.raw_ratio:.2f} | {r.gzip_ratio:.2f} "
            f"| {r.accuracy:.4f} | {r.delta_points:+.2f} | {r.p50_us:.1f} | {r.speedup:.1f}x "
            f"| {r.optimize_s:.2f} | {r.total_s:.1f} |"
        )
    return "\n".join(lines)


def goals(name: str, rows: list[Row], like: LikeForLike | None) -> list[str]:
    by = {r.method: r for r in rows}
    checks: list[tuple[str, bool]] = []
    if like is None:
        checks.append((f"{name}: no int8 model.tflite (refused or not run): int8 latency not measured", False))
    else:
        # Met only when both clocks say so: wall time is what a client waits for, but on a shared
        # machine it inflates the slower model's p50 (9.0x wall against 2.4x CPU measured once).
        checks.append((f"{like.line(name)} (goal >= 2.5x in both)", min(like.speedup, like.cpu_speedup) >= 2.5))
    if name == "MLP":
        for method in ("prune 80% + int8", "prune 80% 1x16 + int8", "prune 80% 1x16 + int8 (classifier dense)"):
            if method not in by:
                continue
            row = by[method]
            checks.append(
                (
                    f"MLP {method}: {row.gzip_ratio:.2f}x smaller gzip (goal >= 10x), {row.raw_ratio:.2f}x smaller "
                    f"raw (goal >= 6x; {row.encoding} encoding), Δ {row.delta_points:+.2f} points",
                    row.gzip_ratio >= 10 and row.raw_ratio >= 6,
                )
            )
    if "c0.5/d0.8 gradual" in by and "c0.5/d0.8 one-shot" in by:
        gradual, one_shot = by["c0.5/d0.8 gradual"], by["c0.5/d0.8 one-shot"]
        checks.append(
            (
                f"{name}: gradual pruning conv 0.5 / dense 0.8 Δ {gradual.delta_points:+.2f} points "
                f"(one-shot + same fine-tuning {one_shot.delta_points:+.2f}; goal >= -1)",
                gradual.delta_points >= -1.0,
            )
        )
    return [f"- {'met' if ok else 'MISSED'}: {text}" for text, ok in checks]


BIG_MODEL_UNITS = (1024, 4096, 4096, 1024, 10)  # 25.2 M float32 parameters: 100.7 MB of weights
BIG_EXAMPLES = 256


_SAMPLE_SECONDS = 0.05
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
_MIB = 1 << 20  # the goal's 2 GB is 2048 MiB


def _descendants(pid: int) -> list[int]:
    """The process and every descendant (children as the kernel lists them, per thread)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                queue += [int(child) for child in (task / "children").read_text().split()]
        except OSError:  # exited meanwhile
            continue
    return found


def tree_rss_bytes(pid: int) -> int:
    """Resident bytes summed over the process tree: what a pod's cgroup counts at this instant
    (shared pages are counted once per process here, so this errs on the high side)."""
    total = 0
    for member in _descendants(pid):
        try:
            total += int(Path(f"/proc/{member}/statm").read_text().split()[1]) * _PAGE_BYTES
        except (OSError, IndexError, ValueError):
            continue
    return total


@dataclass
class TreeMemory:
    """Samples a child's summed tree RSS every 50 ms and the stage its progress log says it is in."""

    samples: list[tuple[float, int, str]]  # (monotonic time, tree RSS bytes, stage)
    stage: str = "start"

    def peak_mib(self) -> float:
        return max((rss for _, rss, _ in self.samples), default=0) / _MIB

    def peak_by_stage_mib(self) -> dict[str, float]:
        """Stages in the order they ran (`start`: before the first, Python and TensorFlow importing)."""
        peaks: dict[str, float] = {}
        for _, rss, stage in self.samples:
            peaks[stage] = max(peaks.get(stage, 0.0), rss / _MIB)
        return peaks


_STAGE_STARTED = re.compile(r" optimize (\w+): started")


def run_sampled(command: list[str]) -> tuple[int, str, str, float, TreeMemory]:
    """Run the command, sampling its tree's RSS; its return code, stdout, stderr, wall seconds, memory."""
    memory = TreeMemory(samples=[])
    started = time.monotonic()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    out_lines: list[str] = []
    err: list[str] = []

    def read_stdout() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            out_lines.append(line)
            if matched := _STAGE_STARTED.search(line):
                memory.stage = matched.group(1)

    def read_stderr() -> None:
        assert child.stderr is not None
        err.append(child.stderr.read())

    readers = [threading.Thread(target=read_stdout), threading.Thread(target=read_stderr)]
    for reader in readers:
        reader.start()
    while child.poll() is None:
        memory.samples.append((time.monotonic(), tree_rss_bytes(child.pid), memory.stage))
        time.sleep(_SAMPLE_SECONDS)
    wall = time.monotonic() - started
    for reader in readers:
        reader.join()
    return child.returncode, "".join(out_lines), "".join(err), wall, memory


@dataclass(frozen=True)
class BigRun:
    wall: float
    peak_mib: float  # summed tree RSS, sampled
    maxrss_mib: float  # ru_maxrss of the largest child process
    cpu_s: float  # user + system CPU seconds of the child: less noisy than wall time on a shared machine
    stage_peaks_mib: dict[str, float]
    source_bytes: int
    report: dict[str, object]


def big_model_run(work: Path) -> BigRun:
    """A generated ~100 MB Dense model optimized to int8 by the real CLI in a child process.

    Memory is the peak of the RSS summed over the child and its descendants, sampled every 50 ms
    (what the pod's cgroup would see; ru_maxrss is only the largest single process's), overall and
    per stage (from the child's progress lines).
    """
    import keras
    import numpy as np

    units = BIG_MODEL_UNITS
    model = keras.Sequential(
        [keras.Input((units[0],))]
        + [keras.layers.Dense(n, activation="relu") for n in units[1:-1]]
        + [keras.layers.Dense(units[-1], activation="softmax")]
    )
    source = work / "big.keras"
    model.save(source)
    del model
    rng = np.random.default_rng(0)
    for name in ("train", "eval"):
        np.savez(
            work / f"big-{name}.npz",
            x=rng.random((BIG_EXAMPLES, units[0]), dtype=np.float32),
            y=rng.integers(0, units[-1], BIG_EXAMPLES),
        )
    out = work / "big-out"
    command = [
        sys.executable, "-c", "import sys; from modeldeploy.cli import main; sys.exit(main())",
        "optimize", "--source", str(source), "--output", str(out), "--version", "1",
        "--quantization", "int8", "--train-data", str(work / "big-train.npz"),
        "--eval-data", str(work / "big-eval.npz"), "--max-accuracy-drop", "1", "--termination-message-path", "",
    ]  # fmt: skip
    returncode, _, stderr, wall, memory = run_sampled(command)
    if returncode != 0:
        raise RuntimeError(f"the 100 MB run failed: {stderr.strip()[-500:]}")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the only child this process waits for
    report = json.loads((out / "1" / "report.json").read_text())
    return BigRun(
        wall,
        memory.peak_mib(),
        usage.ru_maxrss / 1024,  # Linux: KiB
        usage.ru_utime + usage.ru_stime,
        memory.peak_by_stage_mib(),
        source.stat().st_size,
        report,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path(".cache/reference-models"), help="reference models")
    parser.add_argument("--fine-tune-epochs", type=int, default=5, help="fine-tuning epochs after pruning (5)")
    parser.add_argument("--large", action="store_true", help="also the 224x224x3 CNN and the MobileNetV2")
    parser.add_argument(
        "--large-fine-tune-epochs", type=int, default=3, help="fine-tuning epochs of the large models (3)"
    )
    parser.add_argument("--models", default="", help="comma-separated subset of mlp,cnn,cnn224,mobilenet")
    parser.add_argument("--methods", default="", help="comma-separated subset of the methods (none always runs)")
    parser.add_argument("--rounds", type=int, default=7, help="alternating latency rounds, float32 vs int8 (7)")
    parser.add_argument("--skip-big", action="store_true", help="skip the 100 MB model")
    parser.add_argument("--only-big", action="store_true", help="only the 100 MB model (no reference models)")
    parser.add_argument(
        "--stock", action="store_true", help="only the int8 speed-up of stock MobileNetV2s (random weights)"
    )
    parser.add_argument(
        "--layers", action="store_true", help="only the int8 speed-up of single layers (the reference models' own)"
    )
    args = parser.parse_args(argv)
    if args.only_big and args.skip_big:
        parser.error("--only-big and --skip-big exclude each other")
    if args.layers:
        results = []
        for layer in SWEEP_LAYERS:
            print(f"layer {layer.name} ...", file=sys.stderr, flush=True)
            results.append((layer, sweep_layer(layer, args.rounds)))
        print(sweep_table(results))
        return 0
    if args.stock:
        with tempfile.TemporaryDirectory(prefix="modeldeploy-bench-") as tmp:
            print("\n".join(stock_speedups(Path(tmp), args.rounds)))
        return 0
    wanted = {"none", *args.methods.split(",")} if args.methods else None

    models = {} if args.only_big else reference_models(args.cache, large=args.large)
    names = [n for n in ("mlp", "cnn", "cnn224", "mobilenet") if n in models]
    if args.models:
        names = [n for n in names if n in args.models.split(",")]
    report_lines = [f"Goals: {GOALS}.", ""]
    verdicts: list[str] = []
    with tempfile.TemporaryDirectory(prefix="modeldeploy-bench-") as tmp:
        for name in names:
            model = models[name]
            large = name in ("cnn224", "mobilenet")
            epochs = args.large_fine_tune_epochs if large else args.fine_tune_epochs
            rows = []
            for method in LARGE_METHODS if large else METHODS:
                if wanted is not None and method.name not in wanted:
                    continue
                print(f"{name}: {method.name} ...", file=sys.stderr, flush=True)
                rows.append(run_method(model, method, epochs, Path(tmp)))
            context, float_content = float_tflite_row(model, Path(tmp), rows[0])
            int8_file = method_output(model, "int8", Path(tmp)) / "1" / TFLITE_FILE
            like = (
                like_for_like(float_content, int8_file.read_bytes(), model.eval_path, args.rounds)
                if int8_file.is_file()
                else None
            )
            report_lines += [table(model, rows, context, epochs), ""]
            verdicts += goals(name.upper(), rows, like)
            print("\n".join(report_lines[-2:] + verdicts[-4:]), file=sys.stderr, flush=True)
        if not args.skip_big:
            print("100 MB model: int8 ...", file=sys.stderr, flush=True)
            big = big_model_run(Path(tmp))
            sizes = big.report["sizes"]
            assert isinstance(sizes, dict)
            stages = big.report["stages"]
            assert isinstance(stages, dict)
            report_lines += [
                f"100 MB model (Dense {'-'.join(map(str, BIG_MODEL_UNITS))}, .keras {big.source_bytes / 1e6:.1f} MB) "
                f"to int8: {big.wall:.1f} s wall ({big.cpu_s:.0f} CPU s), peak memory {big.peak_mib:.0f} MiB "
                f"(RSS summed over the process tree, sampled every 50 ms; ru_maxrss of the largest process "
                f"{big.maxrss_mib:.0f} MiB), model.tflite "
                f"{sizes['optimized']['bytes'] / 1e6:.1f} MB",
                "",
                "| stage | seconds | peak tree RSS MiB |",
                "| --- | ---: | ---: |",
                *(
                    f"| {stage} | {f'{stages[stage]:.1f}' if stage in stages else '-'} | {peak:.0f} |"
                    for stage, peak in big.stage_peaks_mib.items()
                ),
                "",
            ]
            verdicts += [
                f"- {'met' if big.wall <= 120 else 'MISSED'}: 100 MB model int8 in {big.wall:.1f} s (goal <= 120 s)",
                f"- {'met' if big.peak_mib <= 2048 else 'MISSED'}: 100 MB model peak memory {big.peak_mib:.0f} MiB "
                "summed over the process tree (goal <= 2048 MiB)",
            ]
    print("\n".join(report_lines + verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
