"""Small JPEG thumbnails with the boxes drawn, for the strips of ``report.html``.

The job picks a few images per class (the lowest stable hashes of their keys,
so the same images every run) from its own validated records, and draws them
from the bytes it writes, as a trainer will decode them (no EXIF rotation).
"""

from __future__ import annotations

import base64
import dataclasses
import io

from PIL import Image, ImageDraw

from schemas.annotations import ImageRecord

PER_CLASS = 4  # thumbnails per class
SIDE = 96  # longer side, pixels
QUALITY = 70
_CLASS, _OTHER = (228, 87, 86), (240, 240, 240)


@dataclasses.dataclass(frozen=True)
class Thumbnail:
    """One image of a class: where it is from, how many boxes of the class it has, the JPEG as a data URI."""

    image: str  # split/source id
    boxes: int
    uri: str


def thumbnail(record: ImageRecord, data: bytes, class_name: str) -> Thumbnail:
    """The image shrunk to :data:`SIDE`, boxes of ``class_name`` in red over the others in white.

    Raises:
        OSError, ValueError: Pillow cannot decode ``data`` (validation uses TensorFlow's decoder).
    """
    with Image.open(io.BytesIO(data)) as img:
        img.draft("RGB", (SIDE * 2, SIDE * 2))  # JPEG: decode at a reduced scale
        small = img.convert("RGB")
    small.thumbnail((SIDE, SIDE), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(small)
    w, h = small.size
    ours = [b for b in record.boxes if b.text == class_name]
    for box, color, width in [(b, _OTHER, 1) for b in record.boxes if b.text != class_name] + [
        (b, _CLASS, 2) for b in ours
    ]:
        x0, y0 = box.xmin * w, box.ymin * h
        draw.rectangle((x0, y0, max(x0, box.xmax * w - 1), max(y0, box.ymax * h - 1)), outline=color, width=width)
    out = io.BytesIO()
    small.save(out, format="JPEG", quality=QUALITY)
    uri = "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")
    return Thumbnail(f"{record.split}/{record.source_id}", len(ours), uri)
