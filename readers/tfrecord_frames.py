"""TFRecord framing, read record by record without TensorFlow, and the checksum both sides use.

A record is: uint64 length, masked CRC-32C of those 8 bytes, the data, masked
CRC-32C of the data (all little-endian), as TensorFlow's ``TFRecordWriter``
writes it. We read it ourselves because TensorFlow's reader does two things
a job must not: it allocates whatever length a header claims before reading
(a header claiming 2**62 bytes with a valid checksum kills the process with
signal 11), and it stops at the first record whose data fails its checksum,
though the framing still holds and every later record can be read.

Here a record's data is read only when the file can hold it (a gzipped file,
whose size is not known, is read a piece at a time, so memory follows the
bytes that exist), a bad data checksum is that record's problem alone, and
only a header that fails its own checksum (or a file that ends inside a
record) ends the shard: nothing after it can be found.
"""

from __future__ import annotations

import dataclasses
import gzip
import struct
from collections.abc import Iterator
from typing import BinaryIO

import google_crc32c

from storage import fs

_HEADER = struct.Struct("<QI")
_CRC = struct.Struct("<I")
_PIECE = 1 << 20  # a gzipped record's data is read this much at a time
GZIP_MAGIC = b"\x1f\x8b"
NOT_TFRECORD = "not a TFRecord file"


def _mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def masked_crc(crc: int) -> bytes:
    """The 4 stored bytes of a CRC-32C, masked as TFRecord files store it."""
    return _CRC.pack(_mask(crc))


@dataclasses.dataclass(frozen=True)
class BadRecord:
    """A record that cannot be used: why, and whether the rest of the file is lost with it."""

    message: str
    framing_lost: bool


def _read_up_to(f: BinaryIO, n: int) -> bytes:
    """``n`` bytes or fewer at the end of the file, read a piece at a time (never one allocation of ``n``)."""
    if n <= _PIECE:
        return f.read(n)
    pieces = []
    while n > 0:
        piece = f.read(min(n, _PIECE))
        if not piece:
            break
        pieces.append(piece)
        n -= len(piece)
    return b"".join(pieces)


def records(path: str, gzipped: bool | None = None) -> Iterator[tuple[int, bytes | BadRecord]]:
    """(index, data or :class:`BadRecord`) for each record of a TFRecord file.

    Args:
        path: local or ``gs://`` file.
        gzipped: whether the file is one gzip stream; ``None``: when its name ends in ``.gz``.
    """
    gz = path.endswith(".gz") if gzipped is None else gzipped
    with fs.open_binary(path) as raw:
        f: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw  # type: ignore[assignment]
        left = None if gz else fs.size(path)  # bytes not yet read; unknown inside a gzip stream
        index = offset = 0
        try:
            while True:
                head = f.read(_HEADER.size)
                if not head:
                    return
                where = f"record {index} at byte {offset}"
                if len(head) < _HEADER.size:
                    short = f"{NOT_TFRECORD}: it is shorter than a record's header" if offset == 0 else ""
                    yield index, BadRecord(short or f"{where}: the file ends inside a record's header", True)
                    return
                length, length_crc = _HEADER.unpack(head)
                if _mask(google_crc32c.value(head[:8])) != length_crc:
                    yield index, BadRecord(_lost_header(where, head, offset, left, gz), True)
                    return
                if left is not None and length + _HEADER.size + _CRC.size > left:
                    yield index, BadRecord(
                        f"{where}: its header claims {length:,} bytes; the file has {left - _HEADER.size:,} more", True
                    )
                    return
                data = _read_up_to(f, length)
                stored = f.read(_CRC.size)
                if len(data) < length or len(stored) < _CRC.size:
                    yield index, BadRecord(f"{where}: the file ends inside the record ({length:,} bytes claimed)", True)
                    return
                if masked_crc(google_crc32c.value(data)) != stored:
                    yield index, BadRecord(f"{where}: its data fails its CRC-32C (corrupt record)", False)
                else:
                    yield index, data
                offset += _HEADER.size + length + _CRC.size
                if left is not None:
                    left -= _HEADER.size + length + _CRC.size
                index += 1
        except (OSError, EOFError, gzip.BadGzipFile) as exc:  # a gzip stream that is corrupt or cut short
            yield index, BadRecord(f"record {index} at byte {offset} of the uncompressed stream: {exc}", True)


def _lost_header(where: str, head: bytes, offset: int, left: int | None, gz: bool) -> str:
    if offset == 0 and not gz and head.startswith(GZIP_MAGIC):
        return f"{NOT_TFRECORD}: it looks gzip-compressed (a gzipped shard's name must end in .gz)"
    if offset == 0:
        return f"{NOT_TFRECORD}: its first record's length header fails its checksum"
    rest = f" ({left:,} bytes)" if left is not None else ""
    return f"{where}: the length header fails its checksum; the rest of the file{rest} cannot be read"
