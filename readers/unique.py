"""The one duplicate-image rule: no two images share a record key (split and source id) or an image file.

A second image with the key or the file of an earlier one becomes a duplicate reject naming the first
(so one file listed in two splits is written once). COCO ids ``5`` and ``"5"``, ``x.jpg`` beside ``x.png``
(one label file for both), ``./x.jpg`` and ``x.jpg``, two shard sets with the same source ids: written
twice, they would make the shards depend on arrival order and so on the worker count. :func:`unique`
applies the rule to one stream; the Beam job's ``UniqueAcrossParts`` applies the same :func:`image_claims`
and :func:`duplicate` across parts read on different workers.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Iterator

from readers.raw import RawImage, classes_of
from schemas.annotations import Reject
from schemas.reasons import RejectReason
from storage import fs


def image_claims(item: RawImage) -> tuple[str, str]:
    """What no two images may share: the record key (split and source id) and the file ('' for embedded bytes)."""
    key = f"{item.split}/{posixpath.normpath(item.key)}"  # records are keyed by split and source id
    path = posixpath.normpath(fs.join(item.image_root, item.file_name)) if item.encoded is None else ""
    return key, path


def duplicate(item: RawImage, what: str, first: str) -> Reject:
    """The reject of an image whose key or file (``what``) an earlier one (``first``, its source) has."""
    detail = f"image {what} is also {first}; the first is kept"
    return Reject(
        item.source, RejectReason.DUPLICATE_IMAGE, detail, image=item.file_name, boxes=len(item.boxes), classes=classes_of(item.boxes)
    )


def unique(items: Iterable[RawImage | Reject]) -> Iterator[RawImage | Reject]:
    """``items`` with each image whose key or file an earlier one has replaced by its duplicate reject."""
    first_by_key: dict[str, str] = {}
    first_by_file: dict[str, str] = {}
    for item in items:
        if isinstance(item, RawImage):
            key, path = image_claims(item)
            first = first_by_key.get(key) or first_by_file.get(path)
            if first is not None:
                yield duplicate(item, f"key {key!r}" if key in first_by_key else f"file {path}", first)
                continue
            first_by_key[key] = item.source
            if path:
                first_by_file[path] = item.source
        yield item

