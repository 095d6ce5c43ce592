"""COCO instances JSON, parsed once as a stream (:mod:`readers.json_stream`) so memory stays bounded.

``bbox`` is ``[x, y, w, h]`` in pixels. Category ids may be any integer,
including 0; label ids are assigned from 1 in order of category id, keeping
the original names. Categories that no annotation uses (such as a Roboflow
supercategory) stay in the label map, so ids are stable across splits.

The launcher reads only the categories (see :func:`read_header`); the worker
that reads a file parses it once, images and annotations in the same pass.

Accepted paths: one ``.json`` file (images under ``--image-root``, default the
file's folder), or a folder holding one annotation file per split
(Roboflow ``{train,valid,test}/_annotations.coco.json``, or COCO's
``annotations/instances_{split}.json`` with images in ``{split}/``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import logging
import math
import posixpath
import re
from array import array
from collections.abc import Iterator
from typing import Any

from readers.json_stream import JsonStreamError, Members
from readers.raw import RawBox, RawImage, SourceError, classes_of, declared_size
from readers.splits import split_in_name, split_name
from schemas.annotations import Reject
from schemas.label_map import LabelMap, LabelMapError
from schemas.reasons import RejectReason
from storage import fs

log = logging.getLogger(__name__)
_INSTANCES = re.compile(r"instances_(\w+?)\.json$")


@dataclasses.dataclass(frozen=True)
class _AnnotationFile:
    path: str
    image_root: str
    split: str
    keys_checked: bool = False  # the launcher saw every top-level key (and warned of unknown ones)


def find_files(path: str, image_root: str | None) -> list[_AnnotationFile]:
    """The annotation files of ``path`` and the split each declares.

    A file's split is named in its own name (``instances_val2017.json``,
    ``custom_train.json``) or by its folder (``valid/_annotations.coco.json``).
    In a folder, the files taken are those two COCO layouts plus any ``*.json``
    whose name declares a split.
    """
    if path.lower().endswith(".json"):
        name = posixpath.basename(path)
        split = split_in_name(posixpath.splitext(name)[0]) or split_name(
            posixpath.basename(posixpath.dirname(path)), default=""
        )
        return [_AnnotationFile(path, image_root or posixpath.dirname(path), split)]
    files = []
    for json_path in fs.list_files(path, (".json",)):
        rel = fs.relpath(json_path, path)
        folder = posixpath.dirname(json_path)
        m = _INSTANCES.search(rel)
        if m:
            root = image_root or fs.join(path, m.group(1))
            files.append(_AnnotationFile(json_path, root, split_name(m.group(1))))
        elif posixpath.basename(rel) == "_annotations.coco.json":
            files.append(_AnnotationFile(json_path, image_root or folder, split_name(posixpath.basename(folder))))
        elif split_in_name(posixpath.splitext(posixpath.basename(rel))[0]):
            files.append(
                _AnnotationFile(
                    json_path, image_root or folder, split_in_name(posixpath.splitext(posixpath.basename(rel))[0])
                )
            )
    return files


#: The top-level keys of a COCO instances file ("type" is in COCO 2014's caption files).
KNOWN_KEYS = frozenset({"info", "licenses", "images", "annotations", "categories", "type"})
#: Files up to this size are read whole on the launcher (a few hundredths of a second), which then names
#: unknown top-level keys and any malformed JSON before the job starts, and counts the images (a small job
#: runs in the launcher's process). A larger one is read there only up to its categories, so that it is
#: parsed once, by a worker (at 50,000 images, 22 MB, the whole read cost the launcher 0.5 s): the worker
#: warns of unknown keys, and a file whose JSON breaks off fails the job with the same one line.
KEY_CHECK_BYTES = 4 << 20
#: How much of a large file's end is searched for a last member "categories" (COCO's own order).
TAIL_BYTES = 16 << 20
_STREAMED = frozenset({"images", "annotations"})


@dataclasses.dataclass
class Header:
    """What the launcher learns of a COCO file: its categories and which top-level keys it saw."""

    categories: list[Any]
    keys: set[str]
    all_keys: bool  # every top-level key was seen
    has_images: bool
    has_annotations: bool
    images: int = 0  # image entries read (all of them when all_keys)


def read_header(path: str) -> Header:
    """The categories of a COCO file and its top-level keys, reading as little of it as finds them.

    A file up to :data:`KEY_CHECK_BYTES` is read whole. A larger one is read
    from the start up to its first image or annotation; if the categories
    were not before them, its last :data:`TAIL_BYTES` are searched for them as
    the last member (COCO's own order, see :func:`_tail_members`); only if
    they are in neither place is the whole file read.

    Raises:
        JsonStreamError: the JSON is malformed where it was read.
    """
    small = fs.size(path) <= KEY_CHECK_BYTES
    keys: set[str] = set()
    categories: list[Any] | None = None
    has_images = tail_tried = False
    images = 0
    with fs.open_binary(path) as f:
        members = Members(f, _STREAMED)
        for key, index, value in members:
            keys.update(members.names)
            if key == "categories" and index is None:
                categories = value if isinstance(value, list) else []
            if key == "images" and index is not None:
                has_images, images = True, images + 1
            if index is not None and not small and categories is not None:
                break  # the categories came first (Roboflow's order): nothing more is needed
            if index is not None and not small and not tail_tried:
                tail_tried = True
                tail = _tail_members(path)
                if tail is not None and "categories" in tail:
                    keys.update(tail)
                    categories = tail["categories"] if isinstance(tail["categories"], list) else []
                    break
        else:
            keys.update(members.names)
            return Header(categories or [], keys, True, has_images, "annotations" in keys, images)
    return Header(categories, keys, False, has_images, "annotations" in keys or _mentions(path, b'"annotations"'), images)


def _tail_members(path: str) -> dict[str, Any] | None:
    """The last members of the top-level object, parsed from the file's end, or None if they cannot be found.

    Searches the last :data:`TAIL_BYTES` for the name ``"categories"`` followed
    by a value and then only more members and the closing brace. In valid JSON
    a quote preceded by an even number of backslashes delimits a string, and a
    string followed by ``:`` is a member name; members followed only by the
    last ``}`` of the file are the top-level object's. A file that is not
    valid JSON may be taken wrongly here; the worker's full parse then names
    the error.
    """
    size = fs.size(path)
    start = max(0, size - TAIL_BYTES)
    with fs.open_binary(path) as f:
        f.seek(start)
        data = f.read()
    found, tried = len(data), 0
    while (found := data.rfind(b'"categories"', 0, found)) > 0 and tried < _TAIL_TRIES:
        before = found
        while before > 0 and data[before - 1] == ord("\\"):
            before -= 1
        if (found - before) % 2 == 0 and (before > 0 or start == 0):
            tried += 1
            members = _parse_members(data[found:])
            if members is not None:
                return members
    return None


#: Each try parses from the name to the end: a tail full of nested "categories" keys is left to the whole read.
_TAIL_TRIES = 8


def _parse_members(data: bytes) -> dict[str, Any] | None:
    """``"k": v, "k2": v2 }`` and nothing after: the members as a dict, or None."""
    try:
        text = data.decode("utf-8")
        scan, ws = json.JSONDecoder().raw_decode, _WS.match
        members, pos = {}, 0
        while True:
            key, pos = scan(text, pos)
            pos = ws(text, pos).end()  # type: ignore[union-attr]
            if not isinstance(key, str) or text[pos : pos + 1] != ":":
                return None
            members[key], pos = scan(text, ws(text, pos + 1).end())  # type: ignore[union-attr]
            pos = ws(text, pos).end()  # type: ignore[union-attr]
            if text[pos : pos + 1] == "}":
                return members if not text[pos + 1 :].strip(" \t\r\n") else None
            if text[pos : pos + 1] != ",":
                return None
            pos = ws(text, pos + 1).end()  # type: ignore[union-attr]
    except (ValueError, RecursionError):
        return None


_WS = re.compile(r"[ \t\n\r]*")


def _mentions(path: str, needle: bytes) -> bool:
    """Whether ``needle`` occurs anywhere in the file (a C-level byte search, no parse)."""
    tail = b""
    with fs.open_binary(path) as f:
        while chunk := f.read(1 << 22):
            if needle in tail + chunk[: len(needle)] or needle in chunk:
                return True
            tail = chunk[-len(needle) :]
    return False


class CocoSource:
    """Streams images and boxes from one or more COCO instances files."""

    format = "coco"

    def __init__(self, path: str, image_root: str | None = None) -> None:
        self.explicit_root = image_root is not None  # absolute file names are then looked up there by base name
        self.files = []
        self._categories: dict[int, str] = {}
        self._classes: dict[int, tuple[str | None, str]] = {}  # category id -> (name, spelling), as met
        self._images: int | None = 0  # the image entries of the files read whole on the launcher; None: some were not
        for af in find_files(path, image_root):
            try:
                header = read_header(af.path)
            except JsonStreamError as exc:
                raise SourceError(f"{af.path}: malformed JSON: {exc}") from None
            if header.has_images and not header.has_annotations:
                raise SourceError(
                    f"{af.path}: images but no 'annotations' key (misspelled?); they would be written without "
                    'boxes. A dataset without boxes says "annotations": []'
                )
            unknown = sorted(header.keys - KNOWN_KEYS)
            if unknown:
                log.warning(
                    "%s: top-level keys %s are not COCO's; they are not read", af.path, ", ".join(map(repr, unknown))
                )
            self.files.append(dataclasses.replace(af, keys_checked=header.all_keys))
            self._images = self._images + header.images if header.all_keys and self._images is not None else None
            try:
                for cat in header.categories:
                    cid, name = int(cat["id"]), str(cat["name"])
                    if self._categories.get(cid, name) != name:
                        raise SourceError(
                            f"{af.path}: category id {cid} is {name!r} here, {self._categories[cid]!r} elsewhere"
                        )
                    self._categories[cid] = name
            except (KeyError, TypeError, ValueError) as exc:
                if isinstance(exc, SourceError):
                    raise
                raise SourceError(f"{af.path}: cannot read categories: {exc!r}") from exc
        if not self.files:
            found = [fs.relpath(f, path) for f in fs.list_files(path, (".json",))]
            seen = f"found {', '.join(found[:5])}{' ...' if len(found) > 5 else ''}" if found else "found no .json file"
            raise SourceError(
                f"{path}: no COCO annotation file: in a folder, boxweight reads */_annotations.coco.json, "
                f"annotations/instances_<split>.json and *.json named with a split (custom_train.json); {seen}. "
                "Give the file itself as --input"
            )
        names = [self._categories[cid] for cid in sorted(self._categories)]
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise SourceError(f"{path}: category names {dupes} are used by more than one id")
        try:
            self.label_map = LabelMap.from_names(names)
        except LabelMapError as exc:
            raise SourceError(f"{path}: unusable categories: {exc}") from None

    def __iter__(self) -> Iterator[RawImage | Reject]:
        for af in self.files:
            yield from self._read_file(af)

    def images_hint(self) -> int | None:
        """How many images the files list, when the launcher read them whole (small files); else None."""
        return self._images

    def parts(self) -> list[_AnnotationFile]:
        """One part per annotation file, read by a worker of its own (see :class:`readers.ReadPlan`)."""
        return list(self.files)

    def read_part(self, af: _AnnotationFile) -> Iterator[RawImage | Reject]:
        return self._read_file(af)

    def _read_file(self, af: _AnnotationFile) -> Iterator[RawImage | Reject]:
        """One pass over the file (images and annotations in whichever order it has them), then its items."""
        split = af.split or "train"
        try:
            images, boxes, spelled, malformed = self._parse(af)
        except JsonStreamError as exc:
            raise SourceError(f"{af.path}: malformed JSON: {exc}") from exc
        file_names = {entry[0]: entry[1] for _, entry in images if entry[0] is not _UNUSABLE}
        for index, ann, problem in malformed:
            yield self._malformed(ann, af.path, index, problem, file_names)
        seen: set[Any] = set()
        seen_names: set[str] = set()
        for index, entry in images:
            where = f"{af.path}: images[{index}]"
            key, name, width, height, shown = entry
            if key is _UNUSABLE:
                yield Reject(where, RejectReason.ANNOTATION_MALFORMED, f"image entry {shown} lacks id or file_name")
                continue
            if key in seen or name in seen_names:
                what = f"image id {shown!r}" if key in seen else f"file_name {name!r}"
                yield Reject(
                    where, RejectReason.DUPLICATE_IMAGE, f"{what} appears twice; the first is kept", image=name
                )
                continue
            seen.add(key)
            seen_names.add(name)
            own = boxes.take(key, af.path)
            # Colab and Windows exports write '/content/drive/...' or 'C:\...': never opened as given
            by_base_name = self.explicit_root and fs.is_absolute(name)
            yield RawImage(
                key=str(shown),
                file_name=fs.base_name(name) if by_base_name else name,
                by_base_name=by_base_name,
                image_root=af.image_root,
                source=where,
                split=split,
                boxes=own,
                declared_width=width,
                declared_height=height,
            )
        for image_key in boxes.keys_left():
            # boxes of an image id that 'images' lacks, or of a duplicate or malformed image entry
            spelling = spelled.get(image_key, image_key)
            detail = (
                "its image entry was refused"
                if image_key in file_names
                else f"image_id {spelling!r} is not in 'images'"
            )
            for rb in boxes.take(image_key, af.path):
                yield Reject(rb.source, RejectReason.BOX_ORPHAN, detail, boxes=1, classes=classes_of((rb,)))

    def _parse(
        self, af: _AnnotationFile
    ) -> tuple[list[tuple[int, Any]], _Boxes, dict[Any, Any], list[tuple[int, Any, Exception]]]:
        """The file's image entries, its boxes by image key, the ids spelled otherwise than their key, the malformed annotations."""
        images: list[tuple[int, Any]] = []  # (index, entry) with the entry cut to what is used
        boxes = _Boxes()
        spelled: dict[Any, Any] = {}  # an image key (3) as a box spelled it (3.0), when not the key itself
        malformed: list[tuple[int, Any, Exception]] = []  # (index, annotation, what is wrong with it)
        box, add = self._box, boxes.add
        with fs.open_binary(af.path) as f, _collector_paused():
            for key, index, value in Members(f, _STREAMED):
                if key == "annotations" and index is not None:
                    item = box(value)
                    if isinstance(item, Exception):
                        malformed.append((index, value, item))
                        continue
                    image_id = value.get("image_id")
                    image_key = image_id if type(image_id) is int else _key(image_id)
                    if image_key is not image_id:
                        spelled.setdefault(image_key, image_id)
                    add(image_key, index, value.get("id", _NO_ID), *item)
                elif key == "images" and index is not None:
                    images.append((index, _image_entry(value)))
                elif not af.keys_checked and key not in KNOWN_KEYS:
                    log.warning("%s: top-level key %r is not COCO's; it is not read", af.path, key)
        return images, boxes, spelled, malformed

    def _box(self, ann: Any) -> tuple[float, float, float, float, tuple[str | None, str], bool] | Exception:
        """(x, y, width, height, class, crowd) of an annotation, or what makes its bbox or category_id unusable
        (see :meth:`_malformed`).

        Run once per box of a file of millions: each lookup is done once.
        """
        try:
            bbox = ann["bbox"]
            if type(bbox) is not list or len(bbox) != 4:  # "1234" would iterate as four digits
                raise ValueError(f"bbox {bbox!r} is not [x, y, width, height]")
            x, y, w, h = map(float, bbox)
            cid = ann.get("category_id")
            if cid is None:
                raise KeyError("category_id")
        except (KeyError, TypeError, ValueError) as exc:
            return exc
        cls = self._classes.get(cid) if type(cid) is int else None  # 3 and 3.0 hash alike but are spelled apart
        if cls is None:
            cls = self._class_of(cid)
        return x, y, w, h, cls, bool(ann.get("iscrowd", 0))

    def _class_of(self, cid: Any) -> tuple[str | None, str]:
        """(class name or None, how the file spelled it) of a category id."""
        try:
            name = self._categories.get(int(cid))
        except (TypeError, ValueError, OverflowError):
            name = None
        cls = (name, f"category_id {cid!r}")
        if type(cid) is int:
            self._classes[cid] = cls
        return cls

    def _malformed(self, ann: Any, path: str, index: int, problem: Exception, file_names: dict[Any, str]) -> Reject:
        """The reject of an annotation :meth:`_box` refused, named by its image once every image is known."""
        where = f"{path}: annotations[{index}]"
        if isinstance(ann, dict) and "id" in ann:
            where += f" (id {ann['id']})"
        cid = ann.get("category_id") if isinstance(ann, dict) else None
        try:
            name = self._categories.get(int(cid))  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            name = None
        image = file_names.get(_key(ann.get("image_id")), "") if isinstance(ann, dict) else ""
        return Reject(
            where,
            RejectReason.BOX_MALFORMED,
            f"bbox/category_id unusable: {problem!r}",
            image=image,
            boxes=1,
            classes=(name or f"category_id {cid!r}",),
        )


