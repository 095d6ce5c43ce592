"""Checksummed writes: the one way a file the manifest lists is written, with its size and CRC-32C kept."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import google_crc32c

from schemas.manifest import FileEntry
from storage import fs


class Checksummed:
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

    @property
    def crc32c(self) -> str:
        """The CRC-32C of what was written, as the manifest spells it (8 hex digits)."""
        return f"{self.crc:08x}"


def write_lines(folder: str, name: str, lines: Iterable[str]) -> FileEntry:
    """Write text lines as they come (a file too large to hold in memory); returns its manifest entry."""
    it = iter(lines)
    with fs.create(fs.join(folder, name)) as f:
        out = Checksummed(f)
        while batch := list(itertools.islice(it, 4096)):
            out.write("".join(batch).encode("utf-8"))
    return FileEntry(name, out.size, out.crc32c)


def write_text(folder: str, name: str, text: str) -> FileEntry:
    """Write one text file whole; returns its manifest entry."""
    return write_lines(folder, name, [text])
