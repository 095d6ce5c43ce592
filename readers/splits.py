"""Split names: sources say 'valid', 'validation', 'val2017'; records say 'val'."""

from __future__ import annotations

import re

_ALIASES = {"valid": "val", "validation": "val", "dev": "val", "training": "train", "testing": "test"}


def split_name(name: str, default: str = "train") -> str:
    """Canonical split name for a folder or file name, or ``default`` if it is not one."""
    base = re.sub(r"\d{4}$", "", name.lower())  # COCO's train2017
    base = _ALIASES.get(base, base)
    return base if base in ("train", "val", "test") else default
