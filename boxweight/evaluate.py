"""Per-class evaluation: AP@0.5, COCO AP@[.5:.95], mAP and recall at a score threshold.

The AP follows COCO's definition (greedy matching by score to the unmatched
ground truth of highest IoU, 101-point interpolated precision, up to 100
detections per image, all areas); the tests check it against pycocotools on
the same detections.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of ``[n, 4]`` and ``[m, 4]`` boxes (ymin, xmin, ymax, xmax)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    y0 = np.maximum(a[:, None, 0], b[None, :, 0])
    x0 = np.maximum(a[:, None, 1], b[None, :, 1])
    y1 = np.minimum(a[:, None, 2], b[None, :, 2])
    x1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(y1 - y0, 0, None) * np.clip(x1 - x0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def _class_ap(gts: Sequence[np.ndarray], dets: Sequence[tuple[np.ndarray, np.ndarray]], threshold: float) -> tuple[float, int]:
    """AP of one class at one IoU threshold; -1 when the class has no ground truth."""
    n_gt = sum(len(g) for g in gts)
    scores, matched = [], []
    for g, (boxes, s) in zip(gts, dets):
        order = np.argsort(-s, kind="mergesort")[:100]
        boxes, s = boxes[order], s[order]
        ious = iou_matrix(boxes, g)
        taken = np.zeros(len(g), bool)
        for i in range(len(boxes)):
            best, best_iou = -1, min(threshold, 1 - 1e-10)
            for j in range(len(g)):
                if not taken[j] and ious[i, j] >= best_iou:
                    best, best_iou = j, ious[i, j]
            if best >= 0:
                taken[best] = True
            scores.append(s[i])
            matched.append(best >= 0)
    if n_gt == 0:
        return -1.0, 0
    order = np.argsort(-np.asarray(scores), kind="mergesort")
    tp = np.cumsum(np.asarray(matched, float)[order])
    fp = np.cumsum(1.0 - np.asarray(matched, float)[order])
    recall = tp / n_gt
    precision = tp / np.maximum(tp + fp, np.spacing(1))
    precision = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
    idx = np.searchsorted(recall, RECALL_POINTS, side="left")
    q = np.array([precision[i] if i < len(precision) else 0.0 for i in idx])
    return float(np.mean(q)), n_gt


def evaluate_detections(
    gt_boxes: Sequence[np.ndarray],
    gt_classes: Sequence[np.ndarray],
    det_boxes: Sequence[np.ndarray],
    det_scores: Sequence[np.ndarray],
    det_classes: Sequence[np.ndarray],
    class_names: Sequence[str],
    score_threshold: float = 0.3,
    class_ids: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Per-class AP50, AP[.5:.95] and recall@score_threshold; means over classes with ground truth.

    ``class_ids``: the label-map id of each of ``class_names`` (default 1..N).
    """
    per_class = []
    ids = class_ids or range(1, len(class_names) + 1)
    for cid, name in zip(ids, class_names):
        gts = [b[c == cid] for b, c in zip(gt_boxes, gt_classes)]
        dets = [(b[c == cid], s[c == cid]) for b, s, c in zip(det_boxes, det_scores, det_classes)]
        aps = [_class_ap(gts, dets, t)[0] for t in IOU_THRESHOLDS]
        n_gt = sum(len(g) for g in gts)
        hits = 0
        for g, (boxes, s) in zip(gts, dets):
            confident = boxes[s >= score_threshold]
            if len(g) and len(confident):
                hits += int(np.sum(iou_matrix(g, confident).max(axis=1) >= 0.5))
        per_class.append({
            "id": cid, "name": name, "ground_truth": n_gt,
            "ap50": aps[0] if n_gt else None,
            "ap": float(np.mean(aps)) if n_gt else None,
            "recall": hits / n_gt if n_gt else None,
        })
    scored = [c for c in per_class if c["ground_truth"]]
    return {
        "classes": per_class,
        "map50": float(np.mean([c["ap50"] for c in scored])) if scored else 0.0,
        "map": float(np.mean([c["ap"] for c in scored])) if scored else 0.0,
        "score_threshold": score_threshold,
    }


