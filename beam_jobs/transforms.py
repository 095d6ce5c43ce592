"""One composite PTransform per stage of the prepare job.

Each is a thin adapter over the pure functions in ``readers`` and
``weighting``: the logic lives there, Beam only distributes it.

The job's PCollections carry *chunks*: lists of up to :data:`CHUNK` items
(raw images, then records) rather than single items. In the Python SDK every
element costs tens of microseconds per step (windowing, coders, dispatch)
whatever it holds; per image that was more than the image's own work. A
chunk pays it once. Rejects stay single elements (there are few), and the
counts travel as one :class:`readers.Accounting` per chunk.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import io
import json
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

import readers
from beam_jobs import progress
from beam_jobs.tfrecord_file import write_tfrecords
from readers import fs
from readers.probe import ProbeError, resize_to
from schemas.annotations import ImageRecord, Reject
from schemas.codec import encode_record_parts
from schemas.label_map import LabelMap
from schemas.manifest import FileEntry, shard_name
from schemas.reasons import Repair
from weighting import thumbnails
from weighting.apply import WeightPlan
from weighting.stats import SplitStats

log = logging.getLogger(__name__)
NAMESPACE = "boxweight"
REJECTS = "rejects"
ACCOUNTS = "accounts"
TARGET_SHARD_BYTES = 64 << 20
CHUNK = 64  # items per element: big enough to amortize Beam's per-element cost, small enough to spread

Chunk = list  # a list of items of one kind, see the module docstring


def image_key(record: ImageRecord) -> str:
    """Stable sort and hash key of a record: unique within a dataset."""
    return f"{record.split}/{record.source_id}"


def stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def chunked(items: Iterable[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class ReadAnnotations(beam.PTransform):
    """Parse the annotation files: chunks of raw images and of the rejects found while parsing."""

    def __init__(
        self, path: str, format: str, image_root: str | None, label_map: LabelMap, progress_dir: str | None = None
    ) -> None:
        super().__init__()
        self.path, self.format, self.image_root, self.label_map = path, format, image_root, label_map
        self.progress_dir = progress_dir

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        def parse(_: Any) -> Iterator[list[Any]]:
            tally = progress.Tally(self.progress_dir)
            source = readers.open_source(self.path, self.format, self.image_root, self.label_map)
            for chunk in chunked(source):
                tally.add(progress.LISTED, sum(1 for item in chunk if not isinstance(item, Reject) or item.is_image))
                yield chunk
            tally.add(progress.PARSED, flush=True)

        return (
            pbegin
            | "Seed" >> beam.Create([self.path])
            | "Parse" >> beam.FlatMap(parse)
            # Parsing is one sequential stream; spread the per-image work across workers.
            | "Spread" >> beam.Reshuffle()
        )


class _ValidateFn(beam.DoFn):
    def __init__(self, label_map: LabelMap, max_bytes: int, progress_dir: str | None = None) -> None:
        self.label_map, self.max_bytes = label_map, max_bytes
        self.tally = progress.Tally(progress_dir)
        self.read = Metrics.counter(NAMESPACE, "images_read")
        self.quarantined = Metrics.counter(NAMESPACE, "images_quarantined")
        self.boxes_dropped = Metrics.counter(NAMESPACE, "boxes_dropped")

    def process(self, chunk: Chunk) -> Iterator[Any]:
        records: list[ImageRecord] = []
        acc = readers.Accounting()
        for item in chunk:
            for out in readers.check(item, self.label_map, acc, self.max_bytes):
                if isinstance(out, ImageRecord):
                    records.append(out)
                    continue
                if out.is_image:
                    Metrics.counter(NAMESPACE, f"images_quarantined_{out.reason.value}").inc()
                if out.boxes:
                    reason = "image_quarantined" if out.is_image else out.reason.value
                    Metrics.counter(NAMESPACE, f"boxes_dropped_{reason}").inc(out.boxes)
                yield beam.pvalue.TaggedOutput(REJECTS, out)
        self.read.inc(acc.images_in)
        self.quarantined.inc(acc.images_quarantined)
        self.boxes_dropped.inc(acc.boxes_dropped)
        for repair, n in acc.repairs.items():
            Metrics.counter(NAMESPACE, f"repaired_{repair}").inc(n)
        yield beam.pvalue.TaggedOutput(ACCOUNTS, acc)
        self.tally.add(progress.ACCEPTED, acc.images_written)
        self.tally.add(progress.VALIDATED, acc.images_in)
        if records:
            yield records

    def finish_bundle(self) -> None:
        self.tally.add(progress.VALIDATED, 0, flush=True)


class Validate(beam.PTransform):
    """Probe each image and check its boxes.

    Outputs: ``records`` (chunks of valid records), ``rejects`` (the
    dead-letter output: one Reject per quarantined image or dropped box)
    and ``accounts`` (one :class:`readers.Accounting` per chunk: images and
    boxes in, written, dropped by reason, repairs).
    """

    def __init__(
        self, label_map: LabelMap, max_bytes: int = readers.MAX_IMAGE_BYTES, progress_dir: str | None = None
    ) -> None:
        super().__init__()
        self.label_map, self.max_bytes, self.progress_dir = label_map, max_bytes, progress_dir

    def expand(self, raw: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        check = _ValidateFn(self.label_map, self.max_bytes, self.progress_dir)
        return raw | "Check" >> beam.ParDo(check).with_outputs(REJECTS, ACCOUNTS, main="records")


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


class Merge(beam.CombineFn):
    """Merge mergeable values (Counter, Accounting, SplitStats, lists) into one."""

    def __init__(self, empty: type) -> None:
        self.empty = empty

    def create_accumulator(self) -> Any:
        return self.empty()

    def add_input(self, acc: Any, value: Any) -> Any:
        if isinstance(acc, list):
            acc.extend(value)
        elif isinstance(acc, Counter):
            acc.update(value)
        else:
            acc.merge(value)
        return acc

    def merge_accumulators(self, accs: Iterable[Any]) -> Any:
        it = iter(accs)
        first = next(it)
        for other in it:
            self.add_input(first, other)
        return first

    def extract_output(self, acc: Any) -> Any:
        return acc


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
            | "Threshold" >> beam.Map(_threshold, frac)
        )
        thresholds_si = beam.pvalue.AsDict(thresholds)

        def assign(chunk: Chunk, carve: bool, ci: dict[str, int], th: dict[str, int]) -> Chunk:
            if not carve:
                return chunk
            return [
                r.replace(split="val")
                if r.split == "train" and stable_hash(image_key(r)) < th.get(stratum(r, ci), 0)
                else r
                for r in chunk
            ]

        return chunks | "Assign" >> beam.Map(assign, carve_si, class_images_si, thresholds_si)


def _strata_hashes(chunk: Chunk, class_images: dict[str, int]) -> Iterator[tuple[str, list[int]]]:
    """(stratum, hashes of its train images) for one chunk."""
    by_stratum: defaultdict[str, list[int]] = defaultdict(list)
    for r in chunk:
        if r.split == "train":
            by_stratum[stratum(r, class_images)].append(stable_hash(image_key(r)))
    yield from by_stratum.items()


def _threshold(kv: tuple[str, list[int]], fraction: float) -> tuple[str, int]:
    key, hashes = kv
    ordered = sorted(hashes)
    k = val_count(len(ordered), fraction)
    return key, (ordered[k - 1] + 1 if k else 0)


def _by_split(chunk: Chunk) -> Iterator[tuple[str, list[ImageRecord]]]:
    groups: defaultdict[str, list[ImageRecord]] = defaultdict(list)
    for r in chunk:
        groups[r.split].append(r)
    yield from groups.items()


class _StatsCombineFn(beam.CombineFn):
    def create_accumulator(self) -> SplitStats:
        return SplitStats()

    def add_input(self, acc: SplitStats, records: list[ImageRecord]) -> SplitStats:
        for record in records:
            acc.add(record)
        return acc

    def merge_accumulators(self, accs: Iterable[SplitStats]) -> SplitStats:
        return merge_all(accs)  # type: ignore[no-any-return]

    def extract_output(self, acc: SplitStats) -> SplitStats:
        return acc


class ClassStatistics(beam.PTransform):
    """SplitStats per split, as (split, stats) pairs, from chunks of records."""

    def expand(self, chunks: beam.PCollection) -> beam.PCollection:
        return chunks | "BySplit" >> beam.FlatMap(_by_split) | "Combine" >> beam.CombinePerKey(_StatsCombineFn())


def _class_picks(chunk: Chunk) -> Iterator[tuple[str, tuple[int, ImageRecord]]]:
    """(class, (hash of the image key, record)) once per class in each image."""
    for r in chunk:
        h = stable_hash(image_key(r))
        for name in sorted({b.text for b in r.boxes}):
            yield name, (h, r)


class _ThumbnailFn(beam.DoFn):
    def process(
        self, kv: tuple[str, list[tuple[int, ImageRecord]]]
    ) -> Iterator[tuple[str, list[thumbnails.Thumbnail]]]:
        name, picks = kv
        out = []
        for _, record in sorted(picks, key=lambda hr: hr[0]):
            try:
                data = record.encoded if record.encoded is not None else fs.read_bytes(record.path)
                out.append(thumbnails.thumbnail(record, data, name))
            except Exception as exc:  # a picture for the page only: the records do not depend on it
                log.warning("no thumbnail of %s for %r: %s: %s", record.path, name, exc.__class__.__name__, exc)
        yield name, out


class Thumbnails(beam.PTransform):
    """A few images per class with its boxes drawn, for report.html: (class, [Thumbnail, ...]).

    The images of a class with the lowest stable hashes of their keys, so the
    same ones every run; Beam's ``Top`` keeps only those few per class.
    """

    def expand(self, chunks: beam.PCollection) -> beam.PCollection:
        return (
            chunks
            | "ImagesPerClass" >> beam.FlatMap(_class_picks)
            | "FirstByHash" >> beam.combiners.Top.SmallestPerKey(thumbnails.PER_CLASS, key=lambda hr: hr[0])
            | "Draw" >> beam.ParDo(_ThumbnailFn())
        )


def shard_count(total_bytes: int, images: int, requested: int) -> int:
    if requested > 0:
        return requested
    return max(1, min(images, math.ceil(total_bytes / TARGET_SHARD_BYTES)))


class _WriteShardFn(beam.DoFn):
    """Encode the (weighted, key-sorted) records of one shard and write the file."""

    def __init__(self, output: str, compression: str, max_side: int | None, progress_dir: str | None = None) -> None:
        self.output, self.compression, self.max_side = output, compression, max_side
        self.tally = progress.Tally(progress_dir)
        self.written = Metrics.counter(NAMESPACE, "images_written")
        self.resized = Metrics.counter(NAMESPACE, f"repaired_{Repair.RESIZED.value}")

    def process(self, kv: tuple[tuple[str, int], list[ImageRecord]], counts: dict[str, int]) -> Iterator[FileEntry]:
        (split, index), records = kv
        name = shard_name(split, index, counts[split], self.compression)
        written = write_tfrecords(
            fs.join(self.output, name), (self._encode(record) for record in records), gzipped=self.compression == "gzip"
        )
        self.written.inc(written.records)
        self.tally.add(progress.WRITTEN, written.records, flush=True)
        yield FileEntry(name, written.bytes, written.crc32c, split, written.records)

    @staticmethod
    def _read(path: str) -> bytes:
        try:
            return fs.read_bytes(path)
        except Exception as exc:
            # Validation read this file's header moments ago: the dataset changed under the job.
            # Counts and statistics already include the image, so fail loudly rather than drop it.
            raise RuntimeError(
                f"{path} passed validation but cannot be read now ({exc.__class__.__name__}: {exc}); "
                "was the dataset modified while the job ran? Rerun on a stable copy."
            ) from exc

    def _encode(self, record: ImageRecord) -> list[bytes]:
        data = record.encoded if record.encoded is not None else self._read(record.path)
        if self.max_side and max(record.width, record.height) > self.max_side:
            try:
                data, width, height = resize_to(data, self.max_side, record.format, record.path)
            except ProbeError as exc:
                # Probed fine but does not decode: keep it as it was rather than lose it.
                log.warning("not resized: %s", exc.detail)
            else:
                self.resized.inc()
                record = record.replace(width=width, height=height)
        return encode_record_parts(record.replace(encoded=None), data)


def _to_shards(
    chunk: Chunk, counts: dict[str, int] | int
) -> Iterator[tuple[tuple[str, int], list[tuple[str, ImageRecord]]]]:
    """Split a chunk by shard ``sha256(key) mod N``: ((split, shard), [(key, record), ...]) pairs."""
    groups: defaultdict[tuple[str, int], list[tuple[str, ImageRecord]]] = defaultdict(list)
    for r in chunk:
        key = image_key(r)
        n = counts if isinstance(counts, int) else counts[r.split]
        groups[(r.split, stable_hash(key) % n)].append((key, r))
    yield from groups.items()


def _sorted_shard(
    kv: tuple[tuple[str, int], Iterable[list[tuple[str, ImageRecord]]]], plan: WeightPlan | None
) -> tuple[tuple[str, int], list[ImageRecord]]:
    """One shard's records in key order, weights attached."""
    key, parts = kv
    records = [r for _, r in sorted((kr for part in parts for kr in part), key=lambda kr: kr[0])]
    return key, records if plan is None else [plan.apply(r) for r in records]


