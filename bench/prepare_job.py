"""Throughput of the full prepare job vs the TF OD API's create_coco_tf_record.py way, and vs a floor.

Generates (once, cached in build/bench-coco-N...) a COCO dataset of N images of
640x480 JPEG (``--noise 6``: about 40 KB each; ``--noise 28``: about 140 KB,
like photos; ``--unique K``: K distinct files, the rest hard links to them,
each its own image to the job), then in one run measures images/s and peak
RSS of:

* baseline-1: the create_coco_tf_record.py loop, single process: read bytes,
  open with PIL, sha256, build the Example, round-robin shards; no
  statistics, no weights, no pixel decode;
* baseline-pool: the same per-image work in a ``multiprocessing.Pool`` with
  one process per core, the parent writing the shards;
* baseline-pool-decode: baseline-pool that also decodes each image once with
  TensorFlow (``tf.io.decode_jpeg(..., ratio=8)``: 1/8 scale, the whole
  compressed stream parsed), so no record fails in training: the
  like-for-like peer of boxweight's default ``--pixel-check decode``;
* floor: one process per core, each reading its share of the files, hashing
  them and writing the bytes with TFRecord framing: the least any converter
  does;
* boxweight: ``boxweight prepare`` (the command's own entry point, called in
  the timed process) on its local default runner (one worker process per
  core), statistics, weights, validation (every pixel decoded) and
  deterministic sharding included;
* boxweight-header: the same with ``--pixel-check header`` (no pixel decode);
* boxweight-1proc: the same job with ``--runner=...FnApiRunner`` alone, in
  this one process (no worker processes to start);
* with ``--baseline-commit C``: job@here and job@baseline, the default job as
  ``python -m beam_jobs.prepare`` from this checkout and from a ``git
  worktree`` of commit C (``bench.checkouts``), each in its own process
  tree: whether a change made the job slower, side by side in the run; the
  two must write byte-identical shards and ``rejects.jsonl``.

    .venv/bin/python -m bench.prepare_job [--images 10000] [--noise 6] [--unique 0] [--shards 10] [--repeats 3] [--modes ...]

Each runs in a fresh subprocess so peak RSS is its own (for boxweight, the
largest process: Beam workers are separate processes). The modes run
interleaved, ``--repeats`` rounds, and the median of each is reported: on a
shared 2-core VM one run of the same thing varies by 20%.

Fixed costs are printed on their own lines: ``boxweight prepare`` on a
one-image dataset from command start to exit (empty-job), an empty pipeline
on the same local runner (empty-pipeline), and ``import tensorflow``.
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
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageDraw


def _make_image(args: tuple[str, int, float]) -> list[dict]:
    path, seed, noise = args
    rng = np.random.default_rng(seed)
    h, w = 480, 640
    yy, xx = np.mgrid[0:h, 0:w]
    base = rng.integers(0, 255, 3)
    grad = (
        base[None, None, :] + (xx[..., None] * rng.uniform(-0.2, 0.2, 3)) + (yy[..., None] * rng.uniform(-0.2, 0.2, 3))
    )
    pixels = np.clip(grad + rng.normal(0, noise, (h, w, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(pixels)
    draw = ImageDraw.Draw(img)
    anns = []
    for _ in range(int(rng.integers(1, 8))):
        x, y = int(rng.integers(0, w - 80)), int(rng.integers(0, h - 80))
        bw, bh = int(rng.integers(10, 80)), int(rng.integers(10, 80))
        draw.rectangle((x, y, x + bw, y + bh), fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        anns.append({"bbox": [x, y, bw, bh], "category_id": int(min(9, rng.zipf(1.6) - 1))})
    if not os.path.exists(path):  # a file kept from an interrupted generation: only its boxes are needed
        img.save(path + ".tmp", format="JPEG", quality=85)
        os.replace(path + ".tmp", path)
    return anns


def make_dataset(root: str, images: int, noise: float = 6, unique: int = 0) -> str:
    """A COCO dataset of ``images`` generated JPEGs (cached in ``root``); with ``unique``, only that many are
    generated and the rest are hard links to them (another name for the same file: its own key and record)."""
    ann_path = os.path.join(root, "annotations.json")
    if os.path.exists(ann_path):
        return ann_path
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    distinct = min(unique or images, images)
    jobs = [(os.path.join(root, "images", f"{i:06d}.jpg"), i, noise) for i in range(distinct)]
    with multiprocessing.Pool() as pool:
        generated = pool.map(_make_image, jobs, chunksize=64)
    per_image = [generated[i % distinct] for i in range(images)]
    for i in range(distinct, images):
        link = os.path.join(root, "images", f"{i:06d}.jpg")
        if not os.path.exists(link):
            os.link(jobs[i % distinct][0], link)
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


def _baseline_example(image: dict, image_dir: str, decode: bool = False) -> bytes:
    import tensorflow as tf

    with tf.io.gfile.GFile(os.path.join(image_dir, image["file_name"]), "rb") as fid:
        encoded = fid.read()
    Image.open(io.BytesIO(encoded))  # as the script does: PIL.Image.open to check the JPEG
    if decode:  # the like-for-like peer: every image decoded once, so none fails in training
        tf.io.decode_jpeg(encoded, channels=3, ratio=8)
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

    def b(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=v))

    def i(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=v))

    def f(v):
        return tf.train.Feature(float_list=tf.train.FloatList(value=v))

    feature = {
        "image/height": i([h]),
        "image/width": i([w]),
        "image/filename": b([image["file_name"].encode()]),
        "image/source_id": b([str(image["id"]).encode()]),
        "image/key/sha256": b([key.encode()]),
        "image/encoded": b([encoded]),
        "image/format": b([b"jpeg"]),
        "image/object/bbox/xmin": f(xmin),
        "image/object/bbox/xmax": f(xmax),
        "image/object/bbox/ymin": f(ymin),
        "image/object/bbox/ymax": f(ymax),
        "image/object/class/text": b(text),
        "image/object/class/label": i(cls),
        "image/object/is_crowd": i(crowd),
        "image/object/area": f(area),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _init(ann_path: str) -> None:
    with open(ann_path) as f:
        doc = json.load(f)
    _CATEGORIES.update({c["id"]: c["name"] for c in doc["categories"]})
    for a in doc["annotations"]:
        _ANNS.setdefault(a["image_id"], []).append(a)


def _pool_work(args: tuple[dict, str, bool]) -> bytes:
    return _baseline_example(*args)


def run_baseline(ann_path: str, out: str, shards: int, pool: bool, decode: bool = False) -> int:
    import tensorflow as tf

    _init(ann_path)
    with open(ann_path) as f:
        images = json.load(f)["images"]
    image_dir = os.path.dirname(ann_path)
    writers = [
        tf.io.TFRecordWriter(os.path.join(out, f"train-{k:05d}-of-{shards:05d}.tfrecord")) for k in range(shards)
    ]
    if pool:
        with multiprocessing.Pool(initializer=_init, initargs=(ann_path,)) as p:
            examples = p.imap(_pool_work, ((img, image_dir, decode) for img in images), chunksize=32)
            for n, ex in enumerate(examples):
                writers[n % shards].write(ex)
    else:
        for n, img in enumerate(images):
            writers[n % shards].write(_baseline_example(img, image_dir, decode))
    for w in writers:
        w.close()
    return len(images)


# ---- floor: read each file, hash it, write its bytes with TFRecord framing ----------------


def _floor_part(args: tuple[list[str], str]) -> int:
    from beam_jobs.tfrecord_file import write_tfrecords

    paths, out = args

    def framed() -> Iterator[bytes]:
        for path in paths:
            with open(path, "rb") as f:
                data = f.read()
            hashlib.sha256(data).digest()
            yield data

    return write_tfrecords(out, framed()).records


def run_floor(ann_path: str, out: str) -> int:
    """The least any converter does: one process per core, each reading, hashing and writing its share of the files."""
    with open(ann_path) as f:
        names = [img["file_name"] for img in json.load(f)["images"]]
    root = os.path.dirname(ann_path)
    n = os.cpu_count() or 1
    parts = [
        ([os.path.join(root, name) for name in names[k::n]], os.path.join(out, f"floor-{k:05d}-of-{n:05d}"))
        for k in range(n)
    ]
    with multiprocessing.Pool(n) as pool:
        return sum(pool.map(_floor_part, parts))


def one_image_dataset(ann_path: str) -> str:
    """The first image of the dataset alone, for the job's fixed cost."""
    root = os.path.join(os.path.dirname(ann_path), "one-image")
    path = os.path.join(root, "annotations.json")
    if not os.path.exists(path):
        with open(ann_path) as f:
            doc = json.load(f)
        first = doc["images"][0]
        os.makedirs(os.path.join(root, "images"), exist_ok=True)
        shutil.copy(os.path.join(os.path.dirname(ann_path), first["file_name"]), os.path.join(root, first["file_name"]))
        doc["images"] = [first]
        doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] == first["id"]]
        with open(path, "w") as f:
            json.dump(doc, f)
    return path


