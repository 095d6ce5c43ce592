"""The job's books: every image and box in is written or dropped with a reason, and the counts add up."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

from schemas.annotations import ImageRecord, Reject
from schemas.reasons import RejectReason, Repair

#: The class of a dropped box whose class the source did not give (a line that did not parse).
UNNAMED_CLASS = "(unnamed)"


@dataclasses.dataclass
class Accounting:
    """Running counts; ``images_in = written + quarantined``, ``boxes_in = kept + dropped``."""

    images_in: int = 0
    images_written: int = 0
    boxes_in: int = 0
    boxes_written: int = 0
    images_quarantined_by_reason: Counter[str] = dataclasses.field(default_factory=Counter)
    boxes_dropped_by_reason: Counter[str] = dataclasses.field(default_factory=Counter)
    repairs: Counter[str] = dataclasses.field(default_factory=Counter)
    #: per class (as the source named it): boxes in and written, and dropped boxes by reason
    class_boxes_in: Counter[str] = dataclasses.field(default_factory=Counter)
    class_boxes_written: Counter[str] = dataclasses.field(default_factory=Counter)
    class_dropped: Counter[tuple[str, str]] = dataclasses.field(default_factory=Counter)

    @property
    def images_quarantined(self) -> int:
        return sum(self.images_quarantined_by_reason.values())

    @property
    def boxes_dropped(self) -> int:
        return sum(self.boxes_dropped_by_reason.values())

    def add_reject(self, reject: Reject) -> None:
        box_reason = RejectReason.IMAGE_QUARANTINED.value if reject.is_image else reject.reason.value
        if reject.is_image:
            self.images_in += 1
            self.images_quarantined_by_reason[reject.reason.value] += 1
        if reject.boxes:
            self.boxes_dropped_by_reason[box_reason] += reject.boxes
        self.boxes_in += reject.boxes
        classes = list(reject.classes[: reject.boxes]) + [UNNAMED_CLASS] * (reject.boxes - len(reject.classes))
        for name in classes:
            self.class_boxes_in[name] += 1
            self.class_dropped[(name, box_reason)] += 1

    def add_record(self, record: ImageRecord, repairs: tuple[Repair, ...] = ()) -> None:
        self.images_in += 1
        self.images_written += 1
        self.boxes_in += len(record.boxes)
        self.boxes_written += len(record.boxes)
        self.repairs.update(r.value for r in repairs)
        names = [b.text for b in record.boxes]
        self.class_boxes_in.update(names)
        self.class_boxes_written.update(names)

    def merge(self, other: Accounting) -> Accounting:
        self.images_in += other.images_in
        self.images_written += other.images_written
        self.boxes_in += other.boxes_in
        self.boxes_written += other.boxes_written
        self.images_quarantined_by_reason.update(other.images_quarantined_by_reason)
        self.boxes_dropped_by_reason.update(other.boxes_dropped_by_reason)
        self.repairs.update(other.repairs)
        self.class_boxes_in.update(other.class_boxes_in)
        self.class_boxes_written.update(other.class_boxes_written)
        self.class_dropped.update(other.class_dropped)
        return self

    def totals(self) -> dict[str, Any]:
        """The ``totals`` block of ``stats.json``."""
        return {
            "images_in": self.images_in,
            "images_written": self.images_written,
            "images_quarantined": self.images_quarantined,
            "boxes_in": self.boxes_in,
            "boxes_written": self.boxes_written,
            "boxes_dropped": self.boxes_dropped,
            "images_quarantined_by_reason": dict(sorted(self.images_quarantined_by_reason.items())),
            "boxes_dropped_by_reason": dict(sorted(self.boxes_dropped_by_reason.items())),
            "repairs": dict(sorted(self.repairs.items())),
            "classes": {name: self._class_totals(name) for name in sorted(self.class_boxes_in)},
        }

    def _class_totals(self, name: str) -> dict[str, Any]:
        dropped = {reason: n for (cls, reason), n in sorted(self.class_dropped.items()) if cls == name}
        return {
            "boxes_in": self.class_boxes_in[name],
            "boxes_written": self.class_boxes_written[name],
            "boxes_dropped": sum(dropped.values()),
            "boxes_dropped_by_reason": dropped,
        }

    def balanced(self) -> bool:
        return (
            self.images_in == self.images_written + self.images_quarantined
            and self.boxes_in == self.boxes_written + self.boxes_dropped
        )

