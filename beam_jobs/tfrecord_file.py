"""TFRecord files written without TensorFlow, through :mod:`storage.fs` (``gs://`` works).

Framing per record: uint64 length, masked CRC-32C of the length, the data,
masked CRC-32C of the data (all little-endian), as TensorFlow's
``TFRecordWriter``; with gzip, the whole file is one gzip stream (mtime 0, so
the bytes are deterministic). The tests read the files back with
``tf.data.TFRecordDataset``.
"""

from __future__ import annotations

import dataclasses
import gzip
import struct
from collections.abc import Iterable, Sequence
from typing import Any

import google_crc32c

from readers.tfrecord_frames import masked_crc
from storage import fs
from storage.checksummed import Checksummed


@dataclasses.dataclass(frozen=True)
class Written:
    """What one file holds: records, bytes as stored and their CRC-32C (hex), for the manifest."""

    records: int
    bytes: int
    crc32c: str


def write_tfrecords(path: str, records: Iterable[bytes | Sequence[bytes]], gzipped: bool = False) -> Written:
    """Write ``records`` to ``path``; returns how many, the file's size and checksum.

    A record is its bytes, or a sequence of pieces whose concatenation is
    the record (as :func:`schemas.features.encode_example_parts` gives: the
    bytes before the image, the image, the bytes after it): those are
    checksummed and written piece by piece, never joined, so the image is
    not copied again.
    """
    count = 0
    with fs.create(path) as raw_file:
        raw = Checksummed(raw_file)
        sink: Any = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") if gzipped else raw
        try:
            for data in records:
                parts = (data,) if isinstance(data, bytes) else data
                length = struct.pack("<Q", sum(map(len, parts)))
                crc = 0
                for part in parts:
                    crc = google_crc32c.extend(crc, part)
                sink.write(length + masked_crc(google_crc32c.value(length)))
                sink.writelines(parts)
                sink.write(masked_crc(crc))
                count += 1
        finally:
            if gzipped:
                sink.close()
    return Written(count, raw.size, raw.crc32c)
