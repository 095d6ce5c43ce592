"""From statistics to per-box weights: the plan the job attaches to every record."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from schemas.annotations import ImageRecord
from weighting.schemes import (
    DEFAULT_NORMALIZE,
    BoxMultipliers,
    class_repeat_factors,
    class_weights,
    image_repeat_factor,
)
from weighting.stats import SplitStats


@dataclasses.dataclass(frozen=True)
class WeightPlan:
    """Class weights, class repeat factors and box multipliers, computed once from train statistics."""

    scheme: str
    class_weights: Mapping[str, float]
    repeat_factors: Mapping[str, float]
    multipliers: BoxMultipliers = BoxMultipliers()
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_stats(
        cls,
        stats: SplitStats,
        class_names: tuple[str, ...],
        scheme: str,
        *,
        normalize: str = DEFAULT_NORMALIZE,
        max_weight: float | None = None,
        repeat_threshold: float = 0.001,
        multipliers: BoxMultipliers | None = None,
        **params: Any,
    ) -> WeightPlan:
        """Plan for every class of the label map (classes absent from ``stats`` count 0).

        Raises:
            WeightingError: bad scheme, parameters or normalization.
        """
        counts = SplitStats(
            images=stats.images,
            class_boxes={n: stats.class_boxes.get(n, 0) for n in class_names},  # type: ignore[arg-type]
            class_images={n: stats.class_images.get(n, 0) for n in class_names},  # type: ignore[arg-type]
            boxes_in_images_with={n: stats.boxes_in_images_with.get(n, 0) for n in class_names},  # type: ignore[arg-type]
        )
        weights = class_weights(counts, scheme, normalize=normalize, max_weight=max_weight, **params)
        factors = class_repeat_factors(counts, repeat_threshold)
        return cls(
            scheme=scheme,
            class_weights=weights,
            repeat_factors=factors,
            multipliers=multipliers or BoxMultipliers(),
            params={"normalize": normalize, "max_weight": max_weight, "repeat_threshold": repeat_threshold, **params},
        )

    def apply(self, record: ImageRecord) -> ImageRecord:
        """The record with each box's weight and the image's repeat factor set."""
        weights, factor_of = self.class_weights, self.multipliers.factor
        boxes = tuple(
            box.with_weight(
                weights.get(box.text, 1.0) * factor_of(difficult=box.difficult, is_crowd=box.is_crowd, truncated=box.truncated)
            )
            for box in record.boxes
        )
        factor = image_repeat_factor({b.text for b in record.boxes}, self.repeat_factors)
        return record.replace(boxes=boxes, repeat_factor=factor)
