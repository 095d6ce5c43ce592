"""Weighting schemes against their references, and normalization properties."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.utils.class_weight import compute_class_weight

from schemas.annotations import Box, ImageRecord
from weighting import ClassCounts, SplitStats, WeightingError, class_repeat_factors, class_weights
from weighting.apply import WeightPlan
from weighting.schemes import SCHEMES, BoxMultipliers, image_repeat_factor, tail_classes

COUNTS = {"a": 1000, "b": 100, "c": 10}


def _vec(weights):
    return [weights[k] for k in ("a", "b", "c")]


def test_balanced_equals_scikit_learn():
    y = np.repeat(["a", "b", "c"], [1000, 100, 10])
    reference = compute_class_weight("balanced", classes=np.array(["a", "b", "c"]), y=y)
    np.testing.assert_allclose(_vec(class_weights(COUNTS, "balanced", normalize="none")), reference)
    # the vector: 1110 / (3 * n_c)
    np.testing.assert_allclose(_vec(class_weights(COUNTS, "balanced", normalize="boxes")), [0.37, 3.7, 37.0])


def test_the_library_the_command_and_the_trainer_share_one_default_normalization():
    """A library user gets the weights `boxweight prepare` writes: smallest weight 1 (normalize=min)."""
    import inspect

    from beam_jobs.options import PrepareOptions
    from boxweight.train_args import parser as train_parser

    assert class_weights(COUNTS, "inverse") == class_weights(COUNTS, "inverse", normalize="min")
    assert min(class_weights(COUNTS, "inverse").values()) == pytest.approx(1.0)
    assert inspect.signature(WeightPlan.from_stats).parameters["normalize"].default == "min"
    assert PrepareOptions([]).normalize == "min"
    assert train_parser().parse_args(["--train", "x", "--out", "y"]).normalize == "min"


def test_inverse_and_inverse_sqrt_raw():
    np.testing.assert_allclose(_vec(class_weights(COUNTS, "inverse", normalize="none")), [0.001, 0.01, 0.1])
    np.testing.assert_allclose(
        _vec(class_weights(COUNTS, "inverse_sqrt", normalize="none")), [1 / math.sqrt(1000), 0.1, 1 / math.sqrt(10)]
    )


def test_effective_number_matches_the_paper():
    # Cui et al. 2019: w = (1 - b) / (1 - b^n), scaled to sum to K = 3.
    # b = 0.999: raw = 0.0015820, 0.0105083, 0.1004509; sum 0.1125412; x 3 / sum:
    got = _vec(class_weights(COUNTS, "effective_number", normalize="none", beta=0.999))
    np.testing.assert_allclose(got, [0.0422, 0.2800, 2.6778], atol=5e-4)
    assert sum(got) == pytest.approx(3.0)


def test_effective_number_refuses_bad_beta():
    with pytest.raises(WeightingError, match=r"beta=1.0 must be in \(0, 1\)"):
        class_weights(COUNTS, "effective_number", beta=1.0)


def _stats(images):
    """SplitStats from lists of class names per image (box areas irrelevant here)."""
    recs = [
        ImageRecord(str(i), f"{i}.jpg", "p", 100, 100, "jpeg", boxes=tuple(Box(0.1, 0.1, 0.2, 0.2, 1, n) for n in names))
        for i, names in enumerate(images)
    ]
    return SplitStats.of(recs)


def test_median_frequency_hand_computed():
    # image 1: a a b ; image 2: a c ; image 3: (none)
    # freq(a) = 3 / (3 + 2) = 0.6, freq(b) = 1 / 3, freq(c) = 1 / 2; median = 0.5
    stats = _stats([["a", "a", "b"], ["a", "c"], []])
    w = class_weights(stats, "median_frequency", normalize="none")
    assert w == pytest.approx({"a": 0.5 / 0.6, "b": 0.5 / (1 / 3), "c": 1.0})


def test_median_frequency_needs_image_counts():
    with pytest.raises(WeightingError, match="median_frequency.*needs boxes_in_images_with"):
        class_weights(COUNTS, "median_frequency")


def test_repeat_factor_lvis():
    # t = 0.001, f = 0.00025 -> sqrt(4) = 2 ; f >= t -> 1
    counts = ClassCounts(boxes={"rare": 5, "common": 900}, images_with={"rare": 1, "common": 4000}, num_images=4000)
    r = class_repeat_factors(counts, threshold=0.001)
    assert r == {"rare": pytest.approx(2.0), "common": 1.0}
    assert image_repeat_factor({"rare", "common"}, r) == pytest.approx(2.0)
    assert image_repeat_factor(set(), r) == 1.0


def test_manual_weights(tmp_path):
    assert class_weights(COUNTS, "manual", normalize="none", weights={"c": 5}) == {"a": 1.0, "b": 1.0, "c": 5.0}
    path = tmp_path / "w.json"
    path.write_text(json.dumps({"b": 2.0}))
    assert class_weights(COUNTS, "manual", normalize="none", weights=str(path))["b"] == 2.0
    with pytest.raises(WeightingError, match=r"unknown classes \['zebra'\]"):
        class_weights(COUNTS, "manual", weights={"zebra": 2})
    with pytest.raises(WeightingError, match="manual weight for 'a' is 'x'"):
        class_weights(COUNTS, "manual", weights={"a": "x"})


def test_unknown_scheme_lists_known_ones():
    with pytest.raises(WeightingError, match=r"unknown weighting scheme 'focal'; known: none, inverse, inverse_sqrt, balanced"):
        class_weights(COUNTS, "focal")
    with pytest.raises(WeightingError, match="unknown normalization 'sum'"):
        class_weights(COUNTS, "inverse", normalize="sum")


def test_zero_count_class_gets_the_largest_weight_not_inf():
    w = class_weights({"a": 100, "b": 10, "unseen": 0}, "inverse")
    assert all(math.isfinite(v) for v in w.values())
    assert w["unseen"] == max(w["a"], w["b"])
    assert class_weights({"a": 0, "b": 0}, "balanced") == {"a": 1.0, "b": 1.0}


def test_max_normalization_and_cap():
    w = class_weights(COUNTS, "inverse", normalize="max")
    assert max(w.values()) == pytest.approx(1.0)
    capped = class_weights(COUNTS, "balanced", normalize="boxes", max_weight=10)
    assert capped["c"] == 10 and capped["b"] == pytest.approx(3.7)


def test_box_multipliers_and_plan_apply():
    stats = _stats([["a", "a"], ["b"]])
    plan = WeightPlan.from_stats(stats, ("a", "b"), "balanced", normalize="boxes", multipliers=BoxMultipliers(difficult=0.5))
    rec = ImageRecord(
        "1", "1.jpg", "p", 10, 10, "jpeg",
        boxes=(Box(0.1, 0.1, 0.2, 0.2, 2, "b", difficult=True), Box(0.1, 0.1, 0.3, 0.3, 1, "a")),
    )
    out = plan.apply(rec)
    # balanced: N=3, K=2 -> a: 3/4, b: 3/2 ; difficult halves b
    assert [b.weight for b in out.boxes] == pytest.approx([0.75, 0.75])
    with pytest.raises(WeightingError, match="difficult weight multiplier -1"):
        BoxMultipliers(difficult=-1)


counts_strategy = st.dictionaries(st.sampled_from("abcdefgh"), st.integers(min_value=0, max_value=10**6), min_size=1)


@given(counts=counts_strategy, scheme=st.sampled_from(["none", "inverse", "inverse_sqrt", "balanced", "effective_number"]))
def test_boxes_normalization_keeps_mean_one_over_boxes(counts, scheme):
    w = class_weights(counts, scheme, normalize="boxes")
    assert all(math.isfinite(v) and v >= 0 for v in w.values())
    total = sum(counts.values())
    if total:
        assert sum(w[k] * n for k, n in counts.items()) / total == pytest.approx(1.0, rel=1e-9)


@given(counts=counts_strategy, scheme=st.sampled_from(["inverse", "inverse_sqrt", "balanced", "effective_number"]))
def test_schemes_preserve_rarity_order(counts, scheme):
    w = class_weights(counts, scheme, normalize="classes")
    present = sorted((n, k) for k, n in counts.items() if n > 0)
    for (n1, k1), (n2, k2) in zip(present, present[1:]):
        if n1 < n2:
            assert w[k1] >= w[k2] * (1 - 1e-12)
    if present:
        mean = sum(w[k] for _, k in present) / len(present)
        assert mean == pytest.approx(1.0)


#: Every scheme's weights for one set of counts, by hand. Image 0: a a b; image 1: a c; image 2: a.
#: a: 4 boxes in 3 images, b: 1 box, c: 1 box; 3 images. Boxes in the images that hold a class: a 6, b 3, c 2.
_HAND = {
    "none": {"a": 1.0, "b": 1.0, "c": 1.0},
    "inverse": {"a": 1 / 4, "b": 1.0, "c": 1.0},
    "inverse_sqrt": {"a": 1 / 2, "b": 1.0, "c": 1.0},
    "balanced": {"a": 6 / (3 * 4), "b": 6 / 3, "c": 6 / 3},  # N / (K n)
    # (1 - 0.5) / (1 - 0.5^n): a 0.5 / 0.9375, b 1, c 1; scaled to sum 3 (sum = 2.5333...)
    "effective_number": {k: v * 3 / (0.5 / 0.9375 + 2) for k, v in {"a": 0.5 / 0.9375, "b": 1.0, "c": 1.0}.items()},
    # freq a = 4/6, b = 1/3, c = 1/2; median 1/2
    "median_frequency": {"a": 0.5 / (4 / 6), "b": 0.5 / (1 / 3), "c": 1.0},
    # t = 0.5; image shares a 3/3, b 1/3, c 1/3: max(1, sqrt(0.5 / f))
    "repeat_factor": {"a": 1.0, "b": math.sqrt(1.5), "c": math.sqrt(1.5)},
    "manual": {"a": 1.0, "b": 4.0, "c": 1.0},
}
_PARAMS = {"effective_number": {"beta": 0.5}, "repeat_factor": {"threshold": 0.5}, "manual": {"weights": {"b": 4.0}}}


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_every_registered_scheme_against_its_hand_computed_weights(scheme):
    """A scheme added to the registry fails here until its hand-computed weights are written above."""
    assert scheme in _HAND, f"write {scheme}'s hand-computed weights into _HAND"
    stats = _stats([["a", "a", "b"], ["a", "c"], ["a"]])
    assert class_weights(stats, scheme, normalize="none", **_PARAMS.get(scheme, {})) == pytest.approx(_HAND[scheme])


def test_min_normalization_keeps_every_class_at_or_above_one():
    counts = {"fish": 2669, "jellyfish": 400, "starfish": 116, "unseen": 0}
    w = class_weights(counts, "inverse_sqrt", normalize="min")
    assert w["fish"] == pytest.approx(1.0)
    assert w["starfish"] == pytest.approx(math.sqrt(2669 / 116))
    assert min(w.values()) == pytest.approx(1.0) and w["unseen"] == max(w.values())
    assert class_weights(counts, "effective_number", normalize="max")["starfish"] == pytest.approx(1.0)


def test_equalization_tail_is_the_classes_in_few_images():
    counts = ClassCounts(boxes={"a": 90, "b": 30, "c": 3}, images_with={"a": 80, "b": 25, "c": 2}, num_images=100)
    assert tail_classes(counts, 0.1) == {"a": False, "b": False, "c": True}
    assert tail_classes(counts, 0.3) == {"a": False, "b": True, "c": True}
    with pytest.raises(WeightingError, match="needs num_images"):
        tail_classes(ClassCounts(boxes={"a": 1}), 0.1)
