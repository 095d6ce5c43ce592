"""Peak memory of reading a large COCO file: boxweight's streaming parse vs ``json.load``.

Generates a COCO instances file (default 200k images, 1M boxes), then in one
run measures, each in a fresh subprocess, the peak RSS of
(a) ``json.load`` of the file and (b) boxweight's COCO reader parsing it into
raw images (all images and boxes, no image files opened).

    .venv/bin/python -m bench.coco_stream [--images 200000 --boxes 1000000] [--rounds 3] [--nan-string-mb 50]

Targets: (b)'s peak RSS below (a)'s, and its time within 1.2x of (a)'s,
measured in interleaved rounds (the medians are shown); importing
boxweight's readers is a fixed cost, shown on its own line. Then the same two readers on a file
with one bare ``NaN`` and one long string (``--nan-string-mb``): the case
whose rewriting pass was once quadratic in the string's length.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
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
        f.write(
            ",".join(
                json.dumps(
                    {
                        "id": i,
                        "file_name": f"{i:012d}.jpg",
                        "width": 640,
                        "height": 480,
                        "license": 1,
                        "date_captured": "2017-01-01 00:00:00",
                    }
                )
                for i in range(images)
            )
        )
        f.write('], "annotations": [')
        for j in range(boxes):
            x, y = rng.uniform(0, 600), rng.uniform(0, 440)
            w, h = rng.uniform(1, 40), rng.uniform(1, 40)
            ann = {
                "id": j,
                "image_id": rng.randrange(images),
                "category_id": rng.randrange(80),
                "bbox": [x, y, w, h],
                "area": w * h,
                "iscrowd": 0,
                "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
            }
            f.write(("," if j else "") + json.dumps(ann))
        f.write("]}")


def write_nan_string(path: str, megabytes: int) -> None:
    with open(path, "w") as f:
        f.write(
            '{"info": {"description": "' + "x" * (megabytes << 20) + '"}, "images": [{"id": 1, "file_name": "a.jpg"}], '
        )
        f.write(
            '"annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [NaN, 1, 2, 3]}], "categories": [{"id": 1, "name": "x"}]}'
        )


def _child(mode: str, path: str) -> None:
    start = time.perf_counter()
    if mode == "json.load":
        imported = time.perf_counter()
        with open(path) as f:
            doc = json.load(f)  # Python's json reads bare NaN natively
        n_images, n_boxes = len(doc["images"]), len(doc["annotations"])
    else:
        from readers.coco import CocoSource
        from readers.raw import RawImage

        imported = time.perf_counter()
        n_images = n_boxes = 0
        for item in CocoSource(path):  # the launcher's part (the categories) and the worker's (one pass)
            if isinstance(item, RawImage):
                n_images += 1
                n_boxes += len(item.boxes)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    end = time.perf_counter()
    print(
        json.dumps(
            {
                "mode": mode,
                "peak_mb": peak_kb / 1024,
                "seconds": end - imported,
                "import": imported - start,
                "images": n_images,
                "boxes": n_boxes,
            }
        )
    )


def _run(mode: str, path: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench.coco_stream", "--child", mode, path], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200_000)
    parser.add_argument("--boxes", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are shown")
    parser.add_argument("--nan-string-mb", type=int, default=50)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    modes = ("json.load", "boxweight")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "instances_bench.json")
        t = time.perf_counter()
        write_coco(path, args.images, args.boxes)
        print(
            f"generated {path}: {args.images} images, {args.boxes} boxes, {os.path.getsize(path) / 1e6:.0f} MB in {time.perf_counter() - t:.0f} s"
        )
        rounds = [[_run(mode, path) for mode in modes] for _ in range(args.rounds)]
    print(f"{'reader':<12} {'peak RSS MB':>12} {'seconds (min-max)':>20} {'images':>8} {'boxes':>9}")
    for i, mode in enumerate(modes):
        runs = [r[i] for r in rounds]
        secs = sorted(r["seconds"] for r in runs)
        print(
            f"{mode:<12} {statistics.median(r['peak_mb'] for r in runs):>12.0f} "
            f"{statistics.median(secs):>8.1f} ({secs[0]:.1f}-{secs[-1]:.1f}) {runs[0]['images']:>8} {runs[0]['boxes']:>9}"
        )
    ratio = statistics.median(r[1]["seconds"] / r[0]["seconds"] for r in rounds)
    rss = statistics.median(r[1]["peak_mb"] / r[0]["peak_mb"] for r in rounds)
    print(f"boxweight / json.load (median of the rounds' ratios): peak RSS {rss:.2f}, time {ratio:.2f}")
    print(
        f"fixed cost, not in the seconds above: importing boxweight's readers {statistics.median(r[1]['import'] for r in rounds):.1f} s"
    )
    if args.nan_string_mb:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "nan_string.json")
            write_nan_string(path, args.nan_string_mb)
            print(f"\none NaN and a {args.nan_string_mb} MB string:")
            for mode in modes:
                r = _run(mode, path)
                print(f"{r['mode']:<12} {r['peak_mb']:>12.0f} {r['seconds']:>8.1f} {r['images']:>8} {r['boxes']:>9}")


if __name__ == "__main__":
    main()
