"""Class statistics as a mergeable accumulator: records in, counts out.

:class:`SplitStats` is what a Beam ``CombineFn`` accumulates (``add`` one
record, ``merge`` partial results) and what the weighting schemes read.
Pure Python; no Beam or TensorFlow here.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable

from schemas.annotations import ImageRecord
from schemas.report import POSITION_GRID, SIZE_BUCKETS, aspect_bucket, bin_label, position_cell


@dataclasses.dataclass
class SplitStats:
    """Counts over the images of one split.

    Attributes:
        images: images in the split (negatives included).
        negative_images: images without boxes.
        class_boxes: class name -> boxes.
        class_images: class name -> images that contain the class.
        boxes_in_images_with: class name -> all boxes (any class) in the
            images containing the class; the denominator of median frequency.
        class_sizes: class name -> Counter of size bucket -> boxes.
        class_aspects: class name -> Counter of aspect bucket -> boxes.
        class_positions: class name -> boxes per position grid cell (box centres).
        boxes_per_image: histogram bin label -> images.
    """

    images: int = 0
    negative_images: int = 0
    class_boxes: Counter[str] = dataclasses.field(default_factory=Counter)
    class_images: Counter[str] = dataclasses.field(default_factory=Counter)
    boxes_in_images_with: Counter[str] = dataclasses.field(default_factory=Counter)
    class_sizes: dict[str, Counter[str]] = dataclasses.field(default_factory=dict)
    class_aspects: dict[str, Counter[str]] = dataclasses.field(default_factory=dict)
    class_positions: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    boxes_per_image: Counter[str] = dataclasses.field(default_factory=Counter)

    @property
    def boxes(self) -> int:
        return sum(self.class_boxes.values())

    def add(self, record: ImageRecord) -> SplitStats:
        self.images += 1
        n = len(record.boxes)
        self.boxes_per_image[bin_label(n)] += 1
        if n == 0:
            self.negative_images += 1
            return self
        present = set()
        for box in record.boxes:
            self.class_boxes[box.text] += 1
            present.add(box.text)
            width, height = (box.xmax - box.xmin) * record.width, (box.ymax - box.ymin) * record.height
            bucket = next(name for name, limit in SIZE_BUCKETS if width * height < limit)
            self.class_sizes.setdefault(box.text, Counter())[bucket] += 1
            self.class_aspects.setdefault(box.text, Counter())[aspect_bucket(width, height)] += 1
            cell = position_cell((box.xmin + box.xmax) / 2, (box.ymin + box.ymax) / 2)
            self.class_positions.setdefault(box.text, [0] * POSITION_GRID**2)[cell] += 1
        for name in present:
            self.class_images[name] += 1
            self.boxes_in_images_with[name] += n
        return self

    def merge(self, other: SplitStats) -> SplitStats:
        self.images += other.images
        self.negative_images += other.negative_images
        self.class_boxes.update(other.class_boxes)
        self.class_images.update(other.class_images)
        self.boxes_in_images_with.update(other.boxes_in_images_with)
        self.boxes_per_image.update(other.boxes_per_image)
        for name, sizes in other.class_sizes.items():
            self.class_sizes.setdefault(name, Counter()).update(sizes)
        for name, aspects in other.class_aspects.items():
            self.class_aspects.setdefault(name, Counter()).update(aspects)
        for name, cells in other.class_positions.items():
            mine = self.class_positions.setdefault(name, [0] * POSITION_GRID**2)
            self.class_positions[name] = [a + b for a, b in zip(mine, cells)]
        return self

    @classmethod
    def of(cls, records: Iterable[ImageRecord]) -> SplitStats:
        stats = cls()
        for record in records:
            stats.add(record)
        return stats
