"""This checkout and, optionally, an earlier commit beside it: the baseline a benchmark runs in the same session."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping


@contextlib.contextmanager
def with_baseline(here: str, work: str, baseline_commit: str | None) -> Iterator[dict[str, str]]:
    """{name: folder}: ``this checkout`` and, with ``baseline_commit``, a ``git worktree`` of it in ``work``
    (removed on exit). A job runs from a folder by running ``python -m ...`` with it as the working directory."""
    found = {"this checkout": here}
    base = os.path.join(work, "baseline")
    if baseline_commit:
        subprocess.run(["git", "-C", here, "worktree", "add", "-q", "--detach", base, baseline_commit], check=True)
        found[f"baseline {baseline_commit}"] = base
    try:
        yield found
    finally:
        if baseline_commit:
            subprocess.run(["git", "-C", here, "worktree", "remove", "--force", base], check=False)


def run_job(checkout: str, argv: list[str]) -> dict[str, float]:
    """``python -m beam_jobs.prepare ARGV`` from ``checkout``: its wall time and its largest process's peak RSS.

    Call it in a fresh child process of the benchmark, so the peak is this job's alone.
    """
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "beam_jobs.prepare", *argv], cwd=checkout, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"job from {checkout} failed:\n{done.stderr[-3000:]}")
    return {"seconds": wall, "peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


Rows = dict[tuple[str, str], list[dict]]


def interleaved(
    module: str, checkouts: Mapping[str, str], datasets: Mapping[str, str], repeats: int, work: str, here: str
) -> Rows:
    """``python -m MODULE --child CHECKOUT INPUT OUT`` for every (dataset, checkout), ``repeats`` interleaved
    rounds, each in a fresh process; {(dataset, checkout): each run's JSON line}. Exits when the shards or
    ``rejects.jsonl`` of a dataset differ between the checkouts."""
    rows: Rows = {(d, c): [] for d in datasets for c in checkouts}
    digests: dict[tuple[str, str], str] = {}
    for _ in range(repeats):
        for (dataset, name), runs in rows.items():
            out = os.path.join(work, "out")
            line = subprocess.run(
                [sys.executable, "-m", module, "--child", checkouts[name], datasets[dataset], out],
                cwd=here, capture_output=True, text=True, check=True,
            ).stdout
            runs.append(json.loads(line))
            digests[(dataset, name)] = output_digest(out)
            shutil.rmtree(out)
    for dataset in datasets:
        if len({digests[(dataset, name)] for name in checkouts}) != 1:
            sys.exit(f"{dataset}: shards or rejects.jsonl differ between the checkouts")
    return rows


def output_digest(out: str) -> str:
    """sha256 over the shards and rejects.jsonl (the files that must not depend on the checkout)."""
    h = hashlib.sha256()
    for name in sorted(os.listdir(out)):
        if name.endswith(".tfrecord") or name == "rejects.jsonl":
            with open(os.path.join(out, name), "rb") as f:
                h.update(name.encode() + f.read())
    return h.hexdigest()


def print_rows(rows: Rows, first: str, digits: int = 1, peak: Callable[[Iterable[float]], float] = max) -> None:
    """One line per (dataset, checkout): median seconds (min-max) and ``peak`` of the runs' peak RSS."""
    print(f"{first:<18} {'checkout':<34} {'seconds':>8} {'(min-max)':>12} {'peak RSS MB':>12}")
    for (dataset, name), runs in rows.items():
        secs = [r["seconds"] for r in runs]
        print(
            f"{dataset:<18} {name:<34} {statistics.median(secs):8.{digits}f} {min(secs):5.{digits}f}-{max(secs):<6.{digits}f}"
            f" {peak(r['peak_mb'] for r in runs):12.0f}"
        )
    if len({name for _, name in rows}) > 1:
        print("shards and rejects.jsonl: byte-identical between the checkouts, for each dataset")
