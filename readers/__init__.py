"""Annotation readers: a dataset on disk -> validated records and rejects.

``open_source(path, format)`` returns a source (a parser with a
``label_map`` and an iterator of :class:`~readers.raw.RawImage` or
:class:`~schemas.annotations.Reject`); :func:`check` validates and counts one
item of it (:func:`validate_image` on a raw image); :func:`read` chains both.
The Beam job runs the same two steps as its read and validate stages.
"""

from __future__ import annotations

import dataclasses
import json
import os
import posixpath
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, cast

from readers import fs
from readers.coco import CocoSource
from readers.csv_source import CsvSource
from readers.cvat import CvatSource, is_cvat
from readers.labelme import LabelMeSource, is_labelme
from readers.raw import RawBox, RawImage, SourceError, classes_of
from readers.splits import split_in_name
from readers.tfrecord import SUFFIXES as TFRECORD_SUFFIXES
from readers.tfrecord import TfRecordSource
from readers.validate import MAX_BOXES_PER_IMAGE, MAX_IMAGE_BYTES, Validated, forget_folders, validate_image
from readers.voc import VocSource
from readers.yolo import YoloSource
from schemas.annotations import ImageRecord, Reject
from schemas.label_map import LabelMap
from schemas.reasons import RejectReason, Repair

__all__ = [
    "FORMATS",
    "MAX_BOXES_PER_IMAGE",
    "MAX_IMAGE_BYTES",
    "Accounting",
    "ReadPlan",
    "RawBox",
    "RawImage",
    "Source",
    "SourceError",
    "Validated",
    "check",
    "detect_format",
    "forget_folders",
    "open_source",
    "plan",
    "read",
    "unique",
    "validate_image",
]


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

_LOOKED_FOR = (
    "coco: a *.json file, or a folder with */_annotations.coco.json, annotations/instances_*.json or *_train.json; "
    "voc: **/*.xml; yolo: data.yaml, or classes.txt (or labels/classes.txt) with images/ and labels/; "
    "csv: *.csv; tfrecord: *.tfrecord, *.record, *-of-*; labelme: one *.json with 'shapes' per image; "
    "cvat: annotations.xml (CVAT for images 1.1)"
)


def _annotation_sets(path: str, rels: list[str], jsons: list[str]) -> dict[str, list[str]]:
    """The annotation sets a folder holds, each with the files that mark it (a few): YOLO, CVAT, LabelMe or COCO."""
    sets: dict[str, list[str]] = {}
    yaml = sorted(r for r in rels if posixpath.basename(r).lower() in ("data.yaml", "data.yml", "dataset.yaml", "classes.txt"))
    if yaml and any("labels/" in r for r in rels):
        sets["yolo"] = yaml[:3]
    if "annotations.xml" in rels and is_cvat(_head(fs.join(path, "annotations.xml"))):
        sets["cvat"] = ["annotations.xml"]
    if jsons and is_labelme(_peek_json(jsons[0])):  # a LabelMe folder: its JSON files are no COCO set
        sets["labelme"] = [fs.relpath(jsons[0], path), "..."] if len(jsons) > 1 else [fs.relpath(jsons[0], path)]
        return sets
    coco = sorted(
        r for r in (fs.relpath(f, path) for f in jsons)
        if (n := posixpath.basename(r).lower()) == "_annotations.coco.json" or n.startswith("instances_") or split_in_name(n[:-5])
    )
    if coco:
        sets["coco"] = coco[:3] + (["..."] if len(coco) > 3 else [])
    return sets


