"""Weighted detection losses for Keras 3, written with ``keras.ops`` (every backend).

Shapes: ``y_true``/``y_pred`` are ``[B, N, C]`` (classification, N anchors or
cells, C classes) or ``[B, N, 4]`` (boxes as ymin, xmin, ymax, xmax);
``sample_weight`` is ``[B, N]`` (one weight per anchor, e.g. the
``groundtruth_weights`` of the box assigned to it, 0 for ignored anchors) or
``[B, N, C]`` for the classification losses.

Reduction (default ``"mean_with_sample_weight"``): the weighted sum divided by
``max(sum of anchor weights, normalizer_floor)``. Dividing by the weights
rather than by the element count keeps the loss scale independent of how
many anchors are padding or ignored, so reweighting changes which boxes
matter, not the learning rate; the floor (default 1, like the TF OD API's
``max(num_positives, 1)``) makes a batch with no weighted anchor give 0, not
NaN. ``"sum"`` and ``"none"`` are also accepted.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

_REDUCTIONS = ("mean_with_sample_weight", "sum", "none")


class _WeightedLoss(keras.losses.Loss):
    """Shared reduction: weighted sum over elements / max(sum of anchor weights, floor)."""

    def __init__(self, normalizer_floor: float = 1.0, reduction: str = "mean_with_sample_weight", **kwargs: Any) -> None:
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction {reduction!r} not in {_REDUCTIONS}")
        super().__init__(reduction=reduction, **kwargs)
        self.normalizer_floor = float(normalizer_floor)

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        with keras.name_scope(self.name):
            # float32 math even under mixed precision: logs and exps of float16 logits overflow.
            y_pred = ops.cast(y_pred, "float32")
            y_true = ops.cast(y_true, "float32")
            losses = self.call(y_true, y_pred)
            if sample_weight is None:
                weights = ops.ones(ops.shape(losses)[:2], dtype="float32")
            else:
                weights = ops.cast(sample_weight, "float32")
            anchor_weights = weights if len(weights.shape) == 2 else ops.mean(weights, axis=-1)
            if len(losses.shape) == 3 and len(weights.shape) == 2:
                weights = ops.expand_dims(weights, -1)
            weighted = losses * weights
            if self.reduction == "none":
                return weighted
            total = ops.sum(weighted)
            if self.reduction == "sum":
                return total
            return total / ops.maximum(ops.sum(anchor_weights), self.normalizer_floor)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "normalizer_floor": self.normalizer_floor}


@keras.saving.register_keras_serializable(package="boxweight")
class WeightedSigmoidFocalLoss(_WeightedLoss):
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
class WeightedBinaryCrossEntropy(_WeightedLoss):
    """Sigmoid (per class) cross-entropy, per element [B, N, C]."""

    def __init__(self, from_logits: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.from_logits = bool(from_logits)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return ops.binary_crossentropy(y_true, y_pred, from_logits=self.from_logits)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "from_logits": self.from_logits}


@keras.saving.register_keras_serializable(package="boxweight")
class WeightedSoftmaxCrossEntropy(_WeightedLoss):
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
class WeightedSmoothL1(_WeightedLoss):
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
class WeightedGIoU(_WeightedLoss):
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


LOSSES = (WeightedSigmoidFocalLoss, WeightedBinaryCrossEntropy, WeightedSoftmaxCrossEntropy, WeightedSmoothL1, WeightedGIoU)
