"""TFRecord files written without TensorFlow, through Beam ``FileSystems`` (``gs://`` works).

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
from apache_beam.io.filesystems import FileSystems

from readers.tfrecord_frames import masked_crc


@dataclasses.dataclass(frozen=True)
class Written:
    """What one file holds: records, bytes as stored and their CRC-32C (hex), for the manifest."""

    records: int
    bytes: int
    crc32c: str


class _Checksummed:
    """A file object that passes writes through and keeps the size and CRC-32C of what it wrote."""

    def __init__(self, raw: Any) -> None:
        self.raw, self.crc, self.size = raw, 0, 0

    def write(self, data: bytes) -> int:
        self.crc = google_crc32c.extend(self.crc, data)
        self.size += len(data)
        self.raw.write(data)
        return len(data)

    def writelines(self, parts: Iterable[bytes]) -> None:
        for part in parts:
            self.write(part)

    def flush(self) -> None:
        pass  # GzipFile flushes its fileobj on close; the raw file is closed by its owner


def write_tfrecords(path: str, records: Iterable[bytes | Sequence[bytes]], gzipped: bool = False) -> Written:
    """Write ``records`` to ``path``; returns how many, the file's size and checksum.

    A record is its bytes, or a sequence of pieces whose concatenation is
    the record (as :func:`schemas.features.encode_example_parts` gives: the
    bytes before the image, the image, the bytes after it): those are
    checksummed and written piece by piece, never joined, so the image is
    not copied again.
    """
    count = 0
    with FileSystems.create(path, compression_type="uncompressed") as raw_file:
        raw = _Checksummed(raw_file)
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
    return Written(count, raw.size, f"{raw.crc:08x}")
