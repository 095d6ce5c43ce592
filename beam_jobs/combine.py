"""Combining per-bundle values (counters, accounts, statistics) into one."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import apache_beam as beam


class Merge(beam.CombineFn):
    """Merge mergeable values (Counter, Accounting, SplitStats, lists) into one."""

    def __init__(self, empty: type) -> None:
        self.empty = empty

    def create_accumulator(self) -> Any:
        return self.empty()

    def add_input(self, acc: Any, value: Any) -> Any:
        if isinstance(acc, list):
            acc.extend(value)
        elif isinstance(acc, Counter):
            acc.update(value)
        else:
            acc.merge(value)
        return acc

    def merge_accumulators(self, accs: Iterable[Any]) -> Any:
        it = iter(accs)
        first = next(it)
        for other in it:
            self.add_input(first, other)
        return first

    def extract_output(self, acc: Any) -> Any:
        return acc


def merge_all(accumulators: Iterable[Any]) -> Any:
    """Merge mergeable accumulators (``SplitStats``, ``Accounting``) into the first."""
    it = iter(accumulators)
    first = next(it)
    for other in it:
        first.merge(other)
    return first
