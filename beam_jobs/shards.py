"""Writing the records as deterministic TFRecord shards, weights attached on the writing worker."""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics

from beam_jobs import NAMESPACE, progress
from beam_jobs.chunks import RecordChunk
from beam_jobs.keys import bucket, image_key
from beam_jobs.packed import pack, unpack
from beam_jobs.tfrecord_file import write_tfrecords
from schemas.annotations import ImageRecord
from schemas.codec import encode_record_parts
from schemas.manifest import FileEntry, shard_name
from schemas.reasons import Repair
from storage import fs
from validation.probe import ProbeError, resize_to
from weighting.apply import WeightPlan

log = logging.getLogger(__name__)
TARGET_SHARD_BYTES = 64 << 20


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
        # The second read of an image's file (Validate's check was the first): records cross the shard shuffle
        # without their image bytes, which only this worker needs. Carrying them through the shuffle was one of
        # the costs that held the job at 0.15x a multiprocessing.Pool converter (bench.prepare_job, 10,000
        # images, 2026-11-23; 1.06x once they stopped crossing, with the other changes in that file's history).
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
        return encode_record_parts(record, data)


def _to_shards(chunk: RecordChunk, counts: dict[str, int] | int) -> Iterator[tuple[tuple[str, int], bytes]]:
    """Split a chunk by shard ``sha256(key) mod N``: ((split, shard), [(key, record), ...] packed) pairs.

    Packed (:mod:`beam_jobs.packed`): the local runner holds every record here until the last one arrives.
    """
    groups: defaultdict[tuple[str, int], list[tuple[str, ImageRecord]]] = defaultdict(list)
    for r in chunk:
        key = image_key(r)
        n = counts if isinstance(counts, int) else counts[r.split]
        groups[(r.split, bucket(key, n))].append((key, r))
    for shard, pairs in groups.items():
        yield shard, pack(pairs)


def _sorted_shard(
    kv: tuple[tuple[str, int], Iterable[bytes]], plan: WeightPlan | None
) -> tuple[tuple[str, int], list[ImageRecord]]:
    """One shard's records in key order, weights attached."""
    key, parts = kv
    records = [r for _, r in sorted((kr for part in parts for kr in unpack(part)), key=lambda kr: kr[0])]
    return key, records if plan is None else [plan.apply(r) for r in records]


def _sizes(chunk: RecordChunk) -> Iterator[tuple[str, tuple[int, int]]]:
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
