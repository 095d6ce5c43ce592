"""Class weighting schemes: class counts in, per-class box weights out.

Every scheme is a pure function registered in :data:`SCHEMES`; an unknown
name is refused with the list of known ones. :func:`class_weights` applies the
scheme, then a normalization mode and an optional cap. Classes with zero boxes
never produce inf or NaN: they take the largest weight of the classes that do
have boxes (an unseen class is treated as at least as rare as the rarest).
"""

from __future__ import annotations

import dataclasses
import json
import math
import reprlib
import statistics
from collections.abc import Callable, Mapping
from typing import Any

from weighting.stats import SplitStats


class WeightingError(ValueError):
    """A scheme name, parameter or manual mapping that cannot be used."""


@dataclasses.dataclass(frozen=True)
class ClassCounts:
    """What the schemes read. ``boxes`` is required; the rest only by some schemes."""

    boxes: Mapping[str, int]
    images_with: Mapping[str, int] | None = None
    num_images: int | None = None
    boxes_in_images_with: Mapping[str, int] | None = None

    @classmethod
    def of(cls, counts: ClassCounts | SplitStats | Mapping[str, int]) -> ClassCounts:
        if isinstance(counts, ClassCounts):
            return counts
        if isinstance(counts, SplitStats):
            return cls(
                boxes=dict(counts.class_boxes),
                images_with=dict(counts.class_images),
                num_images=counts.images,
                boxes_in_images_with=dict(counts.boxes_in_images_with),
            )
        return cls(boxes=dict(counts))

    def require(self, field: str, scheme: str) -> Any:
        value = getattr(self, field)
        if value is None:
            raise WeightingError(
                f"scheme {scheme!r} needs {field}; pass ClassCounts or SplitStats, not box counts only"
            )
        return value


def _none(c: ClassCounts) -> dict[str, float]:
    return {k: 1.0 for k in c.boxes}


def _inverse(c: ClassCounts) -> dict[str, float]:
    """w_c = 1 / n_c."""
    return {k: 1.0 / n for k, n in c.boxes.items() if n > 0}


def _inverse_sqrt(c: ClassCounts) -> dict[str, float]:
    """w_c = 1 / sqrt(n_c)."""
    return {k: 1.0 / math.sqrt(n) for k, n in c.boxes.items() if n > 0}


def _balanced(c: ClassCounts) -> dict[str, float]:
    """scikit-learn ``compute_class_weight('balanced')``: w_c = N / (K * n_c).

    N is the number of boxes, K the number of classes with boxes. These
    weights already have mean 1 over boxes.
    """
    present = {k: n for k, n in c.boxes.items() if n > 0}
    total, k = sum(present.values()), len(present)
    return {name: total / (k * n) for name, n in present.items()}


def _effective_number(c: ClassCounts, beta: float = 0.999) -> dict[str, float]:
    """Cui et al., "Class-Balanced Loss Based on Effective Number of Samples", CVPR 2019.

    E_c = (1 - beta^n_c) / (1 - beta); w_c = 1 / E_c = (1 - beta) / (1 - beta^n_c),
    then scaled so the weights sum to the number of classes K (the paper's
    normalization, eq. 4 and its implementation).
    """
    if not 0.0 < beta < 1.0:
        raise WeightingError(f"effective_number: beta={beta!r} must be in (0, 1), e.g. 0.9 ... 0.9999")
    raw = {k: (1.0 - beta) / (1.0 - beta**n) for k, n in c.boxes.items() if n > 0}
    scale = len(raw) / sum(raw.values()) if raw else 1.0
    return {k: w * scale for k, w in raw.items()}


def _median_frequency(c: ClassCounts) -> dict[str, float]:
    """Eigen and Fergus, ICCV 2015, median frequency balancing adapted to boxes.

    freq(c) = boxes of c / all boxes in the images that contain c;
    w_c = median over classes of freq / freq(c).
    """
    denom = c.require("boxes_in_images_with", "median_frequency")
    freq = {k: n / denom[k] for k, n in c.boxes.items() if n > 0 and denom.get(k)}
    if not freq:
        return {}
    median = statistics.median(freq.values())
    return {k: median / f for k, f in freq.items()}


def _repeat_factor(c: ClassCounts, threshold: float = 0.001) -> dict[str, float]:
    """LVIS (Gupta et al., CVPR 2019) class repeat factor used as a box weight.

    f(c) = images containing c / images; r(c) = max(1, sqrt(t / f(c))).
    """
    return class_repeat_factors(c, threshold)


SCHEMES: dict[str, Callable[..., dict[str, float]]] = {
    "none": _none,
    "inverse": _inverse,
    "inverse_sqrt": _inverse_sqrt,
    "balanced": _balanced,
    "effective_number": _effective_number,
    "median_frequency": _median_frequency,
    "repeat_factor": _repeat_factor,
    "manual": lambda c, weights: _manual(c, weights),
}

