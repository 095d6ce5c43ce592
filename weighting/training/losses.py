"""Weighted detection losses for Keras 3, written with ``keras.ops`` (every backend).

Each loss implements ``call`` only; ``sample_weight`` and ``reduction`` are
Keras's own (``keras.losses.Loss``): the per-element losses are multiplied
by ``sample_weight`` and reduced with ``"sum_over_batch_size"`` (the
default), ``"sum"``, ``"mean_with_sample_weight"`` or ``"none"``. Inputs are
cast to the loss's dtype (float32 unless given), so float16 logits under
mixed precision are computed in float32.

Shapes: ``y_true``/``y_pred`` are ``[B, N, C]`` (classification, N anchors
or cells, C classes) or ``[B, N, 4]`` (boxes as ymin, xmin, ymax, xmax).
The sigmoid classification losses give one loss per element ``[B, N, C]``:
their ``sample_weight`` is ``[B, N, C]`` or ``[B, N, 1]`` (one weight per
anchor, e.g. ``groundtruth_weights[..., None]`` of the box matched to it);
the softmax and box losses give one loss per anchor ``[B, N]``, weighted by
``[B, N]``.

Detectors do not average over anchors: RetinaNet and the TF OD API divide the
summed loss by the positives. Keras has no such reduction, so it is a
function of its own, :func:`normalize_by_positives`, applied to a loss made
with ``reduction="sum"``.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


def normalize_by_positives(loss_sum: Any, positive_weights: Any, floor: float = 1.0) -> Any:
    """A summed detection loss divided by ``max(sum(positive_weights), floor)`` and by the replicas.

    The detection normalizer, under its own name since Keras's reductions
    divide by the element count or by the summed sample weights of all
    elements, background included.

    Args:
        loss_sum: a loss reduced with ``reduction="sum"``.
        positive_weights: ``[B, N]``, 0 on background anchors. The positive
            indicator divides by the number of positive anchors (RetinaNet,
            KerasHub); the box weights of the positive anchors divide by their
            summed weight (the TF OD API's ``normalize_loss_by_num_matches``,
            whose normalizer is the sum of the regression weights, which are the
            matched boxes' ``groundtruth_weights``).
        floor: the smallest divisor, so that a batch without positives gives a
            finite loss (the TF OD API's ``max(., 1)``).

    Returns:
        The normalized loss, divided like Keras's mean reductions by the
        number of ``tf.distribute`` replicas, whose gradients are summed.
    """
    total = ops.cast(loss_sum, "float32")
    value = total / ops.maximum(ops.sum(ops.cast(positive_weights, "float32")), floor)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        value = value / tf.distribute.get_strategy().num_replicas_in_sync
    return value


@keras.saving.register_keras_serializable(package="boxweight")
class WeightedSigmoidFocalLoss(keras.losses.Loss):
    """Sigmoid focal loss (Lin et al., ICCV 2017), per element [B, N, C].

    FL(p_t) = -alpha_t (1 - p_t)^gamma log(p_t), with p_t = p for positives
    and 1 - p for negatives, alpha_t = alpha for positives, 1 - alpha otherwise.
    """

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, from_logits: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alpha, self.gamma, self.from_logits = float(alpha), float(gamma), bool(from_logits)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        if self.from_logits:
            ce = ops.binary_crossentropy(y_true, y_pred, from_logits=True)
            p = ops.sigmoid(y_pred)
        else:
            p = ops.clip(y_pred, 1e-7, 1 - 1e-7)
            ce = ops.binary_crossentropy(y_true, p)
        p_t = y_true * p + (1 - y_true) * (1 - p)
        alpha_t = y_true * self.alpha + (1 - y_true) * (1 - self.alpha)
        return alpha_t * ops.power(1 - p_t, self.gamma) * ce

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "alpha": self.alpha, "gamma": self.gamma, "from_logits": self.from_logits}


@keras.saving.register_keras_serializable(package="boxweight")
class WeightedBinaryCrossEntropy(keras.losses.Loss):
    """Sigmoid (per class) cross-entropy, per element [B, N, C]."""

    def __init__(self, from_logits: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.from_logits = bool(from_logits)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return ops.binary_crossentropy(y_true, y_pred, from_logits=self.from_logits)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "from_logits": self.from_logits}


@keras.saving.register_keras_serializable(package="boxweight")
class WeightedSoftmaxCrossEntropy(keras.losses.Loss):
    """Softmax cross-entropy over classes, per anchor [B, N]; weights must be [B, N]."""

    def __init__(self, from_logits: bool = True, label_smoothing: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.from_logits, self.label_smoothing = bool(from_logits), float(label_smoothing)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        if self.label_smoothing:
            num_classes = ops.cast(ops.shape(y_true)[-1], "float32")
            y_true = y_true * (1.0 - self.label_smoothing) + self.label_smoothing / num_classes
        return ops.categorical_crossentropy(y_true, y_pred, from_logits=self.from_logits)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "from_logits": self.from_logits, "label_smoothing": self.label_smoothing}


@keras.saving.register_keras_serializable(package="boxweight")
class WeightedSmoothL1(keras.losses.Loss):
    """Smooth L1 (Huber with threshold ``delta``) summed over the 4 box coordinates, per anchor [B, N]."""

    def __init__(self, delta: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.delta = float(delta)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        diff = ops.abs(y_true - y_pred)
        quadratic = 0.5 * ops.square(diff) / self.delta
        linear = diff - 0.5 * self.delta
        return ops.sum(ops.where(diff < self.delta, quadratic, linear), axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "delta": self.delta}


@keras.saving.register_keras_serializable(package="boxweight")
class WeightedGIoU(keras.losses.Loss):
    """1 - generalized IoU (Rezatofighi et al., CVPR 2019) of [ymin, xmin, ymax, xmax] boxes, per anchor [B, N]."""

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return 1.0 - giou(y_true, y_pred)


def giou(a: Any, b: Any, eps: float = 1e-7) -> Any:
    """Generalized IoU of corresponding [..., 4] boxes (ymin, xmin, ymax, xmax)."""
    ay0, ax0, ay1, ax1 = (a[..., i] for i in range(4))
    by0, bx0, by1, bx1 = (b[..., i] for i in range(4))
    area_a = ops.maximum(ay1 - ay0, 0.0) * ops.maximum(ax1 - ax0, 0.0)
    area_b = ops.maximum(by1 - by0, 0.0) * ops.maximum(bx1 - bx0, 0.0)
    inter = ops.maximum(ops.minimum(ay1, by1) - ops.maximum(ay0, by0), 0.0) * ops.maximum(
        ops.minimum(ax1, bx1) - ops.maximum(ax0, bx0), 0.0
    )
    union = area_a + area_b - inter
    iou = inter / (union + eps)
    hull = (ops.maximum(ay1, by1) - ops.minimum(ay0, by0)) * (ops.maximum(ax1, bx1) - ops.minimum(ax0, bx0))
    return iou - (hull - union) / (hull + eps)


def equalization_weights(class_targets: Any, positive: Any, tail: Any) -> Any:
    """Per-element classification weights of the equalization loss (Tan et al., CVPR 2020, eq. 4).

    w_j = 1 - E(r) T(f_j) (1 - y_j): on a foreground cell or anchor (E = 1),
    the negative terms of tail classes (T = 1) get weight 0, so frequent
    classes' positives stop pushing rare classes' logits down; background
    cells and every positive term keep weight 1.

    Args:
        class_targets: ``[B, N, C]`` one-hot targets y.
        positive: ``[B, N]`` whether the cell or anchor is foreground, E(r).
        tail: ``[C]`` 1 for tail classes, T(f_j); see ``weighting.schemes.tail_classes``.

    Returns:
        ``[B, N, C]`` weights in {0, 1}, to multiply into a classification
        loss's ``sample_weight``.
    """
    y = ops.cast(class_targets, "float32")
    e = ops.expand_dims(ops.cast(positive, "float32"), -1)
    t = ops.reshape(ops.cast(tail, "float32"), (1, 1, -1))
    return 1.0 - e * t * (1.0 - y)


def seesaw_weights(class_targets: Any, positive: Any, logits: Any, class_counts: Any, p: float = 0.8, q: float = 2.0) -> Any:
    """Per-element classification weights of a sigmoid Seesaw-style term (after Wang et al., CVPR 2021).

    Seesaw loss rebalances the negative gradient that a positive of class i
    sends to another class j. Its softmax form is recast here per element of
    a sigmoid loss: on a foreground cell of class i, the negative term of
    class j gets

    * mitigation ``(N_j / N_i) ** p`` when j has fewer train boxes than i
      (frequent classes stop suppressing rare ones), else 1;
    * compensation ``(s_j / s_i) ** q`` when the cell scores j above its own
      class i (``s`` the sigmoid scores, no gradient through them), else 1,
      so a wrong, confident rare class is still pushed down.

    Background cells and positive terms keep weight 1. Unlike the
    equalization loss, which drops those negative terms outright for a fixed
    tail, this scales them by the count ratio and puts them back where the
    rare class wins: suited to few classes, where half of them would fall in
    EQL's tail.

    Args:
        class_targets: ``[B, N, C]`` one-hot targets.
        positive: ``[B, N]`` whether the cell is foreground.
        logits: ``[B, N, C]`` the classification logits.
        class_counts: ``[C]`` train boxes per class (class index = id - 1).
        p, q: the paper's exponents (0.8 and 2).

    Returns:
        ``[B, N, C]`` weights, to multiply into the classification loss's ``sample_weight``.
    """
    y = ops.cast(class_targets, "float32")
    counts = ops.reshape(ops.maximum(ops.cast(class_counts, "float32"), 1.0), (1, 1, -1))
    own_count = ops.maximum(ops.sum(y * counts, axis=-1, keepdims=True), 1.0)
    mitigation = ops.where(counts < own_count, ops.power(counts / own_count, p), 1.0)
    scores = ops.stop_gradient(ops.sigmoid(ops.cast(logits, "float32")))
    own_score = ops.maximum(ops.sum(y * scores, axis=-1, keepdims=True), 1e-6)
    compensation = ops.where(scores > own_score, ops.power(scores / own_score, q), 1.0)
    negative_on_foreground = ops.expand_dims(ops.cast(positive, "float32"), -1) * (1.0 - y)
    return ops.where(negative_on_foreground > 0, mitigation * compensation, 1.0)


LOSSES = (WeightedSigmoidFocalLoss, WeightedBinaryCrossEntropy, WeightedSoftmaxCrossEntropy, WeightedSmoothL1, WeightedGIoU)
