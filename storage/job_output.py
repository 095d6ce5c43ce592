"""A finished ``boxweight prepare`` output, read through its ``manifest.json``.

Every reader in the project (``create_input_fn``, ``ReweightSpec``,
``boxweight train``, ``evaluate`` and ``report``) opens an output folder here:
the shards of a split are the ones the manifest lists, never a glob of the
folder, and a folder without a complete manifest is refused in one line. A
glob or a list of files still works; when the files sit in an output folder
they must be listed in its manifest.

Paths go through :mod:`storage.fs`, the one file layer: local ones through
``os``, remote ones (``gs://``) through Beam's ``FileSystems``, imported only
then, so the report and training on a local output import no Beam.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import posixpath
from collections.abc import Sequence

import google_crc32c

from schemas.label_map import LabelMap
from schemas.manifest import MANIFEST_NAME, PARTIAL_MARKER, STAGING_SUFFIX, Manifest, ManifestError, label_map_mismatch
from schemas.report import Stats, check_stats
from storage import fs


class DataError(ValueError):
    """Training or evaluation data that cannot be used as given; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class JobOutput:
    """One complete output folder and its manifest."""

    directory: str
    manifest: Manifest

    @classmethod
    def open(cls, directory: str) -> JobOutput:
        """Open ``directory`` and check that every file its manifest lists is there, at its size.

        Raises:
            DataError: no such folder, no complete manifest, or a listed
                file missing or changed.
        """
        directory = directory.rstrip("/") or "/"
        path = fs.join(directory, MANIFEST_NAME)
        if not fs.exists(path):
            if fs.exists(directory + STAGING_SUFFIX) or fs.exists(fs.join(directory, PARTIAL_MARKER)):
                why = "a boxweight prepare job is writing it or was stopped before it finished; rerun the job"
            elif not fs.exists(directory):
                raise DataError(f"{directory}: no such folder")
            else:
                why = "it is not a complete boxweight prepare output; rerun the job, or pass the shard files or a glob of them"
            raise DataError(f"{directory} has no {MANIFEST_NAME}: {why}")
        try:
            manifest = Manifest.from_json(fs.read_bytes(path).decode("utf-8"), path)
        except ManifestError as exc:
            raise DataError(str(exc)) from None
        for entry in manifest.shards + manifest.files:
            size = fs.size_or_none(fs.join(directory, entry.name))
            if size is None:
                raise DataError(f"{directory}: {entry.name} is listed in {MANIFEST_NAME} but missing; rerun the job")
            if size != entry.bytes:
                raise DataError(f"{directory}: {entry.name} has {size} bytes, {MANIFEST_NAME} says {entry.bytes}; the folder changed after the job")
        return cls(directory, manifest)

    @property
    def splits(self) -> list[str]:
        return self.manifest.splits

    @functools.cached_property
    def shard_names(self) -> frozenset[str]:
        return frozenset(s.name for s in self.manifest.shards)

    def files(self, split: str) -> list[str]:
        """Paths of the shards of ``split``, in shard order.

        Raises:
            DataError: no such split; the message lists the splits there.
        """
        try:
            return [fs.join(self.directory, s.name) for s in self.manifest.shards_of(split)]
        except ManifestError as exc:
            raise DataError(f"{self.directory}: {exc}") from None

    def records_in(self, files: Sequence[str]) -> int:
        """Records in those of ``files`` that are this output's shards (the manifest counts them)."""
        names = {posixpath.basename(f.replace(os.sep, "/")) for f in files}
        return sum(s.records for s in self.manifest.shards if s.name in names)

    @property
    def label_map(self) -> tuple[tuple[int, str], ...]:
        """(id, name) pairs, as written to ``label_map.pbtxt``."""
        return self.manifest.label_map

    def labels(self) -> LabelMap:
        """The label map, ids as written (a model's class axis has ``max_id`` entries)."""
        return LabelMap.from_pairs(self.label_map)

    def stats(self) -> Stats:
        """``stats.json``, checked against its layout and accounting identities."""
        path = fs.join(self.directory, "stats.json")
        return check_stats(json.loads(fs.read_bytes(path).decode("utf-8")), path)

    def verify(self) -> list[str]:
        """Read every listed file and compare its CRC-32C with the manifest; returns the mismatches."""
        bad = []
        for entry in self.manifest.shards + self.manifest.files:
            crc = f"{google_crc32c.value(fs.read_bytes(fs.join(self.directory, entry.name))):08x}"
            if crc != entry.crc32c:
                bad.append(f"{entry.name}: crc32c {crc}, {MANIFEST_NAME} says {entry.crc32c}")
        return bad

    def check_classes(self, label_map: Sequence[tuple[int, str]], what: str) -> None:
        """Refuse when ``label_map`` (of a model, a run or another output) is not this output's.

        Raises:
            DataError: naming both class sets.
        """
        problem = label_map_mismatch(label_map, self.label_map, what, self.directory)
        if problem:
            raise DataError(problem)


