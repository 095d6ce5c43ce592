"""Reading the annotations: the job's first stage. Its output is chunks (:mod:`beam_jobs.chunks`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam

import readers
from beam_jobs import progress
from beam_jobs.chunks import chunked
from beam_jobs.packed import pack, unpack
from schemas.annotations import Reject
from schemas.reasons import RejectReason

Order = tuple[int, int]  # (part or file, position in it): where an item stands in the source

#: The place of an unreadable file's reject among its part's items: after any item the part gave before it broke.
_AFTER_EVERY_ITEM = 1 << 62


class ReadAnnotations(beam.PTransform):
    """Read the plan's annotations across workers: chunks of raw images and of the rejects found reading.

    Parts (several COCO files, TFRecord shards) are each read on a worker of
    their own. An itemized source (YOLO, LabelMe, VOC: a file per image) is
    listed on one worker and its files are read on all of them; VOC's XML
    files, once parsed, are gathered on one worker that finds their images
    (``resolve()``: an image can be claimed by two XML files, found in
    another folder, or claimed by none). Either way, an image whose key or
    file an earlier image has becomes a duplicate reject
    (:class:`UniqueAcrossParts`), as it would in one sequential read.

    An annotation file that cannot be read at all (a COCO file whose JSON
    breaks off where the launcher did not read) is a reject like any other,
    ``annotation_file_unreadable``, on the rejects' dead-letter path: the
    job goes on without it, Validate counts it, and the launcher refuses
    the output with its line (:func:`beam_jobs.report_sink.refuse_unreadable`).
    A worker's exception would bury that line in tracebacks.
    """

    def __init__(self, plan: readers.ReadPlan, progress_dir: str | None = None) -> None:
        super().__init__()
        self.plan, self.progress_dir = plan, progress_dir

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        if self.plan.itemized:
            read = (
                pbegin
                | "Listing" >> beam.Create([None])
                | "List" >> beam.FlatMap(self._list)
                | "SpreadItems" >> Spread()
                | "ReadItems" >> beam.Map(self._read_items)
            )
            if self.plan.resolves:  # VOC: each XML's image is found among every listed image, on one worker
                chunks = (
                    read
                    | "ToOne" >> beam.Map(lambda chunk: (None, pack(chunk)))
                    | "Gather" >> beam.GroupByKey()
                    | "Resolve" >> beam.FlatMap(self._resolve)
                )
            else:
                chunks = read | "UniqueAcrossParts" >> UniqueAcrossParts()
        else:
            many = len(self.plan.parts) > 1
            parts = pbegin | "Parts" >> beam.Create(list(range(len(self.plan.parts))))
            if many:
                parts = parts | "SpreadParts" >> beam.Reshuffle()
            chunks = parts | "Parse" >> beam.FlatMap(self._parse, many)
            if many:
                chunks = chunks | "UniqueAcrossParts" >> UniqueAcrossParts()
        # A part is one sequential stream, and a file's images are few: spread the per-image work across workers.
        return chunks | "Spread" >> Spread()

    def _parse(self, part: int, tagged: bool) -> Iterator[Any]:
        tally = progress.Tally(self.progress_dir)
        try:
            items: Iterable[Any] = self.plan.read_part(part)
            if tagged:
                items = (((part, pos), item) for pos, item in enumerate(items))
            for chunk in chunked(items):
                listed = (item[1] if tagged else item for item in chunk)
                tally.add(progress.LISTED, sum(1 for item in listed if not isinstance(item, Reject) or item.is_image))
                yield chunk
        except readers.SourceError as exc:  # the rejects' dead-letter path; the launcher refuses the output
            file = getattr(self.plan.parts[part], "path", self.plan.parts[part]) or self.plan.path
            reject = Reject(str(file), RejectReason.ANNOTATION_FILE_UNREADABLE, str(exc))
            yield [((part, _AFTER_EVERY_ITEM), reject)] if tagged else [reject]
        tally.add(progress.PARSED, flush=True)

    def _list(self, _: None) -> Iterator[list[tuple[int, Any]]]:
        """Chunks of (index, item) of an itemized source, listed here once."""
        tally = progress.Tally(self.progress_dir)
        for chunk in chunked(enumerate(self.plan.source.items())):
            tally.add(progress.LISTED, len(chunk))
            yield chunk
        tally.add(progress.PARSED, flush=True)  # every image is listed: the totals are known

    def _read_items(self, chunk: list[tuple[int, Any]]) -> list[tuple[Order, Any]]:
        """Each item read, its images and rejects in order (item, position): as one sequential read orders them."""
        read = self.plan.source.read_item
        return [((index, pos), out) for index, item in chunk for pos, out in enumerate(read(item))]

    def _resolve(self, gathered: tuple[None, Iterable[bytes]]) -> Iterator[list[Any]]:
        """Every file as read, in the listing's order, through the source's resolve(): chunks of images and rejects."""
        parsed = sorted((pair for packed in gathered[1] for pair in unpack(packed)), key=lambda pair: pair[0])
        yield from chunked(readers.unique(self.plan.source.resolve(item for _, item in parsed)))


class Spread(beam.PTransform):
    """Chunks redistributed across workers (``Reshuffle``), crossing as packed bytes (see :mod:`beam_jobs.packed`)."""

    def expand(self, chunks: beam.PCollection) -> beam.PCollection:
        return chunks | "Pack" >> beam.Map(pack) | "Reshuffle" >> beam.Reshuffle() | "Unpack" >> beam.Map(unpack)


class UniqueAcrossParts(beam.PTransform):
    """Chunks of (order, item) -> chunks of items, where an image whose key or file an earlier image has
    (earlier by part, then position) is replaced by its duplicate reject.

    Only the claims (key or file, order, source) cross the shuffle, and only the
    duplicates come back, as a side input. Unlike one sequential read, an image
    refused here still holds its claims: in a chain (A and B share a key, B and
    C a file) C is refused too, with a reject naming B.
    """

    def expand(self, chunks: beam.PCollection) -> beam.PCollection:
        duplicates = (
            chunks
            | "Claims" >> beam.FlatMap(_claims)
            | "ByClaim" >> beam.GroupByKey()
            | "Later" >> beam.FlatMap(_later)
            # an image that shares both its key and its file is named by its key, as a sequential read does
            | "FirstReason" >> beam.CombinePerKey(min)
        )
        return chunks | "Refuse" >> beam.Map(_refuse, beam.pvalue.AsDict(duplicates))


def _claims(chunk: list[tuple[Order, Any]]) -> Iterator[tuple[tuple[int, str], tuple[Order, str]]]:
    for order, item in chunk:
        if isinstance(item, readers.RawImage):
            key, path = readers.image_claims(item)
            yield (0, f"key {key!r}"), (order, item.source)
            if path:
                yield (1, f"file {path}"), (order, item.source)


def _later(kv: tuple[tuple[int, str], Iterable[tuple[Order, str]]]) -> Iterator[tuple[Order, tuple[int, str, str]]]:
    (rank, what), claims = kv
    first, *later = sorted(claims)
    for order, _ in later:
        yield order, (rank, what, first[1])


def _refuse(chunk: list[tuple[Order, Any]], duplicates: dict[Order, tuple[int, str, str]]) -> list[Any]:
    out = []
    for order, item in chunk:
        found = duplicates.get(order)
        out.append(item if found is None else readers.duplicate(item, found[1], found[2]))
    return out
