"""One composite PTransform per stage of the prepare job.

Each is a thin adapter over the pure functions in ``readers`` and
``weighting``: the logic lives there, Beam only distributes it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

import readers
from beam_jobs.tfrecord_file import write_tfrecords
from readers import fs
from readers.probe import ProbeError, resize_to
from schemas.annotations import ImageRecord, Reject
from schemas.codec import encode_record
from schemas.label_map import LabelMap
from schemas.reasons import Repair
from weighting.apply import WeightPlan
from weighting.stats import SplitStats

log = logging.getLogger(__name__)
NAMESPACE = "boxweight"
REJECTS = "rejects"
REPAIRS = "repairs"
TARGET_SHARD_BYTES = 64 << 20
PARSE_CHUNK = 64  # annotation entries per element through the shuffle after parsing


def image_key(record: ImageRecord) -> str:
    """Stable sort and hash key of a record: unique within a dataset."""
    return f"{record.split}/{record.source_id}"


def stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


class ReadAnnotations(beam.PTransform):
    """Parse the annotation files: raw images and the rejects found while parsing."""

    def __init__(self, path: str, format: str, image_root: str | None, label_map: LabelMap) -> None:
        super().__init__()
        self.path, self.format, self.image_root, self.label_map = path, format, image_root, label_map

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        def parse(_: Any) -> Iterator[list[Any]]:
            source = readers.open_source(self.path, self.format, self.image_root, self.label_map)
            chunk: list[Any] = []
            for n, item in enumerate(source, start=1):
                if n % 10000 == 0:
                    log.info("parsed %d annotation entries from %s", n, self.path)
                chunk.append(item)
                if len(chunk) == PARSE_CHUNK:
                    yield chunk
                    chunk = []
            if chunk:
                yield chunk

        return (
            pbegin
            | "Seed" >> beam.Create([self.path])
            | "Parse" >> beam.FlatMap(parse)
            # Parsing is one sequential stream; spread the per-image work across workers, in
            # chunks: a shuffle costs tens of microseconds an element, a chunk pays it once.
            | "Spread" >> beam.Reshuffle()
            | "Unchunk" >> beam.FlatMap(lambda chunk: chunk)
        )


class _ValidateFn(beam.DoFn):
    def __init__(self, label_map: LabelMap) -> None:
        self.label_map = label_map
        self.read = Metrics.counter(NAMESPACE, "images_read")
        self.quarantined = Metrics.counter(NAMESPACE, "images_quarantined")
        self.boxes_dropped = Metrics.counter(NAMESPACE, "boxes_dropped")

    def process(self, item: readers.RawImage | Reject) -> Iterator[Any]:
        if isinstance(item, Reject):
            rejects: tuple[Reject, ...] = (item,)
            record: ImageRecord | None = None
            repairs: tuple[Repair, ...] = ()
        else:
            self.read.inc()
            result = readers.validate_image(item, self.label_map)
            rejects, record, repairs = result.rejects, result.record, result.repairs
        for reject in rejects:
            if reject.is_image:
                self.quarantined.inc()
                Metrics.counter(NAMESPACE, f"images_quarantined_{reject.reason.value}").inc()
            if reject.boxes:
                self.boxes_dropped.inc(reject.boxes)
                reason = "image_quarantined" if reject.is_image else reject.reason.value
                Metrics.counter(NAMESPACE, f"boxes_dropped_{reason}").inc(reject.boxes)
            yield beam.pvalue.TaggedOutput(REJECTS, reject)
        for repair in repairs:
            Metrics.counter(NAMESPACE, f"repaired_{repair.value}").inc()
            yield beam.pvalue.TaggedOutput(REPAIRS, repair)
        if record is not None:
            yield record


class Validate(beam.PTransform):
    """Probe each image and check its boxes: records, plus dead-letter rejects and repairs."""

    def __init__(self, label_map: LabelMap) -> None:
        super().__init__()
        self.label_map = label_map

    def expand(self, raw: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        return raw | "Check" >> beam.ParDo(_ValidateFn(self.label_map)).with_outputs(REJECTS, REPAIRS, main="records")


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
    in both splits whenever they have two or more images.
    """

    def __init__(self, val_fraction: float) -> None:
        super().__init__()
        self.val_fraction = val_fraction

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        frac = self.val_fraction
        if frac <= 0:
            return records  # nothing to carve: skip the counting and grouping passes
        splits = records | "Splits" >> beam.Map(lambda r: r.split) | "DistinctSplits" >> beam.Distinct()
        class_images = (
            records
            | "ClassesPerImage" >> beam.FlatMap(lambda r: sorted({b.text for b in r.boxes}))
            | "CountImages" >> beam.combiners.Count.PerElement()
        )
        class_images_si = beam.pvalue.AsDict(class_images)
        carve_si = beam.pvalue.AsSingleton(
            splits | "NeedsVal" >> beam.combiners.ToList() | beam.Map(lambda s: "val" not in s and frac > 0)
        )
        thresholds = (
            records
            | "TrainOnly" >> beam.Filter(lambda r: r.split == "train")
            | "Stratum" >> beam.Map(lambda r, ci: (stratum(r, ci), stable_hash(image_key(r))), ci=class_images_si)
            | "ByStratum" >> beam.GroupByKey()
            | "Threshold" >> beam.Map(_threshold, frac)
        )
        thresholds_si = beam.pvalue.AsDict(thresholds)

        def assign(record: ImageRecord, carve: bool, ci: dict[str, int], th: dict[str, int]) -> ImageRecord:
            if not carve or record.split != "train":
                return record
            if stable_hash(image_key(record)) < th.get(stratum(record, ci), 0):
                return record.replace(split="val")
            return record

        return records | "Assign" >> beam.Map(assign, carve_si, class_images_si, thresholds_si)


