"""Pascal VOC XML, parsed with ``defusedxml`` (entity expansion and external entities refused).

A folder of ``*.xml`` files; each image is in ``--image-root``, beside its
XML, or in a ``JPEGImages/`` or ``images/`` folder (any case) beside the
XML's folder or mirroring it (``annotations/train/x.xml`` ->
``images/train/x.jpg``). An image not found there is quarantined once,
with the folders searched and, if a file of that name exists elsewhere, its
path; an absolute ``<filename>`` (labelImg on Windows, Colab) is looked up
by its base name, never opened as written. ``<filename>`` may lack its
extension or differ in case from the file on disk. ``<size>`` may be missing
or zero (the file's size is used).

In the VOC layout (``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/``),
``--input`` may name the dataset folder or its ``Annotations/``: either way
the image keys are the XML names relative to ``Annotations/``. The splits are
the ones ``ImageSets/Main/{train,val,test}.txt`` declare (``trainval.txt``
counts as train for images in neither train nor val; other list names become
splits of that name; per-class lists such as ``cat_train.txt`` are ignored);
an image those lists do not name, or name twice, is quarantined with the
reason. Without such lists, the split is the nearest folder named like a
split (``images/train/...``), else ``train``.

Class names are collected in a first pass and sorted, so label ids do not
depend on file order; a malformed XML file becomes a quarantine entry.
"""

from __future__ import annotations

import copy
import functools
import posixpath
import re
from collections.abc import Iterable, Iterator
from typing import NamedTuple
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from readers.raw import RawBox, RawImage, SourceError, classes_of, declared_size
from readers.splits import split_of_path
from schemas.annotations import Reject
from schemas.label_map import LabelMap
from schemas.reasons import RejectReason
from storage import fs

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class VocError(ValueError):
    pass


class Parsed(NamedTuple):
    """One XML file as :meth:`VocSource.read_item` reads it, before its image is looked up."""

    xml: str
    error: str | None  # why the file is unreadable; then nothing else is set
    declared: str = ""  # <filename>
    boxes: tuple[RawBox, ...] = ()
    width: int | None = None  # <size>, when it is a positive whole number
    height: int | None = None