NORMALIZATIONS = ("boxes", "classes", "min", "max", "none")
DEFAULT_NORMALIZE = "min"  # the one default of the library, the command line and the trainer
DEFAULT_SCHEME = "inverse_sqrt"  # boxweight prepare's scheme (the experiment's default recipe, bench/weighting_experiment.py)


def class_repeat_factors(
    counts: ClassCounts | SplitStats | Mapping[str, int], threshold: float = 0.001
) -> dict[str, float]:
    """LVIS class repeat factors r(c) = max(1, sqrt(t / f(c))), f(c) = share of images with c.

    Args:
        counts: must carry ``images_with`` and ``num_images``.
        threshold: t; classes in fewer than a fraction t of images are repeated.

    Raises:
        WeightingError: t not positive, or counts without image counts.
    """
    if not threshold > 0:
        raise WeightingError(f"repeat_factor: threshold={threshold!r} must be > 0")
    c = ClassCounts.of(counts)
    images_with = c.require("images_with", "repeat_factor")
    num_images = c.require("num_images", "repeat_factor")
    if num_images <= 0:
        return {k: 1.0 for k in c.boxes}
    return {
        k: max(1.0, math.sqrt(threshold / (images_with[k] / num_images))) if images_with.get(k) else 1.0
        for k in c.boxes
    }


def image_repeat_factor(class_names: set[str] | frozenset[str], factors: Mapping[str, float]) -> float:
    """r(I) = max over the classes in the image of r(c); 1 for an image without boxes."""
    return max((factors.get(name, 1.0) for name in class_names), default=1.0)


def tail_classes(counts: ClassCounts | SplitStats, threshold: float) -> dict[str, bool]:
    """The tail of the equalization loss (Tan et al., CVPR 2020): classes whose image frequency is below ``threshold``.

    A class's frequency f_j is the share of images that contain it; it is in
    the tail when f_j < threshold (the paper's lambda). See
    :func:`weighting.training.losses.equalization_weights`.
    """
    if not 0 <= threshold <= 1:
        raise WeightingError(f"equalization threshold {threshold!r} must be in [0, 1]")
    c = ClassCounts.of(counts)
    total = c.require("num_images", "equalization loss")
    images = c.require("images_with", "equalization loss")
    return {name: (images.get(name, 0) / total if total else 0.0) < threshold for name in c.boxes}


def load_manual_weights(path: str) -> dict[str, float]:
    """Read a manual class -> weight mapping from a JSON or YAML file (``readers.yaml_doc``: aliases bounded)."""
    from readers import yaml_doc
    from storage import fs

    raw = fs.read_bytes(path)
    try:
        text = raw.decode("utf-8")
        data = json.loads(text) if path.endswith(".json") else yaml_doc.load(text)
    except UnicodeDecodeError as exc:
        raise WeightingError(f"{path}: not UTF-8 text (byte {exc.start}: {raw[exc.start:exc.start + 1]!r})") from None
    except RecursionError:
        raise WeightingError(f"{path}: cannot parse manual weights: nested too deep to read") from None
    except ValueError as exc:  # JSON errors and yaml_doc.YamlDocError
        raise WeightingError(f"{path}: cannot parse manual weights: {exc}") from None
    if not isinstance(data, dict):
        raise WeightingError(f"{path}: manual weights must be a mapping of class name to weight")
    return {str(k): v for k, v in data.items()}


