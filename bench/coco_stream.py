"""Peak memory of reading a large COCO file: boxweight's streaming parse vs ``json.load``.

Generates a COCO instances file (default 200k images, 1M boxes), then in one
run measures, each in a fresh subprocess, the peak RSS of
(a) ``json.load`` of the file and (b) boxweight's COCO reader parsing it into
raw images (all images and boxes, no image files opened).

    .venv/bin/python -m bench.coco_stream [--images 200000 --boxes 1000000] [--nan-string-mb 50]

Target: (b) below 1.5 GB and below (a). Then the same two readers on a file
with one bare ``NaN`` and one long string (``--nan-string-mb``): the case
whose rewriting pass was once quadratic in the string's length.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time


def write_coco(path: str, images: int, boxes: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w") as f:
        f.write('{"info": {"description": "bench"}, "categories": [')
        f.write(",".join(json.dumps({"id": i, "name": f"class_{i}", "supercategory": "x"}) for i in range(80)))
        f.write('], "images": [')
        f.write(",".join(
            json.dumps({"id": i, "file_name": f"{i:012d}.jpg", "width": 640, "height": 480, "license": 1, "date_captured": "2017-01-01 00:00:00"})
            for i in range(images)
        ))
        f.write('], "annotations": [')
        for j in range(boxes):
            x, y = rng.uniform(0, 600), rng.uniform(0, 440)
            w, h = rng.uniform(1, 40), rng.uniform(1, 40)
            ann = {"id": j, "image_id": rng.randrange(images), "category_id": rng.randrange(80), "bbox": [x, y, w, h],
                   "area": w * h, "iscrowd": 0, "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]}
            f.write(("," if j else "") + json.dumps(ann))
        f.write("]}")


def write_nan_string(path: str, megabytes: int) -> None:
    with open(path, "w") as f:
        f.write('{"info": {"description": "' + "x" * (megabytes << 20) + '"}, "images": [{"id": 1, "file_name": "a.jpg"}], ')
        f.write('"annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [NaN, 1, 2, 3]}], "categories": [{"id": 1, "name": "x"}]}')


def _child(mode: str, path: str) -> None:
    start = time.perf_counter()
    if mode == "json.load":
        with open(path) as f:
            doc = json.load(f)  # Python's json reads bare NaN natively
        n_images, n_boxes = len(doc["images"]), len(doc["annotations"])
    else:
        from readers.coco import CocoSource
        from readers.raw import RawImage

        n_images = n_boxes = 0
        for item in CocoSource(path):
            if isinstance(item, RawImage):
                n_images += 1
                n_boxes += len(item.boxes)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"mode": mode, "peak_mb": peak_kb / 1024, "seconds": time.perf_counter() - start, "images": n_images, "boxes": n_boxes}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200_000)
    parser.add_argument("--boxes", type=int, default=1_000_000)
    parser.add_argument("--nan-string-mb", type=int, default=50)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "instances_bench.json")
        t = time.perf_counter()
        write_coco(path, args.images, args.boxes)
        print(f"generated {path}: {args.images} images, {args.boxes} boxes, {os.path.getsize(path) / 1e6:.0f} MB in {time.perf_counter() - t:.0f} s")
        results = []
        for mode in ("json.load", "boxweight"):
            out = subprocess.run([sys.executable, "-m", "bench.coco_stream", "--child", mode, path], capture_output=True, text=True, check=True)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'reader':<12} {'peak RSS MB':>12} {'seconds':>8} {'images':>8} {'boxes':>9}")
    for r in results:
        print(f"{r['mode']:<12} {r['peak_mb']:>12.0f} {r['seconds']:>8.1f} {r['images']:>8} {r['boxes']:>9}")
    base, ours = results
    print(f"boxweight / json.load peak RSS: {ours['peak_mb'] / base['peak_mb']:.2f}, time: {ours['seconds'] / base['seconds']:.2f}")
    if args.nan_string_mb:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "nan_string.json")
            write_nan_string(path, args.nan_string_mb)
            print(f"\none NaN and a {args.nan_string_mb} MB string:")
            for mode in ("json.load", "boxweight"):
                out = subprocess.run([sys.executable, "-m", "bench.coco_stream", "--child", mode, path], capture_output=True, text=True, check=True)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"{r['mode']:<12} {r['peak_mb']:>12.0f} {r['seconds']:>8.1f} {r['images']:>8} {r['boxes']:>9}")


if __name__ == "__main__":
    main()