class _ImageIndex:
    """The listed image files by folder (base names in lower case) and by base name; folders by their lower case."""

    def __init__(self, files: list[str]) -> None:
        self.by_dir: dict[str, dict[str, str]] = {}
        self.by_name: dict[str, list[str]] = {}
        for p in files:
            self.by_dir.setdefault(posixpath.dirname(p), {})[posixpath.basename(p).lower()] = p
            self.by_name.setdefault(posixpath.basename(p).lower(), []).append(p)
        self.dirs = {d.lower(): d for d in self.by_dir}


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
        path = path.rstrip("/")
        dataset_root = path
        if posixpath.basename(path).lower() == "annotations":
            dataset_root = posixpath.dirname(path)
        else:
            for name in ("Annotations", "annotations"):
                if fs.exists(fs.join(path, name)):
                    path = fs.join(path, name)
                    break
        self.root = path
        self.dataset_root = dataset_root
        self.image_root = image_root
        self.xml_files: list[str] | None = self._list_xml()
        self._images: _ImageIndex | None = None  # listed when images are resolved
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

    def _list_xml(self) -> list[str]:
        files = fs.list_files(self.root, (".xml",))
        if not files:
            raise SourceError(f"{self.root}: no Pascal VOC *.xml files found")
        return files

    def unlisted(self) -> VocSource:
        """This source without its listings, to ship to workers: they list the files again where they run."""
        light = copy.copy(self)
        light.xml_files, light._images = None, None
        light.__dict__.pop("split_lists", None)
        return light

    @functools.cached_property
    def split_lists(self) -> dict[str, tuple[str, ...]] | None:
        """Image id -> the ``ImageSets/Main`` lists naming it, read when images are resolved; None without lists."""
        return _image_sets(fs.join(self.dataset_root, "ImageSets", "Main"))

    def images_hint(self) -> int:
        return len(self.xml_files) if self.xml_files is not None else 0

    @staticmethod
    def _parse(xml: str) -> Element | VocError:
        try:
            return parse_xml(fs.read_bytes(xml), xml)
        except VocError as exc:
            return exc

    def items(self) -> Iterator[str]:
        """The XML files; :meth:`read_item` reads one, :meth:`resolve` finds the images of all of them."""
        return iter(self.xml_files if self.xml_files is not None else self._list_xml())

    def read_item(self, xml: str) -> Iterator[Parsed]:
        """One XML file, parsed: what it declares and its boxes, or what is wrong with it."""
        tree = self._parse(xml)
        if isinstance(tree, VocError):
            yield Parsed(xml, str(tree))
            return
        yield Parsed(
            xml,
            None,
            _text(tree, "filename"),
            tuple(self._boxes(tree, xml)),
            declared_size(_text(tree, "size/width")),
            declared_size(_text(tree, "size/height")),
        )

    def __iter__(self) -> Iterator[RawImage | Reject]:
        return self.resolve(item for xml in self.items() for item in self.read_item(xml))

    def resolve(self, parsed: Iterable[Parsed]) -> Iterator[RawImage | Reject]:
        """The images of the parsed XML files, in their order: each XML's image is looked up in the image
        folders, an image claimed twice is refused the second time, an XML whose image is not found is
        reported once every XML has claimed its own, and an image no XML claims is reported last."""
        claimed: set[str] = set()
        missing: list[tuple[str, str, str, tuple[RawBox, ...], list[str]]] = []
        split_lists = self.split_lists
        for item in parsed:
            xml = item.xml
            rel = fs.relpath(xml, self.root)
            split = _split_of(rel)
            if item.error is not None:
                beside, _ = self._find_image(xml, "")
                if beside:  # the image is accounted for by this entry, not again as unannotated
                    claimed.add(beside)
                yield Reject(xml, RejectReason.ANNOTATION_MALFORMED, item.error, image=rel)
                continue
            boxes, declared = item.boxes, item.declared
            try:
                image_path, searched = self._find_image(xml, declared)
            except fs.UnsafePath as exc:
                yield Reject(xml, RejectReason.PATH_UNSAFE, str(exc), image=declared, boxes=len(boxes), classes=classes_of(boxes))
                continue
            if image_path is None:  # reported once every XML has claimed its image
                missing.append((xml, declared, rel, boxes, searched))
                continue
            if image_path in claimed:
                yield Reject(xml, RejectReason.DUPLICATE_IMAGE, f"{image_path} is already annotated by another XML", image=declared, boxes=len(boxes), classes=classes_of(boxes))
                continue
            claimed.add(image_path)
            if split_lists is not None:
                stem = posixpath.splitext(posixpath.basename(xml))[0]
                listed = split_lists.get(stem, ())
                if len(listed) != 1:
                    where = ", ".join(f"{s}.txt" for s in listed)
                    reason, detail = (
                        (RejectReason.SPLIT_CONFLICT, f"{stem} is listed in {where} of ImageSets/Main")
                        if listed
                        else (RejectReason.SPLIT_UNDECLARED, f"{stem} is in no split list of ImageSets/Main")
                    )
                    yield Reject(xml, reason, detail, image=posixpath.basename(image_path), boxes=len(boxes), classes=classes_of(boxes))
                    continue
                split = _LIST_SPLIT.get(listed[0], listed[0])
            root = posixpath.dirname(image_path)
            yield RawImage(
                key=posixpath.splitext(rel)[0],
                file_name=posixpath.basename(image_path),
                image_root=root,
                source=xml,
                split=split,
                boxes=boxes,
                by_base_name=fs.is_absolute(declared),
                declared_width=item.width,
                declared_height=item.height,
            )
        for xml, declared, rel, lost, searched in missing:
            detail = f"no image file for <filename>{declared!r} in {', '.join(searched)}"
            elsewhere = [p for p in self._elsewhere(xml, declared) if p not in claimed]
            if elsewhere:  # the same image: counted here, not again as an image without XML
                claimed.add(elsewhere[0])
                detail += f"; {elsewhere[0]} has that name: pass --image-root {posixpath.dirname(elsewhere[0])}"
            yield Reject(xml, RejectReason.IMAGE_MISSING, detail, image=declared or rel, boxes=len(lost), classes=classes_of(lost))
        for _, files in sorted(self._index().by_dir.items()):
            for image_path in sorted(files.values()):
                if image_path not in claimed:
                    yield Reject(image_path, RejectReason.ANNOTATION_MISSING, "image file has no XML annotation", image=fs.relpath(image_path, self.root))

    def _index(self) -> _ImageIndex:
        """The image files under --image-root or the dataset's folder, listed once."""
        if self._images is None:
            self._images = _ImageIndex(fs.list_files(self.image_root or self.dataset_root, IMAGE_SUFFIXES))  # VOC2012: ../JPEGImages
        return self._images

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

    def _candidates(self, xml: str, declared: str) -> list[str]:
        """Image names to look for: <filename> (its base name if absolute) and the XML's stem."""
        candidates = []
        if declared:
            if fs.is_absolute(declared):
                # labelImg on Windows, Colab: only the base name is looked up, among the listed files
                candidates.append(fs.base_name(declared))
            else:
                fs.safe_join(posixpath.dirname(xml), declared)  # refuses traversal before any lookup
                candidates.append(posixpath.basename(declared))
        candidates.append(posixpath.splitext(posixpath.basename(xml))[0])
        return candidates

    def _folders(self, xml: str) -> list[str]:
        """Where an XML's image may be: --image-root, beside it, and the image folders of the VOC layouts."""
        here = posixpath.dirname(xml)
        parent = posixpath.dirname(here)
        folders = [self.image_root.rstrip("/")] if self.image_root else []
        folders.append(here)
        parts = here.split("/")
        # the last folder named annotations, mirrored: annotations/train/ -> images/train/
        at = max((i for i, part in enumerate(parts) if part.lower() == "annotations"), default=None)
        for name in _IMAGE_FOLDERS:
            folders.append(posixpath.join(parent, name))  # Annotations/ beside JPEGImages/ or images/
            if at is not None:
                folders.append("/".join(parts[:at] + [name] + parts[at + 1 :]))
        dirs = self._index().dirs
        return list(dict.fromkeys(dirs.get(f.lower(), f) for f in folders))

    def _find_image(self, xml: str, declared: str) -> tuple[str | None, list[str]]:
        """The image file of an XML, and the folders searched."""
        candidates = self._candidates(xml, declared)
        folders = self._folders(xml)
        by_dir = self._index().by_dir
        for directory in folders:
            files = by_dir.get(directory, {})
            for name in candidates:
                hit = files.get(name.lower())
                if hit:
                    return hit, folders
                for suffix in IMAGE_SUFFIXES:  # <filename> without extension
                    hit = files.get(name.lower() + suffix)
                    if hit:
                        return hit, folders
        return None, [f for f in folders if f in by_dir] or folders[:1]

    def _elsewhere(self, xml: str, declared: str) -> list[str]:
        """Listed image files with the XML's image name, in folders that were not searched."""
        names = [n.lower() for n in self._candidates(xml, declared)]
        by_name = self._index().by_name
        return sorted(p for n in names for p in by_name.get(n, []))


