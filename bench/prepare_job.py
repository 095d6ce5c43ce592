"""Throughput of the full prepare job vs the TF OD API's create_coco_tf_record.py way.

Generates (once, cached in build/bench-coco-N) a COCO dataset of N images of
640x480 JPEG (tens of KB each, like real photos), then in one run measures
images/s and peak RSS of:

* baseline-1: the create_coco_tf_record.py loop, single process: read bytes,
  open with PIL, sha256, build the Example, round-robin shards; no
  statistics, no weights;
* baseline-pool: the same per-image work in a ``multiprocessing.Pool`` with
  one process per core, the parent writing the shards;
* boxweight: ``boxweight prepare`` (the command's own entry point, called in
  the timed process) on its local default runner (one worker process per
  core), statistics, weights, validation and deterministic sharding included;
* boxweight-1proc: the same job with ``--runner=...FnApiRunner`` alone, in
  this one process (no worker processes to start).

    .venv/bin/python -m bench.prepare_job [--images 10000] [--shards 10] [--repeats 3]

Each runs in a fresh subprocess so peak RSS is its own (for boxweight, the
largest process: Beam workers are separate processes). The modes run
interleaved, ``--repeats`` rounds, and the median of each is reported: on a
shared 2-core VM one run of the same thing varies by 20%.

Two fixed costs are printed too, because at 10k images they are a large
part of every figure: the runner's own start and stop (an empty pipeline on
the same local default runner, imports included) and the baselines'
``import tensorflow``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import multiprocessing
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image, ImageDraw


def _make_image(args: tuple[str, int]) -> list[dict]:
    path, seed = args
    rng = np.random.default_rng(seed)
    h, w = 480, 640
    yy, xx = np.mgrid[0:h, 0:w]
    base = rng.integers(0, 255, 3)
    grad = (base[None, None, :] + (xx[..., None] * rng.uniform(-0.2, 0.2, 3)) + (yy[..., None] * rng.uniform(-0.2, 0.2, 3)))
    pixels = np.clip(grad + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(pixels)
    draw = ImageDraw.Draw(img)
    anns = []
    for _ in range(int(rng.integers(1, 8))):
        x, y = int(rng.integers(0, w - 80)), int(rng.integers(0, h - 80))
        bw, bh = int(rng.integers(10, 80)), int(rng.integers(10, 80))
        draw.rectangle((x, y, x + bw, y + bh), fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        anns.append({"bbox": [x, y, bw, bh], "category_id": int(min(9, rng.zipf(1.6) - 1))})
    img.save(path, format="JPEG", quality=85)
    return anns


def make_dataset(root: str, images: int) -> str:
    ann_path = os.path.join(root, "annotations.json")
    if os.path.exists(ann_path):
        return ann_path
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    jobs = [(os.path.join(root, "images", f"{i:06d}.jpg"), i) for i in range(images)]
    with multiprocessing.Pool() as pool:
        per_image = pool.map(_make_image, jobs, chunksize=64)
    doc = {"categories": [{"id": c, "name": f"class_{c}"} for c in range(10)], "images": [], "annotations": []}
    for i, anns in enumerate(per_image):
        doc["images"].append({"id": i, "file_name": f"images/{i:06d}.jpg", "width": 640, "height": 480})
        for a in anns:
            doc["annotations"].append({"id": len(doc["annotations"]), "image_id": i, "iscrowd": 0, **a})
    with open(ann_path + ".tmp", "w") as f:
        json.dump(doc, f)
    os.replace(ann_path + ".tmp", ann_path)
    return ann_path


# ---- baseline: the create_coco_tf_record.py way ------------------------------------------

_CATEGORIES: dict[int, str] = {}
_ANNS: dict[int, list] = {}


def _baseline_example(image: dict, image_dir: str) -> bytes:
    import tensorflow as tf

    with tf.io.gfile.GFile(os.path.join(image_dir, image["file_name"]), "rb") as fid:
        encoded = fid.read()
    Image.open(io.BytesIO(encoded))  # as the script does: PIL.Image.open to check the JPEG
    key = hashlib.sha256(encoded).hexdigest()
    w, h = image["width"], image["height"]
    xmin, xmax, ymin, ymax, cls, text, crowd, area = [], [], [], [], [], [], [], []
    for a in _ANNS.get(image["id"], []):
        x, y, bw, bh = a["bbox"]
        if bw <= 0 or bh <= 0 or x + bw > w or y + bh > h:
            continue
        xmin.append(x / w)
        xmax.append((x + bw) / w)
        ymin.append(y / h)
        ymax.append((y + bh) / h)
        cls.append(a["category_id"])
        text.append(_CATEGORIES[a["category_id"]].encode())
        crowd.append(a["iscrowd"])
        area.append(bw * bh)

    def b(v): return tf.train.Feature(bytes_list=tf.train.BytesList(value=v))
    def i(v): return tf.train.Feature(int64_list=tf.train.Int64List(value=v))
    def f(v): return tf.train.Feature(float_list=tf.train.FloatList(value=v))

    feature = {
        "image/height": i([h]), "image/width": i([w]), "image/filename": b([image["file_name"].encode()]),
        "image/source_id": b([str(image["id"]).encode()]), "image/key/sha256": b([key.encode()]),
        "image/encoded": b([encoded]), "image/format": b([b"jpeg"]),
        "image/object/bbox/xmin": f(xmin), "image/object/bbox/xmax": f(xmax), "image/object/bbox/ymin": f(ymin),
        "image/object/bbox/ymax": f(ymax), "image/object/class/text": b(text), "image/object/class/label": i(cls),
        "image/object/is_crowd": i(crowd), "image/object/area": f(area),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _init(ann_path: str) -> None:
    with open(ann_path) as f:
        doc = json.load(f)
    _CATEGORIES.update({c["id"]: c["name"] for c in doc["categories"]})
    for a in doc["annotations"]:
        _ANNS.setdefault(a["image_id"], []).append(a)


def _pool_work(args: tuple[dict, str]) -> bytes:
    return _baseline_example(*args)


def run_baseline(ann_path: str, out: str, shards: int, pool: bool) -> int:
    import tensorflow as tf

    _init(ann_path)
    with open(ann_path) as f:
        images = json.load(f)["images"]
    image_dir = os.path.dirname(ann_path)
    writers = [tf.io.TFRecordWriter(os.path.join(out, f"train-{k:05d}-of-{shards:05d}.tfrecord")) for k in range(shards)]
    if pool:
        with multiprocessing.Pool(initializer=_init, initargs=(ann_path,)) as p:
            examples = p.imap(_pool_work, ((img, image_dir) for img in images), chunksize=32)
            for n, ex in enumerate(examples):
                writers[n % shards].write(ex)
    else:
        for n, img in enumerate(images):
            writers[n % shards].write(_baseline_example(img, image_dir))
    for w in writers:
        w.close()
    return len(images)


def _child(mode: str, ann_path: str, shards: int) -> None:
    out = tempfile.mkdtemp(prefix=f"bench-{mode}-")
    start = time.perf_counter()
    try:
        if mode == "empty-pipeline":
            import apache_beam as beam
            from apache_beam.options.pipeline_options import PipelineOptions

            from beam_jobs import prepare

            argv, runner = prepare.local_runner([])
            with beam.Pipeline(runner=runner, options=PipelineOptions(argv)) as p:
                _ = p | beam.Create([1, 2]) | beam.Reshuffle() | beam.Map(lambda x: x)
            n = 0
        elif mode == "tf-import":
            import tensorflow  # noqa: F401

            n = 0
        elif mode in ("boxweight", "boxweight-1proc"):
            from boxweight.cli import main as boxweight_main

            argv = ["prepare", "--input", ann_path, "--output", out, f"--num-shards={shards}", "--val-fraction=0"]
            if mode == "boxweight-1proc":  # the same runner in this process only: no worker processes
                from beam_jobs.prepare import IN_PROCESS_RUNNER

                argv.append(f"--runner={IN_PROCESS_RUNNER}")
            with contextlib.redirect_stdout(io.StringIO()):  # the command prints its report table
                boxweight_main(argv)
            with open(os.path.join(out, "stats.json")) as f:
                n = json.load(f)["totals"]["images_written"]
        else:
            n = run_baseline(ann_path, out, shards, pool=(mode == "baseline-pool"))
        seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(out, ignore_errors=True)
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"mode": mode, "images": n, "seconds": seconds, "peak_mb": max(self_kb, child_kb) / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--shards", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; medians are reported")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], args.child[1], args.shards)
        return
    t = time.perf_counter()
    ann_path = make_dataset(os.path.join("build", f"bench-coco-{args.images}"), args.images)
    size = sum(os.path.getsize(os.path.join(os.path.dirname(ann_path), "images", f)) for f in os.listdir(os.path.join(os.path.dirname(ann_path), "images")))
    print(f"dataset {ann_path}: {args.images} images, {size / args.images / 1024:.0f} KB per image on average ({time.perf_counter() - t:.0f} s to prepare)")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    modes = ("baseline-1", "baseline-pool", "boxweight", "boxweight-1proc", "empty-pipeline", "tf-import")
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    for _ in range(args.repeats):
        for mode in modes:
            cmd = [sys.executable, "-m", "bench.prepare_job", "--shards", str(args.shards), "--child", mode, ann_path]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if out.returncode:
                print(out.stderr[-3000:])
                raise SystemExit(f"{mode} failed")
            runs[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))

    def median(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[mode])

    print(f"median of {args.repeats} interleaved runs each, {os.cpu_count()} cores")
    print(f"{'pipeline':<14} {'images':>7} {'seconds':>8} {'(min-max)':>12} {'images/s':>9} {'peak RSS MB':>12}")
    for mode in modes[:4]:
        secs = [r["seconds"] for r in runs[mode]]
        n = runs[mode][0]["images"]
        print(f"{mode:<14} {n:>7} {median(mode, 'seconds'):>8.1f} {min(secs):>5.1f}-{max(secs):<5.1f} {n / median(mode, 'seconds'):>9.1f} {median(mode, 'peak_mb'):>12.0f}")
    print(f"fixed costs inside those figures: empty pipeline on boxweight's local runner {median('empty-pipeline', 'seconds'):.1f} s; import tensorflow {median('tf-import', 'seconds'):.1f} s")
    ratio = median("baseline-pool", "seconds") / median("boxweight", "seconds")
    # ratios within a round (the modes ran back to back) are steadier than ratios of medians
    per_round = [p["seconds"] / b["seconds"] for p, b in zip(runs["baseline-pool"], runs["boxweight"])]
    print(
        f"boxweight / baseline-pool throughput: {ratio:.2f}x (on {os.cpu_count()} cores); within rounds: median "
        f"{statistics.median(per_round):.2f}x ({min(per_round):.2f}-{max(per_round):.2f})"
    )
    ratio_1 = median("baseline-pool", "seconds") / median("boxweight-1proc", "seconds")
    print(f"boxweight-1proc / baseline-pool throughput: {ratio_1:.2f}x")


if __name__ == "__main__":
    main()
