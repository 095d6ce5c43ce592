"""A small anchor-free detector (FCOS-style head on a compact conv backbone) and its targets.

Sized for the demo dataset on a CPU. The model maps ``[B, S, S, 3]`` images
(pixels 0..255) to per-cell class logits ``[B, N, C]`` and box distances
``[B, N, 4]`` on a stride-4 grid (N = (S/4)^2).

How a box's weight reaches the loss: every grid cell whose center lies in
the central region (radius 1.5 cells) of a ground-truth box, and inside the
box, is a positive for that box (the smallest box wins a shared cell). A
positive cell's classification weight and box-regression weight are the
``groundtruth_weights`` of its box; negative cells keep classification
weight 1 (background is not reweighted) and regression weight 0. The
trainer (``boxweight/train.py``) divides both losses by the summed weight of
the positive cells (``max(., 1)``), as the TF OD API does, or by their number.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import layers

STRIDE = 4
CENTER_RADIUS = 1.5
PRIOR = 0.01


def _conv(x: Any, filters: int, stride: int = 1, name: str = "") -> Any:
    x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def build_detector(num_classes: int, image_size: int = 128, width: int = 32, priors: Sequence[float] | None = None) -> keras.Model:
    """The detector: backbone to stride 8, upsampled and fused at stride 4, two heads.

    ``priors``: per class, the initial probability of the classification head
    (its bias is the prior's logit); default ``PRIOR`` for every class (RetinaNet).
    """
    if image_size % 8:
        raise ValueError(f"image_size {image_size} must be a multiple of 8")
    inputs = keras.Input((image_size, image_size, 3), name="images")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs)
    x = _conv(x, width, 2, "s2a")
    x = _conv(x, width, 1, "s2b")
    x = _conv(x, 2 * width, 2, "s4a")
    s4 = _conv(x, 2 * width, 1, "s4b")
    x = _conv(s4, 4 * width, 2, "s8a")
    x = _conv(x, 4 * width, 1, "s8b")
    x = layers.UpSampling2D(2, interpolation="nearest")(x)
    x = layers.Concatenate()([x, s4])
    x = _conv(x, 2 * width, 1, "fuse")
    cls = _conv(x, 2 * width, 1, "cls")
    p = np.full(num_classes, PRIOR) if priors is None else np.asarray(priors, dtype=np.float64)
    if p.shape != (num_classes,) or not np.all((p > 0) & (p < 1)):
        raise ValueError(f"priors must be {num_classes} probabilities in (0, 1), got {list(p)}")
    prior_bias = keras.initializers.Constant(np.log(p / (1 - p)).astype(np.float32).tolist())
    cls = layers.Conv2D(num_classes, 1, bias_initializer=prior_bias, name="cls_logits")(cls)
    reg = _conv(x, 2 * width, 1, "reg")
    reg = layers.Conv2D(4, 1, name="box_distances")(reg)
    grid = image_size // STRIDE
    cls = layers.Reshape((grid * grid, num_classes), name="class_logits")(cls)
    reg = layers.Reshape((grid * grid, 4), name="box_raw")(reg)
    return keras.Model(inputs, {"class_logits": cls, "box_raw": reg}, name="boxweight_detector")


def cell_centers(image_size: int) -> tf.Tensor:
    """``[N, 2]`` normalized (y, x) centers of the stride-4 grid cells, row-major."""
    grid = image_size // STRIDE
    c = (tf.range(grid, dtype=tf.float32) + 0.5) / grid
    yy, xx = tf.meshgrid(c, c, indexing="ij")
    return tf.reshape(tf.stack([yy, xx], axis=-1), [-1, 2])


def decode_boxes(box_raw: tf.Tensor, image_size: int) -> tf.Tensor:
    """Distances (top, left, bottom, right) -> ``[..., N, 4]`` ymin, xmin, ymax, xmax.

    Distances are ``softplus(raw) * stride / image_size``, so they are positive
    and start near one cell.
    """
    centers = cell_centers(image_size)
    d = tf.nn.softplus(tf.cast(box_raw, tf.float32)) * (STRIDE / image_size)
    return tf.concat([centers - d[..., :2], centers + d[..., 2:]], axis=-1)


def assign_targets(
    boxes: tf.Tensor, classes: tf.Tensor, weights: tf.Tensor, num_classes: int, image_size: int
) -> dict[str, tf.Tensor]:
    """Per-cell targets for a batch (see the module docstring for the rule).

    Args:
        boxes: ``[B, M, 4]`` normalized ymin, xmin, ymax, xmax.
        classes: ``[B, M]`` ids from 1 (0 = padding).
        weights: ``[B, M]`` per-box weights.

    Returns:
        ``class_targets`` [B, N, C] one-hot, ``class_weights`` [B, N],
        ``box_targets`` [B, N, 4], ``box_weights`` [B, N], ``positive`` [B, N].
    """
    centers = cell_centers(image_size)  # [N, 2]
    cell = 1.0 / (image_size // STRIDE)
    cy, cx = centers[None, :, None, 0], centers[None, :, None, 1]  # [1, N, 1]
    ymin, xmin, ymax, xmax = (boxes[:, None, :, i] for i in range(4))  # [B, 1, M]
    by, bx = (ymin + ymax) / 2, (xmin + xmax) / 2
    inside = (cy > ymin) & (cy < ymax) & (cx > xmin) & (cx < xmax)
    central = (tf.abs(cy - by) <= CENTER_RADIUS * cell) & (tf.abs(cx - bx) <= CENTER_RADIUS * cell)
    valid = (classes > 0)[:, None, :]
    match = inside & central & valid  # [B, N, M]
    area = (ymax - ymin) * (xmax - xmin)
    cost = tf.where(match, tf.broadcast_to(area, tf.shape(match)), tf.fill(tf.shape(match), 1e9))
    best = tf.argmin(cost, axis=-1, output_type=tf.int32)  # [B, N]
    positive = tf.reduce_any(match, axis=-1)
    picked_cls = tf.gather(classes, best, batch_dims=1)
    picked_w = tf.gather(weights, best, batch_dims=1)
    picked_box = tf.gather(boxes, best, batch_dims=1)
    pos_f = tf.cast(positive, tf.float32)
    return {
        "class_targets": tf.one_hot(picked_cls - 1, num_classes) * pos_f[..., None],
        "class_weights": tf.where(positive, picked_w, 1.0),
        "box_targets": picked_box,
        "box_weights": picked_w * pos_f,
        "positive": positive,
    }


def detect(outputs: dict[str, tf.Tensor], image_size: int, max_detections: int = 100, min_score: float = 0.05) -> dict[str, tf.Tensor]:
    """Top-k detections per image after a 3x3 max-pool peak filter on the class scores.

    Returns ``boxes`` [B, K, 4], ``scores`` [B, K], ``classes`` [B, K] (ids from 1),
    padded with score 0.
    """
    logits = tf.cast(outputs["class_logits"], tf.float32)
    b, n, c = tf.shape(logits)[0], tf.shape(logits)[1], logits.shape[-1]
    grid = image_size // STRIDE
    scores = tf.reshape(tf.sigmoid(logits), [b, grid, grid, c])
    peaks = tf.nn.max_pool2d(scores, 3, 1, "SAME")
    scores = tf.where(tf.equal(scores, peaks), scores, 0.0)
    flat = tf.reshape(scores, [b, n * c])
    top, idx = tf.math.top_k(flat, k=max_detections)
    cells, cls = idx // c, idx % c
    boxes = tf.gather(decode_boxes(outputs["box_raw"], image_size), cells, batch_dims=1)
    keep = top >= min_score
    return {
        "boxes": tf.clip_by_value(boxes, 0.0, 1.0),
        "scores": tf.where(keep, top, 0.0),
        "classes": tf.where(keep, cls + 1, 0),
    }
