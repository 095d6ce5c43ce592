"""The local runner's set-up: which runner a job without ``--runner`` gets, its workers with glibc's malloc settings.

Without ``--runner`` a job runs locally and offline on every core: Beam's FnApiRunner with one worker
process per core, or in this process for a small job (:func:`local_runner`).
"""

from __future__ import annotations

import logging
import os
import shlex
import sys

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner
from apache_beam.runners.runner import PipelineRunner
from apache_beam.transforms.environments import SubprocessSDKEnvironment

from beam_jobs.heap import ARENA_MAX, WORKER_MMAP_THRESHOLD

IN_PROCESS_RUNNER = (
    "apache_beam.runners.portability.fn_api_runner.fn_runner.FnApiRunner"  # --runner= value: this process only
)


#: Below this many images (as the launcher counts them) the local default runs in this process: starting a
#: worker per core, each importing Beam and (then) TensorFlow, cost 3-4 s more than it saved on the shared
#: datasets (289-image chess-coco: 10.6 s with workers, 8.3 s without), and at 10,000 the two were within 5%.
#: Not measured again since the workers stopped importing TensorFlow.
SMALL_JOB_IMAGES = 5_000


def local_runner(
    argv: list[str], options: PipelineOptions, images: int | None = None, decode: bool = True
) -> tuple[PipelineRunner | None, bool]:
    """The local default: Beam's FnApiRunner with one SDK worker process per core, or in this
    process alone for a job of fewer than :data:`SMALL_JOB_IMAGES` images (``images``, when known).

    Returns the runner (None when ``argv`` names one: Beam picks it from the
    options) and whether the job runs in worker processes. Without
    ``--direct_num_workers`` in ``argv``, sets it in ``options`` to the core
    count for a job in worker processes; given, it asks for worker processes
    whatever the size.

    Chosen explicitly because ``DirectRunner`` first tries the Prism runner,
    which downloads a binary; offline that logs an error before falling back.
    This is the FnApiRunner's multi-processing mode and Beam's own worker
    (``sdk_worker_main``, through ``beam_jobs.worker``) with one change: a
    terminal sends Ctrl-C to every process of its group, and a worker that
    gets it while its interpreter starts prints a fatal error and a
    traceback, so the worker starts with Ctrl-C ignored, then lets it end the
    worker silently; the launcher reports it once (:mod:`beam_jobs.interrupts`).
    With ``decode`` (``--pixel-check decode``) the workers also start with
    glibc's mmap threshold fixed and its arenas limited (:mod:`beam_jobs.heap`),
    as the launcher does, unless the environment sets them. Beam's ``--direct_running_mode=multi_processing``
    picks the same runner with the unwrapped command.
    """
    if options.view_as(StandardOptions).runner is not None:
        return None, any(a.startswith("--direct_num_workers") for a in argv)
    counted = any(a.startswith("--direct_num_workers") for a in argv)
    if images is not None and images < SMALL_JOB_IMAGES and not counted:
        return FnApiRunner(), False  # Beam's in-process default: the same runner, no worker processes
    heap = ""
    if decode:
        heap = (f"export MALLOC_MMAP_THRESHOLD_=${{MALLOC_MMAP_THRESHOLD_:-{WORKER_MMAP_THRESHOLD}}} "
                f"MALLOC_ARENA_MAX=${{MALLOC_ARENA_MAX:-{ARENA_MAX}}}; ")
    worker = f"trap '' INT; {heap}exec {shlex.quote(sys.executable)} -m beam_jobs.worker"  # run by /bin/sh
    runner = FnApiRunner(default_environment=SubprocessSDKEnvironment.from_command_string(worker))
    # FnApiRunner warns that several workers want multi-processing mode; this is that mode
    logging.getLogger("apache_beam.runners.portability.fn_api_runner.fn_runner").addFilter(_drop_multi_processing_note)
    if not counted:
        options.view_as(DirectOptions).direct_num_workers = os.cpu_count() or 1
    return runner, True


def _drop_multi_processing_note(record: logging.LogRecord) -> bool:
    return "direct_num_workers is not equal to 1" not in record.getMessage()
