"""Does the converted model compute what the original does? Checked before anything is published.

Conversion can fail silently. A SavedModel written by `tf.saved_model.save(keras_model)` once
converted to a model.tflite whose variables were never initialised: NaN for every input, yet the
run published it as "300x smaller". And a quantized model is only ever close to the original. So
after conversion and quantization the pipeline runs the candidate (what would be published:
model.tflite, else the SavedModel) and the original (the source model in its own runtime, after
pruning: the Keras model in memory, run just before conversion so that its weights are freed
for the converter, or the source SavedModel's `serving_default`) on the same
inputs: up to CHECK_EXAMPLES examples of the eval data, else of the train data, else generated
inputs of the model's input shape and dtype. Pruning is a deliberate change that the quality gate
judges; this check judges the change of format only, and needs no labels.

The rule, on the examples whose original outputs are finite (there must be at least one):
1. finite: the candidate outputs no NaN or Inf;
2. close: an example's error is max |candidate - original| over its outputs / max |original| over
   all examples, its largest difference as a fraction of the original's output range (so logits
   and probabilities are judged alike); it is at most the mode's `max_relative_error` on at least
   `min_top_class_agreement` of the examples (the largest error is reported as well);
3. same decision: the top class (argmax; for a single output 0.5 when the original's outputs lie
   in [0, 1], else the sign of the logit, as the accuracy metric reads it) is the same on at least
   `min_top_class_agreement` of the examples.

Rule 2 spares the same share of examples as rule 3 because a changed decision on a softmax output
is a large difference by construction: the probability moves from one class to another. When the
rule took the largest error over all examples, one example the original was unsure of (0.84 for
one class, 0.12 for another; 0.05 and 0.94 after int8) refused a MobileNetV2 whose int8 model
picks the original's class on 95 % of the eval data and loses 0.28 points of accuracy (one image of
360): "differs by up to 0.82 of the output range", while rule 3 allows 10 % of decisions to change.
Its quantization was not at fault: every layer's RMS error is at most 0.33 of one int8 step
(median 0.25; 0.29 is a uniform quantizer's rounding error), and the agreement is the same
(0.94-0.96) with 50, 200 or all 720 calibration images or with the eval data itself. The changed
decisions are on examples whose top class the float model gives 0.29-0.93: the uncertain ones of
a briefly trained network.

| mode    | max relative error | min top-class agreement | measured on the reference models (MLP, CNN)          |
| ------- | -----------------: | ----------------------: | ---------------------------------------------------- |
| none    | 0.001              | 0.99                    | error 0 (our SavedModel export is exact), agreement 1 |
| float16 | 0.01               | 0.98                    | error <= 0.0008, agreement 1                         |
| dynamic | 0.10               | 0.95                    | error <= 0.020, agreement >= 0.997 (0.99 generated)  |
| int8    | 0.25               | 0.90                    | error <= 0.035 (0.055 gen.), agr. >= 0.997 (0.965 gen.) |

MobileNetV2 (alpha 0.35, 96x96x3, briefly trained) in int8 on its 360 eval images: 93.6 % of the
examples within 0.25 (the 90th percentile error is 0.18, the median 0.004, the largest 0.82),
agreement 95.0 %; on the MLP and CNN every example is within 0.05.

Measured with and without 80 % pruning, on eval, train and generated inputs; generated inputs are
out of distribution and give the largest errors (int8 always has real data: its calibration set).
The int8 bound is loose on purpose: int8 error grows with the activation range and calibration sees
a sample only; lost accuracy is the quality gate's business. What this check must catch is a
broken conversion: NaN, a constant, or another function altogether disagree on most examples and
differ by a large part of the range. A failure is ConversionMismatch with a one-line message
naming the check and the measured value. NumPy only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from modeldeploy.contract.formats import Quantization
from modeldeploy.optimize.accuracy import decision_threshold, predicted_classes

CHECK_EXAMPLES = 500  # enough for agreement to be a fraction, cheap next to conversion


@dataclass(frozen=True)
class Tolerance:
    max_relative_error: float
    min_top_class_agreement: float


TOLERANCES: Mapping[Quantization, Tolerance] = {
    Quantization.NONE: Tolerance(max_relative_error=0.001, min_top_class_agreement=0.99),
    Quantization.FLOAT16: Tolerance(max_relative_error=0.01, min_top_class_agreement=0.98),
    Quantization.DYNAMIC: Tolerance(max_relative_error=0.10, min_top_class_agreement=0.95),
    Quantization.INT8: Tolerance(max_relative_error=0.25, min_top_class_agreement=0.90),
}


@dataclass(frozen=True)
class FidelityCheck:
    """The comparison of the candidate with the original on one set of inputs."""

    mode: Quantization
    artifact: str  # what was compared: "model.tflite" or "SavedModel"
    data: str  # which inputs: "eval-data", "train-data" or "synthetic"
    inputs: int  # examples run through both models
    examples: int  # of those, the ones whose original outputs are finite: the ones compared
    non_finite: int  # compared examples with NaN or Inf in the candidate's outputs
    max_relative_error: float | None  # the largest example error; None when no example had finite outputs on both sides
    within_tolerance: float | None  # the share of examples whose error is at most the tolerance
    top_class_agreement: float | None
    tolerance: Tolerance

    @property
    def failed_check(self) -> str | None:
        """Why the candidate is refused, in one line with the measured value; None when it passes."""
        what = f"{self.artifact} ({self.mode.value})"
        on = f"{self.data} examples"
        if self.examples == 0:
            return (
                f"the original model outputs NaN or Inf for all {self.inputs} {on}: {what} cannot be checked against it"
            )
        if self.non_finite:
            return f"{what} outputs NaN or Inf for {self.non_finite} of {self.examples} {on}"
        within, limit = self.within_tolerance, self.tolerance.max_relative_error
        least = self.tolerance.min_top_class_agreement
        if within is not None and within < least:
            return (
                f"{what} differs from the original by more than {limit:g} of the original's output range "
                f"on {1.0 - within:.1%} of {self.examples} {on} (up to {self.max_relative_error or 0.0:.3g}; "
                f"at most {1.0 - least:.0%} allowed for {self.mode.value})"
            )
        agreement = self.top_class_agreement
        if agreement is not None and agreement < least:
            return (
                f"{what} picks the original's top class for {agreement:.1%} of {self.examples} {on} "
                f"(at least {least:.0%} needed for {self.mode.value})"
            )
        return None

    @property
    def passed(self) -> bool:
        return self.failed_check is None

    def message(self) -> str:
        failed = self.failed_check
        if failed is not None:
            return failed
        return (
            f"{self.artifact} ({self.mode.value}) matches the original on {self.examples} {self.data} examples: "
            f"{self.within_tolerance or 0.0:.1%} within {self.tolerance.max_relative_error:g} of the output range "
            f"(largest difference {self.max_relative_error or 0.0:.3g}), "
            f"top class agrees on {self.top_class_agreement or 0.0:.1%}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "mode": self.mode.value,
            "artifact": self.artifact,
            "data": self.data,
            "examples": self.examples,
            "nonFinite": self.non_finite,
            "maxRelativeError": None if self.max_relative_error is None else round(self.max_relative_error, 6),
            "withinTolerance": None if self.within_tolerance is None else round(self.within_tolerance, 6),
            "topClassAgreement": None if self.top_class_agreement is None else round(self.top_class_agreement, 6),
            "tolerance": {
                "maxRelativeError": self.tolerance.max_relative_error,
                "minTopClassAgreement": self.tolerance.min_top_class_agreement,
            },
            "message": self.message(),
        }


def _rows(outputs: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    array = np.asarray(outputs, dtype=np.float64)
    return array.reshape(len(array), -1)


def compare_outputs(
    original: npt.NDArray[Any], candidate: npt.NDArray[Any], mode: Quantization, *, artifact: str, data: str
) -> FidelityCheck:
    """Apply the module's rule to both models' outputs for the same inputs (one row per example)."""
    before, after = _rows(original), _rows(candidate)
    if before.shape != after.shape:
        # A converter that changed the output's shape computes something else; no tolerance applies.
        raise ValueError(f"{artifact} outputs shape {candidate.shape}, the original {original.shape}")
    comparable = np.all(np.isfinite(before), axis=1)  # the original's own NaN are not the conversion's fault
    before, after = before[comparable], after[comparable]
    finite = np.all(np.isfinite(after), axis=1)
    error: float | None = None
    within: float | None = None
    agreement: float | None = None
    if np.any(finite):
        both_before, both_after = before[finite], after[finite]
        scale = max(float(np.abs(both_before).max()), 1e-12)  # all-zero outputs: any difference is total
        errors = np.abs(both_after - both_before).max(axis=1) / scale
        error = float(errors.max())
        within = float(np.mean(errors <= TOLERANCES[mode].max_relative_error))
        threshold = decision_threshold(both_before)  # a single logit's class is its sign, as the gate reads it
        agreement = float(
            np.mean(predicted_classes(both_before, threshold) == predicted_classes(both_after, threshold))
        )
    return FidelityCheck(
        mode=mode,
        artifact=artifact,
        data=data,
        inputs=len(comparable),
        examples=int(comparable.sum()),
        non_finite=int((~finite).sum()),
        max_relative_error=error,
        within_tolerance=within,
        top_class_agreement=agreement,
        tolerance=TOLERANCES[mode],
    )