def _threshold(kv: tuple[str, Iterable[int]], fraction: float) -> tuple[str, int]:
    key, hashes = kv
    ordered = sorted(hashes)
    k = val_count(len(ordered), fraction)
    return key, (ordered[k - 1] + 1 if k else 0)


class _StatsCombineFn(beam.CombineFn):
    def create_accumulator(self) -> SplitStats:
        return SplitStats()

    def add_input(self, acc: SplitStats, record: ImageRecord) -> SplitStats:
        return acc.add(record)

    def merge_accumulators(self, accs: Iterable[SplitStats]) -> SplitStats:
        return merge_all(accs)  # type: ignore[no-any-return]

    def extract_output(self, acc: SplitStats) -> SplitStats:
        return acc


class ClassStatistics(beam.PTransform):
    """SplitStats per split, as (split, stats) pairs."""

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        return (
            records
            | "BySplit" >> beam.Map(lambda r: (r.split, r))
            | "Combine" >> beam.CombinePerKey(_StatsCombineFn())
        )


class AttachWeights(beam.PTransform):
    """Set each box's weight and each image's repeat factor from the plan (a side input).

    The job itself attaches weights inside :class:`WriteShards`, after the
    shuffle, to move each record through the runner once; this transform is
    the same step for a PCollection of records.
    """

    def __init__(self, plan: beam.pvalue.AsSingleton) -> None:
        super().__init__()
        self.plan = plan

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        return records | "Apply" >> beam.Map(lambda r, plan: plan.apply(r), self.plan)


def shard_count(total_bytes: int, images: int, requested: int) -> int:
    if requested > 0:
        return requested
    return max(1, min(images, math.ceil(total_bytes / TARGET_SHARD_BYTES)))


def shard_name(split: str, index: int, count: int, compression: str) -> str:
    """TF OD API shard naming: ``train-00000-of-00010.tfrecord`` (``.gz`` when gzipped)."""
    suffix = ".tfrecord.gz" if compression == "gzip" else ".tfrecord"
    return f"{split}-{index:05d}-of-{count:05d}{suffix}"


