"""Layout of ``manifest.json``: what makes a job's output folder one complete unit.

The job writes the manifest last, after every shard and report file, so a
folder without one is a job still running, a killed job, or not a boxweight
output at all. Readers take the list of shards of a split from the manifest,
never from a glob of the folder, so a file left there by anything else is
never read as training data. Shard names follow the TF OD API
(``train-00000-of-00010.tfrecord``); :func:`shard_name` is the one place
that spells them.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable

from schemas.splits import split_sort_key

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
#: A local output is staged in the sibling folder ``OUT.incomplete`` and renamed when complete.
STAGING_SUFFIX = ".incomplete"
#: Written first into a remote output folder: marks it as boxweight's own while half written.
PARTIAL_MARKER = ".boxweight-partial"

_SPLIT = re.compile(r"^[a-z0-9_]+$")


class ManifestError(ValueError):
    """A manifest that is missing, malformed or does not match the folder."""


def shard_name(split: str, index: int, count: int, compression: str) -> str:
    """TF OD API shard naming: ``train-00000-of-00010.tfrecord`` (``.tfrecord.gz`` when gzipped)."""
    suffix = ".tfrecord.gz" if compression == "gzip" else ".tfrecord"
    return f"{split}-{index:05d}-of-{count:05d}{suffix}"


@dataclasses.dataclass(frozen=True)
class FileEntry:
    """One file of the output: its name in the folder, size and CRC-32C (hex, of the bytes as stored).

    ``split`` and ``records`` are set for shards, empty for report files.
    CRC-32C is the checksum GCS keeps for every object, so ``gsutil hash``
    can check a shard without reading it here.
    """

    name: str
    bytes: int
    crc32c: str
    split: str = ""
    records: int = 0

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ManifestError(f"file name {self.name!r} is not a plain name inside the output folder")
        if self.split and not _SPLIT.match(self.split):
            raise ManifestError(f"split {self.split!r} of {self.name} is not a split name")
        if self.bytes < 0 or self.records < 0:
            raise ManifestError(f"{self.name}: negative size or record count")


@dataclasses.dataclass(frozen=True)
class Manifest:
    """The shards (by split) and report files of one finished job."""

    shards: tuple[FileEntry, ...]
    files: tuple[FileEntry, ...]
    schema_version: int
    label_map: tuple[tuple[int, str], ...]

    @property
    def splits(self) -> list[str]:
        """Split names in train, val, test order, then any others by name."""
        return sorted({s.split for s in self.shards}, key=split_sort_key)

    def shards_of(self, split: str) -> list[FileEntry]:
        """The shards of ``split`` in index order.

        Raises:
            ManifestError: ``split`` is not in this output; the message lists those that are.
        """
        found = [s for s in self.shards if s.split == split]
        if not found:
            raise ManifestError(f"no split {split!r} here; splits: {', '.join(self.splits) or 'none'}")
        return sorted(found, key=lambda s: s.name)

    def to_json(self) -> str:
        doc = {
            "manifest_version": MANIFEST_VERSION,
            "complete": True,
            "schema_version": self.schema_version,
            "label_map": [{"id": i, "name": n} for i, n in self.label_map],
            "shards": [dataclasses.asdict(s) for s in sorted(self.shards, key=lambda s: s.name)],
            "files": [{k: v for k, v in dataclasses.asdict(f).items() if k in ("name", "bytes", "crc32c")} for f in self.files],
        }
        return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = MANIFEST_NAME) -> Manifest:
        """Parse and check a manifest.

        Raises:
            ManifestError: naming ``source`` and what is wrong.
        """
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise ManifestError(f"{source}: not JSON ({exc})") from None
        if not isinstance(doc, dict) or doc.get("complete") is not True:
            raise ManifestError(f"{source}: not a complete manifest")
        if doc.get("manifest_version") != MANIFEST_VERSION:
            raise ManifestError(f"{source}: manifest_version {doc.get('manifest_version')!r}; this boxweight reads {MANIFEST_VERSION}")
        try:
            shards = tuple(FileEntry(**s) for s in doc["shards"])
            files = tuple(FileEntry(**f) for f in doc["files"])
            label_map = tuple((int(e["id"]), str(e["name"])) for e in doc["label_map"])
            schema_version = int(doc["schema_version"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"{source}: malformed ({exc.__class__.__name__}: {exc})") from None
        names = [f.name for f in shards + files]
        if len(set(names)) != len(names):
            raise ManifestError(f"{source}: a file is listed twice")
        return cls(shards, files, schema_version, label_map)


def build_manifest(shards: Iterable[FileEntry], files: Iterable[FileEntry], schema_version: int, label_map: Iterable[tuple[int, str]]) -> Manifest:
    return Manifest(tuple(sorted(shards, key=lambda s: s.name)), tuple(files), schema_version, tuple(label_map))


def describe_label_map(label_map: Iterable[tuple[int, str]]) -> str:
    """``1 Platelets, 2 RBC, 3 WBC``: how messages name a class set."""
    return ", ".join(f"{i} {n}" for i, n in label_map)


def label_map_mismatch(a: Iterable[tuple[int, str]], b: Iterable[tuple[int, str]], name_a: str, name_b: str) -> str | None:
    """One line naming both class sets when they differ (names or ids), else None."""
    a, b = tuple(a), tuple(b)
    if a == b:
        return None
    return f"classes differ: {name_a} has [{describe_label_map(a)}], {name_b} has [{describe_label_map(b)}]"

