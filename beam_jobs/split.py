"""The train/val split: the source's own, or a val split carved out of train, stratified and stable."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator

import apache_beam as beam

from beam_jobs.combine import Merge
from beam_jobs.keys import image_key, stable_hash
from beam_jobs.read import Chunk
from schemas.annotations import ImageRecord


def stratum(record: ImageRecord, class_images: dict[str, int]) -> str:
    """The image's rarest class (by images containing it), or '' for a negative."""
    names = {b.text for b in record.boxes}
    return min(names, key=lambda n: (class_images.get(n, 0), n)) if names else ""


def val_count(n: int, fraction: float) -> int:
    """Images of a stratum that go to val: the rounded share, but each side keeps one when n >= 2."""
    if fraction <= 0 or n == 0:
        return 0
    k = round(n * fraction)
    return min(max(k, 1), n - 1) if n >= 2 else 0


class SplitTrainVal(beam.PTransform):
    """Keep the source's splits; if it has no val split, carve one out of train.

    The carve-out is stratified by each image's rarest class and ordered by a
    stable hash of the image key, so it is deterministic and rare classes land
    in both splits whenever they have two or more images. Chunks in, chunks out.
    """

    def __init__(self, val_fraction: float) -> None:
        super().__init__()
        self.val_fraction = val_fraction

    def expand(self, chunks: beam.PCollection) -> beam.PCollection:
        frac = self.val_fraction
        if frac <= 0:
            return chunks  # nothing to carve: skip the counting and grouping passes
        splits = (
            chunks
            | "Splits" >> beam.FlatMap(lambda c: sorted({r.split for r in c}))
            | "DistinctSplits" >> beam.Distinct()
        )
        class_images = (
            chunks
            | "ClassesPerImage" >> beam.Map(lambda c: Counter(n for r in c for n in {b.text for b in r.boxes}))
            | "CountImages" >> beam.CombineGlobally(Merge(Counter))
        )
        class_images_si = beam.pvalue.AsSingleton(class_images)
        carve_si = beam.pvalue.AsSingleton(
            splits | "NeedsVal" >> beam.combiners.ToList() | beam.Map(lambda s: "val" not in s and frac > 0)
        )
        thresholds = (
            chunks
            | "Stratum" >> beam.FlatMap(_strata_hashes, class_images_si)
            | "ByStratum" >> beam.CombinePerKey(Merge(list))
            | "Threshold" >> beam.FlatMap(_threshold, frac)
        )
        thresholds_si = beam.pvalue.AsDict(thresholds)

        def assign(chunk: Chunk, carve: bool, ci: dict[str, int], th: dict[str, int]) -> Chunk:
            if not carve:
                return chunk
            return [r.replace(split="val") if r.split == "train" and _to_val(r, ci, th) else r for r in chunk]

        return chunks | "Assign" >> beam.Map(assign, carve_si, class_images_si, thresholds_si)


def _strata_hashes(chunk: Chunk, class_images: dict[str, int]) -> Iterator[tuple[str, list[int]]]:
    """(stratum, hashes of its train images) for one chunk."""
    by_stratum: defaultdict[str, list[int]] = defaultdict(list)
    for r in chunk:
        if r.split == "train":
            by_stratum[stratum(r, class_images)].append(stable_hash(image_key(r)))
    yield from by_stratum.items()


def _threshold(kv: tuple[str, list[int]], fraction: float) -> Iterator[tuple[str, int]]:
    """(stratum, the largest hash that goes to val); nothing for a stratum that keeps all its images."""
    key, hashes = kv
    k = val_count(len(hashes), fraction)
    if k:
        yield key, sorted(hashes)[k - 1]


def _to_val(record: ImageRecord, class_images: dict[str, int], thresholds: dict[str, int]) -> bool:
    last = thresholds.get(stratum(record, class_images))
    return last is not None and stable_hash(image_key(record)) <= last
