"""Counts in, weights out: the weighting math (schemes, statistics, weight plans); the report and (with TF) training live in subpackages.

``from weighting import create_input_fn`` and the losses work too, imported
on first use: code that only computes weights never loads TensorFlow or Keras.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from weighting.apply import WeightPlan
from weighting.schemes import SCHEMES, BoxMultipliers, ClassCounts, WeightingError, class_repeat_factors, class_weights
from weighting.stats import SplitStats

if TYPE_CHECKING:
    from storage.job_output import JobOutput
    from weighting.training.input_fn import Augment, ReweightSpec, create_input_fn
    from weighting.training.losses import (
        WeightedBinaryCrossEntropy,
        WeightedGIoU,
        WeightedSigmoidFocalLoss,
        WeightedSmoothL1,
        WeightedSoftmaxCrossEntropy,
        equalization_weights,
        normalize_by_positives,
        seesaw_weights,
    )

_LAZY = {
    "create_input_fn": "weighting.training.input_fn",
    "ReweightSpec": "weighting.training.input_fn",
    "Augment": "weighting.training.input_fn",
    "JobOutput": "storage.job_output",
    "WeightedSigmoidFocalLoss": "weighting.training.losses",
    "WeightedBinaryCrossEntropy": "weighting.training.losses",
    "WeightedSoftmaxCrossEntropy": "weighting.training.losses",
    "WeightedSmoothL1": "weighting.training.losses",
    "WeightedGIoU": "weighting.training.losses",
    "equalization_weights": "weighting.training.losses",
    "normalize_by_positives": "weighting.training.losses",
    "seesaw_weights": "weighting.training.losses",
}


def __getattr__(name: str) -> Any:  # PEP 562: TensorFlow and Keras load when these are first used
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'weighting' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "SCHEMES",
    "Augment",
    "BoxMultipliers",
    "ClassCounts",
    "JobOutput",
    "ReweightSpec",
    "SplitStats",
    "WeightPlan",
    "WeightedBinaryCrossEntropy",
    "WeightedGIoU",
    "WeightedSigmoidFocalLoss",
    "WeightedSmoothL1",
    "WeightedSoftmaxCrossEntropy",
    "WeightingError",
    "class_repeat_factors",
    "class_weights",
    "create_input_fn",
    "equalization_weights",
    "normalize_by_positives",
    "seesaw_weights",
]
