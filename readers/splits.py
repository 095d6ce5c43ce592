"""Split names: sources say 'valid', 'validation', 'val2017'; records say 'val'.

A source's own splits always win over a carved one; these helpers read the
split a folder or file name declares (``valid/``, ``train_labels.csv``,
``instances_val2017.json``, ``coco_val.record-00000-of-00001``).
"""

from __future__ import annotations

import re

from schemas.splits import SPLITS

_ALIASES = {"valid": "val", "validation": "val", "dev": "val", "training": "train", "testing": "test", "trainval": "train"}
_TOKEN = re.compile(r"[-_.\s]+")


def split_name(name: str, default: str = "train") -> str:
    """Canonical split name for a folder or file name, or ``default`` if it is not one."""
    base = re.sub(r"\d{4}$", "", name.lower())  # COCO's train2017
    base = _ALIASES.get(base, base)
    return base if base in SPLITS else default


def split_in_name(name: str) -> str:
    """The split a file or folder name declares in one of its words, the last such word winning; '' if none.

    ``train_labels.csv`` -> train, ``pet_faces_val.record-00000-of-00001`` -> val,
    ``custom_train.json`` -> train, ``_annotations.csv`` -> ''.
    """
    for token in reversed(_TOKEN.split(name.lower())):
        found = split_name(token, default="")
        if found:
            return found
    return ""


def split_of_path(rel: str, skip: tuple[str, ...] = ()) -> str:
    """The split named by the nearest folder of ``rel`` (a path relative to the dataset root); '' if none."""
    for part in reversed(rel.split("/")[:-1]):
        if part in skip:
            continue
        found = split_name(part, default="")
        if found:
            return found
    return ""