def _child(mode: str, ann_path: str, shards: int, checkout: str = "") -> None:
    out = tempfile.mkdtemp(prefix=f"bench-{mode.replace('@', '-')}-")
    start = time.perf_counter()
    try:
        if mode.startswith("job@"):  # the default job from a checkout, as `python -m beam_jobs.prepare`
            from bench.checkouts import output_digest, run_job

            run_job(checkout, ["--input", os.path.abspath(ann_path), "--output", out, f"--num-shards={shards}", "--val-fraction=0"])
            with open(os.path.join(out, "stats.json")) as f:
                n = json.load(f)["totals"]["images_written"]
            print(json.dumps({"digest": output_digest(out)}))
        elif mode == "empty-pipeline":
            import apache_beam as beam
            from apache_beam.options.pipeline_options import PipelineOptions

            from beam_jobs.local import local_runner

            options = PipelineOptions([])
            runner, _ = local_runner([], options)
            with beam.Pipeline(runner=runner, options=options) as p:
                _ = p | beam.Create([1, 2]) | beam.Reshuffle() | beam.Map(lambda x: x)
            n = 0
        elif mode == "floor":
            n = run_floor(ann_path, out)
        elif mode == "empty-job":  # the command as a user types it, from start to exit, on one image
            command = [
                os.path.join(os.path.dirname(sys.executable), "boxweight"),
                "prepare",
                "--input",
                one_image_dataset(ann_path),
                "--output",
                out,
                "--overwrite",
            ]
            subprocess.run(command, check=True, capture_output=True)
            n = 1
        elif mode == "tf-import":
            import tensorflow  # noqa: F401

            n = 0
        elif mode in ("boxweight", "boxweight-1proc", "boxweight-header"):
            from boxweight.cli import main as boxweight_main

            argv = ["prepare", "--input", ann_path, "--output", out, f"--num-shards={shards}", "--val-fraction=0"]
            if mode == "boxweight-header":  # pixels not decoded: headers, sizes and end markers only
                argv.append("--pixel-check=header")
            if mode == "boxweight-1proc":  # the same runner in this process only: no worker processes
                from beam_jobs.local import IN_PROCESS_RUNNER

                argv.append(f"--runner={IN_PROCESS_RUNNER}")
            with contextlib.redirect_stdout(io.StringIO()):  # the command prints its report table
                boxweight_main(argv)
            with open(os.path.join(out, "stats.json")) as f:
                n = json.load(f)["totals"]["images_written"]
        else:
            n = run_baseline(ann_path, out, shards, pool=mode.startswith("baseline-pool"), decode=mode.endswith("-decode"))
        seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(out, ignore_errors=True)
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"mode": mode, "images": n, "seconds": seconds, "peak_mb": max(self_kb, child_kb) / 1024}))


