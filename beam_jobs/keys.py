"""Stable keys of records: the order of a shard's records and the hash that places them."""

from __future__ import annotations

import hashlib

from schemas.annotations import ImageRecord


def image_key(record: ImageRecord) -> str:
    """Stable sort and hash key of a record: unique within a dataset."""
    return f"{record.split}/{record.source_id}"


def stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")
