"""Images/s of ``create_input_fn(..., is_training=True)`` vs a naive pipeline and a decode ceiling.

On the demo records (``make demo`` writes them to build/demo-out), batch 32,
512x512, in one run:

* naive: the common tutorial pipeline, ``TFRecordDataset(files).map(parse)``
  with no ``num_parallel_calls`` and no prefetch, same decode and resize;
* ceiling: parallel decode + resize of the same encoded images held in
  memory (no file reading, parsing or augmentation);
* boxweight: ``create_input_fn`` with training augmentation (flip, crop,
  color jitter), weights, padding;
* boxweight-noaug: the same with ``augment=False``.

The four run interleaved, ``--rounds`` times; the median of each is
reported, and the median of the ratios within a round: one run of the same
pipeline varies by 15% on a shared 2-core VM.

    .venv/bin/python -m bench.input_pipeline [--records 'build/demo-out/train-*'] [--batches 100] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from schemas.features import parse_spec  # noqa: E402
from weighting.training.input_fn import create_input_fn, list_files  # noqa: E402

SIZE = (512, 512)
BATCH = 32


def _decode_resize(encoded: tf.Tensor) -> tf.Tensor:
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    return tf.image.resize(tf.cast(image, tf.float32), SIZE)


def naive(files: list[str]) -> tf.data.Dataset:
    spec = parse_spec()

    def parse(serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        p = tf.io.parse_single_example(serialized, spec)
        boxes = tf.stack([tf.sparse.to_dense(p[f"image/object/bbox/{k}"]) for k in ("ymin", "xmin", "ymax", "xmax")], axis=1)
        return _decode_resize(p["image/encoded"]), boxes

    return tf.data.TFRecordDataset(files).repeat().map(parse).padded_batch(BATCH)


def ceiling(files: list[str]) -> tf.data.Dataset:
    spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string)}
    encoded = [tf.io.parse_single_example(x, spec)["image/encoded"].numpy() for x in tf.data.TFRecordDataset(files)]
    ds = tf.data.Dataset.from_tensor_slices(encoded).repeat()
    return ds.map(_decode_resize, num_parallel_calls=tf.data.AUTOTUNE).batch(BATCH).prefetch(tf.data.AUTOTUNE)


def measure(ds: tf.data.Dataset, batches: int, warmup: int = 5) -> float:
    it = iter(ds)
    for _ in range(warmup):
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * BATCH / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", default="build/demo-out/train-*")
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    files = list_files(args.records)
    pipelines = {
        "naive": lambda: naive(files),
        "ceiling": lambda: ceiling(files),
        "boxweight": lambda: create_input_fn(args.records, BATCH, True, image_size=SIZE)(),
        "boxweight-noaug": lambda: create_input_fn(args.records, BATCH, True, image_size=SIZE, augment=False)(),
    }
    rates: dict[str, list[float]] = {name: [] for name in pipelines}
    for _ in range(args.rounds):
        for name, make in pipelines.items():
            rates[name].append(measure(make(), args.batches))
    results = {name: statistics.median(r) for name, r in rates.items()}
    print(f"batch {BATCH}, {SIZE[0]}x{SIZE[1]}, {args.batches} batches after 5 warm-up, median of {args.rounds} rounds, {os.cpu_count()} cores")
    print(f"{'pipeline':<16} {'images/s':>9} {'(min-max)':>12}")
    for name, rate in results.items():
        print(f"{name:<16} {rate:>9.1f} {min(rates[name]):>5.0f}-{max(rates[name]):<5.0f}")
    # ratios within each round (the pipelines ran back to back) are steadier than ratios of medians
    for name in ("boxweight", "boxweight-noaug"):
        to_naive = [a / b for a, b in zip(rates[name], rates["naive"])]
        to_ceiling = [a / b for a, b in zip(rates[name], rates["ceiling"])]
        print(
            f"{name} / naive: {statistics.median(to_naive):.2f}x ({min(to_naive):.2f}-{max(to_naive):.2f})   "
            f"{name} / ceiling: {statistics.median(to_ceiling):.2f}x ({min(to_ceiling):.2f}-{max(to_ceiling):.2f})"
        )


if __name__ == "__main__":
    main()
