"""Validation: raw images from a reader -> valid records and rejects, counted.

:func:`check` validates and counts one item of a source (:func:`validate_image`
on a raw image); :func:`read` chains a reader and :func:`check` over a whole
dataset. The Beam job runs the same two steps as its read and validate stages.
"""

from __future__ import annotations

from collections.abc import Iterator

from readers import open_source, unique
from readers.raw import RawImage
from schemas.annotations import ImageRecord, Reject
from schemas.label_map import LabelMap
from validation.accounting import UNNAMED_CLASS, Accounting
from validation.images import MAX_BOXES_PER_IMAGE, MAX_IMAGE_BYTES, Validated, forget_folders, validate_image

__all__ = [
    "MAX_BOXES_PER_IMAGE",
    "MAX_IMAGE_BYTES",
    "UNNAMED_CLASS",
    "Accounting",
    "Validated",
    "check",
    "forget_folders",
    "read",
    "validate_image",
]


def read(
    path: str,
    format: str = "auto",
    image_root: str | None = None,
    accounting: Accounting | None = None,
) -> Iterator[ImageRecord | Reject]:
    """Every image and box of a dataset, as a valid record or a reject.

    Args:
        path: dataset path (file, folder or glob, local or ``gs://``).
        format: ``auto`` or a key of :data:`readers.FORMATS`.
        image_root: where image file names are resolved, when not beside
            the annotations.
        accounting: filled in as items are yielded.

    Raises:
        SourceError: the dataset as a whole cannot be read.
    """
    acc = accounting if accounting is not None else Accounting()
    source = open_source(path, format, image_root)
    forget_folders()
    for item in unique(source):
        yield from check(item, source.label_map, acc)


def check(
    item: RawImage | Reject,
    label_map: LabelMap,
    acc: Accounting,
    max_bytes: int = MAX_IMAGE_BYTES,
    decode: bool = True,
    max_boxes: int = MAX_BOXES_PER_IMAGE,
) -> Iterator[ImageRecord | Reject]:
    """One item of a source, validated and counted in ``acc``: its rejects, then its record if it has one.

    The one validation step: :func:`read` and the Beam job's Validate stage both call it.
    """
    if isinstance(item, Reject):
        acc.add_reject(item)
        yield item
        return
    result = validate_image(item, label_map, max_bytes, decode, max_boxes)
    for reject in result.rejects:
        acc.add_reject(reject)
        yield reject
    if result.record is not None:
        acc.add_record(result.record, result.repairs)
        yield result.record