MODES = (
    "baseline-1",
    "baseline-pool",
    "baseline-pool-decode",
    "floor",
    "boxweight",
    "boxweight-1proc",
    "empty-pipeline",
    "empty-job",
    "tf-import",
)
FIXED = ("empty-pipeline", "empty-job", "tf-import")  # fixed costs, printed on their own lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--shards", type=int, default=10)
    parser.add_argument(
        "--noise", type=float, default=6, help="pixel noise: 6 gives about 40 KB a JPEG, 28 about 140 KB"
    )
    parser.add_argument(
        "--unique", type=int, default=0, help="generate only this many images; the rest are hard links to them"
    )
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; medians are reported")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--baseline-commit", default=None, help="also run the default job from this commit (job@baseline) beside this checkout's (job@here)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], args.child[1], args.shards, *args.child[2:])
        return
    with contextlib.ExitStack() as stack:
        checkouts = {"job@here": os.getcwd()}
        if args.baseline_commit:
            from bench.checkouts import with_baseline

            work = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-checkouts-"))
            found = stack.enter_context(with_baseline(os.getcwd(), work, args.baseline_commit))
            checkouts["job@baseline"] = found[f"baseline {args.baseline_commit}"]
            if "job@here" not in args.modes.split(","):
                args.modes += ",job@here,job@baseline"
        _measure(args, checkouts)


