"""KerasHub's RetinaNet trained with boxweight's per-box weights.

Needs the extra: ``pip install 'boxweight[keras-hub]'``.

KerasHub's ``RetinaNetObjectDetector.compute_loss`` builds its own per-anchor
weights and drops any ``sample_weight`` (its loss is the same with weights 1
and 0), so per-box weights cannot be passed in from outside. Two pieces close
the gap:

* :func:`to_keras_hub` maps a :func:`weighting.training.input_fn.create_input_fn`
  batch to what the detector reads: pixels in [0, 1], boxes in pixel
  ``yxyx``, class indices from 0 (label-map id - 1) with -1 padding, and the
  boxes' weights under ``"weights"``.
* :class:`WeightedRetinaNetObjectDetector` runs KerasHub's label encoder a
  second time with the weights in place of the classes, so each anchor gets
  the weight of the box it is matched to (matching depends on the boxes
  only). A positive anchor's classification and box losses are scaled by
  that weight; background anchors keep weight 1 (the TF OD API's
  ``negative_class_weight``), ignored anchors 0; the normalizer stays
  KerasHub's (the number of positive anchors). Without ``"weights"`` in the
  targets it is KerasHub's detector unchanged.
"""

from __future__ import annotations

from typing import Any

import keras
import keras_hub
from keras import ops


def to_keras_hub(images: Any, labels: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """One ``create_input_fn`` batch -> ``(images, {"boxes", "labels", "weights"})`` for KerasHub.

    Use as ``dataset.map(to_keras_hub)``. The detector's ``num_classes`` is the
    label map's largest id (``JobOutput.open(DIR).labels().max_id``), and its
    ``bounding_box_format`` ``"yxyx"``.
    """
    shape = ops.shape(images)
    scale = ops.cast(ops.stack([shape[1], shape[2], shape[1], shape[2]]), "float32")
    ids = ops.cast(labels["groundtruth_classes"], "int32")
    real = ops.greater(ids, 0)  # 0 is padding
    return ops.cast(images, "float32") / 255.0, {
        "boxes": labels["groundtruth_boxes"] * scale,
        "labels": ops.where(real, ids - 1, -1),
        "weights": ops.where(real, ops.cast(labels["groundtruth_weights"], "float32"), 0.0),
    }


@keras.saving.register_keras_serializable(package="boxweight")
class WeightedRetinaNetObjectDetector(keras_hub.models.RetinaNetObjectDetector):
    """``keras_hub.models.RetinaNetObjectDetector`` whose losses read per-box weights (see the module doc).

    Same constructor, presets and ``compile``; targets from :func:`to_keras_hub`.
    """

    def compute_loss(self, x: Any = None, y: Any = None, y_pred: Any = None, sample_weight: Any = None, **kwargs: Any) -> Any:
        if not isinstance(y, dict) or "weights" not in y:
            return super().compute_loss(x, y, y_pred, sample_weight, **kwargs)
        _, height, width, _ = ops.shape(x)
        y = dict(y)
        weights = ops.cast(y.pop("weights"), "float32")
        y = keras.utils.bounding_boxes.convert_format(
            y, source=self.bounding_box_format, target=self.label_encoder.bounding_box_format, height=height, width=width
        )
        boxes, labels = self.label_encoder(images=x, gt_boxes=y["boxes"], gt_classes=y["labels"])
        # the same matching with each box's weight where its class was (padding keeps -1, so it stays
        # unmatched): every anchor gets the weight of its box
        padding = ops.equal(ops.cast(y["labels"], "float32"), -1.0)
        _, anchor_weights = self.label_encoder(images=x, gt_boxes=y["boxes"], gt_classes=ops.where(padding, -1.0, weights))
        # from here as KerasHub's own compute_loss, with the anchor weights multiplied in
        positive = ops.cast(ops.greater(labels, -1.0), "float32")
        kept = ops.cast(ops.not_equal(labels, -2.0), "float32")
        per_anchor = positive * anchor_weights + (1.0 - positive)  # background: 1
        normalizer = ops.maximum(ops.sum(positive), 1.0)
        per_anchor = per_anchor * ops.cast(ops.sum(positive) > 0, "float32")  # no positive anchor: no loss, as KerasHub
        y_true = {
            "bbox_regression": boxes,
            "cls_logits": ops.one_hot(ops.cast(labels, "int32"), self.num_classes, dtype="float32"),
        }
        weights_per_head = {
            "bbox_regression": positive * anchor_weights / normalizer,  # zero without positives already
            "cls_logits": kept * per_anchor / normalizer,
        }
        return super(keras_hub.models.RetinaNetObjectDetector, self).compute_loss(
            x=x, y=y_true, y_pred=y_pred, sample_weight=weights_per_head, **kwargs
        )
