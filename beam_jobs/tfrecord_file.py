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
from collections.abc import Iterable, Sequence

import google_crc32c
from apache_beam.io.filesystems import FileSystems


def _masked_crc(data: bytes) -> bytes:
    return _mask(google_crc32c.value(data))


def _mask(crc: int) -> bytes:
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def write_tfrecords(path: str, records: Iterable[bytes | Sequence[bytes]], gzipped: bool = False) -> int:
    """Write ``records`` to ``path``; returns how many were written.

    A record is its bytes, or a sequence of pieces whose concatenation is
    the record (as :func:`schemas.features.encode_example_parts` gives):
    those are checksummed and written piece by piece, never joined.
    """
    count = 0
    with FileSystems.create(path, compression_type="uncompressed") as raw:
        sink = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") if gzipped else raw
        try:
            for data in records:
                # framed piece by piece: the image is not copied again
                parts = (data,) if isinstance(data, bytes) else data
                length = struct.pack("<Q", sum(map(len, parts)))
                crc = 0
                for part in parts:
                    crc = google_crc32c.extend(crc, part)
                sink.write(length + _masked_crc(length))
                sink.writelines(parts)
                sink.write(_mask(crc))
                count += 1
        finally:
            if gzipped:
                sink.close()
    return count
