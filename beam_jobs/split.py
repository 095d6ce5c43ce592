"""The train/val split: the source's own, or a val split carved out of train, stable and said out loud."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.typehints.decorators import no_annotations

from beam_jobs.chunks import RecordChunk
from beam_jobs.keys import image_key, stable_hash

#: An image of train as the carve sees it: the stable hash of its key, and its class names.
Candidate = tuple[int, tuple[str, ...]]


def val_count(n: int, fraction: float) -> int:
    """Images the carve aims at: the rounded share of ``n``, at least one when ``n >= 2``, never all."""
    if fraction <= 0 or n == 0:
        return 0
    k = round(n * fraction)
    return min(max(k, 1), n - 1) if n >= 2 else 0


def carve_val(images: Iterable[Candidate], fraction: float) -> tuple[frozenset[int], dict[str, Any]]:
    """Which train images go to val, and what the carve did (for stats.json, the console and the page).

    The rule, in order:

    1. every class in two or more images gets one of them in val (rarest class
       first; the image with the lowest hash that leaves each of its classes
       an image in train);
    2. then images are added up to ``val_count(n, fraction)``, stratified:
       each image is ranked within its stratum (its rarest class; '' for an
       image without boxes) by hash, and strata are interleaved by rank, so
       each stratum gives about its share;
    3. no image goes to val that would take a class's last train image.

    So a class with two or more images lands in both splits; val can come
    out larger than asked (many rare classes in a small set) or smaller (too
    few images can move): the summary says so (``far_from_asked``).
    """
    items = sorted(set(images))
    classes_of = dict(items)
    class_images = Counter(c for _, names in items for c in names)
    train_left = dict(class_images)
    val: set[int] = set()

    def move(h: int) -> bool:
        if h in val or any(train_left[c] < 2 for c in classes_of[h]):
            return False
        val.add(h)
        for c in classes_of[h]:
            train_left[c] -= 1
        return True

    by_class: defaultdict[str, list[int]] = defaultdict(list)
    strata: defaultdict[str, list[int]] = defaultdict(list)
    for h, names in items:
        for c in names:
            by_class[c].append(h)
        strata[min(names, key=lambda c: (class_images[c], c)) if names else ""].append(h)
    for c in sorted(class_images, key=lambda c: (class_images[c], c)):
        if class_images[c] >= 2 and train_left[c] == class_images[c]:  # no image of it in val yet
            for h in by_class[c]:
                if move(h):
                    break
    target = val_count(len(items), fraction)
    for _, h in sorted(((i + 0.5) / len(hs), h) for hs in strata.values() for i, h in enumerate(hs)):
        if len(val) >= target:
            break
        move(h)
    in_val = Counter(c for h in val for c in classes_of[h])
    asked, got = target / len(items) if items else 0.0, len(val) / len(items) if items else 0.0
    summary = {
        "asked_fraction": fraction,
        "train_images_before": len(items),
        "val_images": len(val),
        "fraction": round(got, 6),
        "classes_in_both": sorted(c for c in class_images if in_val[c] and train_left[c]),
        "classes_train_only": sorted(c for c in class_images if not in_val[c]),
        "far_from_asked": abs(len(val) - target) > 1 and not 0.5 * asked <= got <= 1.5 * asked,
    }
    return frozenset(val), summary


class Carved(NamedTuple):
    """What :class:`SplitTrainVal` gives: the chunks, and one summary of the carve (None: nothing was carved)."""

    chunks: beam.PCollection
    summary: beam.PCollection


class SplitTrainVal(beam.PTransform):
    """Keep the source's splits; if it has no val split, carve one out of train (see :func:`carve_val`).

    The carve sees every train image's hash and class names on one worker
    (about 100 bytes an image) and ships the val hashes to every worker.
    Chunks in, chunks out.
    """

    def __init__(self, val_fraction: float) -> None:
        super().__init__()
        self.val_fraction = val_fraction

    @no_annotations  # returns no single PCollection: Beam 2.78 warns of any other annotation
    def expand(self, chunks: beam.PCollection) -> Carved:
        frac = self.val_fraction
        if frac <= 0:  # nothing to carve: skip the counting and gathering passes
            return Carved(chunks, chunks.pipeline | "NoCarve" >> beam.Create([None]))
        has_val = (
            chunks
            | "HasVal" >> beam.Map(lambda c: any(r.split == "val" for r in c))
            | "AnyVal" >> beam.CombineGlobally(any)
        )
        carve = (
            chunks
            | "Candidates" >> beam.FlatMap(_candidates)
            | "Gather" >> beam.combiners.ToList()
            | "Carve" >> beam.Map(_carve_unless, frac, beam.pvalue.AsSingleton(has_val))
        )
        carve_si = beam.pvalue.AsSingleton(carve)
        return Carved(
            chunks | "Assign" >> beam.Map(_assign, carve_si),
            carve | "Summary" >> beam.Map(lambda c: None if c is None else c[1]),
        )


def _candidates(chunk: RecordChunk) -> list[Candidate]:
    return [(stable_hash(image_key(r)), tuple(sorted({b.text for b in r.boxes}))) for r in chunk if r.split == "train"]


def _carve_unless(images: Sequence[Candidate], fraction: float, has_val: bool) -> tuple[frozenset[int], dict] | None:
    return None if has_val else carve_val(images, fraction)


def _assign(chunk: RecordChunk, carve: tuple[frozenset[int], dict] | None) -> RecordChunk:
    if carve is None:
        return chunk
    val = carve[0]
    return [r.replace(split="val") if r.split == "train" and stable_hash(image_key(r)) in val else r for r in chunk]
