"""The evaluation agrees with pycocotools on the same detections."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from boxweight.evaluate import evaluate_detections


def _random_case(seed):
    rng = np.random.default_rng(seed)
    gt_b, gt_c, det_b, det_s, det_c = [], [], [], [], []
    for _ in range(25):
        n = rng.integers(0, 5)
        yx = rng.uniform(0, 0.7, (n, 2))
        hw = rng.uniform(0.05, 0.3, (n, 2))
        g = np.concatenate([yx, yx + hw], axis=1)
        gc = rng.integers(1, 4, n)
        # detections: jittered copies of some gts (various IoUs), plus random false positives
        d = g + rng.normal(0, 0.03, g.shape)
        d = np.concatenate([np.minimum(d[:, :2], d[:, 2:] - 0.01), d[:, 2:]], axis=1)  # keep boxes non-empty
        dc = np.where(rng.uniform(size=n) < 0.8, gc, rng.integers(1, 4, n))
        m = rng.integers(0, 4)
        fyx = rng.uniform(0, 0.7, (m, 2))
        fp = np.concatenate([fyx, fyx + rng.uniform(0.05, 0.3, (m, 2))], axis=1)
        db = np.concatenate([d, fp]).clip(0, 1)
        gt_b.append(g), gt_c.append(gc)
        det_b.append(db), det_s.append(rng.uniform(size=len(db))), det_c.append(np.concatenate([dc, rng.integers(1, 4, m)]))
    return gt_b, gt_c, det_b, det_s, det_c


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_pycocotools(seed):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_b, gt_c, det_b, det_s, det_c = _random_case(seed)
    names = ["a", "b", "c"]
    ours = evaluate_detections(gt_b, gt_c, det_b, det_s, det_c, names)
    S = 1000.0

    def xywh(b):
        return [float(b[1] * S), float(b[0] * S), float((b[3] - b[1]) * S), float((b[2] - b[0]) * S)]

    images = [{"id": i, "width": S, "height": S} for i in range(len(gt_b))]
    anns = [
        {"id": len(images) * 100 + i * 10 + j, "image_id": i, "category_id": int(c), "bbox": xywh(b), "area": xywh(b)[2] * xywh(b)[3], "iscrowd": 0}
        for i, (bs, cs) in enumerate(zip(gt_b, gt_c)) for j, (b, c) in enumerate(zip(bs, cs))
    ]
    dets = [
        {"image_id": i, "category_id": int(c), "bbox": xywh(b), "score": float(s)}
        for i, (bs, ss, cs) in enumerate(zip(det_b, det_s, det_c)) for b, s, c in zip(bs, ss, cs)
    ]
    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns, "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ours["map"] == pytest.approx(ev.stats[0], abs=1e-6)
    assert ours["map50"] == pytest.approx(ev.stats[1], abs=1e-6)
    precision = ev.eval["precision"]  # [T, R, K, A, M]
    for k, entry in enumerate(ours["classes"]):
        p = precision[0, :, k, 0, 2]
        assert entry["ap50"] == pytest.approx(np.mean(p[p > -1]), abs=1e-6)
