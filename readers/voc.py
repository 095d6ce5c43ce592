"""Pascal VOC XML, parsed with ``defusedxml`` (entity expansion and external entities refused).

A folder of ``*.xml`` files; each image is beside its XML or in a sibling
``JPEGImages/`` folder (the VOC2012 layout). ``<filename>`` may lack its
extension or differ in case from the file on disk. ``<size>`` may be missing
or zero (the file's size is used). The split is the nearest folder named like
a split (``images/train/...``), else ``train``.

Class names are collected in a first pass and sorted, so label ids do not
depend on file order; a malformed XML file becomes a quarantine entry.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from readers import fs
from readers.raw import RawBox, RawImage, SourceError
from readers.splits import split_name
from schemas.annotations import Reject
from schemas.label_map import LabelMap
from schemas.reasons import RejectReason

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class VocError(ValueError):
    pass


def parse_xml(data: bytes, source: str) -> Element:
    try:
        return SafeET.fromstring(data, forbid_dtd=True)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise VocError(f"{source}: unreadable XML ({exc.__class__.__name__}: {exc})") from None


def _text(node: Element, path: str, default: str = "") -> str:
    found = node.find(path)
    return (found.text or "").strip() if found is not None and found.text is not None else default


def _flag(node: Element, path: str) -> bool:
    return _text(node, path, "0") in ("1", "true", "True")


class VocSource:
    """Images and boxes from a folder of Pascal VOC XML files."""

    format = "voc"

    def __init__(self, path: str, image_root: str | None = None, label_map: LabelMap | None = None) -> None:
        self.root = path
        self.image_root = image_root
        self.xml_files = fs.list_files(path, (".xml",))
        if not self.xml_files:
            raise SourceError(f"{path}: no Pascal VOC *.xml files found")
        listing_root = image_root or path
        if not image_root and posixpath.basename(path.rstrip("/")) == "Annotations":
            listing_root = posixpath.dirname(path.rstrip("/"))  # VOC2012: ../JPEGImages
        all_files = fs.list_files(listing_root, IMAGE_SUFFIXES)
        self._images_by_dir: dict[str, dict[str, str]] = {}
        for p in all_files:
            self._images_by_dir.setdefault(posixpath.dirname(p), {})[posixpath.basename(p).lower()] = p
        self._parsed: dict[str, Element | VocError] = {}
        if label_map is None:
            names: set[str] = set()
            for xml in self.xml_files:
                tree = self._parse(xml)
                if isinstance(tree, Element):
                    names.update(_text(obj, "name") for obj in tree.iter("object"))
            names.discard("")
            if not names:
                raise SourceError(f"{path}: no <object><name> in any XML file; no label set")
            label_map = LabelMap.from_names(sorted(names))
        self.label_map = label_map

    def _parse(self, xml: str) -> Element | VocError:
        if xml not in self._parsed:
            try:
                self._parsed[xml] = parse_xml(fs.read_bytes(xml), xml)
            except VocError as exc:
                self._parsed[xml] = exc
        return self._parsed[xml]

    def __iter__(self) -> Iterator[RawImage | Reject]:
        claimed: set[str] = set()
        for xml in self.xml_files:
            tree = self._parse(xml)
            self._parsed.pop(xml, None)  # parsed once for labels, used once here
            rel = fs.relpath(xml, self.root)
            split = _split_of(rel)
            if isinstance(tree, VocError):
                beside = self._find_image(xml, "")
                if beside:  # the image is accounted for by this entry, not again as unannotated
                    claimed.add(beside)
                yield Reject(xml, RejectReason.ANNOTATION_MALFORMED, str(tree), image=rel)
                continue
            boxes = tuple(self._boxes(tree, xml))
            declared = _text(tree, "filename")
            try:
                image_path = self._find_image(xml, declared)
            except fs.UnsafePath as exc:
                yield Reject(xml, RejectReason.PATH_UNSAFE, str(exc), image=declared, boxes=len(boxes))
                continue
            if image_path is None:
                yield Reject(xml, RejectReason.IMAGE_MISSING, f"no image file for <filename>{declared!r}", image=declared or rel, boxes=len(boxes))
                continue
            if image_path in claimed:
                yield Reject(xml, RejectReason.DUPLICATE_IMAGE, f"{image_path} is already annotated by another XML", image=declared, boxes=len(boxes))
                continue
            claimed.add(image_path)
            root = posixpath.dirname(image_path)
            yield RawImage(
                key=posixpath.splitext(rel)[0],
                file_name=posixpath.basename(image_path),
                image_root=root,
                source=xml,
                split=split,
                boxes=boxes,
                declared_width=_positive(_text(tree, "size/width")),
                declared_height=_positive(_text(tree, "size/height")),
            )
        for _, files in sorted(self._images_by_dir.items()):
            for image_path in sorted(files.values()):
                if image_path not in claimed:
                    yield Reject(image_path, RejectReason.ANNOTATION_MISSING, "image file has no XML annotation", image=fs.relpath(image_path, self.root))

    def _boxes(self, tree: Element, xml: str) -> Iterator[RawBox]:
        for index, obj in enumerate(tree.iter("object")):
            name = _text(obj, "name")
            where = f"{xml}: object[{index}] {name!r}"
            try:
                coords = [float(_text(obj, f"bndbox/{k}", "nan")) for k in ("xmin", "ymin", "xmax", "ymax")]
            except ValueError:
                coords = [float("nan")] * 4
            yield RawBox(
                coords[0], coords[1], coords[2], coords[3],
                class_name=name if self.label_map.id_of(name) else None,
                class_ref=repr(name),
                source=where,
                difficult=_flag(obj, "difficult"),
                truncated=_flag(obj, "truncated"),
            )

    def _find_image(self, xml: str, declared: str) -> str | None:
        here = posixpath.dirname(xml)
        stem = posixpath.splitext(posixpath.basename(xml))[0]
        candidates = []
        if declared:
            fs.safe_join(here, declared)  # refuses traversal before any lookup
            candidates.append(posixpath.basename(declared))
        candidates.append(stem)
        dirs = [here, posixpath.join(posixpath.dirname(here), "JPEGImages")]
        if self.image_root:
            dirs.insert(0, self.image_root.rstrip("/"))
        for directory in dirs:
            files = self._images_by_dir.get(directory, {})
            for name in candidates:
                hit = files.get(name.lower())
                if hit:
                    return hit
                for suffix in IMAGE_SUFFIXES:  # <filename> without extension
                    hit = files.get(name.lower() + suffix)
                    if hit:
                        return hit
        return None


def _split_of(rel: str) -> str:
    for part in reversed(posixpath.dirname(rel).split("/")):
        name = split_name(part, default="")
        if name:
            return name
    return "train"


def _positive(text: str) -> int | None:
    try:
        value = int(float(text))
    except ValueError:
        return None
    return value if value > 0 else None
