"""Layout of ``stats.json``, the class statistics report.

Declared here so the Beam job (writer), ``weighting.report`` (reader and
renderers) and the tests agree. :func:`check_stats` validates a loaded
document against this layout.
"""

from __future__ import annotations

from typing import Any, TypedDict

STATS_VERSION = 3  # 2: totals.classes, per-class boxes in, written and dropped by reason; 3: aspects, positions

#: COCO box-size buckets, by box area in pixels.
SIZE_BUCKETS: tuple[tuple[str, float], ...] = (
    ("small", 32.0**2),
    ("medium", 96.0**2),
    ("large", float("inf")),
)

#: Box shape buckets, by width / height in pixels (upper limits): tall < 1:2 <= portrait < 4:5 <= square < 5:4 <= landscape < 2:1 <= wide.
ASPECT_BUCKETS: tuple[tuple[str, float], ...] = (
    ("tall", 1 / 2),
    ("portrait", 4 / 5),
    ("square", 5 / 4),
    ("landscape", 2.0),
    ("wide", float("inf")),
)

#: Box centres are counted on a POSITION_GRID x POSITION_GRID grid over the image, row by row from the top left.
POSITION_GRID = 5

#: Histogram bins of boxes per image; the last bin is open ("20+").
BOXES_PER_IMAGE_BINS: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20)


class ClassEntry(TypedDict):
    id: int
    name: str
    boxes: int
    images: int
    boxes_in_images: int  # all boxes in the images containing this class (median frequency)
    share: float  # boxes of this class / boxes of the split
    weight: float  # per-box class weight (before difficult/crowd/truncated multipliers)
    repeat_factor: float  # LVIS r(c) from this split's image frequencies
    sizes: dict[str, int]  # SIZE_BUCKETS name -> boxes
    aspects: dict[str, int]  # ASPECT_BUCKETS name -> boxes (stats version 3)
    positions: list[int]  # boxes whose centre falls in each POSITION_GRID cell, row-major from the top left (version 3)


class SplitEntry(TypedDict):
    images: int
    negative_images: int
    boxes: int
    imbalance_ratio: float | None  # max/min boxes over classes with boxes
    boxes_per_image: dict[str, int]  # bin label -> images
    classes: list[ClassEntry]


class ClassTotals(TypedDict):
    boxes_in: int
    boxes_written: int
    boxes_dropped: int
    boxes_dropped_by_reason: dict[str, int]


class Totals(TypedDict):
    images_in: int
    images_written: int
    images_quarantined: int
    boxes_in: int
    boxes_written: int
    boxes_dropped: int
    images_quarantined_by_reason: dict[str, int]
    boxes_dropped_by_reason: dict[str, int]
    repairs: dict[str, int]
    classes: dict[str, ClassTotals]  # by class as the source named it, unknown classes included


class Stats(TypedDict):
    stats_version: int
    schema_version: int
    command: str
    input: dict[str, Any]
    scheme: dict[str, Any]
    label_map: list[dict[str, Any]]
    splits: dict[str, SplitEntry]
    totals: Totals


_ADDED_IN_3 = ("aspects", "positions")


def aspect_bucket(width: float, height: float) -> str:
    """The :data:`ASPECT_BUCKETS` name of a box ``width`` x ``height`` pixels."""
    ratio = width / height if height > 0 else float("inf")
    return next((name for name, limit in ASPECT_BUCKETS if ratio < limit), ASPECT_BUCKETS[-1][0])


def position_cell(cx: float, cy: float) -> int:
    """The :data:`POSITION_GRID` cell of a box centre in normalized coordinates."""
    n = POSITION_GRID
    return min(max(int(cy * n), 0), n - 1) * n + min(max(int(cx * n), 0), n - 1)


def bin_label(count: int) -> str:
    """The :data:`BOXES_PER_IMAGE_BINS` label that ``count`` falls in."""
    bins = BOXES_PER_IMAGE_BINS
    for lo, hi in zip(bins, bins[1:]):
        if lo <= count < hi:
            return str(lo) if hi == lo + 1 else f"{lo}-{hi - 1}"
    return f"{bins[-1]}+"


def bin_labels() -> list[str]:
    return [bin_label(b) for b in BOXES_PER_IMAGE_BINS]


class StatsLayoutError(ValueError):
    """A stats document that does not follow this layout."""


def check_stats(doc: dict[str, Any], source: str = "stats.json") -> Stats:
    """Check the keys and the accounting identities of a stats document.

    Raises:
        StatsLayoutError: naming the missing key or the identity that fails.
    """
    for key in Stats.__annotations__:
        if key not in doc:
            raise StatsLayoutError(f"{source}: missing key {key!r}")
    totals = doc["totals"]
    for key in Totals.__annotations__:
        if key not in totals:
            raise StatsLayoutError(f"{source}: totals lacks {key!r}")
    if totals["images_in"] != totals["images_written"] + totals["images_quarantined"]:
        raise StatsLayoutError(f"{source}: images_in != images_written + images_quarantined")
    if totals["boxes_in"] != totals["boxes_written"] + totals["boxes_dropped"]:
        raise StatsLayoutError(f"{source}: boxes_in != boxes_written + boxes_dropped")
    for name, c in totals["classes"].items():
        if c["boxes_in"] != c["boxes_written"] + c["boxes_dropped"] or c["boxes_dropped"] != sum(
            c["boxes_dropped_by_reason"].values()
        ):
            raise StatsLayoutError(f"{source}: class {name!r}: boxes_in != boxes_written + boxes_dropped")
    if sum(c["boxes_in"] for c in totals["classes"].values()) != totals["boxes_in"]:
        raise StatsLayoutError(f"{source}: per-class boxes_in do not add up to boxes_in")
    for split, entry in doc["splits"].items():
        for key in SplitEntry.__annotations__:
            if key not in entry:
                raise StatsLayoutError(f"{source}: split {split!r} lacks {key!r}")
        for cls in entry["classes"]:
            for key in ClassEntry.__annotations__:
                if key not in cls and not (key in _ADDED_IN_3 and doc["stats_version"] < 3):
                    raise StatsLayoutError(f"{source}: split {split!r} class entry lacks {key!r}")
    return doc  # type: ignore[return-value]
