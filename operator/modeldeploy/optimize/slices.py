"""The metric per class and per slice of the evaluation data, and the worst slice the gate judges.

An average hides what quantization or pruning does to a minority: a model can keep its overall
accuracy within a point while one class or one group of inputs (a camera, a region, night images)
loses twenty. So the evaluation splits its examples two ways and measures the gate's metric on
each part, before and after optimization:
- per class (classification only): the examples whose true class is c, so accuracy there is the
  class's recall; AUC is undefined on one class and is not split by class;
- per value of the optional `slice` array of the eval .npz (integers or strings, one per example).

The worst slice is the one that lost most, among the slices with at least `min_examples` examples
(default 30: one changed prediction moves a slice of n examples by 1/n, so a 2-example slice
would fail any gate on noise) whose metric is defined before and after. The sliced gate
(`maxSliceAccuracyDrop`) compares its loss with the allowed drop. NumPy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from modeldeploy.optimize.accuracy import Metric, Scoring, Task, change

CLASS = "class"
SLICE = "slice"
# A slice column names groups, not examples: more distinct values than this is an id column.
MAX_SLICE_VALUES = 1000
MAX_VALUE_CHARS = 64  # a slice value longer than this is cut in names (status, messages)


@dataclass(frozen=True)
class SliceMetric:
    """The metric on one part of the evaluation data, before and after optimization."""

    kind: str  # CLASS or SLICE
    value: str
    examples: int
    before: float | None  # None where the metric is undefined on this part
    after: float | None
    drop: float | None  # in the metric's terms (see accuracy.change); positive = worse
    gated: bool  # judged by the sliced gate: defined, and at least min_examples examples

    @property
    def name(self) -> str:
        return f"{self.kind}={self.value}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "examples": self.examples,
            "before": _rounded(self.before),
            "after": _rounded(self.after),
            "drop": _rounded(self.drop),
            "gated": self.gated,
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def value_text(value: Any) -> str:
    """A slice value as text: integers as numbers, bytes decoded, long values cut."""
    if isinstance(value, bytes):
        text = value.decode("utf-8", errors="replace")
    elif isinstance(value, (bool, np.bool_)):
        text = "true" if value else "false"
    elif isinstance(value, (int, np.integer, float, np.floating)) and float(value).is_integer():
        text = str(int(value))
    else:
        text = str(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "..."


def slice_column_problem(slices: npt.NDArray[Any], examples: int) -> str | None:
    """What is wrong with a `slice` array (None when it is usable): shape, type, too many values."""
    if slices.ndim != 1:
        return f"slice must hold one value per example, got shape {slices.shape}"
    if len(slices) != examples:
        return f"x has {examples} examples but slice has {len(slices)} values"
    kind = slices.dtype.kind
    if kind == "f":
        if not np.all(np.isfinite(slices)) or np.any(slices != np.round(slices)):
            return "slice must hold integers or strings, got fractional numbers"
    elif kind not in "biuUS":
        return f"slice must hold integers or strings, got dtype {slices.dtype}"
    distinct = len(np.unique(slices))
    if distinct > MAX_SLICE_VALUES:
        return f"slice has {distinct} distinct values, at most {MAX_SLICE_VALUES} (a slice names groups of examples)"
    return None


def _parts(labels: npt.NDArray[Any], slices: npt.NDArray[Any] | None, metric: Metric) -> list[tuple[str, Any, Any]]:
    parts: list[tuple[str, Any, Any]] = []
    if metric.task is Task.CLASSIFICATION and metric.name != "auc":
        classes = np.asarray(labels).reshape(len(labels), -1)[:, 0].astype(np.int64)
        parts += [(CLASS, value, classes == value) for value in np.unique(classes)]
    if slices is not None:
        parts += [(SLICE, value, slices == value) for value in np.unique(slices)]
    return parts


def measure_slices(
    metric: Metric,
    scoring: Scoring,
    labels: npt.NDArray[Any],
    before: npt.NDArray[Any],
    after: npt.NDArray[Any],
    slices: npt.NDArray[Any] | None,
    min_examples: int,
) -> tuple[SliceMetric, ...]:
    """The metric on each class and each slice value, from the outputs of both models."""
    measured = []
    for kind, value, mask in _parts(labels, slices, metric):
        count = int(np.count_nonzero(mask))
        was = metric.compute(labels[mask], before[mask], scoring)
        now = metric.compute(labels[mask], after[mask], scoring)
        drop = change(metric, was, now) if was is not None and now is not None else None
        measured.append(
            SliceMetric(
                kind=kind,
                value=value_text(value),
                examples=count,
                before=was,
                after=now,
                drop=drop,
                gated=drop is not None and count >= min_examples,
            )
        )
    return tuple(measured)


def worst_slice(measured: tuple[SliceMetric, ...]) -> SliceMetric | None:
    """The gated slice that lost most (the first of equals: classes before slice values); None if none is gated."""
    gated = [part for part in measured if part.gated and part.drop is not None]
    return max(gated, key=lambda part: part.drop if part.drop is not None else float("-inf")) if gated else None
