"""The read plan: a dataset as the launcher resolves it once, and the parts workers read apart."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, cast

from readers.formats import ItemizedSource, open_source
from readers.raw import RawImage
from readers.unique import unique
from schemas.annotations import Reject
from schemas.label_map import LabelMap


@dataclasses.dataclass(frozen=True)
class ReadPlan:
    """A dataset as the launcher resolves it once: its format, label map and the parts workers read apart.

    Three kinds of read, by format:

    * files read one by one (COCO's annotation files, TFRecord shards): the
      opened source ships (it holds only the file list and the classes), with
      one part per file;
    * one annotation file per image (YOLO, LabelMe, VOC): the source ships
      without its listing (:attr:`itemized`); one worker lists the files again
      and every worker reads a share of them (``items()`` and ``read_item()``).
      VOC's parsed files then meet on one worker, which lists the image
      folders and finds each XML's image (``resolve()``, :attr:`resolves`);
    * any other (CSV, CVAT: one file): one part that a worker opens by path.

    Each part's images are unique within it (:func:`unique`); across parts and
    items, the job's read stage checks them.
    """

    path: str
    format: str
    image_root: str | None
    label_map: LabelMap
    source: Any = None  # a source with parts() and read_part(), or items() and read_item(), or None: open by path
    parts: tuple[Any, ...] = (None,)
    images: int | None = None  # about how many images (or boxes), when the launcher could count them cheaply

    @property
    def itemized(self) -> bool:
        """The source reads file by file: ``items()``, then ``read_item()`` for each."""
        return hasattr(self.source, "items")

    @property
    def resolves(self) -> bool:
        """The source's files, once read, are resolved together (VOC: ``resolve()`` finds each XML's image)."""
        return self.itemized and hasattr(self.source, "resolve")

    def read_part(self, index: int) -> Iterator[RawImage | Reject]:
        if self.source is None:
            return unique(open_source(self.path, self.format, self.image_root, self.label_map))
        if self.itemized:
            return unique(self.source)
        return unique(self.source.read_part(self.parts[index]))


def plan(path: str, format: str = "auto", image_root: str | None = None, label_map: LabelMap | None = None) -> ReadPlan:
    """Open a dataset on the launcher (see :func:`open_source`) and resolve what workers need to read it.

    Raises:
        SourceError: as :func:`open_source`.
    """
    source = open_source(path, format, image_root, label_map)
    resolved = label_map or source.label_map
    images = source.images_hint() if hasattr(source, "images_hint") else None
    if hasattr(source, "parts"):
        return ReadPlan(path, source.format, image_root, resolved, source, tuple(source.parts()), images)
    if hasattr(source, "items"):
        return ReadPlan(path, source.format, image_root, resolved, cast(ItemizedSource, source).unlisted(), images=images)
    return ReadPlan(path, source.format, image_root, resolved, images=images)

