"""Which annotation format a path holds: :func:`detect_format`, and the line that says what it looked for."""

from __future__ import annotations

import json
import os
import posixpath
from collections import Counter
from typing import Any

from readers.cvat import is_cvat
from readers.labelme import is_labelme
from readers.raw import SourceError
from readers.splits import split_in_name
from readers.tfrecord import SUFFIXES as TFRECORD_SUFFIXES
from storage import fs

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