def detect_format(path: str) -> str:
    """Guess the annotation format of ``path``.

    Raises:
        SourceError: the path does not exist or matches no format; the
            message lists what was looked for.
    """
    lower = path.lower()
    base = posixpath.basename(lower)
    if any(c in path for c in "*?[") and not fs.exists(path):  # a path that exists is taken literally
        return "tfrecord"
    if not fs.exists(path):
        raise SourceError(f"input {path!r} does not exist")
    if lower.endswith(".json"):
        return "labelme" if is_labelme(_peek_json(path)) else "coco"
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith((".yaml", ".yml")):
        return "yolo"
    if lower.endswith(".xml") and is_cvat(_head(path)):
        return "cvat"
    if lower.endswith(".xml"):
        raise SourceError(f"{path}: give the folder of VOC XML files, not one file")
    if lower.endswith(TFRECORD_SUFFIXES) or "-of-" in base:
        return "tfrecord"
    files = fs.list_files(path)
    names = {posixpath.basename(f).lower() for f in files}
    rels = [fs.relpath(f, path) for f in files]
    jsons = [f for f in files if f.lower().endswith(".json")]
    sets = _annotation_sets(path, rels, jsons)
    if len(sets) > 1:  # which one the user meant is theirs to say: a silent pick trains on the other's classes
        found = "; ".join(f"{fmt} ({', '.join(shown)})" for fmt, shown in sets.items())
        raise SourceError(f"{path} holds more than one annotation set: {found}. Give the one you mean as --input (its file), or pass --format")
    if sets:
        return next(iter(sets))
    if any(n.endswith(".xml") for n in names):
        return "voc"
    if any(n.endswith(".csv") for n in names):
        return "csv"
    if any(n.endswith(TFRECORD_SUFFIXES) or "-of-" in n for n in names):
        return "tfrecord"
    kinds = Counter(posixpath.splitext(n)[1] or n for n in names)
    found = ", ".join(f"{n} {ext}" for ext, n in kinds.most_common(5)) or "no files"
    raise SourceError(f"{path}: no known annotation format found ({found}){_dataset_above(path)}; looked for {_LOOKED_FOR}; or pass --format")


_DATASET_MARKERS = ("data.yaml", "data.yml", "dataset.yaml", "Annotations", "annotations.xml", "_annotations.coco.json", "annotations")


def _dataset_above(path: str) -> str:
    """', but PARENT holds MARKER: give that folder as --input' for an image folder inside a dataset (local paths)."""
    if "://" in path:
        return ""
    here = os.path.abspath(path)
    for _ in range(3):
        parent = os.path.dirname(here)
        if parent == here:
            return ""
        here = parent
        marker = next((m for m in _DATASET_MARKERS if os.path.exists(os.path.join(here, m))), None)
        if marker:
            return f", but {here} holds {marker}: give that folder as --input"
    return ""


def _head(path: str, size: int = 4096) -> bytes:
    with fs.open_binary(path) as f:
        return f.read(size)  # type: ignore[no-any-return]


