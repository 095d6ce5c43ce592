"""Map the annotation model to record values and back (via :mod:`schemas.features`)."""

from __future__ import annotations

import hashlib
from typing import Any

from schemas.annotations import ImageRecord
from schemas.features import SCHEMA_VERSION, encode_example, encode_example_parts


def record_values(record: ImageRecord, encoded: bytes) -> dict[str, Any]:
    """Record values for :func:`schemas.features.encode_example`.

    Both weight keys carry each box's ``weight``: ``image/object/class/weight``
    is ours, ``image/object/weight`` is what the TF OD API decoder reads.
    """
    boxes = record.boxes
    return {
        "image/encoded": encoded,
        "image/format": record.format,
        "image/height": record.height,
        "image/width": record.width,
        "image/filename": record.filename,
        "image/source_id": record.source_id,
        "image/key/sha256": hashlib.sha256(encoded).hexdigest(),
        "image/repeat_factor": record.repeat_factor,
        "boxweight/schema_version": SCHEMA_VERSION,
        "image/object/bbox/xmin": [b.xmin for b in boxes],
        "image/object/bbox/ymin": [b.ymin for b in boxes],
        "image/object/bbox/xmax": [b.xmax for b in boxes],
        "image/object/bbox/ymax": [b.ymax for b in boxes],
        "image/object/class/label": [b.label for b in boxes],
        "image/object/class/text": [b.text for b in boxes],
        "image/object/class/weight": [b.weight for b in boxes],
        "image/object/weight": [b.weight for b in boxes],
        "image/object/is_crowd": [int(b.is_crowd) for b in boxes],
        "image/object/area": [b.area for b in boxes],
        "image/object/difficult": [int(b.difficult) for b in boxes],
        "image/object/truncated": [int(b.truncated) for b in boxes],
    }


def encode_record(record: ImageRecord, encoded: bytes) -> bytes:
    """Serialize a validated record and its image bytes into a tf.train.Example."""
    return encode_example(record_values(record, encoded))


def encode_record_parts(record: ImageRecord, encoded: bytes) -> list[bytes]:
    """:func:`encode_record` as pieces (see :func:`schemas.features.encode_example_parts`)."""
    return encode_example_parts(record_values(record, encoded))