_UNUSABLE = object()
_NO_ID = object()
_ODD = -(2**63)  # an annotation id that is not a 64-bit int (absent, a string, ...): kept aside


class _Boxes:
    """A file's boxes by image key, in columns, until their image is read.

    A million boxes held as ``RawBox`` tuples with their message strings took
    about 420 bytes each (664 MB of peak RSS to parse a 200,000-image file of
    1.2 million boxes); in typed arrays about 60. Each image's boxes are a
    chain of rows (``first``/``last`` per image, ``next`` per row) in file
    order, and become ``RawBox`` values, message and all, when their image is
    read: the same values, in the same order, as before.
    """

    def __init__(self) -> None:
        self.code: dict[Any, int] = {}  # image key -> its chain, in the order first met
        self.first, self.last = array("q"), array("q")  # per chain: first and last row
        self.next = array("q")  # per row: the next row of its image, or -1
        self.coords = array("d")  # per row: x, y, width, height
        self.ids = array("q")  # per row: place in 'annotations', annotation id (or _ODD)
        self.odd_ids: dict[int, Any] = {}  # row -> an id that is not a 64-bit int, or _NO_ID
        self.tags = array("q")  # per row: 2 x its class's place in self.classes + crowd
        self.classes: list[tuple[str | None, str]] = []
        self.slot_of: dict[tuple[str | None, str], int] = {}

    def add(self, image_key: Any, index: int, ann_id: Any, x: float, y: float, w: float, h: float,
            cls: tuple[str | None, str], crowd: bool) -> None:
        row = len(self.next)
        first = self.first
        chain = self.code.setdefault(image_key, len(first))
        if chain == len(first):
            first.append(row)
            self.last.append(row)
        else:
            last = self.last
            self.next[last[chain]] = row
            last[chain] = row
        self.next.append(-1)
        self.coords.extend((x, y, w, h))
        if type(ann_id) is not int or not _ODD < ann_id < 2**63:
            self.odd_ids[row] = ann_id
            ann_id = _ODD
        self.ids.extend((index, ann_id))
        slot = self.slot_of.get(cls)
        if slot is None:
            slot = self.slot_of[cls] = len(self.classes)
            self.classes.append(cls)
        self.tags.append(2 * slot + crowd)

    def take(self, image_key: Any, path: str) -> tuple[RawBox, ...]:
        """The boxes of an image, once: later calls give none."""
        chain = self.code.pop(image_key, None)
        if chain is None:
            return ()
        out = []
        row = self.first[chain]
        coords, ids, tags, nxt = self.coords, self.ids, self.tags, self.next
        while row != -1:
            x, y, w, h = coords[4 * row : 4 * row + 4]
            index, ann_id = ids[2 * row : 2 * row + 2]
            where = f"{path}: annotations[{index}]"
            shown = ann_id if ann_id != _ODD else self.odd_ids[row]
            if shown is not _NO_ID:
                where += f" (id {shown})"
            tag = tags[row]
            name, spelling = self.classes[tag >> 1]
            out.append(RawBox(x, y, x + w, y + h, name, spelling, where, False, bool(tag & 1)))
            row = nxt[row]
        return tuple(out)

    def keys_left(self) -> list[Any]:
        """The image keys whose boxes no image took, in the order first met."""
        return list(self.code)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while a file is parsed.

    The parse keeps a million boxes alive and makes no cycles; each of the
    collector's full passes walks every object kept so far, which took 2.2 s
    of 15.1 at a million boxes. It is turned back on only if it was on.

    Before that, what the parse kept is moved to the oldest generation
    (``gc.freeze()`` then ``gc.unfreeze()``, which the ``gc`` docs say puts the
    frozen objects back in the oldest generation). Otherwise the first young
    collection after the parse walks the millions of objects made while the
    collector was off: 0.35 s at a million boxes. They are collected as usual
    afterwards. Skipped where objects are frozen already (the local runner's
    workers freeze their modules, see ``beam_jobs.worker``): unfreezing would
    thaw those too.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if not gc.get_freeze_count():
            gc.freeze()
            gc.unfreeze()  # every tracked object now in the oldest generation, without a walk
        if enabled:
            gc.enable()


def _image_entry(img: Any) -> tuple[Any, str, int | None, int | None, Any]:
    """(key, file_name, declared width, height, id as given) of an image entry; key ``_UNUSABLE`` (and the entry
    shown) when it lacks an id or file name."""
    if not _usable(img):
        return _UNUSABLE, "", None, None, str(img)[:200]
    return (
        _key(img["id"]),
        str(img["file_name"]),
        declared_size(img.get("width")),
        declared_size(img.get("height")),
        img["id"],
    )


def _usable(img: Any) -> bool:
    return (
        isinstance(img, dict) and isinstance(img.get("id"), (int, str, float)) and isinstance(img.get("file_name"), str)
    )


def _key(value: Any) -> Any:
    # ids may be ints or strings; 3 and 3.0 name the same image
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, (list, dict)):  # never an image id; keep it hashable
        return ("unhashable", repr(value))
    return value
