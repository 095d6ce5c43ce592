"""Counts in, weights out: weighting schemes, statistics, the report, and (with TF) input and losses."""

from weighting.apply import WeightPlan
from weighting.schemes import SCHEMES, BoxMultipliers, ClassCounts, WeightingError, class_repeat_factors, class_weights
from weighting.stats import SplitStats

__all__ = [
    "SCHEMES",
    "BoxMultipliers",
    "ClassCounts",
    "SplitStats",
    "WeightPlan",
    "WeightingError",
    "class_repeat_factors",
    "class_weights",
]
