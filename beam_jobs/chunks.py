"""Chunks: what the job's PCollections carry between stages, up to :data:`CHUNK` items each.

In the Python SDK every element costs tens of microseconds per step (windowing, coders, dispatch)
whatever it holds; per image that was more than the image's own work. A chunk pays it once. From the
read stage to Validate a chunk holds raw images and the rejects found reading (:data:`RawChunk`); after
it, valid records (:data:`RecordChunk`). Rejects leave Validate as single elements, and the counts as
one :class:`validation.Accounting` per chunk.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from readers.raw import RawImage
from schemas.annotations import ImageRecord, Reject

CHUNK = 64  # items per element: big enough to amortize Beam's per-element cost, small enough to spread

RawChunk = list[RawImage | Reject]  # read -> Validate
RecordChunk = list[ImageRecord]  # Validate -> split, statistics, thumbnails, shards

T = TypeVar("T")


def chunked(items: Iterable[T], size: int = CHUNK) -> Iterator[list[T]]:
    """``items`` in lists of ``size`` (the last one shorter)."""
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
