"""CVAT for images 1.1 XML (``annotations.xml``), parsed as a stream with ``defusedxml``.

Each ``<image name= width= height= [subset=]>`` holds its objects: ``<box>``
(``xtl ytl xbr ybr`` in pixels, ``occluded`` read as truncated) is a box;
``<polygon>`` and ``<ellipse>`` are read as their bounding box and a
``<mask>`` as its ``left top width height`` rectangle, each counted as a
repair; ``<polyline>``, ``<points>``, ``<cuboid>`` and ``<skeleton>`` are no
boxes and are dropped with that reason; ``<tag>`` is an image label, not an
object. Image names are relative to ``--image-root``, else to the XML's
folder, else to its ``images/`` folder (how CVAT exports them). The split is
the image's ``subset`` (CVAT projects), else the nearest folder named like a
split, else train. Class names are the task's or project's ``<labels>``, in
their order, else every label used, sorted.
"""

from __future__ import annotations

import math
import posixpath
from collections.abc import Iterator
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from readers.raw import RawBox, RawImage, SourceError, declared_size
from readers.splits import split_name
from schemas.annotations import Reject
from schemas.label_map import LabelMap
from schemas.reasons import RejectReason
from storage import fs

_NOT_BOXES = ("polyline", "points", "cuboid", "skeleton")


def is_cvat(head: bytes) -> bool:
    """Whether a file's first bytes look like a CVAT export."""
    return b"<annotations" in head and (b"<version>1.1</version>" in head or b"<meta>" in head)


def _events(path: str) -> Iterator[tuple[str, Element, Element | None]]:
    """(event, element, its <image>) for each start and end; a shape of an image is removed from it once ended.

    Shapes are handled at their own end, not at the image's: an image's
    elements are never all held at once (an export with 1,000,000 boxes on
    one image held them all, 0.7 GB, before this).
    """
    try:
        with fs.open_binary(path) as f:
            image: Element | None = None
            depth = image_depth = 0
            for event, node in SafeET.iterparse(f, events=("start", "end"), forbid_dtd=True):
                if event == "start":
                    depth += 1
                    if node.tag == "image" and image is None:
                        image, image_depth = node, depth
                    continue
                depth -= 1
                if image is not None and depth == image_depth and node is not image:  # a direct child: a shape
                    yield event, node, image
                    del image[-1]  # the element that just ended is the image's last child
                    continue
                if node is image:
                    image = None
                yield event, node, None
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise SourceError(f"{path}: unreadable CVAT XML ({exc.__class__.__name__}: {exc})") from None


class CvatSource:
    """Images and boxes from a CVAT for images 1.1 export."""

    format = "cvat"

    def __init__(self, path: str, image_root: str | None = None, label_map: LabelMap | None = None) -> None:
        if not path.lower().endswith(".xml"):
            path = fs.join(path, "annotations.xml")
        if not fs.exists(path):
            raise SourceError(f"{path}: no CVAT annotations.xml")
        self.path, self.image_root = path, image_root
        self._images: int | None = None
        if label_map is None:  # one pass over the file for its labels, counting its images on the way
            declared: list[str] = []
            used: set[str] = set()
            self._images = 0
            for _, node, image in _events(path):
                if image is not None:
                    if node.tag in ("box", "polygon", "ellipse", "mask"):
                        used.add(node.get("label", ""))
                elif node.tag == "label" and node.find("name") is not None:
                    declared.append((node.findtext("name") or "").strip())
                elif node.tag == "image":
                    self._images += 1
                    node.clear()
            names = [n for n in dict.fromkeys(declared) if n] or sorted(n for n in used if n)
            if not names:
                raise SourceError(f"{path}: no <labels> and no labelled box; no label set")
            label_map = LabelMap.from_names(names)
        self.label_map = label_map

    def images_hint(self) -> int | None:
        """How many images the file lists, when the launcher read it for its labels; else None."""
        return self._images

    def _root(self) -> str:
        if self.image_root:
            return self.image_root
        here = posixpath.dirname(self.path)
        images = fs.join(here, "images")
        return images if fs.exists(images) else here

    def __iter__(self) -> Iterator[RawImage | Reject]:
        root = self._root()
        folder_split = split_name(posixpath.basename(posixpath.dirname(self.path)), default="")
        boxes: list[RawBox] = []
        index = 0
        for _, node, image in _events(self.path):
            if image is not None:  # a shape of the image being read
                where = f"{self.path}: image id {image.get('id', '?')}"
                item = self._box(node, f"{where} <{node.tag}>[{index}]", image.get("name", ""))
                index += 1
                if isinstance(item, Reject):
                    yield item
                elif item is not None:
                    boxes.append(item)
                continue
            if node.tag != "image":
                continue
            name = node.get("name", "")
            where = f"{self.path}: image id {node.get('id', '?')}"
            subset = split_name(node.get("subset", ""), default="")
            yield RawImage(
                key=posixpath.splitext(name)[0] or where,
                file_name=fs.base_name(name) if fs.is_absolute(name) else name,
                by_base_name=fs.is_absolute(name),
                image_root=root,
                source=where,
                split=subset or folder_split or "train",
                boxes=tuple(boxes),
                declared_width=declared_size(node.get("width")),
                declared_height=declared_size(node.get("height")),
            )
            node.clear()  # a large export streams in constant memory
            boxes, index = [], 0

    def _box(self, shape: Element, where: str, image: str) -> RawBox | Reject | None:
        label = shape.get("label", "")
        if shape.tag == "tag":
            return None
        if shape.tag in _NOT_BOXES:
            return Reject(where, RejectReason.SHAPE_NOT_A_BOX, f"a <{shape.tag}> is not a box", image=image, boxes=1, classes=(label,))
        try:
            if shape.tag == "box":
                x0, y0, x1, y1 = (float(shape.get(k, "nan")) for k in ("xtl", "ytl", "xbr", "ybr"))
            elif shape.tag == "polygon":
                points = [tuple(map(float, p.split(","))) for p in shape.get("points", "").split(";") if p]
                if len(points) < 3 or any(len(p) != 2 for p in points):
                    raise ValueError(f"{len(points)} points")
                xs, ys = [p[0] for p in points], [p[1] for p in points]
                x0, y0, x1, y1 = min(xs), min(ys), max(xs), max(ys)
            elif shape.tag == "ellipse":
                cx, cy, rx, ry = (float(shape.get(k, "nan")) for k in ("cx", "cy", "rx", "ry"))
                x0, y0, x1, y1 = cx - rx, cy - ry, cx + rx, cy + ry
            elif shape.tag == "mask":
                left, top, width, height = (float(shape.get(k, "nan")) for k in ("left", "top", "width", "height"))
                x0, y0, x1, y1 = left, top, left + width, top + height
            else:
                return Reject(where, RejectReason.SHAPE_NOT_A_BOX, f"unknown element <{shape.tag}>", image=image, boxes=1, classes=(label,))
        except ValueError as exc:
            return Reject(where, RejectReason.BOX_MALFORMED, f"<{shape.tag}> coordinates unusable: {exc}", image=image, boxes=1, classes=(label,))
        if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
            x0 = y0 = x1 = y1 = math.nan  # dropped as non-finite, with its reason
        return RawBox(
            x0, y0, x1, y1,
            class_name=label if self.label_map.id_of(label) else None,
            class_ref=repr(label),
            source=where,
            truncated=shape.get("occluded") == "1",
            from_polygon=shape.tag != "box",
        )
