"""A few images per class, with their boxes drawn, for report.html."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import apache_beam as beam

from beam_jobs.chunks import RecordChunk
from beam_jobs.keys import image_key, stable_hash
from schemas.annotations import ImageRecord
from storage import fs
from weighting.report import thumbnails

log = logging.getLogger(__name__)


def _class_picks(chunk: RecordChunk) -> Iterator[tuple[str, tuple[int, ImageRecord]]]:
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
                # a third read, of a few images per class only (the page's strips), for the reason in shards._read
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
