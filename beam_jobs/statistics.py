"""Class statistics per split, from chunks of records."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator

import apache_beam as beam

from beam_jobs.chunks import RecordChunk
from beam_jobs.combine import merge_all
from schemas.annotations import ImageRecord
from weighting.stats import SplitStats


def _by_split(chunk: RecordChunk) -> Iterator[tuple[str, list[ImageRecord]]]:
    groups: defaultdict[str, list[ImageRecord]] = defaultdict(list)
    for r in chunk:
        groups[r.split].append(r)
    yield from groups.items()


class _StatsCombineFn(beam.CombineFn):
    def create_accumulator(self) -> SplitStats:
        return SplitStats()

    def add_input(self, acc: SplitStats, records: list[ImageRecord]) -> SplitStats:
        for record in records:
            acc.add(record)
        return acc

    def merge_accumulators(self, accs: Iterable[SplitStats]) -> SplitStats:
        return merge_all(accs)  # type: ignore[no-any-return]

    def extract_output(self, acc: SplitStats) -> SplitStats:
        return acc


class ClassStatistics(beam.PTransform):
    """SplitStats per split, as (split, stats) pairs, from chunks of records."""

    def expand(self, chunks: beam.PCollection) -> beam.PCollection:
        return chunks | "BySplit" >> beam.FlatMap(_by_split) | "Combine" >> beam.CombinePerKey(_StatsCombineFn())
