"""COCO instances JSON, parsed as a stream (``ijson``) so memory stays bounded.

``bbox`` is ``[x, y, w, h]`` in pixels. Category ids may be any integer,
including 0; label ids are assigned from 1 in order of category id, keeping
the original names. Categories that no annotation uses (such as a Roboflow
supercategory) stay in the label map, so ids are stable across splits.

Accepted paths: one ``.json`` file (images under ``--image-root``, default the
file's folder), or a folder holding one annotation file per split
(Roboflow ``{train,valid,test}/_annotations.coco.json``, or COCO's
``annotations/instances_{split}.json`` with images in ``{split}/``).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import operator
import posixpath
import re
from collections.abc import Iterator
from typing import Any

import ijson

from readers import fs
from readers.raw import RawBox, RawImage, SourceError, classes_of, declared_size
from readers.splits import split_in_name, split_name
from schemas.annotations import Reject
from schemas.label_map import LabelMap, LabelMapError
from schemas.reasons import RejectReason

log = logging.getLogger(__name__)
_INSTANCES = re.compile(r"instances_(\w+?)\.json$")


@dataclasses.dataclass(frozen=True)
class _AnnotationFile:
    path: str
    image_root: str
    split: str
    non_finite: bool = True


def find_files(path: str, image_root: str | None) -> list[_AnnotationFile]:
    """The annotation files of ``path`` and the split each declares.

    A file's split is named in its own name (``instances_val2017.json``,
    ``custom_train.json``) or by its folder (``valid/_annotations.coco.json``).
    In a folder, the files taken are those two COCO layouts plus any ``*.json``
    whose name declares a split.
    """
    if path.lower().endswith(".json"):
        name = posixpath.basename(path)
        split = split_in_name(posixpath.splitext(name)[0]) or split_name(posixpath.basename(posixpath.dirname(path)), default="")
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
            files.append(_AnnotationFile(json_path, image_root or folder, split_in_name(posixpath.splitext(posixpath.basename(rel))[0])))
    return files


# strings in the "unrolled loop" form: one C-level scan per run of plain bytes, not one step per byte
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|-?Infinity|NaN', re.DOTALL)
_KEYWORD_MAX = len(b"-Infinity")


class _NonFiniteAsStrings:
    """File wrapper that turns bare ``NaN``/``Infinity`` (which Python's json
    writes and strict JSON parsers refuse) into strings, so a NaN box becomes a
    dropped box with a reason instead of a parse failure of the whole file.

    Linear in the file's size: each chunk is rewritten by one C-level regex
    pass, and a string still open at a chunk's end is emitted as it is and
    followed into the next chunk (the state is "inside a string"), rather
    than carried and scanned again with every chunk that follows.
    """

    def __init__(self, f: Any) -> None:
        self.f, self.carry, self.in_string = f, b"", False

    def read(self, n: int = 1 << 16) -> bytes:
        if n == 0:  # ijson probes read(0) to tell bytes from text
            return b""
        while True:
            chunk = self.f.read(max(n, 1 << 16))
            eof = not chunk
            data, self.carry = self.carry + chunk, b""
            out = bytearray()
            pos = 0
            if self.in_string:
                body = _STRING_BODY.match(data).end()  # type: ignore[union-attr]  # always matches
                if body == len(data) or data[body:body + 1] == b"\\":  # no closing quote here (a lone \\ waits for its pair)
                    out += data[:body]
                    self.carry = data[body:]
                    if eof:
                        out += self.carry
                        self.carry = b""
                    if out or eof:
                        return bytes(out)
                    continue
                out += data[: body + 1]
                pos = body + 1
                self.in_string = False
            cut = len(data) if eof else _safe_cut(data, pos)
            out += _TOKENS.sub(_quote_keyword, data[pos:cut])
            rest = data[cut:]
            if rest.startswith(b'"'):  # a string that this chunk does not close: emit it, then follow it
                body = _STRING_BODY.match(rest, 1).end()  # type: ignore[union-attr]
                out += rest[:body]
                self.carry, self.in_string = rest[body:], True
            else:
                self.carry = rest  # a keyword that may go on in the next chunk
            if out or eof:
                return bytes(out)


_STRING_BODY = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*', re.DOTALL)


def _safe_cut(data: bytes, pos: int) -> int:
    """Where the complete tokens of ``data[pos:]`` end: before an open string or a keyword that may be cut."""
    last = pos
    for m in _TOKENS.finditer(data, pos):
        if data.find(b'"', last, m.start()) >= 0:
            break  # a quote no complete string matched opens one this chunk does not close: all after it is inside
        last = m.end()
    quote = data.find(b'"', last)
    return quote if quote >= 0 else max(last, len(data) - _KEYWORD_MAX)


def _quote_keyword(m: re.Match[bytes]) -> bytes:
    token = m.group(0)
    return token if token.startswith(b'"') else b'"' + token + b'"'


def _scan(path: str) -> tuple[bool, bool]:
    """Whether the bytes ``NaN`` or ``Infinity``, and ``"annotations"``, occur at all (a fast C-level scan)."""
    tail, non_finite, annotations = b"", False, False
    with fs.open_binary(path) as f:
        while (chunk := f.read(1 << 22)) and not (non_finite and annotations):
            data = tail + chunk
            non_finite = non_finite or b"NaN" in data or b"Infinity" in data
            annotations = annotations or b'"annotations"' in data
            tail = data[-len(b'"annotations"') :]
    return non_finite, annotations


#: The top-level keys of a COCO instances file ("type" is in COCO 2014's caption files).
KNOWN_KEYS = frozenset({"info", "licenses", "images", "annotations", "categories", "type"})
#: Files up to this size are checked for unknown top-level keys. Listing a file's top-level keys takes a full
#: parse (as long as json.load: 11 s for a 380 MB file), too dear on the launcher for the big ones.
KEY_CHECK_BYTES = 64 << 20


def unknown_keys(path: str, non_finite: bool) -> list[str] | None:
    """Top-level keys that are not COCO's (a misspelled ``categories``, a tool's own block), or None when not checked."""
    if fs.size(path) > KEY_CHECK_BYTES:
        return None
    with fs.open_binary(path) as f:
        stream = _NonFiniteAsStrings(f) if non_finite else f
        # Only the top level's events have an empty prefix: filterfalse keeps them without a Python call per event.
        events = itertools.filterfalse(operator.itemgetter(0), ijson.parse(stream, buf_size=1 << 22))
        keys = [value for _, event, value in events if event == "map_key"]
    return sorted(set(keys) - KNOWN_KEYS)


def _items(path: str, prefix: str, non_finite: bool = True) -> Iterator[Any]:
    with fs.open_binary(path) as f:
        # The rewriting wrapper costs a regex pass; most files never need it.
        stream = _NonFiniteAsStrings(f) if non_finite else f
        # 4 MiB reads: the C parser gathers a string that spans reads again at each read,
        # so with its default 64 KiB a 50 MB string took 9 s; with 4 MiB, 0.2 s
        yield from ijson.items(stream, prefix, use_float=True, buf_size=1 << 22)


class CocoSource:
    """Streams images and boxes from one or more COCO instances files."""

    format = "coco"

    def __init__(self, path: str, image_root: str | None = None) -> None:
        self.explicit_root = image_root is not None  # absolute file names are then looked up there by base name
        self.files = []
        for af in find_files(path, image_root):
            non_finite, has_annotations = _scan(af.path)
            try:
                images = not has_annotations and next(_items(af.path, "images.item", non_finite), None) is not None
            except ijson.JSONError as exc:
                raise SourceError(f"{af.path}: malformed JSON: {exc}") from None
            if images:
                raise SourceError(
                    f"{af.path}: images but no 'annotations' key (misspelled?); they would be written without "
                    'boxes. A dataset without boxes says "annotations": []'
                )
            try:
                unknown = unknown_keys(af.path, non_finite)
            except ijson.JSONError as exc:
                raise SourceError(f"{af.path}: malformed JSON: {exc}") from None
            if unknown:
                log.warning("%s: top-level keys %s are not COCO's; they are not read", af.path, ", ".join(map(repr, unknown)))
            self.files.append(dataclasses.replace(af, non_finite=non_finite))
        if not self.files:
            found = [fs.relpath(f, path) for f in fs.list_files(path, (".json",))]
            seen = f"found {', '.join(found[:5])}{' ...' if len(found) > 5 else ''}" if found else "found no .json file"
            raise SourceError(
                f"{path}: no COCO annotation file: in a folder, boxweight reads */_annotations.coco.json, "
                f"annotations/instances_<split>.json and *.json named with a split (custom_train.json); {seen}. "
                "Give the file itself as --input"
            )
        self._categories: dict[int, str] = {}
        for af in self.files:
            try:
                for cat in _items(af.path, "categories.item", af.non_finite):
                    cid, name = int(cat["id"]), str(cat["name"])
                    if self._categories.get(cid, name) != name:
                        raise SourceError(f"{af.path}: category id {cid} is {name!r} here, {self._categories[cid]!r} elsewhere")
                    self._categories[cid] = name
            except (ijson.JSONError, KeyError, TypeError, ValueError) as exc:
                if isinstance(exc, SourceError):
                    raise
                raise SourceError(f"{af.path}: cannot read categories: {exc}") from exc
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

    def _read_file(self, af: _AnnotationFile) -> Iterator[RawImage | Reject]:
        split = af.split or "train"
        try:
            images = [img for img in _items(af.path, "images.item", af.non_finite)]
        except ijson.JSONError as exc:
            raise SourceError(f"{af.path}: malformed JSON in 'images': {exc}") from exc

        boxes: dict[Any, list[RawBox]] = {}
        file_names = {_key(img["id"]): str(img["file_name"]) for img in images if _usable(img)}
        image_ids = file_names.keys()
        try:
            for index, ann in enumerate(_items(af.path, "annotations.item", af.non_finite)):
                item = self._box(ann, af.path, index, file_names)
                if isinstance(item, Reject):
                    yield item
                    continue
                image_id = _key(ann.get("image_id"))
                if image_id not in image_ids:
                    yield Reject(item.source, RejectReason.BOX_ORPHAN, f"image_id {ann.get('image_id')!r} is not in 'images'", boxes=1, classes=classes_of((item,)))
                    continue
                boxes.setdefault(image_id, []).append(item)
        except ijson.JSONError as exc:
            raise SourceError(f"{af.path}: malformed JSON in 'annotations': {exc}") from exc

        seen: set[Any] = set()
        seen_names: set[str] = set()
        for index, img in enumerate(images):
            where = f"{af.path}: images[{index}]"
            if not _usable(img):
                yield Reject(where, RejectReason.ANNOTATION_MALFORMED, f"image entry {str(img)[:200]} lacks id or file_name")
                continue
            key, name = _key(img["id"]), str(img["file_name"])
            if key in seen or name in seen_names:
                what = f"image id {img['id']!r}" if key in seen else f"file_name {name!r}"
                yield Reject(where, RejectReason.DUPLICATE_IMAGE, f"{what} appears twice; the first is kept", image=name)
                continue
            seen.add(key)
            seen_names.add(name)
            own = boxes.pop(key, [])
            # Colab and Windows exports write '/content/drive/...' or 'C:\...': never opened as given
            by_base_name = self.explicit_root and fs.is_absolute(name)
            yield RawImage(
                key=str(img["id"]),
                file_name=fs.base_name(name) if by_base_name else name,
                by_base_name=by_base_name,
                image_root=af.image_root,
                source=where,
                split=split,
                boxes=tuple(own),
                declared_width=declared_size(img.get("width")),
                declared_height=declared_size(img.get("height")),
            )
        for leftovers in boxes.values():  # boxes of duplicate or malformed image entries
            for rb in leftovers:
                yield Reject(rb.source, RejectReason.BOX_ORPHAN, "its image entry was refused", boxes=1, classes=classes_of((rb,)))

    def _box(self, ann: Any, path: str, index: int, file_names: dict[Any, str]) -> RawBox | Reject:
        where = f"{path}: annotations[{index}]"
        if isinstance(ann, dict) and "id" in ann:
            where += f" (id {ann['id']})"
        cid = ann.get("category_id") if isinstance(ann, dict) else None
        try:
            name = self._categories.get(int(cid))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            name = None
        try:
            bbox = ann["bbox"]
            if not isinstance(bbox, list) or len(bbox) != 4:  # "1234" would iterate as four digits
                raise ValueError(f"bbox {bbox!r} is not [x, y, width, height]")
            x, y, w, h = map(float, bbox)
            if cid is None:
                raise KeyError("category_id")
        except (KeyError, TypeError, ValueError) as exc:
            image = file_names.get(_key(ann.get("image_id")), "") if isinstance(ann, dict) else ""
            return Reject(where, RejectReason.BOX_MALFORMED, f"bbox/category_id unusable: {exc!r}", image=image, boxes=1, classes=(name or f"category_id {cid!r}",))
        return RawBox(
            x, y, x + w, y + h,
            class_name=name,
            class_ref=f"category_id {cid!r}",
            source=where,
            is_crowd=bool(ann.get("iscrowd", 0)),
        )


def _usable(img: Any) -> bool:
    return isinstance(img, dict) and isinstance(img.get("id"), (int, str, float)) and isinstance(img.get("file_name"), str)


def _key(value: Any) -> Any:
    # ids may be ints or strings; 3 and 3.0 (ijson floats) name the same image
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, (list, dict)):  # never an image id; keep it hashable
        return ("unhashable", repr(value))
    return value
