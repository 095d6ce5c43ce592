"""YOLO txt: ``images/`` and ``labels/`` siblings, possibly one pair per split.

The split of an image is the ``data.yaml`` entry (``train``, ``val``,
``test``) whose folder holds it, else its nearest folder named like a split
(``valid/images``), else train. Class names come from ``data.yaml`` (``names`` as a list or an index ->
name mapping, read with ``readers.yaml_doc``: aliases bounded) or ``classes.txt`` (beside
``data.yaml`` or, as labelImg writes it, in ``labels/``); ``--input`` may
name the folder or its ``data.yaml``. Each label line is ``class cx cy w h``
normalized to [0, 1]; a segmentation line ``class x1 y1 x2 y2 x3 y3 ...``
(Ultralytics and Roboflow ``-seg`` exports) is read as its polygon's
bounding box and counted as a repair, as Ultralytics and supervision read
it; a class id written as ``7.0`` is 7. In a pose dataset (``kpt_shape`` in
``data.yaml``) the box is the line's first four values. Every image file present is
yielded: an empty or missing label file means an image without boxes (a
negative). A label file whose image is missing is quarantined with its boxes.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import posixpath
import reprlib
from collections.abc import Iterator
from typing import Any

from readers import yaml_doc
from readers.raw import RawBox, RawImage, SourceError, classes_of
from readers.splits import split_name, split_of_path
from readers.voc import IMAGE_SUFFIXES
from schemas.annotations import Reject
from schemas.label_map import LabelMap
from schemas.reasons import RejectReason
from storage import fs

#: One unit of a read: an image and its label file (None: no label file, a negative), or (None, an orphan label file).
log = logging.getLogger(__name__)

Item = tuple[str | None, str | None]
_Listing = tuple[list[str], dict[str, str]]  # image files; label files by path without extension


def _dataset_yaml(root: str) -> tuple[str, dict[str, Any]] | None:
    for name in ("data.yaml", "data.yml", "dataset.yaml"):
        path = fs.join(root, name)
        if fs.exists(path):
            try:
                doc = yaml_doc.load(fs.read_text(path))
            except (yaml_doc.YamlDocError, UnicodeDecodeError) as exc:
                raise SourceError(f"{path}: {exc}") from None
            return path, doc if isinstance(doc, dict) else {}
    return None


def declared_splits(root: str) -> list[tuple[str, str]]:
    """(folder, split) pairs from the ``train``/``val``/``test`` entries of ``data.yaml``, longest folder first.

    An entry is a folder or a list of folders, relative to ``path:`` or to the
    YAML's folder; Roboflow writes ``../train/images`` for a folder beside the
    YAML, so leading ``../`` are dropped when the path does not exist as
    written. Entries that name no folder under ``root`` are ignored (their
    images keep the split of their folder names).
    """
    found = _dataset_yaml(root)
    if found is None:
        return []
    yaml_path, doc = found
    here = posixpath.dirname(yaml_path)
    base = here
    if isinstance(doc.get("path"), str) and doc["path"] and not doc["path"].startswith(("/", "\\")) and "://" not in doc["path"]:
        base = fs.join(here, doc["path"])
    pairs: list[tuple[str, str]] = []
    for key in ("train", "val", "test"):
        entries = doc.get(key)
        for entry in entries if isinstance(entries, list) else [entries]:
            if not isinstance(entry, str) or not entry.strip():
                continue
            folder = _existing_folder(entry.strip(), (base, here))
            if folder is None:  # an export's own machine path (/kaggle/input/...): right to ignore, but said
                log.warning("%s: %s: %s is no folder here; those images take their split from their folder names",
                            yaml_path, key, entry.strip())
            elif all(folder != f for f, _ in pairs):
                pairs.append((folder, split_name(key)))
    return sorted(pairs, key=lambda p: -len(p[0]))


def _existing_folder(entry: str, bases: tuple[str, ...]) -> str | None:
    rel = posixpath.normpath(entry.replace("\\", "/"))
    if rel.startswith("/"):
        return None  # an absolute path from the machine that exported it
    candidates = [rel]
    while rel.startswith("../"):
        rel = rel[3:]
        candidates.append(rel)
    for base in bases:
        for candidate in candidates:
            folder = posixpath.normpath(fs.join(base, candidate))
            if os.path.isdir(folder) if "://" not in folder else fs.exists(folder):
                return folder
    return None


def class_names(root: str) -> list[str]:
    """Names from ``data.yaml`` / ``classes.txt`` under ``root``, in id order."""
    found = _dataset_yaml(root)
    if found is not None:
        path, doc = found
        return _names_from(doc.get("names"), path)
    for path in (fs.join(root, "classes.txt"), fs.join(root, "labels", "classes.txt")):  # labelImg writes it among the labels
        if fs.exists(path):
            return [line.strip() for line in fs.read_text(path).splitlines() if line.strip()]
    raise SourceError(f"{root}: no class names (looked for data.yaml, data.yml, dataset.yaml, classes.txt, labels/classes.txt)")


def _names_from(names: Any, path: str) -> list[str]:
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    if isinstance(names, dict) and names:
        try:
            ids = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            raise SourceError(f"{path}: 'names' keys {list(names)[:5]} are not class indices") from None
        if ids != list(range(len(ids))):
            raise SourceError(f"{path}: 'names' indices {ids} are not 0..{len(ids) - 1}")
        return [str(names[i] if i in names else names[str(i)]) for i in ids]
    raise SourceError(f"{path}: 'names' must be a non-empty list or mapping, got {reprlib.repr(names)}")


class YoloSource:
    """Images and boxes from a YOLO txt dataset."""

    format = "yolo"

    def __init__(self, path: str, image_root: str | None = None) -> None:
        if path.lower().endswith((".yaml", ".yml")):  # --input data.yaml: the dataset is its folder
            path = posixpath.dirname(path) or "."
        self.root = path
        self.names = class_names(path)
        self.declared = declared_splits(path)
        found = _dataset_yaml(path)
        # pose datasets: "class cx cy w h px py [v] ..."; the box is the first four values
        self.keypoints = found is not None and "kpt_shape" in found[1]
        self.label_map = LabelMap.from_names(self.names)
        self.image_root = image_root
        self._listing: _Listing | None = self._list()

    def _list(self) -> _Listing:
        files = fs.list_files(self.image_root or self.root, IMAGE_SUFFIXES + (".txt",))
        images = [f for f in files if f.lower().endswith(IMAGE_SUFFIXES) and "/images/" in f]
        # by path without extension: labels/x.TXT belongs to images/x.jpg as labels/x.txt does
        labels = {
            posixpath.splitext(f)[0]: f
            for f in files
            if f.lower().endswith(".txt") and "/labels/" in f and posixpath.basename(f).lower() != "classes.txt"
        }
        if not images and not labels:
            raise SourceError(f"{self.root}: no images/ and labels/ folders with files")
        return images, labels

    def unlisted(self) -> YoloSource:
        """This source without its listing, to ship to workers: :meth:`items` lists the files again where it runs."""
        light = copy.copy(self)
        light._listing = None
        return light

    @staticmethod
    def label_key(image_path: str) -> str:
        head, _, tail = image_path.rpartition("/images/")
        return f"{head}/labels/{posixpath.splitext(tail)[0]}"

    def images_hint(self) -> int:
        return len(self._listing[0]) if self._listing is not None else 0

    def items(self) -> Iterator[Item]:
        """What a read does, file by file, from the listing: ``(image, its label file or None)`` for each image,
        then ``(None, label file)`` for each label file that no image has. :meth:`read_item` reads one."""
        images, labels = self._listing if self._listing is not None else self._list()
        claimed: set[str] = set()
        for image_path in images:
            key = self.label_key(image_path)
            if key in labels:
                claimed.add(key)
            yield image_path, labels.get(key)
        for key in sorted(set(labels) - claimed):
            yield None, labels[key]

    def read_item(self, item: Item) -> Iterator[RawImage | Reject]:
        """One item of :meth:`items`: the image with its boxes, and the rejects of its label file."""
        image_path, label_path = item
        boxes: list[RawBox] = []
        rejects: list[Reject] = []
        if image_path is None:  # a label file without its image
            assert label_path is not None
            readable = self._parse(label_path, posixpath.splitext(posixpath.basename(label_path))[0], boxes, rejects)
            yield from rejects  # an unreadable file is its one entry already
            if readable:
                yield Reject(
                    label_path, RejectReason.IMAGE_MISSING, "label file has no image beside it in images/",
                    image=fs.relpath(label_path, self.root), boxes=len(boxes), classes=classes_of(boxes),
                )
            return
        if label_path is not None:
            readable = self._parse(label_path, posixpath.basename(image_path), boxes, rejects)
            yield from rejects
            if not readable:
                return
        rel = fs.relpath(image_path, self.root)
        yield RawImage(
            key=posixpath.splitext(rel)[0],
            file_name=posixpath.basename(image_path),
            image_root=posixpath.dirname(image_path),
            source=label_path or image_path,
            split=self._split_of(image_path, rel),
            boxes=tuple(boxes),
        )

    def __iter__(self) -> Iterator[RawImage | Reject]:
        for item in self.items():
            yield from self.read_item(item)

    def _split_of(self, image_path: str, rel: str) -> str:
        """The split data.yaml declares for the image's folder, else the nearest folder named like a split, else train."""
        for folder, split in self.declared:
            if image_path.startswith(folder.rstrip("/") + "/"):
                return split
        return split_of_path(rel, skip=("images",)) or "train"

    def _parse(self, label_path: str, image: str, boxes: list[RawBox], rejects: list[Reject]) -> bool:
        """Fill ``boxes`` and ``rejects`` from one label file; False (and one reject for the image) if it is not text.

        An image whose label file cannot be read is quarantined, not written as
        a negative: its objects would be trained as background.
        """
        try:
            text = fs.read_text(label_path)
        except UnicodeDecodeError as exc:
            lines = sum(1 for line in fs.read_bytes(label_path).splitlines() if line.strip())
            detail = f"label file is not UTF-8 text ({exc}); its {lines} lines are counted as lost boxes"
            rejects.append(Reject(label_path, RejectReason.ANNOTATION_MALFORMED, detail, image=image, boxes=lines))
            return False
        for lineno, line in enumerate(text.splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            where = f"{label_path}:{lineno}"
            try:
                cls = _class_index(fields[0])
                box = self._corners([float(v) for v in fields[1:]], len(fields))
            except ValueError as exc:
                rejects.append(Reject(where, RejectReason.BOX_MALFORMED, f"line {line.strip()[:80]!r}: {exc}", image=image, boxes=1, classes=(self._class_of(fields[0]),)))
                continue
            name = self.names[cls] if 0 <= cls < len(self.names) else None
            boxes.append(
                RawBox(
                    *box[0],
                    class_name=name,
                    class_ref=f"index {cls}",
                    source=where,
                    normalized=True,
                    from_polygon=box[1],
                )
            )
        return True

    def _class_of(self, text: str) -> str:
        try:
            index = _class_index(text)
        except ValueError:
            return f"index {text!r}"
        return self.names[index] if 0 <= index < len(self.names) else f"index {index}"

    def _corners(self, values: list[float], fields: int) -> tuple[tuple[float, float, float, float], bool]:
        """Corners of a ``cx cy w h`` box, of a keypoint line's box, or of a polygon's bounding box."""
        if len(values) == 4 or (self.keypoints and len(values) > 4):
            cx, cy, w, h = values[:4]
            return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), False
        if len(values) >= 6 and len(values) % 2 == 0:  # segmentation: x1 y1 x2 y2 ... (Ultralytics, Roboflow)
            if not all(math.isfinite(v) for v in values):
                return (math.nan,) * 4, True  # dropped as non-finite, with its reason
            xs, ys = values[0::2], values[1::2]
            return (min(xs), min(ys), max(xs), max(ys)), True
        raise ValueError(f"{fields} fields, expected 5 (class cx cy w h) or a polygon (class x1 y1 x2 y2 x3 y3 ...)")


def _class_index(text: str) -> int:
    """``7`` or ``7.0`` (some exporters write floats) -> 7."""
    try:
        return int(text)
    except ValueError:
        value = float(text)  # ValueError names the text
        if not value.is_integer():
            raise ValueError(f"class id {text!r} is not an integer") from None
        return int(value)
