"""Measuring a model the way it will be served: quality on the evaluation data, latency, size.

The baseline is the unoptimized model exported as a SavedModel and called through its
`serving_default` signature; the candidate is what TF Serving will load, the `model.tflite` run by
the LiteRT interpreter (ai-edge-litert, falling back to tf.lite.Interpreter) or the pruned SavedModel.
A Keras model in memory can be called the same way (`KerasPredictor`, for the conversion check).
Latency is per example (batch of one), after a warm-up, as p50 and p95 in milliseconds. Sizes are
raw bytes and gzip bytes at gzip's default level 6 (for a folder, summed per file): -9 took most
of a pruned ResNet50 run for sizes about 1-6 % smaller (`GZIP_LEVEL`). The gate compares the metric before and
after and fails with QualityGateFailed when the loss exceeds the allowed drop (`maxAccuracyDrop`),
or when the worst class or slice (`slices`) lost more than `maxSliceAccuracyDrop`.
"""

from __future__ import annotations

import time
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from modeldeploy.contract.failures import Failure
from modeldeploy.optimize.accuracy import (
    METRICS,
    PROBABILITY_THRESHOLD,
    Metric,
    Scoring,
    applicable,
    change,
    decision_threshold,
    output_width,
)
from modeldeploy.optimize.convert import SIGNATURE_KEY, ModelSignature
from modeldeploy.optimize.errors import OptimizeError
from modeldeploy.optimize.slices import CLASS, SliceMetric, measure_slices, worst_slice

LATENCY_EXAMPLES = 200
LATENCY_WARMUP = 10
EVAL_BATCH = 256


class Predictor(Protocol):
    def predict(self, x: npt.NDArray[Any]) -> npt.NDArray[Any]: ...

    def predict_one(self, example: npt.NDArray[Any]) -> npt.NDArray[Any]: ...


class SavedModelPredictor:
    """Calls the SavedModel's serving signature, as TF Serving does."""

    def __init__(self, saved_model_dir: Path, signature: ModelSignature) -> None:
        import tensorflow as tf

        self._tf = tf
        self._loaded = tf.saved_model.load(str(saved_model_dir))  # kept alive: owns the variables
        self._function = self._loaded.signatures[SIGNATURE_KEY]
        self._input = signature.input_name
        self._output = signature.output_name

    def predict(self, x: npt.NDArray[Any]) -> npt.NDArray[Any]:
        parts = [self.predict_one(x[start : start + EVAL_BATCH]) for start in range(0, len(x), EVAL_BATCH)]
        return np.concatenate(parts)

    def predict_one(self, example: npt.NDArray[Any]) -> npt.NDArray[Any]:
        result = self._function(**{self._input: self._tf.constant(example)})
        return np.asarray(result[self._output])


class KerasPredictor:
    """Calls a Keras model in memory: the original a conversion is checked against (`fidelity`)."""

    def __init__(self, model: Any) -> None:
        self._model = model

    def predict(self, x: npt.NDArray[Any]) -> npt.NDArray[Any]:
        parts = [self.predict_one(x[start : start + EVAL_BATCH]) for start in range(0, len(x), EVAL_BATCH)]
        return np.concatenate(parts)

    def predict_one(self, example: npt.NDArray[Any]) -> npt.NDArray[Any]:
        outputs = self._model(example, training=False)
        if isinstance(outputs, (list, tuple)):
            outputs = outputs[0]
        return np.asarray(outputs)


def _interpreter(model_content: bytes) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # the deprecated copy inside TensorFlow does the same job
        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*tf\.lite\.Interpreter is deprecated", category=UserWarning)
            return tf.lite.Interpreter(model_content=model_content)
    return Interpreter(model_content=model_content)


class TFLitePredictor:
    """Runs model.tflite; batches by resizing the input, single examples on a batch-1 interpreter."""

    def __init__(self, model_content: bytes) -> None:
        self._content = model_content
        self._single = _interpreter(model_content)
        self._single.allocate_tensors()
        details = self._single.get_input_details()[0]
        self._in = details["index"]
        self._out = self._single.get_output_details()[0]["index"]
        # The shape the batch-1 interpreter is allocated at, remembered rather than asked for on
        # every call: get_input_details() builds dicts of every input's quantization and sparsity
        # parameters, 8.5 µs per call measured, more than a whole int8 MLP invoke (5.5 µs). Asked
        # per example, it was counted as model latency and cut int8's measured speed-up (MLP 3.2x
        # by invoke, 2.0x as measured).
        self._single_shape = tuple(int(n) for n in details["shape"])
        self._batched: Any = None
        self._batched_size = 0

    def predict_one(self, example: npt.NDArray[Any]) -> npt.NDArray[Any]:
        # An input with unknown dimensions, (None, None, 3) say, is allocated at 1 for each of
        # them: resize to this example's shape first (only when it changes, allocation is not free).
        if self._single_shape != example.shape:
            self._single.resize_tensor_input(self._in, list(example.shape))
            self._single.allocate_tensors()
            self._single_shape = tuple(example.shape)
        self._single.set_tensor(self._in, example)
        self._single.invoke()
        return np.array(self._single.get_tensor(self._out))

    def predict(self, x: npt.NDArray[Any]) -> npt.NDArray[Any]:
        parts = []
        for start in range(0, len(x), EVAL_BATCH):
            batch = x[start : start + EVAL_BATCH]
            if self._batched is None or self._batched_size != len(batch):
                self._batched = _interpreter(self._content)
                details = self._batched.get_input_details()[0]
                self._batched.resize_tensor_input(details["index"], [len(batch), *batch.shape[1:]])
                self._batched.allocate_tensors()
                self._batched_size = len(batch)
            self._batched.set_tensor(self._batched.get_input_details()[0]["index"], batch)
            self._batched.invoke()
            parts.append(np.array(self._batched.get_tensor(self._batched.get_output_details()[0]["index"])))
        return np.concatenate(parts)


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p95_ms: float
    examples: int