class _WriteShardFn(beam.DoFn):
    """Encode the (weighted, key-sorted) records of one shard and write the file."""

    def __init__(self, output: str, compression: str, max_side: int | None) -> None:
        self.output, self.compression, self.max_side = output, compression, max_side
        self.written = Metrics.counter(NAMESPACE, "images_written")
        self.resized = Metrics.counter(NAMESPACE, f"repaired_{Repair.RESIZED.value}")

    def process(self, kv: tuple[tuple[str, int], list[ImageRecord]], counts: dict[str, int]) -> Iterator[str]:
        (split, index), records = kv
        path = fs.join(self.output, shard_name(split, index, counts[split], self.compression))
        n = write_tfrecords(path, (self._encode(record) for record in records), gzipped=self.compression == "gzip")
        self.written.inc(n)
        yield path

    def _encode(self, record: ImageRecord) -> bytes:
        data = record.encoded if record.encoded is not None else fs.read_bytes(record.path)
        if self.max_side and max(record.width, record.height) > self.max_side:
            try:
                data, width, height = resize_to(data, self.max_side, record.format, record.path)
            except ProbeError as exc:
                # Probed fine but does not decode: keep it as it was rather than lose it.
                log.warning("not resized: %s", exc.detail)
            else:
                self.resized.inc()
                record = record.replace(width=width, height=height)
        return encode_record(record.replace(encoded=None), data)


def _sorted_shard(kv: tuple[tuple[str, int], Iterable[Any]], plan: WeightPlan | None) -> tuple[tuple[str, int], list[ImageRecord]]:
    """One shard's records in key order (the empty-shard marker dropped), weights attached."""
    key, values = kv
    records = [r for _, r in sorted((v for v in values if v is not None), key=lambda kr: kr[0])]
    return key, records if plan is None else [plan.apply(r) for r in records]


class WriteShards(beam.PTransform):
    """Encode records as tf.train.Example and write each split as N shards.

    A record goes to shard ``sha256(key) mod N`` and each shard is sorted by
    key, so the output is byte-identical across runs; a retried bundle
    rewrites identical bytes. Only the small records cross the shuffle: the
    image bytes are read and encoded by the worker that writes the shard,
    which keeps memory flat and avoids moving every image through the runner.

    With ``plan`` (a side input), each shard's records get their weights on
    the worker that writes them, right after the shuffle ("AttachWeights"),
    so the records cross the runner once. With ``num_shards`` set, the shard
    of a record is known at once; with 0 (about 64 MiB a shard) it waits for
    the split's total size.
    """

    def __init__(
        self,
        output: str,
        num_shards: int,
        compression: str,
        max_side: int | None = None,
        plan: beam.pvalue.AsSingleton | None = None,
    ) -> None:
        super().__init__()
        self.output, self.num_shards, self.compression, self.max_side = output, num_shards, compression, max_side
        self.plan = plan

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        requested = self.num_shards
        sizes = (
            records
            | "Sizes" >> beam.Map(lambda r: (r.split, (r.nbytes, 1)))
            | "SumSizes" >> beam.CombinePerKey(lambda vs: tuple(map(sum, zip(*vs))) or (0, 0))
        )
        counts = sizes | "ShardCount" >> beam.MapTuple(lambda split, s: (split, shard_count(s[0], s[1], requested)))
        counts_si = beam.pvalue.AsDict(counts)
        if requested > 0:
            keyed = records | "Assign" >> beam.Map(lambda r: ((r.split, stable_hash(image_key(r)) % requested), (image_key(r), r)))
        else:
            keyed = records | "Assign" >> beam.Map(
                lambda r, n: ((r.split, stable_hash(image_key(r)) % n[r.split]), (image_key(r), r)), counts_si
            )
        every_shard = counts | "EveryShard" >> beam.FlatMapTuple(lambda split, n: [((split, i), None) for i in range(n)])
        grouped = (keyed, every_shard) | "Merge" >> beam.Flatten() | "ByShard" >> beam.GroupByKey()
        if self.plan is not None:
            shards = grouped | "AttachWeights" >> beam.Map(_sorted_shard, self.plan)
        else:
            shards = grouped | "Sort" >> beam.Map(_sorted_shard, None)
        return shards | "EncodeAndWrite" >> beam.ParDo(_WriteShardFn(self.output, self.compression, self.max_side), counts_si)


def merge_all(accumulators: Iterable[Any]) -> Any:
    """Merge mergeable accumulators (``SplitStats``, ``Accounting``) into the first."""
    it = iter(accumulators)
    first = next(it)
    for other in it:
        first.merge(other)
    return first


def write_text(path: str, text: str) -> None:
    with FileSystems.create(path) as f:
        f.write(text.encode("utf-8"))


def rejects_jsonl(rejects: Iterable[Reject]) -> str:
    lines = sorted(json.dumps(r.to_json(), sort_keys=True, ensure_ascii=False) for r in rejects)
    return "".join(line + "\n" for line in lines)
