"""Reading the annotations: the job's first stage.

The job's PCollections carry *chunks*: lists of up to :data:`CHUNK` items
(raw images, then records) rather than single items. In the Python SDK every
element costs tens of microseconds per step (windowing, coders, dispatch)
whatever it holds; per image that was more than the image's own work. A
chunk pays it once. Rejects stay single elements, and the counts travel as
one :class:`readers.Accounting` per chunk.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.typehints.decorators import no_annotations

import readers
from beam_jobs import progress
from beam_jobs.packed import pack, unpack
from schemas.annotations import Reject

CHUNK = 64  # items per element: big enough to amortize Beam's per-element cost, small enough to spread

Chunk = list  # a list of items of one kind, see the module docstring


def chunked(items: Iterable[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


Order = tuple[int, int]  # (part or file, position in it): where an item stands in the source

UNREADABLE = "unreadable"


class Read(NamedTuple):
    """What :class:`ReadAnnotations` gives: ``chunks`` of raw images and rejects, and ``unreadable``: one
    line for each annotation file that could not be read at all (a COCO file whose JSON breaks off where
    the launcher did not read). The job goes on without such a file and the launcher refuses its output
    with those lines (see ``prepare``): a worker's exception would bury the line in tracebacks."""

    chunks: beam.PCollection
    unreadable: beam.PCollection


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
    """

    def __init__(self, plan: readers.ReadPlan, progress_dir: str | None = None) -> None:
        super().__init__()
        self.plan, self.progress_dir = plan, progress_dir

    @no_annotations  # returns no single PCollection: Beam 2.78 warns of any other annotation
    def expand(self, pbegin: beam.pvalue.PBegin) -> Read:
        unreadable: beam.PCollection | None = None  # an itemized source's unreadable file is its images' reject
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
            parsed = parts | "Parse" >> beam.FlatMap(self._parse, many).with_outputs(UNREADABLE, main="chunks")
            chunks, unreadable = parsed.chunks, parsed[UNREADABLE]
            if many:
                chunks = chunks | "UniqueAcrossParts" >> UniqueAcrossParts()
        # A part is one sequential stream, and a file's images are few: spread the per-image work across workers.
        spread = chunks | "Spread" >> Spread()
        if unreadable is None:
            unreadable = pbegin | "NoneUnreadable" >> beam.Create([])
        return Read(spread, unreadable)

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
        except readers.SourceError as exc:
            yield beam.pvalue.TaggedOutput(UNREADABLE, str(exc))
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
