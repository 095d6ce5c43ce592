"""The progress line of ``boxweight prepare`` on a terminal.

Beam's local runner reports the job's counters (``Metrics``) only once the
job has ended, and ``pipeline.run()`` returns only then. So for a local run
on a terminal the job's stages also keep running counts in a scratch folder
outside the output (one small JSON file per worker process, rewritten at
most twice a second), and a thread of the launcher adds them up into one
line: annotations listed, then images validated and written, with the rate
and the time left. Nothing of it is written without a terminal, and nothing
of it reaches the output folder or depends on it: a stage without a folder
counts nothing.

On Dataflow the launcher prints the job id and its console address, and on a
terminal polls the job's own counters (:func:`dataflow_line`).
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from typing import Any

from storage.terminal import Progress, eta

LISTED, PARSED, VALIDATED, ACCEPTED, WRITTEN = "listed", "parsed", "validated", "accepted", "written"
_INTERVAL = 0.5


class Tally:
    """Running counts of this worker process, for the launcher's progress line.

    Each stage's DoFn holds one with the scratch folder (``None``: count
    nothing). Every Tally of a process adds to the same counts and file.
    """

    _lock = threading.Lock()
    _counts: Counter[str] = Counter()
    _file: str | None = None
    _written_at = 0.0

    def __init__(self, folder: str | None) -> None:
        self.folder = folder

    def add(self, key: str, n: int = 1, *, flush: bool = False) -> None:
        """Add ``n`` to ``key``; the file is rewritten with ``flush`` or when the last write is old."""
        if self.folder is None:
            return
        cls = Tally
        with cls._lock:
            cls._counts[key] += n
            now = time.monotonic()
            if not flush and now - cls._written_at < _INTERVAL:
                return
            cls._written_at = now
            if cls._file is None or os.path.dirname(cls._file) != self.folder:
                cls._file, cls._counts = (
                    os.path.join(self.folder, f"{os.getpid()}-{uuid.uuid4().hex}.json"),
                    Counter({key: n}),
                )
            tmp = cls._file + ".tmp"
            try:
                with open(tmp, "w", encoding="utf-8") as f:
                    json.dump(cls._counts, f)
                os.replace(tmp, cls._file)
            except OSError:
                pass  # the launcher removed the folder: the job is ending


def read_counts(folder: str) -> Counter[str]:
    total: Counter[str] = Counter()
    for name in os.listdir(folder):
        if name.endswith(".json"):
            try:
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    total.update(json.load(f))
            except (OSError, ValueError):
                continue  # replaced or removed as it was read: the next look sees it
    return total


class Stage:
    """Rate and time left of one stage, timed from its first count to its latest change."""

    def __init__(self) -> None:
        self.start: float | None = None
        self.changed, self.done = 0.0, 0

    def text(self, label: str, done: int, total: int | None, unit: str) -> str:
        now = time.monotonic()
        if done != self.done:
            self.start = now if self.start is None else self.start
            self.changed, self.done = now, done
        line = f"{label}: {done:,}" + (f" / {total:,}" if total is not None else "") + f" {unit}"
        if self.start is not None and self.changed - self.start > 1:
            rate = done / (self.changed - self.start)
            line += f" · {rate:,.0f}/s"
            if total is not None and total > done:
                line += f" · ETA {eta((total - done) / rate)}"
        return line


def local_line(
    counts: Mapping[str, int], stages: dict[str, Stage], elapsed: float, parts: int = 1, workers: bool = True
) -> str:
    """The line for the counts so far (of a job that reads ``parts`` parts, on worker processes or not):
    the stage that is running now."""
    listed, validated, accepted, written = (counts.get(k, 0) for k in (LISTED, VALIDATED, ACCEPTED, WRITTEN))
    parsed = counts.get(PARSED, 0) >= parts  # every annotation input has been read: the totals are known
    if parsed and validated == listed and written == accepted:
        return f"writing the report ({listed:,} images validated, {written:,} written)"
    if written:
        return stages[WRITTEN].text("writing shards", written, accepted, "images")
    if validated:
        return stages[VALIDATED].text("validating images", validated, listed if parsed else None, "images")
    if listed:
        return stages[LISTED].text("reading annotations", listed, None, "images listed") + (
            "; handing them to the workers" if parsed else ""
        )
    return f"prepare: starting {'workers' if workers else 'the runner'} ({elapsed:.0f} s)"


class Watcher:
    """Shows the local job's progress line while it runs (a thread of the launcher)."""

    def __init__(self, folder: str, line: Progress, parts: int = 1, workers: bool = True) -> None:
        self.folder, self.line, self.parts, self.workers = folder, line, parts, workers
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="boxweight-progress", daemon=True)

    def __enter__(self) -> Watcher:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join()
        self.line.clear()

    def _run(self) -> None:
        stages = {key: Stage() for key in (LISTED, VALIDATED, WRITTEN)}
        start = time.monotonic()
        while not self.stop.wait(_INTERVAL):
            self.line.show(local_line(read_counts(self.folder), stages, time.monotonic() - start, self.parts, self.workers))


def dataflow_line(counters: Mapping[str, int], state: str) -> str:
    """The line for a Dataflow job's counters (``boxweight`` namespace) and state."""
    validated, written = counters.get("images_validated", 0), counters.get("images_written", 0)
    quarantined = counters.get("images_quarantined", 0)
    return f"Dataflow job {state.lower()}: {validated:,} images validated ({quarantined:,} quarantined), {written:,} written"