def _owning_output(path: str, opened: dict[str, JobOutput | None]) -> JobOutput | None:
    """The output folder that ``path`` (a shard) lies in, if the folder has a manifest; ``opened`` caches by folder."""
    directory = posixpath.dirname(path) if not fs.is_local(path) else os.path.dirname(path)
    if directory not in opened:
        opened[directory] = JobOutput.open(directory) if directory and fs.exists(fs.join(directory, MANIFEST_NAME)) else None
    return opened[directory]


@dataclasses.dataclass(frozen=True)
class Shards:
    """Resolved training data: files, and the outputs they came from (for class checks)."""

    files: list[str]
    outputs: list[JobOutput]


def resolve(data: str | Sequence[str], split: str | None, default_split: str) -> Shards:
    """Files to read from an output folder (one split), a glob, a comma list, or a list of these.

    Args:
        data: a ``boxweight prepare`` output folder; a glob or file (``OUT/train-*``);
            a comma-separated string or a list/tuple of those.
        split: the split to read from a folder; None means ``default_split``.
            Refused with globs and files, which name their files already.
        default_split: ``train`` when training, else ``val``.

    Raises:
        DataError: a folder without a complete manifest, an unknown split,
            nothing matched, a glob matching files that its folder's manifest
            does not list, or outputs with different class sets.
    """
    parts = [p for p in (data.split(",") if isinstance(data, str) else list(data)) if p]
    if not parts:
        raise DataError("no data given")
    files: list[str] = []
    outputs: dict[str, JobOutput] = {}
    opened: dict[str, JobOutput | None] = {}
    for part in parts:
        part = str(part)
        if fs.is_folder(part) or fs.exists(part.rstrip("/") + STAGING_SUFFIX):
            folder = JobOutput.open(part)
            outputs[folder.directory] = folder
            files.extend(folder.files(split or default_split))
            continue
        if split is not None:
            raise DataError(f"split={split!r} picks a split of an output folder; {part!r} names files already")
        matches = fs.glob(part) if any(c in part for c in "*?[") else ([part] if fs.exists(part) else [])
        if not matches:
            raise DataError(f"no file matches {part!r}")
        for path in matches:
            out = _owning_output(path, opened)
            if out is None:
                continue
            outputs[out.directory] = out
            if posixpath.basename(path.replace(os.sep, "/")) not in out.shard_names:
                name = posixpath.basename(path)
                if name == MANIFEST_NAME or name in {f.name for f in out.manifest.files}:
                    raise DataError(f"{part!r} matches {name}, a report file, not a shard")
                raise DataError(
                    f"{path} is not listed in {out.directory}/{MANIFEST_NAME} (left from another run?); "
                    f"read the folder itself to get only this run's shards, one split at a time"
                )
        files.extend(matches)
    found = list(outputs.values())
    for other in found[1:]:
        found[0].check_classes(other.label_map, other.directory)
    return Shards(files, found)


def one_output(data: str | Sequence[str], split: str | None, default_split: str) -> tuple[Shards, JobOutput]:
    """Like :func:`resolve`, for a trainer: the shards and the one job output they come from,
    whose label map names the model's classes.

    Raises:
        DataError: the data does not lie in exactly one ``boxweight prepare``
            output, or see :func:`resolve`.
    """
    shards = resolve(data, split, default_split)
    if len(shards.outputs) != 1:
        raise DataError(
            f"{data!r}: give one boxweight prepare output folder (or shards inside one), whose "
            f"manifest.json names the classes; found {len(shards.outputs)} outputs"
        )
    return shards, shards.outputs[0]
