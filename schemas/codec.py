"""Map the annotation model to record values and back (via :mod:`schemas.features`)."""

from __future__ import annotations

import hashlib
from typing import Any

from schemas.annotations import ImageRecord
from schemas.features import SCHEMA_VERSION, encode_example, encode_example_parts

_INT64_LIMIT = 1 << 63


def numeric_source_id(key: str) -> str:
    """``image/source_id`` for an image key: the key itself when it is a decimal
    int64 (a COCO image id), otherwise a stable 63-bit hash of it in decimal.

    Model Garden's parsers and COCO-style evaluators read the source id with
    ``tf.strings.to_number(..., tf.int64)``; a file stem would fail there.
    The hash is the first 8 bytes of the key's SHA-256, shifted to 63 bits, so
    it is the same on every machine and run; the name stays in ``image/filename``.
    """
    if key.isascii() and key.isdigit() and int(key) < _INT64_LIMIT:
        return key
    return str(int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") >> 1)


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
        "image/source_id": numeric_source_id(record.source_id),
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
