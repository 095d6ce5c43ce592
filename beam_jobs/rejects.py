"""rejects.jsonl: one sorted line per reject, written in sorted parts on the workers and merged as a stream."""

from __future__ import annotations

import contextlib
import heapq
import io
import json
from collections.abc import Iterable, Iterator

import apache_beam as beam

from beam_jobs.keys import bucket
from schemas.annotations import Reject
from storage import fs


def reject_line(reject: Reject) -> str:
    """One line of ``rejects.jsonl`` (without its newline)."""
    return json.dumps(reject.to_json(), sort_keys=True, ensure_ascii=False)


PART_LINES = 200_000  # lines a worker sorts in memory (about 60 MB of rejects)


def _part_of(line: str, lines: int) -> tuple[int, str]:
    return bucket(line, max(1, -(-lines // PART_LINES))), line


class WriteSortedParts(beam.PTransform):
    """Text lines -> sorted part files in ``folder``, about :data:`PART_LINES` lines each.

    Beam has no global sort, and gathering every line on one worker (``AsList``)
    does not finish on a dataset with millions of rejects. So each part is
    sorted on the worker that groups it, and :func:`merge_parts` reads the
    parts back as one sorted stream. Output: (path, lines) per non-empty part.
    """

    def __init__(self, folder: str) -> None:
        super().__init__()
        self.folder = folder

    def expand(self, lines: beam.PCollection) -> beam.PCollection:
        count = lines | "Count" >> beam.combiners.Count.Globally()
        return (
            lines
            | "ToPart" >> beam.Map(_part_of, beam.pvalue.AsSingleton(count))
            | "ByPart" >> beam.GroupByKey()
            | "SortAndWrite" >> beam.MapTuple(self._write)
        )

    def _write(self, part: int, lines: Iterable[str]) -> tuple[str, int]:
        ordered = sorted(lines)
        path = fs.join(self.folder, f"part-{part:05d}")
        with fs.create(path) as f:
            for start in range(0, len(ordered), 4096):
                f.write("".join(line + "\n" for line in ordered[start : start + 4096]).encode("utf-8"))
        return path, len(ordered)


def merge_parts(paths: Iterable[str]) -> Iterator[str]:
    """The lines of sorted part files (see :class:`WriteSortedParts`) as one sorted stream, newlines kept.

    JSON escapes every character below a space, so a line's newline sorts
    before any character it could continue with: the merged order is that of
    ``sorted()`` over the lines without their newlines.
    """
    with contextlib.ExitStack() as stack:
        files = [
            stack.enter_context(
                io.TextIOWrapper(fs.open_binary(p), encoding="utf-8")
            )
            for p in paths
        ]
        yield from heapq.merge(*files)