def run_model(model_dir: str, data: str, split: str | None = None, batch_size: int = 32) -> dict[str, Any]:
    """Load a trained run, detect on ``data`` records, return the evaluation.

    Args:
        model_dir: a ``boxweight train`` run folder.
        data: a ``boxweight prepare`` output folder (``split``, default
            ``val``, is read) or a glob of shards inside one.

    Raises:
        DataError: no run there, data that is not one job output, an unknown
            split, or a model trained on other classes than the data's.
    """
    from storage.job_output import DataError, one_output

    config_path = os.path.join(model_dir, "config.json")
    if not os.path.exists(config_path) or not os.path.exists(os.path.join(model_dir, "model.keras")):
        raise DataError(f"{model_dir} is not a finished boxweight train run (no config.json or model.keras)")
    with open(config_path) as f:
        config = json.load(f)
    shards, output = one_output(data, split, "val")
    model_label_map = [tuple(e) for e in config.get("label_map", enumerate(config["class_names"], start=1))]
    output.check_classes(model_label_map, f"model {model_dir}")

    import keras
    import tensorflow as tf

    from boxweight.detector import detect
    from storage.terminal import Progress, eta
    from weighting.training.input_fn import create_input_fn

    model = keras.saving.load_model(os.path.join(model_dir, "model.keras"))
    size = config["image_size"]
    ds = create_input_fn(shards.files, batch_size, False, image_size=(size, size), max_boxes=100, weights="none")()
    gt_b: list[Any] = []
    gt_c: list[Any] = []
    det_b: list[Any] = []
    det_s: list[Any] = []
    det_c: list[Any] = []
    predict = tf.function(lambda x: detect(model(x, training=False), size))
    total, line = output.records_in(shards.files), Progress()
    for images, labels in ds:
        out = predict(images)
        done = len(gt_b) + int(tf.shape(images)[0])
        rate = line.rate(done)
        line.show(f"evaluating {done}/{total} images  {rate:.0f} images/s  ETA {eta((total - done) / rate)}")
        for i in range(int(tf.shape(images)[0])):
            n = int(labels["num_groundtruth_boxes"][i])
            gt_b.append(labels["groundtruth_boxes"][i, :n].numpy())
            gt_c.append(labels["groundtruth_classes"][i, :n].numpy())
            keep = out["scores"][i].numpy() > 0
            det_b.append(out["boxes"][i].numpy()[keep])
            det_s.append(out["scores"][i].numpy()[keep])
            det_c.append(out["classes"][i].numpy()[keep])
    line.clear()
    ids, names = zip(*model_label_map)
    result = evaluate_detections(gt_b, gt_c, det_b, det_s, det_c, names, class_ids=ids)
    result["data"] = {"output": output.directory, "shards": [os.path.basename(f) for f in shards.files]}
    return result


def render(result: dict[str, Any]) -> str:
    w = max([20, *(len(c["name"]) for c in result["classes"])])  # whole names: two classes may share a long prefix
    lines = [f"{'id':>3}  {'class':<{w}} {'gt':>6} {'AP50':>7} {'AP':>7} {'recall@' + str(result['score_threshold']):>11}"]
    for c in result["classes"]:
        fmt = lambda v: "   n/a" if v is None else f"{v:7.3f}"  # noqa: E731
        lines.append(f"{c['id']:>3}  {c['name']:<{w}} {c['ground_truth']:>6} {fmt(c['ap50'])} {fmt(c['ap'])} {fmt(c['recall']):>11}")
    lines.append(f"mAP50 {result['map50']:.3f}   mAP[.5:.95] {result['map']:.3f}")
    return "\n".join(lines) + "\n"