def measure_latency(predictor: Predictor, x: npt.NDArray[Any]) -> Latency:
    """Per-example latency: one call per example on up to LATENCY_EXAMPLES, after a warm-up."""
    examples = x[:LATENCY_EXAMPLES]
    for index in range(min(LATENCY_WARMUP, len(examples))):
        predictor.predict_one(examples[index : index + 1])
    seconds = []
    for index in range(len(examples)):
        one = examples[index : index + 1]
        start = time.perf_counter()
        predictor.predict_one(one)
        seconds.append(time.perf_counter() - start)
    p50, p95 = np.percentile(np.asarray(seconds) * 1000.0, [50, 95])
    return Latency(p50_ms=float(p50), p95_ms=float(p95), examples=len(examples))


@dataclass(frozen=True)
class Size:
    bytes: int
    gzip_bytes: int


# gzip's default level. Measured by benchmarks/sizes.py on ResNet50 with 80 % of every kernel zeroed:
# against -9 its sizes are 1.1 % larger (SavedModel) and 5.8 % (dynamic model.tflite) for a
# 9.1x and 8.3x faster measurement (57 s and 213 s at -9); -1 is 16-54x faster but 17-22 % larger.
# A pruned 25M-parameter MLP's artifacts: 112 CPU seconds at -9, 15 at -6, 5.7 % larger.
GZIP_LEVEL = 6
_GZIP_WBITS = 31  # the gzip container, header and trailer included, as `gzip -6` writes it
_CHUNK = 1 << 20


def _gzip_bytes(file: Path) -> int:
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, _GZIP_WBITS)
    total = 0
    with file.open("rb") as handle:  # streamed: a model file can be larger than memory allows twice
        while chunk := handle.read(_CHUNK):
            total += len(compressor.compress(chunk))
    return total + len(compressor.flush())


def size_of(path: Path, skip: frozenset[str] = frozenset()) -> Size:
    """Raw and gzip size of a file, or of a folder summed over its files (but the top-level `skip`)."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.relative_to(path).parts[0] not in skip)
    else:
        files = [path]
    raw = zipped = 0
    for file in files:
        raw += file.stat().st_size
        zipped += _gzip_bytes(file)
    return Size(bytes=raw, gzip_bytes=zipped)


def _amount(metric: Metric, value: float) -> str:
    number = f"{value * 100.0:.1f}"
    if metric.unit == "points":
        return f"{number} point" if number == "1.0" else f"{number} points"
    return f"{number}{metric.unit}"


def _value(metric: Metric, value: float) -> str:
    return f"{value:.4g}" if metric.relative else f"{value:.3f}"


def describe_change(metric: Metric, before: float, after: float, drop: float, limit: tuple[str, float] | None) -> str:
    """'accuracy dropped 2.5 points (0.950 -> 0.925), above maxAccuracyDrop 1.0 point'."""
    worse, better = ("dropped", "rose") if metric.higher_is_better else ("rose", "fell")
    verb = worse if drop >= 0 else better
    text = f"{metric.name} {verb} {_amount(metric, abs(drop))} ({_value(metric, before)} -> {_value(metric, after)})"
    if limit is None:
        return text
    name, max_drop = limit
    relation = "above" if drop > max_drop + GATE_EPSILON else "within"
    return f"{text}, {relation} {name} {_amount(metric, max_drop)}"


GATE_EPSILON = 1e-9  # a drop equal to the limit passes, whatever the float rounding


@dataclass(frozen=True)
class GateResult:
    metric: str
    before: float
    after: float
    drop: float  # positive = worse: a fraction for accuracy, a relative rise for mse and mae
    max_drop: float
    passed: bool

    def message(self) -> str:
        metric = METRICS[self.metric]
        return describe_change(metric, self.before, self.after, self.drop, ("maxAccuracyDrop", self.max_drop))


def check_gate(metric: Metric, before: float, after: float, max_drop: float) -> GateResult:
    drop = change(metric, before, after)
    return GateResult(
        metric=metric.name,
        before=before,
        after=after,
        drop=drop,
        max_drop=max_drop,
        passed=drop <= max_drop + GATE_EPSILON,
    )


@dataclass(frozen=True)
class SliceGate:
    """The metric per class and per slice, and the sliced gate on the worst of them."""

    metric: str
    max_drop: float | None  # maxSliceAccuracyDrop; None = reported, not gated
    min_examples: int
    classes: tuple[SliceMetric, ...]
    slices: tuple[SliceMetric, ...]

    @property
    def worst(self) -> SliceMetric | None:
        return worst_slice(self.classes + self.slices)

    @property
    def applied(self) -> bool:
        return self.max_drop is not None and self.worst is not None

    @property
    def passed(self) -> bool:
        worst = self.worst
        if self.max_drop is None or worst is None or worst.drop is None:
            return True
        return worst.drop <= self.max_drop + GATE_EPSILON

    def message(self) -> str:
        worst = self.worst
        if not self.classes + self.slices:
            return "no classes or slices to measure"
        if worst is None or worst.before is None or worst.after is None or worst.drop is None:
            return f"no class or slice has {self.min_examples} examples or more: no slice judged"
        limit = None if self.max_drop is None else ("maxSliceAccuracyDrop", self.max_drop)
        change_text = describe_change(METRICS[self.metric], worst.before, worst.after, worst.drop, limit)
        return f"worst slice {worst.name} ({worst.examples} examples): {change_text}"


def gate_failure(gate: GateResult, slices: SliceGate | None) -> str | None:
    """The QualityGateFailed message, naming the worst slice when it failed; None when both gates pass."""
    if slices is not None and not slices.passed:
        return f"{slices.message()}; overall {gate.message()}"
    if not gate.passed:
        return gate.message()
    return None


def ends_in_sigmoid(model: Any) -> bool:
    """Whether a Keras model's last layer applies a sigmoid (its single output is a probability)."""
    layers = getattr(model, "layers", None) or []
    activation = getattr(layers[-1], "activation", None) if layers else None
    return getattr(activation, "__name__", "") == "sigmoid"


