"""The in-memory annotation model: what readers produce and the writer consumes.

Coordinates are normalized to [0, 1] (as in the record contract), label ids
start at 1 (the TF Object Detection API reserves 0 for background). Objects
validate themselves at construction, so an invalid one cannot exist.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from schemas.reasons import RejectReason


class AnnotationError(ValueError):
    """An annotation value that violates the contract."""


IMAGE_FORMATS = ("jpeg", "png")


@dataclasses.dataclass(frozen=True)
class Box:
    """One ground-truth box, normalized to the image it belongs to."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float
    label: int
    text: str
    area: float = 0.0
    is_crowd: bool = False
    difficult: bool = False
    truncated: bool = False
    weight: float = 1.0

    def __post_init__(self) -> None:
        coords = (self.xmin, self.ymin, self.xmax, self.ymax)
        for name, value in zip(("xmin", "ymin", "xmax", "ymax"), coords):
            if not math.isfinite(value) or not 0.0 <= value <= 1.0:
                raise AnnotationError(f"box {self.text!r}: {name}={value!r} is not in [0, 1]")
        if not (self.xmin < self.xmax and self.ymin < self.ymax):
            raise AnnotationError(
                f"box {self.text!r}: empty extent xmin={self.xmin} xmax={self.xmax} ymin={self.ymin} ymax={self.ymax}"
            )
        if self.label < 1:
            raise AnnotationError(f"box {self.text!r}: label id {self.label} < 1 (ids start at 1)")
        if not self.text:
            raise AnnotationError(f"box with label {self.label}: empty class text")
        if not math.isfinite(self.weight) or self.weight < 0:
            raise AnnotationError(f"box {self.text!r}: weight={self.weight!r} is not finite and >= 0")
        if not math.isfinite(self.area) or self.area < 0:
            raise AnnotationError(f"box {self.text!r}: area={self.area!r} is not finite and >= 0")

    def with_weight(self, weight: float) -> Box:
        """This box with another weight: checks only the weight (the rest was checked).

        Called once per box by the job; ``dataclasses.replace`` would re-run
        every check and cost several times more.
        """
        if not math.isfinite(weight) or weight < 0:
            raise AnnotationError(f"box {self.text!r}: weight={weight!r} is not finite and >= 0")
        box = object.__new__(Box)
        box.__dict__.update(self.__dict__)
        box.__dict__["weight"] = float(weight)
        return box


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """One validated image and its boxes, ready to encode.

    ``path`` is where the bytes are read from (a local or ``gs://`` path),
    ``filename`` the name relative to the dataset root as the source gave it.
    ``encoded`` carries the bytes when the source already embeds them
    (TFRecord input) or when they were re-encoded (EXIF rotation, resize).
    """

    source_id: str
    filename: str
    path: str
    height: int
    width: int
    format: str
    boxes: tuple[Box, ...] = ()
    split: str = "train"
    repeat_factor: float = 1.0
    encoded: bytes | None = None
    nbytes: int = 0  # size of the image bytes, to size shards without reading them again

    def __post_init__(self) -> None:
        if not self.source_id:
            raise AnnotationError(f"image {self.filename!r}: empty source_id")
        if self.height <= 0 or self.width <= 0:
            raise AnnotationError(f"image {self.source_id!r}: size {self.width}x{self.height} is not positive")
        if self.format not in IMAGE_FORMATS:
            raise AnnotationError(f"image {self.source_id!r}: format {self.format!r} not in {IMAGE_FORMATS}")
        if not self.split or not self.split.isidentifier():
            raise AnnotationError(f"image {self.source_id!r}: split name {self.split!r} is not a word")
        if not math.isfinite(self.repeat_factor) or self.repeat_factor < 1.0:
            raise AnnotationError(f"image {self.source_id!r}: repeat_factor={self.repeat_factor!r} must be >= 1")

    def replace(self, **changes: Any) -> ImageRecord:
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class Reject:
    """A quarantined image or a dropped box: one line of ``rejects.jsonl``.

    ``boxes`` is how many boxes this entry accounts for: 1 for a dropped box,
    the image's box count for a quarantined image, so that
    boxes in = boxes written + sum of ``boxes`` over rejects. ``classes``
    names the class of each of those boxes, as the source spelled it when
    it is not in the label map, for per-class accounting.
    """

    source: str
    reason: RejectReason
    detail: str
    image: str = ""
    boxes: int = 0
    classes: tuple[str, ...] = ()

    @property
    def is_image(self) -> bool:
        return self.reason.is_image_level

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "image": self.image,
            "kind": "image" if self.is_image else "file" if self.reason.is_file_level else "box",
            "reason": self.reason.value,
            "boxes": self.boxes,
            "classes": list(self.classes),
            "detail": self.detail,
        }
