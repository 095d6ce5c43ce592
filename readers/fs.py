"""File access through Beam ``FileSystems`` (so ``gs://`` works) and path safety."""

from __future__ import annotations

import os
import posixpath
import re
from typing import BinaryIO

from apache_beam.io.filesystems import FileSystems

_WINDOWS_ABS = re.compile(r"^[A-Za-z]:[\\/]|^\\\\")


class UnsafePath(ValueError):
    """A file name that is absolute or escapes the dataset root."""


def safe_join(root: str, name: str) -> str:
    """Join a file name from an annotation to its root, refusing escapes.

    Args:
        root: the dataset or image root (local path or ``gs://...``).
        name: the file name as written in the annotation.

    Returns:
        ``root/name`` with ``name`` normalized.

    Raises:
        UnsafePath: ``name`` is empty, absolute, has a drive or URL scheme,
            contains NUL, or its ``..`` components climb above ``root``.
    """
    if not name or "\x00" in name:
        raise UnsafePath(f"file name {name!r} is empty or contains NUL")
    if is_absolute(name):
        raise UnsafePath(
            f"file name {name!r} is absolute; it must be relative to {root!r}, "
            "or pass --image-root FOLDER to look it up there by its base name"
        )
    norm = posixpath.normpath(name.replace("\\", "/"))
    if norm == ".." or norm.startswith("../"):
        raise UnsafePath(f"file name {name!r} escapes the dataset root {root!r}")
    return join(root, norm)


def is_absolute(name: str) -> bool:
    """An annotation's file name written as an absolute path (POSIX, Windows drive or share, URL)."""
    return name.startswith(("/", "\\")) or bool(_WINDOWS_ABS.match(name)) or "://" in name


def base_name(name: str) -> str:
    """The last component of a POSIX or Windows path (``C:\\data\\x.jpg`` -> ``x.jpg``)."""
    return name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def _is_local(path: str) -> bool:
    return "://" not in path


def join(root: str, *parts: str) -> str:
    if not parts:
        return root
    return os.path.join(root, *parts) if _is_local(root) else FileSystems.join(root, *parts)


def exists(path: str) -> bool:
    return os.path.exists(path) if _is_local(path) else FileSystems.exists(path)


def open_binary(path: str) -> BinaryIO:
    # Local paths skip Beam's FileSystems layer, which costs ~0.2 ms a call: a
    # third of the job's read time on 10k small images.
    if _is_local(path):
        return open(path, "rb")
    return FileSystems.open(path, compression_type="uncompressed")  # type: ignore[no-any-return]


def read_bytes(path: str) -> bytes:
    with open_binary(path) as f:
        return f.read()  # type: ignore[no-any-return]


def read_text(path: str) -> str:
    return read_bytes(path).decode("utf-8-sig")


def list_files(root: str, suffixes: tuple[str, ...] = ()) -> list[str]:
    """All files under ``root`` (recursively), sorted, with one of ``suffixes`` (any case)."""
    pattern = root.rstrip("/") + "/**"
    try:
        matches = FileSystems.match([pattern])[0].metadata_list
    except Exception:  # Beam raises BeamIOError when nothing matches
        return []
    lowered = tuple(s.lower() for s in suffixes)
    paths = (m.path for m in matches)
    return sorted(p for p in paths if not lowered or p.lower().endswith(lowered))


def relpath(path: str, root: str) -> str:
    root = root.rstrip("/") + "/"
    return path[len(root):] if path.startswith(root) else posixpath.basename(path)