def scoring_for(metric: Metric, baseline_outputs: npt.NDArray[Any], *, sigmoid: bool, top_k: int) -> Scoring:
    """The per-model decisions (task, binary threshold, k); refuses a metric the model cannot be judged by."""
    width = output_width(baseline_outputs)
    threshold = decision_threshold(baseline_outputs, ends_in_sigmoid=sigmoid) if width == 1 else PROBABILITY_THRESHOLD
    require_applicable(metric, top_k, width)
    return Scoring(task=metric.task, threshold=threshold, top_k=top_k, single_output=width == 1)


def require_applicable(metric: Metric, top_k: int, outputs: int) -> None:
    """Refuse, before any work, a metric this model cannot be judged by (top-k, AUC)."""
    problem = applicable(metric, Scoring(task=metric.task, top_k=top_k), outputs)
    if problem is not None:
        raise OptimizeError(Failure.INVALID_ARGUMENTS, f"--metric {metric.name}: {problem}")


@dataclass(frozen=True)
class Judgement:
    """Everything the evaluation measured: the overall gate, the slices, every applicable metric."""

    scoring: Scoring
    gate: GateResult
    slices: SliceGate
    metrics: dict[str, tuple[float | None, float | None]]


def judge(
    metric: Metric,
    scoring: Scoring,
    labels: npt.NDArray[Any],
    before: npt.NDArray[Any],
    after: npt.NDArray[Any],
    *,
    slices: npt.NDArray[Any] | None,
    max_drop: float,
    max_slice_drop: float | None,
    min_slice_examples: int,
) -> Judgement:
    """Both gates and the report's metrics, from the two models' outputs on the evaluation data."""
    was = metric.compute(labels, before, scoring)
    now = metric.compute(labels, after, scoring)
    if was is None or now is None:
        raise OptimizeError(
            Failure.INVALID_DATASET, f"{metric.name} is undefined on the evaluation data (auc needs both classes in y)"
        )
    width = output_width(before)
    others = {
        name: (other.compute(labels, before, scoring), other.compute(labels, after, scoring))
        for name, other in METRICS.items()
        if other.task is scoring.task and applicable(other, scoring, width) is None
    }
    measured = measure_slices(metric, scoring, labels, before, after, slices, min_slice_examples)
    return Judgement(
        scoring=scoring,
        gate=check_gate(metric, was, now, max_drop),
        slices=SliceGate(
            metric=metric.name,
            max_drop=max_slice_drop,
            min_examples=min_slice_examples,
            classes=tuple(part for part in measured if part.kind == CLASS),
            slices=tuple(part for part in measured if part.kind != CLASS),
        ),
        metrics=others,
    )


def outputs_of(predictor: Predictor, x: npt.NDArray[Any], what: str) -> npt.NDArray[Any]:
    try:
        return predictor.predict(x)
    except (ValueError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise OptimizeError(Failure.INVALID_DATASET, f"evaluating the {what} model failed: {first[:300]}") from None
