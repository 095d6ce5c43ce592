"""This checkout and, optionally, an earlier commit beside it: the baseline a benchmark runs in the same session."""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator


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
