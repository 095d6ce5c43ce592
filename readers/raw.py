"""What a format parser yields before validation: boxes as the source gave them."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, NamedTuple


class RawBox(NamedTuple):  # immutable; a NamedTuple is made 4x faster than a frozen dataclass (0.3 against 1.3 us)
    """A box as found in the source, not yet checked.

    Coordinates are corners; in pixels unless ``normalized`` (YOLO and
    TFRecord sources give fractions of the image size). ``from_polygon``
    marks the bounding box of a polygon (YOLO segmentation exports), which
    validation counts as a repair. ``class_name`` is
    None when the source's class id has no name in the label set;
    ``class_ref`` is how the source spelled the class, for messages.
    """

    x0: float
    y0: float
    x1: float
    y1: float
    class_name: str | None
    class_ref: str
    source: str
    normalized: bool = False
    is_crowd: bool = False
    difficult: bool = False
    truncated: bool = False
    from_polygon: bool = False  # the source gave a polygon; this is its bounding box
    merged: bool = False  # the union of several pieces of one object (LabelMe's group_id)


@dataclasses.dataclass(frozen=True, slots=True)
class RawImage:
    """An image reference and its raw boxes.

    ``file_name`` is relative to ``image_root`` as the source wrote it; it is
    checked for traversal before anything is opened. ``encoded`` is set when
    the source embeds the bytes (TFRecord input).
    """

    key: str
    file_name: str
    image_root: str
    source: str
    split: str
    boxes: tuple[RawBox, ...] = ()
    declared_width: int | None = None
    declared_height: int | None = None
    encoded: bytes | None = None
    by_base_name: bool = False  # file_name is the base name of an absolute path in the source, under --image-root


def declared_size(value: Any) -> int | None:
    """A width or height as an annotation declares it: a positive whole number, else None
    (absent, zero, not a number, or overflowing like ``1e999``: the file's own size is used)."""
    try:
        size = int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None
    return size if size > 0 else None


def classes_of(boxes: Iterable[RawBox]) -> tuple[str, ...]:
    """Each box's class for a reject: its name, or how the source spelled an unknown one."""
    return tuple(b.class_name or b.class_ref for b in boxes)


class SourceError(ValueError):
    """A dataset that cannot be read at all (missing path, unknown format, no label set)."""
