"""Stable keys of records: the order of a shard's records and the hashes that order and place them.

Beam encodes a Python ``int`` with its signed 64-bit ``VarIntCoder`` wherever a
type hint lets it (apache-beam 2.78 refuses values outside that range with an
``OverflowError``), so a hash that travels between steps is kept in that range:
:func:`stable_hash` is the unsigned 64-bit digest shifted down by ``2**63``,
which keeps its order. :func:`bucket` is computed where it is used and never
travels, so it keeps the unsigned digest's ``mod n`` (the shard placement of
every earlier release).
"""

from __future__ import annotations

import hashlib

from schemas.annotations import ImageRecord

_OFFSET = 1 << 63


def image_key(record: ImageRecord) -> str:
    """Stable sort and hash key of a record: unique within a dataset."""
    return f"{record.split}/{record.source_id}"


def _digest64(text: str) -> int:
    """The first 8 bytes of the text's SHA-256 as an unsigned int: the same on every machine."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def stable_hash(text: str) -> int:
    """An order key for ``text`` that any Beam coder can carry: a signed 64-bit int.

    Ordered as the unsigned digest is, so a carve or a pick by the smallest
    hashes is the same as with the unsigned value.
    """
    return _digest64(text) - _OFFSET


def bucket(text: str, n: int) -> int:
    """Which of ``n`` buckets ``text`` goes to: its unsigned digest ``mod n`` (shards, rejects parts)."""
    return _digest64(text) % n
