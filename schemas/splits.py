"""The split names records carry, and the one order in which every output lists them."""

from __future__ import annotations

#: The canonical splits, in reading order; a source's other split names (its own lists) come after, by name.
SPLITS = ("train", "val", "test")


def split_sort_key(name: str) -> tuple[int, str]:
    """Train, val, test, then any other split by name: the order of the manifest, the report and the console."""
    return (SPLITS.index(name) if name in SPLITS else len(SPLITS), name)
