"""Quality metrics the gate can use, by name, and the decisions they depend on.

A metric takes the true labels, the model's raw outputs and the `Scoring` decided once per model,
and returns a number (None where it is undefined, e.g. AUC of a set holding one class only);
`higher_is_better` tells the gate which way a change is a loss. Adding a metric means adding one
entry to `METRICS`; the CLI's `--metric` choices, the API's enum (a unit test compares them) and
the gate's message follow from it.

Classification or regression (`decide_task`) follows from y and the model's output width:
- y with one value per example, integral, and a model with C > 1 outputs: class indices 0..C-1;
- a model with one output: y holding only 0 and 1 reads as binary labels (unless the metric is
  mse or mae, which then reads them as targets); any other y is a regression target;
- y with C > 1 values per example and a model with C outputs: C regression targets.
Each metric belongs to one task; a metric that does not fit the data is refused by name.

A single-output binary model emits a probability (a sigmoid unit) or a logit (a linear unit,
trained with `from_logits=True`). Thresholding a logit at 0.5 miscounts every example whose logit
lies in (0, 0.5), so the threshold is decided per model (`decision_threshold`): 0.5 when the model
ends in a sigmoid or every output of the original model on the evaluation data lies in [0, 1],
else 0 (a logit's sign). The same threshold then judges the original and the optimized model.

NumPy only, and imported when a metric is computed: the CLI validates `--metric` without
TensorFlow, and the operator image (no optimizer extra, no NumPy) still registers the `optimize`
subcommand.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

PROBABILITY_THRESHOLD = 0.5
LOGIT_THRESHOLD = 0.0
DEFAULT_TOP_K = 5


class Task(enum.StrEnum):
    CLASSIFICATION = "classification"
    REGRESSION = "regression"


@dataclass(frozen=True)
class Scoring:
    """What is decided once per model and applied alike to the original and the optimized model."""

    task: Task
    threshold: float = PROBABILITY_THRESHOLD  # a single binary output: 0.5 (probability) or 0 (logit)
    top_k: int = DEFAULT_TOP_K
    single_output: bool = False  # the threshold was decided (one output); argmax otherwise


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    compute: Callable[[npt.NDArray[Any], npt.NDArray[Any], Scoring], float | None]
    # How a change is worded: "points" = 100 x an absolute fraction, "%" = 100 x a relative change.
    unit: str
    task: Task
    # Error metrics (mse, mae) have no natural scale: their loss is judged relative to the
    # original's value, so maxAccuracyDrop 0.01 means "at most 1 % worse".
    relative: bool = False


def predicted_classes(outputs: npt.NDArray[Any], threshold: float = PROBABILITY_THRESHOLD) -> npt.NDArray[np.int64]:
    """Class indices from scores: argmax over classes, or `threshold` for one binary output."""
    import numpy as np

    scores = np.asarray(outputs)
    if scores.ndim == 1 or scores.shape[-1] == 1:
        classes: npt.NDArray[np.int64] = (scores.reshape(len(scores)) > threshold).astype(np.int64)
    else:
        classes = np.argmax(scores.reshape(len(scores), -1), axis=-1).astype(np.int64)
    return classes


def decision_threshold(outputs: npt.NDArray[Any], *, ends_in_sigmoid: bool = False) -> float:
    """0.5 for a probability (a sigmoid unit, or every finite output in [0, 1]), else 0 (a logit)."""
    import numpy as np

    if ends_in_sigmoid:
        return PROBABILITY_THRESHOLD
    values = np.asarray(outputs, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size and float(finite.min()) >= 0.0 and float(finite.max()) <= 1.0:
        return PROBABILITY_THRESHOLD
    return LOGIT_THRESHOLD


def output_width(outputs: npt.NDArray[Any]) -> int:
    import numpy as np

    shape = np.asarray(outputs).shape
    return 1 if len(shape) <= 1 else int(np.prod(shape[1:]))


def decide_task(y: npt.NDArray[Any], outputs: int, prefer: Task) -> Task:
    """Classification or regression from y's shape and values and the model's output width.

    `prefer` (the metric's task) settles the one ambiguous case: one output and y of 0s and 1s.
    Raises ValueError with the problem when y fits neither reading.
    """
    import numpy as np

    labels = np.asarray(y)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels.reshape(-1)
    if labels.ndim == 2:
        if labels.shape[1] == outputs:
            return Task.REGRESSION
        raise ValueError(f"y has {labels.shape[1]} values per example, the model has {outputs} outputs")
    if labels.ndim != 1:
        raise ValueError(f"y must hold one label or target per example, got shape {labels.shape}")
    integral = bool(np.all(labels == np.round(labels)))
    if outputs == 1:
        if integral and bool(np.all((labels == 0) | (labels == 1))):
            return prefer
        return Task.REGRESSION
    if not integral:
        raise ValueError(f"y must hold integer class indices for the model's {outputs} outputs")
    if bool(np.any(labels < 0)):
        raise ValueError("y holds negative class indices")
    top = int(labels.max())
    if top >= outputs:
        raise ValueError(f"label {top} is out of range: the model has {outputs} output classes")
    return Task.CLASSIFICATION


def _labels(labels: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Class labels as one value per example; refuses an empty set."""
    import numpy as np

    if len(labels) == 0:
        raise ValueError("a metric of an empty set is undefined")
    return np.asarray(labels).reshape(len(labels), -1)[:, 0]


def accuracy(labels: npt.NDArray[Any], outputs: npt.NDArray[Any], scoring: Scoring) -> float | None:
    import numpy as np

    truth = _labels(labels)
    return float(np.mean(predicted_classes(outputs, scoring.threshold) == truth.astype(np.int64)))


def top_k_accuracy(labels: npt.NDArray[Any], outputs: npt.NDArray[Any], scoring: Scoring) -> float | None:
    """The true class is among the k highest scores (ties count in the true class's favour)."""
    import numpy as np

    truth = _labels(labels).astype(np.int64)
    scores = np.asarray(outputs, dtype=np.float64).reshape(len(truth), -1)
    true_scores = scores[np.arange(len(truth)), truth]
    higher = np.sum(scores > true_scores[:, None], axis=1)
    return float(np.mean(higher < scoring.top_k))


def binary_scores(outputs: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """One score per example, larger = more likely class 1: the single output, or class 1 minus class 0."""
    import numpy as np

    scores = np.asarray(outputs, dtype=np.float64).reshape(len(outputs), -1)
    if scores.shape[1] == 1:
        single: npt.NDArray[np.float64] = scores[:, 0]
        return single
    difference: npt.NDArray[np.float64] = scores[:, 1] - scores[:, 0]  # monotonic for logits and softmax alike
    return difference


def auc(labels: npt.NDArray[Any], outputs: npt.NDArray[Any], scoring: Scoring) -> float | None:
    """Area under the ROC curve (Mann-Whitney, tied scores share their rank); None without both classes."""
    import numpy as np

    truth = _labels(labels).astype(np.int64)
    scores = binary_scores(outputs)
    positives = int(np.sum(truth == 1))
    negatives = len(truth) - positives
    if positives == 0 or negatives == 0:
        return None
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    average_rank = ends - (counts - 1) / 2.0  # 1-based average rank of each distinct score
    ranks = average_rank[inverse]
    u = float(np.sum(ranks[truth == 1])) - positives * (positives + 1) / 2.0
    return u / (positives * negatives)


def _errors(labels: npt.NDArray[Any], outputs: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    import numpy as np

    truth = np.asarray(labels, dtype=np.float64).reshape(len(labels), -1)
    predicted = np.asarray(outputs, dtype=np.float64).reshape(len(labels), -1)
    difference: npt.NDArray[np.float64] = predicted - truth
    return difference


def mse(labels: npt.NDArray[Any], outputs: npt.NDArray[Any], scoring: Scoring) -> float | None:
    import numpy as np

    _labels(labels)
    return float(np.mean(np.square(_errors(labels, outputs))))


def mae(labels: npt.NDArray[Any], outputs: npt.NDArray[Any], scoring: Scoring) -> float | None:
    import numpy as np

    _labels(labels)
    return float(np.mean(np.abs(_errors(labels, outputs))))


METRICS: dict[str, Metric] = {
    "accuracy": Metric("accuracy", higher_is_better=True, compute=accuracy, unit="points", task=Task.CLASSIFICATION),
    "topKAccuracy": Metric(
        "topKAccuracy", higher_is_better=True, compute=top_k_accuracy, unit="points", task=Task.CLASSIFICATION
    ),
    "auc": Metric("auc", higher_is_better=True, compute=auc, unit="points", task=Task.CLASSIFICATION),
    "mse": Metric("mse", higher_is_better=False, compute=mse, unit="%", task=Task.REGRESSION, relative=True),
    "mae": Metric("mae", higher_is_better=False, compute=mae, unit="%", task=Task.REGRESSION, relative=True),
}


def applicable(metric: Metric, scoring: Scoring, outputs: int) -> str | None:
    """Why `metric` cannot judge this model (None when it can): top-k needs more than k classes, AUC two."""
    if metric.name == "topKAccuracy" and outputs <= scoring.top_k:
        return (
            f"topKAccuracy with topK {scoring.top_k} needs a model with more than {scoring.top_k} classes, "
            f"the model has {outputs}"
        )
    if metric.name == "auc" and outputs > 2:
        return f"auc needs a binary model (one output, or two classes), the model has {outputs} classes"
    return None


def change(metric: Metric, before: float, after: float) -> float:
    """The loss from before to after in the metric's terms: positive = worse."""
    loss = before - after if metric.higher_is_better else after - before
    if metric.relative:
        return loss / max(abs(before), 1e-12)
    return loss