def _manual(c: ClassCounts, weights: Mapping[str, Any] | str) -> dict[str, float]:
    """Weights given by the user (a mapping, or a JSON/YAML file path).

    Classes not listed get 1.0; names that are not classes of the dataset are
    refused, since a typo would otherwise silently leave a class at 1.0.
    """
    if isinstance(weights, str):
        weights = load_manual_weights(weights)
    unknown = sorted(set(weights) - set(c.boxes))
    if unknown:
        raise WeightingError(f"manual weights name unknown classes {unknown}; known: {sorted(c.boxes)}")
    out = {}
    for name in c.boxes:
        value = weights.get(name, 1.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            # reprlib: a value built by YAML aliases can be a structure too large to print whole
            raise WeightingError(f"manual weight for {name!r} is {reprlib.repr(value)}; need a finite number >= 0")
        out[name] = float(value)
    return out


def class_weights(
    counts: ClassCounts | SplitStats | Mapping[str, int],
    scheme: str,
    *,
    normalize: str = DEFAULT_NORMALIZE,
    max_weight: float | None = None,
    **params: Any,
) -> dict[str, float]:
    """Per-class box weights for a scheme.

    Args:
        counts: box counts per class name, or :class:`ClassCounts` /
            :class:`~weighting.stats.SplitStats` for schemes that also read
            image counts (``median_frequency``, ``repeat_factor``).
        scheme: one of :data:`SCHEMES`.
        normalize: ``min`` (default, as on the command line): smallest weight 1,
            so no class goes below the weight 1 that background keeps in most
            trainers (the most frequent class gets 1, rarer classes more);
            ``boxes``: sum_c n_c w_c / sum_c n_c = 1, so the loss keeps its
            scale; ``classes``: mean 1 over classes with boxes; ``max``: largest weight 1, all in
            [0, 1] (the TF OD API documents weights in [0, 1]; frequent
            classes then weigh less than background); ``none``: the
            scheme's own values.
        max_weight: cap applied last, after normalization.
        **params: scheme parameters (``beta``, ``threshold``, ``weights``).

    Returns:
        class name -> finite weight >= 0, for every class in ``counts``.

    Raises:
        WeightingError: unknown scheme, normalization or parameter.
    """
    if scheme not in SCHEMES:
        raise WeightingError(f"unknown weighting scheme {scheme!r}; known: {', '.join(SCHEMES)}")
    if normalize not in NORMALIZATIONS:
        raise WeightingError(f"unknown normalization {normalize!r}; known: {', '.join(NORMALIZATIONS)}")
    if max_weight is not None and not max_weight > 0:
        raise WeightingError(f"max_weight={max_weight!r} must be > 0")
    c = ClassCounts.of(counts)
    for name, n in c.boxes.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise WeightingError(f"box count for class {name!r} is {n!r}; need an integer >= 0")
    try:
        raw = SCHEMES[scheme](c, **params)
    except TypeError as exc:
        raise WeightingError(f"scheme {scheme!r}: bad parameters {sorted(params)}: {exc}") from exc
    weights = _normalize(raw, c.boxes, normalize)
    fill = max(weights.values(), default=1.0)
    out = {name: weights.get(name, fill) for name in c.boxes}
    if max_weight is not None:
        out = {k: min(w, max_weight) for k, w in out.items()}
    return _representable(out, c.boxes)


FLOAT32_MAX = 3.4028234663852886e38  # records store weights as float32
FLOAT32_TINY = 1.1754943508222875e-38  # its smallest normal value


def _representable(weights: dict[str, float], boxes: Mapping[str, int]) -> dict[str, float]:
    """The weights, if a record can hold them and they leave some box a weight; else the one line why."""
    for name, w in weights.items():
        if not (math.isfinite(w) and abs(w) <= FLOAT32_MAX):
            raise WeightingError(f"the weight of class {name!r} comes out as {w!r}, beyond float32 (the records' type)")
        if 0 < abs(w) < FLOAT32_TINY:
            raise WeightingError(f"the weight of class {name!r} comes out as {w!r}, which float32 (the records' type) stores as 0")
    if any(n > 0 for n in boxes.values()) and not any(w > 0 for k, w in weights.items() if boxes.get(k, 0) > 0):
        raise WeightingError("every class with boxes gets the weight 0: no box would count in training")
    return weights


def _normalize(raw: dict[str, float], boxes: Mapping[str, int], mode: str) -> dict[str, float]:
    if mode == "none" or not raw:
        return raw
    # every mode is scale-free: divide by the largest first, so the sums below cannot overflow (1e308 * n)
    top = max(raw.values())
    if top > 0 and math.isfinite(top):
        raw = {k: w / top for k, w in raw.items()}
    if mode == "boxes":
        total = sum(boxes.get(k, 0) for k in raw)
        scale = sum(w * boxes.get(k, 0) for k, w in raw.items()) / total if total else 0.0
    elif mode == "classes":
        scale = sum(raw.values()) / len(raw)
    elif mode == "min":
        present = [w for k, w in raw.items() if boxes.get(k, 0) > 0 and w > 0]
        scale = min(present, default=0.0)
    else:
        scale = max(raw.values())
    if scale <= 0:
        return raw
    return {k: w / scale for k, w in raw.items()}


@dataclasses.dataclass(frozen=True)
class BoxMultipliers:
    """Per-box factors on top of the class weight (1.0 leaves a box unchanged)."""

    difficult: float = 1.0
    crowd: float = 1.0
    truncated: float = 1.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not math.isfinite(value) or value < 0:
                raise WeightingError(f"{field.name} weight multiplier {value!r} must be finite and >= 0")

    def factor(self, *, difficult: bool, is_crowd: bool, truncated: bool) -> float:
        return (
            (self.difficult if difficult else 1.0)
            * (self.crowd if is_crowd else 1.0)
            * (self.truncated if truncated else 1.0)
        )
