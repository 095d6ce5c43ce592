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
from typing import Any

import apache_beam as beam

import readers
from beam_jobs import progress
from schemas.annotations import Reject
from schemas.label_map import LabelMap

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
