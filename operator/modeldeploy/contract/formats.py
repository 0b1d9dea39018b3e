"""The model formats and quantization modes: the ModelDeployment's enums and the Job's flags.

The CRD's enum values come from here (through the API types) and `modeldeploy optimize` parses
its --format and --quantization flags with the same types, so the operator can never ask the Job
for a mode it does not know.
"""

from __future__ import annotations

from enum import StrEnum


class ModelFormat(StrEnum):
    """How the source model is stored."""

    KERAS = "keras"
    H5 = "h5"
    SAVEDMODEL = "savedmodel"


class Quantization(StrEnum):
    """Post-training quantization of the published TFLite model."""

    NONE = "none"
    DYNAMIC = "dynamic"
    FLOAT16 = "float16"
    INT8 = "int8"


class PruningSchedule(StrEnum):
    """How pruning reaches its target sparsity.

    PolynomialDecay ramps the sparsity up during fine-tuning (TF-MOT's schedule); OneShot prunes to
    the target at once, before any fine-tuning.
    """

    POLYNOMIAL_DECAY = "PolynomialDecay"
    ONE_SHOT = "OneShot"