def _split_of(rel: str) -> str:
    return split_of_path(rel) or "train"


_IMAGE_FOLDERS = ("JPEGImages", "images")  # matched in any case
_LIST_SPLIT = {"valid": "val", "validation": "val", "trainval": "train"}
_LIST_NAME = re.compile(r"^[a-z0-9]+$")


def _image_sets(folder: str) -> dict[str, tuple[str, ...]] | None:
    """Image id -> the split lists naming it, from ``ImageSets/Main/*.txt``; None when there are none.

    ``trainval`` only names images that no ``train`` or ``val`` list does.
    """
    if not fs.exists(folder):
        return None
    lists: dict[str, set[str]] = {}
    for path in fs.list_files(folder, (".txt",)):
        if posixpath.dirname(path) != folder.rstrip("/"):
            continue
        stem = posixpath.splitext(posixpath.basename(path))[0].lower()
        if not _LIST_NAME.match(stem):
            continue  # per-class lists (cat_train.txt: "id 1" lines)
        rows = [line.split() for line in fs.read_text(path).splitlines() if line.strip()]
        if any(len(row) != 1 for row in rows):
            continue
        lists[stem] = {row[0] for row in rows}
    if not lists:
        return None
    named: dict[str, list[str]] = {}
    for stem in sorted(lists, key=lambda s: (s == "trainval", s)):
        split = _LIST_SPLIT.get(stem, stem)
        for image_id in sorted(lists[stem]):
            splits = named.setdefault(image_id, [])
            if stem == "trainval" and any(_LIST_SPLIT.get(s, s) in ("train", "val") for s in splits):
                continue  # already in train or val
            if split not in (_LIST_SPLIT.get(s, s) for s in splits):
                splits.append(stem)
    return {image_id: tuple(stems) for image_id, stems in named.items()}
