"""LabelMe JSON: one ``*.json`` per image, as the LabelMe annotation tool saves them.

``shapes`` holds the objects: a ``rectangle`` (two corner points) is a box;
a ``polygon``, a ``circle`` (centre, then a point on the rim) and a ``mask``
(its two points are the rectangle its bitmap fills) are read as their
bounding box and counted as a repair; ``point``, ``line`` and ``linestrip``
shapes are no boxes and are dropped with that reason. Shapes with the same
label and ``group_id`` are the pieces of one object, as LabelMe (and its
``labelme2coco.py``) means them: one box, the union of their extents,
counted as a repair (``pieces_merged``). A shape labelled ``__ignore__``
(LabelMe's label for a region to leave out) is no object and no class: it
is dropped with its own reason (``shape_ignored``).
``imagePath`` is relative to the JSON file (Windows separators and absolute
paths are reduced to the base name, looked up beside the JSON); when the
file is not there and the JSON embeds it (``imageData``), the embedded bytes
are used. The split is the nearest folder named like a split, else train.
Class names are collected from every file and sorted.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import math
import posixpath
from collections.abc import Iterator
from typing import Any

from readers.raw import RawBox, RawImage, SourceError, declared_size
from readers.splits import split_of_path
from schemas.annotations import Reject
from schemas.label_map import LabelMap
from schemas.reasons import RejectReason
from storage import fs

_BOX_SHAPES = ("rectangle", "polygon", "circle", "mask")
IGNORE_LABEL = "__ignore__"  # labelme's own examples and tools: a region that is not an object


def is_labelme(doc: Any) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("shapes"), list) and "imagePath" in doc


class LabelMeSource:
    """Images and boxes from a folder of LabelMe JSON files."""

    format = "labelme"

    def __init__(self, path: str, image_root: str | None = None, label_map: LabelMap | None = None) -> None:
        self.root = path
        self.image_root = image_root
        self.files: list[str] | None = self._list()
        if label_map is None:
            names: set[str] = set()
            for f in self.files:
                doc = self._load(f)
                if is_labelme(doc):
                    names.update(str(s.get("label", "")) for s in doc["shapes"] if isinstance(s, dict))
            names.discard("")
            names.discard(IGNORE_LABEL)
            if not names:
                raise SourceError(f"{path}: no shape labels in any LabelMe JSON file; no label set")
            label_map = LabelMap.from_names(sorted(names))
        self.label_map = label_map

    @staticmethod
    def _load(path: str) -> Any:
        try:
            return json.loads(fs.read_text(path))
        except (ValueError, UnicodeDecodeError) as exc:
            return exc
        except RecursionError:  # json's C scanner recurses once per level
            return ValueError("nested too deep to read")

    def _list(self) -> list[str]:
        files = [self.root] if self.root.lower().endswith(".json") else fs.list_files(self.root, (".json",))
        if not files:
            raise SourceError(f"{self.root}: no LabelMe *.json files found")
        return files

    def unlisted(self) -> LabelMeSource:
        """This source without its listing, to ship to workers: :meth:`items` lists the files again where it runs."""
        light = copy.copy(self)
        light.files = None
        return light

    def images_hint(self) -> int:
        return len(self.files) if self.files is not None else 0

    def items(self) -> Iterator[str]:
        """The JSON files, one image each; :meth:`read_item` reads one."""
        return iter(self.files if self.files is not None else self._list())

    def __iter__(self) -> Iterator[RawImage | Reject]:
        for path in self.items():
            yield from self.read_item(path)

    def read_item(self, path: str) -> Iterator[RawImage | Reject]:
        """One JSON file: the rejects of its shapes, then its image."""
        doc = self._load(path)
        rel = fs.relpath(path, self.root)
        if not is_labelme(doc):
            why = f"not JSON: {doc}" if isinstance(doc, Exception) else "no 'shapes' list and 'imagePath'"
            yield Reject(path, RejectReason.ANNOTATION_MALFORMED, f"not a LabelMe file ({why})", image=rel)
            return
        image_name = fs.base_name(str(doc.get("imagePath") or "")) or posixpath.splitext(posixpath.basename(path))[0] + ".jpg"
        boxes: list[RawBox] = []
        objects: dict[tuple[str, Any], int] = {}  # (label, group_id) -> its box in ``boxes``
        for index, shape in enumerate(doc["shapes"]):
            item = self._box(shape, f"{path}: shapes[{index}]", image_name)
            if isinstance(item, Reject):
                yield item
                continue
            key = _object_key(shape, item)
            if key is None:
                boxes.append(item)
            elif key in objects:
                boxes[objects[key]] = _union(boxes[objects[key]], item)
            else:
                objects[key] = len(boxes)
                boxes.append(item)
        root = self.image_root or posixpath.dirname(path)
        encoded = None
        if not fs.exists(fs.join(root, image_name)) and isinstance(doc.get("imageData"), str):
            try:
                encoded = base64.b64decode(doc["imageData"], validate=True)
            except (binascii.Error, ValueError):
                encoded = None  # reported as a missing image when it is opened
        yield RawImage(
            key=posixpath.splitext(rel)[0],
            file_name=image_name,
            image_root=root,
            source=path,
            split=split_of_path(rel) or "train",
            boxes=tuple(boxes),
            declared_width=declared_size(doc.get("imageWidth")),
            declared_height=declared_size(doc.get("imageHeight")),
            encoded=encoded,
            by_base_name=fs.is_absolute(str(doc.get("imagePath") or "")),
        )

    def _box(self, shape: Any, where: str, image: str) -> RawBox | Reject:
        if not isinstance(shape, dict):
            return Reject(where, RejectReason.BOX_MALFORMED, f"shape {str(shape)[:80]!r} is not an object", image=image, boxes=1)
        label = str(shape.get("label", ""))
        if label == IGNORE_LABEL:
            return Reject(where, RejectReason.SHAPE_IGNORED, "labelled __ignore__: a region to leave out, not an object", image=image, boxes=1, classes=(label,))
        kind = shape.get("shape_type") or "polygon"  # LabelMe 3 wrote no type
        if kind not in _BOX_SHAPES:
            return Reject(where, RejectReason.SHAPE_NOT_A_BOX, f"a {kind!r} shape is not a box", image=image, boxes=1, classes=(label,))
        try:
            points = [(float(x), float(y)) for x, y in shape["points"]]
            if kind == "circle":
                (cx, cy), (px, py) = points
                r = math.hypot(px - cx, py - cy)
                points = [(cx - r, cy - r), (cx + r, cy + r)]
            if len(points) < 2:
                raise ValueError(f"{len(points)} points")
        except (KeyError, TypeError, ValueError) as exc:
            return Reject(where, RejectReason.BOX_MALFORMED, f"{kind} points unusable: {exc!r}", image=image, boxes=1, classes=(label,))
        if not all(math.isfinite(v) for p in points for v in p):
            points = [(math.nan, math.nan)] * 2  # dropped as non-finite, with its reason
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        return RawBox(
            min(xs), min(ys), max(xs), max(ys),
            class_name=label if self.label_map.id_of(label) else None,
            class_ref=repr(label),
            source=where,
            from_polygon=kind != "rectangle",
        )


def _object_key(shape: Any, box: RawBox) -> tuple[str, Any] | None:
    """(label, group_id) of a piece of a grouped object; None for a shape that is an object of its own."""
    group = shape.get("group_id")
    if group is None or isinstance(group, bool) or not isinstance(group, (int, str)):
        return None
    if not all(math.isfinite(v) for v in (box.x0, box.y0, box.x1, box.y1)):
        return None  # its own box, dropped as non-finite with that reason
    return str(shape.get("label", "")), group


def _union(a: RawBox, b: RawBox) -> RawBox:
    return a._replace(
        x0=min(a.x0, b.x0), y0=min(a.y0, b.y0), x1=max(a.x1, b.x1), y1=max(a.y1, b.y1),
        from_polygon=a.from_polygon or b.from_polygon, merged=True,
    )