def _measure(args: argparse.Namespace, checkouts: dict[str, str]) -> None:
    t = time.perf_counter()
    name = (
        f"bench-coco-{args.images}"
        + (f"-noise{args.noise:g}" if args.noise != 6 else "")
        + (f"-unique{args.unique}" if args.unique else "")
    )
    ann_path = make_dataset(os.path.join("build", name), args.images, args.noise, args.unique)
    size = sum(
        os.path.getsize(os.path.join(os.path.dirname(ann_path), "images", f))
        for f in os.listdir(os.path.join(os.path.dirname(ann_path), "images"))
    )
    print(
        f"dataset {ann_path}: {args.images} images, {size / args.images / 1024:.0f} KB per image on average ({time.perf_counter() - t:.0f} s to prepare)"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    modes = tuple(args.modes.split(","))
    timed = [m for m in modes if m not in FIXED]
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    for _ in range(args.repeats):
        for mode in modes:
            cmd = [sys.executable, "-m", "bench.prepare_job", "--shards", str(args.shards), "--child", mode, ann_path]
            if mode in checkouts:
                cmd.append(checkouts[mode])
            out = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if out.returncode:
                print(out.stderr[-3000:])
                raise SystemExit(f"{mode} failed")
            tail = out.stdout.strip().splitlines()
            row = json.loads(tail[-1])
            if mode in checkouts:  # its outputs' digest, the line before
                row.update(json.loads(tail[-2]))
            runs[mode].append(row)
    digests = {runs[m][0].get("digest") for m in modes if m.startswith("job@")}
    if len(digests) > 1:
        raise SystemExit("job@here and job@baseline wrote different shards or rejects.jsonl")

    def median(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[mode])

    print(f"median of {args.repeats} interleaved runs each, {os.cpu_count()} cores")
    print(f"{'pipeline':<16} {'images':>7} {'seconds':>8} {'(min-max)':>12} {'images/s':>9} {'peak RSS MB':>12}")
    for mode in timed:
        secs = [r["seconds"] for r in runs[mode]]
        n = runs[mode][0]["images"]
        print(
            f"{mode:<16} {n:>7} {median(mode, 'seconds'):>8.1f} {min(secs):>5.1f}-{max(secs):<5.1f} {n / median(mode, 'seconds'):>9.1f} {median(mode, 'peak_mb'):>12.0f}"
        )
    for mode, what in (
        ("empty-job", "fixed cost: `boxweight prepare` on one image, command start to exit"),
        ("empty-pipeline", "fixed cost: an empty pipeline on boxweight's local runner, imports included"),
        ("tf-import", "fixed cost: import tensorflow"),
    ):
        if mode in modes:
            print(f"{what}: {median(mode, 'seconds'):.1f} s")

    def versus(a: str, b: str) -> None:  # throughput of a over b; ratios within a round (back to back) are steadier
        if a in modes and b in modes:
            per_round = [rb["seconds"] / ra["seconds"] for ra, rb in zip(runs[a], runs[b])]
            print(
                f"{a} / {b} throughput: median {statistics.median(per_round):.2f}x within rounds ({min(per_round):.2f}-{max(per_round):.2f})"
            )

    versus("job@here", "job@baseline")
    versus("boxweight", "baseline-pool-decode")
    versus("boxweight", "baseline-pool")
    versus("boxweight-header", "baseline-pool")
    versus("boxweight-1proc", "baseline-pool")
    versus("boxweight", "floor")
    versus("boxweight-header", "floor")
    versus("baseline-pool", "floor")


if __name__ == "__main__":
    main()