def _peek_json(path: str) -> Any:
    """The parsed file when it is small enough to be one image's annotation, else None."""
    with fs.open_binary(path) as f:
        data = f.read(8 << 20)  # a LabelMe file embeds at most one image; --format labelme reads larger ones
        if f.read(1):
            return None
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def open_source(
    path: str, format: str = "auto", image_root: str | None = None, label_map: LabelMap | None = None
) -> Source:
    """Open a dataset; ``format='auto'`` detects it (see :func:`detect_format`).

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
        return UniqueImages(FORMATS[format](path, **kwargs))
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


class UniqueImages:
    """A source whose images are unique by key (within a split) and by file: a second
    image with the key or the file of an earlier one is rejected as a duplicate, naming
    the first (so one file listed in two splits is written once).

    COCO ids ``5`` and ``"5"``, ``x.jpg`` beside ``x.png`` (one label file for both),
    ``./x.jpg`` and ``x.jpg``, two shard sets with the same source ids: written twice,
    they would make the shards depend on arrival order and so on the worker count.
    """

    def __init__(self, source: Source) -> None:
        self.source, self.format, self.label_map = source, source.format, source.label_map

    def __iter__(self) -> Iterator[RawImage | Reject]:
        return unique(self.source)


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
            return iter(open_source(self.path, self.format, self.image_root, self.label_map))
        if self.itemized:
            return unique(self.source)
        return unique(self.source.read_part(self.parts[index]))


def plan(path: str, format: str = "auto", image_root: str | None = None, label_map: LabelMap | None = None) -> ReadPlan:
    """Open a dataset on the launcher (see :func:`open_source`) and resolve what workers need to read it.

    Raises:
        SourceError: as :func:`open_source`.
    """
    opened = open_source(path, format, image_root, label_map)
    source = opened.source if isinstance(opened, UniqueImages) else opened
    resolved = label_map or opened.label_map
    images = source.images_hint() if hasattr(source, "images_hint") else None
    if hasattr(source, "parts"):
        return ReadPlan(path, opened.format, image_root, resolved, source, tuple(source.parts()), images)
    if hasattr(source, "items"):
        return ReadPlan(path, opened.format, image_root, resolved, cast(ItemizedSource, source).unlisted(), images=images)
    return ReadPlan(path, opened.format, image_root, resolved, images=images)


#: The class of a dropped box whose class the source did not give (a line that did not parse).
UNNAMED_CLASS = "(unnamed)"


@dataclasses.dataclass
class Accounting:
    """Running counts; ``images_in = written + quarantined``, ``boxes_in = kept + dropped``."""

    images_in: int = 0
    images_written: int = 0
    boxes_in: int = 0
    boxes_written: int = 0
    images_quarantined_by_reason: Counter[str] = dataclasses.field(default_factory=Counter)
    boxes_dropped_by_reason: Counter[str] = dataclasses.field(default_factory=Counter)
    repairs: Counter[str] = dataclasses.field(default_factory=Counter)
    #: per class (as the source named it): boxes in and written, and dropped boxes by reason
    class_boxes_in: Counter[str] = dataclasses.field(default_factory=Counter)
    class_boxes_written: Counter[str] = dataclasses.field(default_factory=Counter)
    class_dropped: Counter[tuple[str, str]] = dataclasses.field(default_factory=Counter)

    @property
    def images_quarantined(self) -> int:
        return sum(self.images_quarantined_by_reason.values())

    @property
    def boxes_dropped(self) -> int:
        return sum(self.boxes_dropped_by_reason.values())

    def add_reject(self, reject: Reject) -> None:
        box_reason = RejectReason.IMAGE_QUARANTINED.value if reject.is_image else reject.reason.value
        if reject.is_image:
            self.images_in += 1
            self.images_quarantined_by_reason[reject.reason.value] += 1
        if reject.boxes:
            self.boxes_dropped_by_reason[box_reason] += reject.boxes
        self.boxes_in += reject.boxes
        classes = list(reject.classes[: reject.boxes]) + [UNNAMED_CLASS] * (reject.boxes - len(reject.classes))
        for name in classes:
            self.class_boxes_in[name] += 1
            self.class_dropped[(name, box_reason)] += 1

    def add_record(self, record: ImageRecord, repairs: tuple[Repair, ...] = ()) -> None:
        self.images_in += 1
        self.images_written += 1
        self.boxes_in += len(record.boxes)
        self.boxes_written += len(record.boxes)
        self.repairs.update(r.value for r in repairs)
        names = [b.text for b in record.boxes]
        self.class_boxes_in.update(names)
        self.class_boxes_written.update(names)

    def merge(self, other: Accounting) -> Accounting:
        self.images_in += other.images_in
        self.images_written += other.images_written
        self.boxes_in += other.boxes_in
        self.boxes_written += other.boxes_written
        self.images_quarantined_by_reason.update(other.images_quarantined_by_reason)
        self.boxes_dropped_by_reason.update(other.boxes_dropped_by_reason)
        self.repairs.update(other.repairs)
        self.class_boxes_in.update(other.class_boxes_in)
        self.class_boxes_written.update(other.class_boxes_written)
        self.class_dropped.update(other.class_dropped)
        return self

    def totals(self) -> dict[str, Any]:
        """The ``totals`` block of ``stats.json``."""
        return {
            "images_in": self.images_in,
            "images_written": self.images_written,
            "images_quarantined": self.images_quarantined,
            "boxes_in": self.boxes_in,
            "boxes_written": self.boxes_written,
            "boxes_dropped": self.boxes_dropped,
            "images_quarantined_by_reason": dict(sorted(self.images_quarantined_by_reason.items())),
            "boxes_dropped_by_reason": dict(sorted(self.boxes_dropped_by_reason.items())),
            "repairs": dict(sorted(self.repairs.items())),
            "classes": {name: self._class_totals(name) for name in sorted(self.class_boxes_in)},
        }

    def _class_totals(self, name: str) -> dict[str, Any]:
        dropped = {reason: n for (cls, reason), n in sorted(self.class_dropped.items()) if cls == name}
        return {
            "boxes_in": self.class_boxes_in[name],
            "boxes_written": self.class_boxes_written[name],
            "boxes_dropped": sum(dropped.values()),
            "boxes_dropped_by_reason": dropped,
        }

    def balanced(self) -> bool:
        return (
            self.images_in == self.images_written + self.images_quarantined
            and self.boxes_in == self.boxes_written + self.boxes_dropped
        )


def read(
    path: str,
    format: str = "auto",
    image_root: str | None = None,
    accounting: Accounting | None = None,
) -> Iterator[ImageRecord | Reject]:
    """Every image and box of a dataset, as a valid record or a reject.

    Args:
        path: dataset path (file, folder or glob, local or ``gs://``).
        format: ``auto`` or a key of :data:`FORMATS`.
        image_root: where image file names are resolved, when not beside
            the annotations.
        accounting: filled in as items are yielded.

    Raises:
        SourceError: the dataset as a whole cannot be read.
    """
    acc = accounting if accounting is not None else Accounting()
    source = open_source(path, format, image_root)
    forget_folders()
    for item in source:
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
