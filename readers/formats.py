"""The format registry: :data:`FORMATS` and :func:`open_source`, which opens a dataset as a source."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from readers.coco import CocoSource
from readers.csv_source import CsvSource
from readers.cvat import CvatSource
from readers.detect import detect_format
from readers.labelme import LabelMeSource
from readers.raw import RawImage, SourceError
from readers.tfrecord import TfRecordSource
from readers.voc import VocSource
from readers.yolo import YoloSource
from schemas.annotations import Reject
from schemas.label_map import LabelMap
from storage import fs


class Source(Protocol):
    format: str
    label_map: LabelMap

    def __iter__(self) -> Iterator[RawImage | Reject]: ...


class ItemizedSource(Source, Protocol):
    """A source read file by file: ``items()`` lists the work, ``read_item()`` does one (YOLO, LabelMe, VOC).

    ``read_item()`` gives raw images and rejects, except where the source also has
    ``resolve()`` (VOC): then it gives what ``resolve()`` takes, in the items' order.
    """

    def items(self) -> Iterator[Any]: ...

    def read_item(self, item: Any) -> Iterator[Any]: ...

    def unlisted(self) -> ItemizedSource: ...


FORMATS: dict[str, Callable[..., Source]] = {
    "coco": CocoSource,
    "voc": VocSource,
    "yolo": YoloSource,
    "csv": CsvSource,
    "tfrecord": TfRecordSource,
    "labelme": LabelMeSource,
    "cvat": CvatSource,
}


def open_source(
    path: str, format: str = "auto", image_root: str | None = None, label_map: LabelMap | None = None
) -> Source:
    """Open a dataset; ``format='auto'`` detects it (see :func:`detect_format`). Its images are as the source
    gives them: :func:`readers.unique` applies the duplicate-image rule.

    Raises:
        SourceError: unknown format name, missing path, or unreadable dataset.
    """
    if "://" not in path:
        # one spelling per folder ('./d/', 'd'): keys and splits must not depend on how the path was typed
        path = os.path.normpath(path)
        image_root = os.path.normpath(image_root) if image_root and "://" not in image_root else image_root
    asked = format
    if format == "auto":
        format = detect_format(path)
    if format not in FORMATS:
        raise SourceError(f"unknown format {format!r}; known: auto, {', '.join(FORMATS)}")
    if not any(c in path for c in "*?[") and not fs.exists(path):
        raise SourceError(f"input {path!r} does not exist")
    kwargs: dict[str, Any] = {"image_root": image_root}
    if label_map is not None and format in ("voc", "csv", "tfrecord", "labelme", "cvat"):
        kwargs["label_map"] = label_map
    try:
        return FORMATS[format](path, **kwargs)
    except SourceError as exc:
        if asked == "auto":
            raise
        raise SourceError(f"{exc}{_looks_like(path, format)}") from None


def _looks_like(path: str, asked: str) -> str:
    """What ``path`` looks like when ``--format`` named another format, for the refusal's line."""
    try:
        found = detect_format(path)
    except SourceError:
        return ""
    return "" if found == asked else f" (it looks like {found}: pass --format {found}, or leave --format out)"