def _sizes(chunk: Chunk) -> Iterator[tuple[str, tuple[int, int]]]:
    """(split, (image bytes, images)) for one chunk."""
    nbytes: Counter[str] = Counter()
    images: Counter[str] = Counter()
    for r in chunk:
        nbytes[r.split] += r.nbytes
        images[r.split] += 1
    return ((split, (nbytes[split], images[split])) for split in images)


class WriteShards(beam.PTransform):
    """Encode records as tf.train.Example and write each split as N shards.

    A record goes to shard ``sha256(key) mod N`` and each shard is sorted by
    key, so the output is byte-identical across runs; a retried bundle
    rewrites identical bytes. Only the small records cross the shuffle: the
    image bytes are read and encoded by the worker that writes the shard,
    which keeps memory flat and avoids moving every image through the runner.
    Shards that get no record are written empty, so the set of files is
    always ``-00000-of-N`` .. ``-(N-1)-of-N``. The output is one
    :class:`~schemas.manifest.FileEntry` per shard, for the manifest.

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
        progress_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.output, self.num_shards, self.compression, self.max_side = output, num_shards, compression, max_side
        self.plan, self.progress_dir = plan, progress_dir

    def expand(self, chunks: beam.PCollection) -> beam.PCollection:
        requested = self.num_shards
        sizes = (
            chunks
            | "Sizes" >> beam.FlatMap(_sizes)
            | "SumSizes" >> beam.CombinePerKey(lambda vs: tuple(map(sum, zip(*vs))) or (0, 0))
        )
        counts = sizes | "ShardCount" >> beam.MapTuple(lambda split, s: (split, shard_count(s[0], s[1], requested)))
        counts_si = beam.pvalue.AsDict(counts)
        if requested > 0:
            keyed = chunks | "Assign" >> beam.FlatMap(_to_shards, requested)
        else:
            keyed = chunks | "Assign" >> beam.FlatMap(_to_shards, counts_si)
        grouped = keyed | "ByShard" >> beam.GroupByKey()
        if self.plan is not None:
            shards = grouped | "AttachWeights" >> beam.Map(_sorted_shard, self.plan)
        else:
            shards = grouped | "Sort" >> beam.Map(_sorted_shard, None)
        written = shards | "EncodeAndWrite" >> beam.ParDo(
            _WriteShardFn(self.output, self.compression, self.max_side, self.progress_dir), counts_si
        )
        empty = counts | "WriteEmptyShards" >> beam.FlatMap(self._write_empty, beam.pvalue.AsList(written))
        return (written, empty) | "AllShards" >> beam.Flatten()

    def _write_empty(self, split_count: tuple[str, int], written: list[FileEntry]) -> Iterator[FileEntry]:
        split, count = split_count
        done = {entry.name for entry in written}
        for index in range(count):
            name = shard_name(split, index, count, self.compression)
            if name not in done:
                empty = write_tfrecords(fs.join(self.output, name), [], gzipped=self.compression == "gzip")
                yield FileEntry(name, empty.bytes, empty.crc32c, split, 0)


def merge_all(accumulators: Iterable[Any]) -> Any:
    """Merge mergeable accumulators (``SplitStats``, ``Accounting``) into the first."""
    it = iter(accumulators)
    first = next(it)
    for other in it:
        first.merge(other)
    return first


def reject_line(reject: Reject) -> str:
    """One line of ``rejects.jsonl`` (without its newline)."""
    return json.dumps(reject.to_json(), sort_keys=True, ensure_ascii=False)


PART_LINES = 200_000  # lines a worker sorts in memory (about 60 MB of rejects)


def _part_of(line: str, lines: int) -> tuple[int, str]:
    return stable_hash(line) % max(1, -(-lines // PART_LINES)), line


class WriteSortedParts(beam.PTransform):
    """Text lines -> sorted part files in ``folder``, about :data:`PART_LINES` lines each.

    Beam has no global sort, and gathering every line on one worker (``AsList``)
    does not finish on a dataset with millions of rejects. So each part is
    sorted on the worker that groups it, and :func:`merge_parts` reads the
    parts back as one sorted stream. Output: (path, lines) per non-empty part.
    """

    def __init__(self, folder: str) -> None:
        super().__init__()
        self.folder = folder

    def expand(self, lines: beam.PCollection) -> beam.PCollection:
        count = lines | "Count" >> beam.combiners.Count.Globally()
        return (
            lines
            | "ToPart" >> beam.Map(_part_of, beam.pvalue.AsSingleton(count))
            | "ByPart" >> beam.GroupByKey()
            | "SortAndWrite" >> beam.MapTuple(self._write)
        )

    def _write(self, part: int, lines: Iterable[str]) -> tuple[str, int]:
        ordered = sorted(lines)
        path = fs.join(self.folder, f"part-{part:05d}")
        with FileSystems.create(path, compression_type="uncompressed") as f:
            for start in range(0, len(ordered), 4096):
                f.write("".join(line + "\n" for line in ordered[start : start + 4096]).encode("utf-8"))
        return path, len(ordered)


def merge_parts(paths: Iterable[str]) -> Iterator[str]:
    """The lines of sorted part files (see :class:`WriteSortedParts`) as one sorted stream, newlines kept.

    JSON escapes every character below a space, so a line's newline sorts
    before any character it could continue with: the merged order is that of
    ``sorted()`` over the lines without their newlines.
    """
    with contextlib.ExitStack() as stack:
        files = [
            stack.enter_context(
                io.TextIOWrapper(FileSystems.open(p, compression_type="uncompressed"), encoding="utf-8")
            )
            for p in paths
        ]
        yield from heapq.merge(*files)
