"""Quality metrics the gate can use, by name; `accuracy` is the one wired to `--metric` today.

A metric takes the true labels and the model's raw outputs (class scores) and returns a number;
`higher_is_better` tells the gate which way a change is a loss. Adding a metric means adding one
entry to `METRICS`; the CLI's `--metric` choices and the gate's message follow from it. NumPy only,
and imported when a metric is computed: the CLI validates `--metric` without TensorFlow, and the
operator image (no optimizer extra, no NumPy) still registers the `optimize` subcommand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    compute: Callable[[npt.NDArray[Any], npt.NDArray[Any]], float]
    unit: str  # how a change is worded in messages: "points" = 100 x the fraction


def predicted_classes(outputs: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """Class indices from scores: argmax over classes, or a 0.5 threshold for one sigmoid unit."""
    import numpy as np

    scores = np.asarray(outputs)
    if scores.ndim == 1 or scores.shape[-1] == 1:
        classes: npt.NDArray[np.int64] = (scores.reshape(len(scores)) > 0.5).astype(np.int64)
    else:
        classes = np.argmax(scores.reshape(len(scores), -1), axis=-1).astype(np.int64)
    return classes


def accuracy(labels: npt.NDArray[Any], outputs: npt.NDArray[Any]) -> float:
    import numpy as np

    if len(labels) == 0:
        raise ValueError("accuracy of an empty set is undefined")
    return float(np.mean(predicted_classes(outputs) == np.asarray(labels).reshape(-1)))


METRICS: dict[str, Metric] = {
    "accuracy": Metric("accuracy", higher_is_better=True, compute=accuracy, unit="points"),
}
