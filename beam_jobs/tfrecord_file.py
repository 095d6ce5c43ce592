"""TFRecord files written without TensorFlow, through Beam ``FileSystems`` (``gs://`` works).

Framing per record: uint64 length, masked CRC-32C of the length, the data,
masked CRC-32C of the data (all little-endian), as TensorFlow's
``TFRecordWriter``; with gzip, the whole file is one gzip stream (mtime 0, so
the bytes are deterministic). The tests read the files back with
``tf.data.TFRecordDataset``.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterable

import google_crc32c
from apache_beam.io.filesystems import FileSystems


def _masked_crc(data: bytes) -> bytes:
    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def frame(data: bytes) -> bytes:
    """One record with its length and checksums."""
    return header(data) + data + _masked_crc(data)


def header(data: bytes) -> bytes:
    """The 12 bytes before a record: its length and the length's checksum."""
    length = struct.pack("<Q", len(data))
    return length + _masked_crc(length)


def write_tfrecords(path: str, records: Iterable[bytes], gzipped: bool = False) -> int:
    """Write ``records`` to ``path``; returns how many were written."""
    count = 0
    with FileSystems.create(path, compression_type="uncompressed") as raw:
        sink = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") if gzipped else raw
        try:
            for data in records:
                # three writes rather than frame(): the record (the image) is not copied again
                sink.write(header(data))
                sink.write(data)
                sink.write(_masked_crc(data))
                count += 1
        finally:
            if gzipped:
                sink.close()
    return count
