"""Weighted losses: golden values by hand, agreement with Keras, config round trip, gradients."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from weighting.training.losses import (
    LOSSES,
    WeightedBinaryCrossEntropy,
    WeightedGIoU,
    WeightedSigmoidFocalLoss,
    WeightedSmoothL1,
    WeightedSoftmaxCrossEntropy,
    equalization_weights,
    giou,
    normalize_by_positives,
    seesaw_weights,
)

RNG = np.random.default_rng(0)
LOGITS = RNG.normal(size=(2, 5, 3)).astype("float32")
ONE_HOT = np.eye(3, dtype="float32")[RNG.integers(0, 3, size=(2, 5))]
BOXES_T = np.array([[[0.1, 0.1, 0.5, 0.5], [0.2, 0.3, 0.6, 0.9]]], "float32")
BOXES_P = np.array([[[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 0.3, 0.3]]], "float32")


PER_ELEMENT = (WeightedSigmoidFocalLoss, WeightedBinaryCrossEntropy)  # [B, N, C] losses: weights [B, N, 1] or [B, N, C]


def _inputs(cls):
    return (BOXES_T, BOXES_P) if cls in (WeightedSmoothL1, WeightedGIoU) else (ONE_HOT, LOGITS)


def _anchor_weights(cls, w):
    """Per-anchor weights [B, N] in the shape ``cls`` takes."""
    return w[..., None] if cls in PER_ELEMENT else w


def test_focal_golden_value_by_hand():
    # one element, positive, logit 0 -> p = 0.5: FL = 0.25 * 0.5^2 * ln 2 = 0.0433217
    # one element, negative, logit 2 -> p = 0.8808: FL = 0.75 * 0.8808^2 * -ln(1 - 0.8808) = 1.2378
    loss = WeightedSigmoidFocalLoss(reduction="none")
    got = np.asarray(loss(np.array([[[1.0, 0.0]]]), np.array([[[0.0, 2.0]]])))
    p = 1 / (1 + math.exp(-2))
    np.testing.assert_allclose(got[0, 0], [0.25 * 0.25 * math.log(2), 0.75 * p**2 * -math.log(1 - p)], rtol=1e-5)


def test_focal_agrees_with_keras_binary_focal_when_weights_are_one():
    ours = WeightedSigmoidFocalLoss(alpha=0.25, gamma=2.0, reduction="none")(ONE_HOT, LOGITS)
    ref = keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.25, gamma=2.0, from_logits=True, reduction=None)(ONE_HOT, LOGITS)
    np.testing.assert_allclose(np.mean(np.asarray(ours), axis=-1), np.asarray(ref), rtol=1e-5, atol=1e-6)


def test_softmax_ce_agrees_with_keras_categorical():
    ours = WeightedSoftmaxCrossEntropy(reduction="none")(ONE_HOT, LOGITS)
    ref = keras.losses.CategoricalCrossentropy(from_logits=True, reduction=None)(ONE_HOT, LOGITS)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), rtol=1e-5)
    # Keras's default reduction, sum_over_batch_size: the plain mean over anchors
    np.testing.assert_allclose(float(WeightedSoftmaxCrossEntropy()(ONE_HOT, LOGITS)), float(np.mean(ref)), rtol=1e-5)


def test_binary_ce_agrees_with_keras():
    ours = WeightedBinaryCrossEntropy(reduction="none")(ONE_HOT, LOGITS)
    ref = keras.losses.BinaryCrossentropy(from_logits=True, reduction=None)(ONE_HOT, LOGITS)
    np.testing.assert_allclose(np.mean(np.asarray(ours), axis=-1), np.asarray(ref), rtol=1e-5)


def test_keras_reductions_apply_per_anchor_weights():
    w = np.array([[0.0, 2.0, 1.0, 0.0, 1.0], [0.5, 0.0, 0.0, 0.0, 0.5]], "float32")
    per_anchor = np.asarray(WeightedSoftmaxCrossEntropy(reduction="none")(ONE_HOT, LOGITS))
    assert float(WeightedSoftmaxCrossEntropy(reduction="sum")(ONE_HOT, LOGITS, sample_weight=w)) == pytest.approx(float(np.sum(per_anchor * w)), rel=1e-5)
    expected = float(np.sum(per_anchor * w) / np.sum(w))
    assert float(WeightedSoftmaxCrossEntropy(reduction="mean_with_sample_weight")(ONE_HOT, LOGITS, sample_weight=w)) == pytest.approx(expected, rel=1e-5)
    # per-element losses: [B, N, 1] weights broadcast over the classes, as [B, N, C] ones do
    per_element = np.asarray(WeightedSigmoidFocalLoss(reduction="none")(ONE_HOT, LOGITS))
    a = float(WeightedSigmoidFocalLoss(reduction="sum")(ONE_HOT, LOGITS, sample_weight=w[..., None]))
    b = float(WeightedSigmoidFocalLoss(reduction="sum")(ONE_HOT, LOGITS, sample_weight=np.repeat(w[..., None], 3, axis=-1)))
    assert a == pytest.approx(b, rel=1e-6) and a == pytest.approx(float(np.sum(per_element * w[..., None])), rel=1e-5)


def test_per_anchor_weights_without_a_class_axis_are_refused_by_per_element_losses():
    """[B, N] weights on [B, N, C] losses would broadcast against the class axis: Keras refuses the shapes."""
    w = np.ones((2, 5), "float32")
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError)):
        WeightedSigmoidFocalLoss()(ONE_HOT, LOGITS, sample_weight=w)


def test_float16_logits_are_computed_in_float32():
    got = WeightedSigmoidFocalLoss(reduction="none")(ONE_HOT, LOGITS.astype("float16") * 40)
    assert got.dtype == "float32" and np.all(np.isfinite(np.asarray(got)))


def test_normalize_by_positives_divides_by_the_count_or_the_summed_weight():
    positive = np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0]], "float32")
    box_weights = positive * np.array([[2.0, 0.5, 9.0], [9.0, 4.0, 9.0]], "float32")
    assert float(normalize_by_positives(12.0, positive)) == pytest.approx(4.0)  # 3 positives
    assert float(normalize_by_positives(12.0, box_weights)) == pytest.approx(12.0 / 6.5)  # summed weight 6.5
    assert float(normalize_by_positives(12.0, np.zeros_like(positive))) == pytest.approx(12.0)  # floor 1: no NaN
    assert float(normalize_by_positives(12.0, np.zeros_like(positive), floor=4.0)) == pytest.approx(3.0)


def test_all_zero_weights_give_zero_not_nan():
    for cls in LOSSES:
        y, p = _inputs(cls)
        for reduction in ("sum", "sum_over_batch_size", "mean_with_sample_weight"):
            value = float(cls(reduction=reduction)(y, p, sample_weight=_anchor_weights(cls, np.zeros(y.shape[:2], "float32"))))
            assert value == 0.0, (cls.__name__, reduction)


def test_smooth_l1_and_giou_golden():
    # smooth L1, delta 1: |d| = (0, .1, 0, .1) -> 0.5 * 0.01 * 2 = 0.01 ; (.2, .3, .3, .6) -> .02 + .045 + .045 + .18 = 0.29
    got = np.asarray(WeightedSmoothL1(reduction="none")(BOXES_T, BOXES_P))
    np.testing.assert_allclose(got[0], [0.01, 0.29], rtol=1e-5)
    # identical boxes: GIoU 1 ; disjoint unit squares side by side: IoU 0, hull 2, union 2 -> GIoU 0
    same = giou(np.array([0.0, 0, 1, 1]), np.array([0.0, 0, 1, 1]))
    apart = giou(np.array([0.0, 0, 1, 1]), np.array([0.0, 2, 1, 3]))
    assert float(same) == pytest.approx(1.0) and float(apart) == pytest.approx(-1 / 3, rel=1e-5)


@pytest.mark.parametrize("cls", LOSSES, ids=lambda c: c.__name__)
def test_config_round_trip(cls):
    kwargs = {"reduction": "sum", "name": "x"}
    kwargs.update({WeightedSigmoidFocalLoss: {"alpha": 0.5, "gamma": 1.0}, WeightedSmoothL1: {"delta": 0.5}, WeightedSoftmaxCrossEntropy: {"label_smoothing": 0.1}}.get(cls, {}))
    loss = cls(**kwargs)
    config = loss.get_config()
    for key, value in kwargs.items():
        assert config[key] == value
    clone = cls.from_config(config)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    y, p = _inputs(cls)
    w = _anchor_weights(cls, RNG.uniform(size=y.shape[:2]).astype("float32"))
    for other in (clone, again):
        assert type(other) is cls
        assert float(other(y, p, sample_weight=w)) == pytest.approx(float(loss(y, p, sample_weight=w)), rel=1e-6)


@pytest.mark.parametrize("cls", [WeightedSigmoidFocalLoss, WeightedSoftmaxCrossEntropy, WeightedBinaryCrossEntropy], ids=lambda c: c.__name__)
def test_zero_weight_class_contributes_zero_gradient(cls):
    logits = tf.Variable(LOGITS)
    labels = np.argmax(ONE_HOT, axis=-1)
    w = _anchor_weights(cls, np.where(labels == 1, 0.0, 1.0).astype("float32"))  # class 1's boxes weigh 0
    with tf.GradientTape() as tape:
        loss = cls()(ONE_HOT, logits, sample_weight=w)
    grad = tape.gradient(loss, logits).numpy()
    assert np.all(grad[labels == 1] == 0.0)
    assert np.any(grad[labels != 1] != 0.0)
    # empty batch (no weighted anchor): finite, zero gradients
    with tf.GradientTape() as tape:
        loss = cls()(ONE_HOT, logits, sample_weight=np.zeros_like(w))
    grad = tape.gradient(loss, logits).numpy()
    assert np.all(np.isfinite(grad)) and np.all(grad == 0)


def test_unknown_reduction_refused_by_keras():
    with pytest.raises(ValueError, match="reduction"):
        WeightedGIoU(reduction="average")


def _random_targets(rng, b, n, c, foreground):
    """Class labels [B, N], foreground cells [B, N] (about ``foreground`` of them) and their one-hot targets."""
    labels = rng.integers(0, c, (b, n))
    positive = rng.random((b, n)) < foreground
    return labels, positive, np.eye(c)[labels] * positive[..., None]


def test_equalization_weights_follow_the_papers_formula():
    """Tan et al. 2020, eq. 4: w_j = 1 - E(r) T_lambda(f_j) (1 - y_j), element by element."""
    rng = np.random.default_rng(3)
    b, n, c = 2, 7, 5
    labels, positive, y = _random_targets(rng, b, n, c, 0.5)
    tail = np.array([0, 0, 1, 0, 1], dtype=np.float32)
    got = np.asarray(equalization_weights(y, positive, tail))
    for i in range(b):
        for k in range(n):
            for j in range(c):
                e = 1.0 if positive[i, k] else 0.0
                assert got[i, k, j] == 1.0 - e * tail[j] * (1.0 - y[i, k, j])


def test_equalization_stops_negative_gradients_to_tail_classes_on_foreground_only():
    """A frequent class's positive sends no gradient to a tail class's logit; background cells still do."""
    y = np.zeros((1, 3, 3), np.float32)
    y[0, 0, 0] = 1.0  # cell 0: a positive of the frequent class 0
    y[0, 1, 2] = 1.0  # cell 1: a positive of the tail class 2
    positive = np.array([[True, True, False]])  # cell 2: background
    tail = np.array([0.0, 0.0, 1.0], np.float32)
    logits = tf.Variable(np.zeros((1, 3, 3), np.float32))
    weights = equalization_weights(y, positive, tail)
    with tf.GradientTape() as tape:
        loss = WeightedSigmoidFocalLoss(reduction="sum")(y, logits, sample_weight=weights)
    grad = tape.gradient(loss, logits).numpy()[0]
    assert grad[0, 2] == 0.0  # foreground of class 0: no push on the tail logit
    assert grad[0, 1] > 0.0  # ... but on the frequent class 1 it still pushes down
    assert grad[1, 2] < 0.0  # the tail class's own positive pulls up
    assert grad[2, 2] > 0.0  # background still pushes the tail logit down


def test_seesaw_weights_follow_their_formula_element_by_element():
    """On foreground: (N_j/N_i)^p for rarer j, times (s_j/s_i)^q where j outscores i; 1 elsewhere."""
    rng = np.random.default_rng(5)
    b, n, c = 2, 9, 4
    labels, positive, y = _random_targets(rng, b, n, c, 0.6)
    logits = rng.normal(size=(b, n, c)).astype(np.float32)
    counts = np.array([400.0, 100.0, 25.0, 100.0], np.float32)
    got = np.asarray(seesaw_weights(y, positive, logits, counts, p=0.8, q=2.0))
    s = 1 / (1 + np.exp(-logits.astype(np.float64)))
    for i in range(b):
        for k in range(n):
            for j in range(c):
                want = 1.0
                if positive[i, k] and j != labels[i, k]:
                    own = labels[i, k]
                    if counts[j] < counts[own]:
                        want *= (counts[j] / counts[own]) ** 0.8
                    if s[i, k, j] > s[i, k, own]:
                        want *= (s[i, k, j] / s[i, k, own]) ** 2.0
                assert got[i, k, j] == pytest.approx(want, rel=1e-4), (i, k, j)
    assert got[~positive].min() == 1.0 and got[~positive].max() == 1.0
