"""The local runner's set-up: which runner a job without ``--runner`` gets, and glibc's malloc settings for it.

Without ``--runner`` a job runs locally and offline on every core: Beam's FnApiRunner with one worker
process per core, or in this process for a small job (:func:`local_runner`).
"""

from __future__ import annotations

import ctypes
import logging
import os
import shlex
import sys

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner
from apache_beam.runners.runner import PipelineRunner
from apache_beam.transforms.environments import SubprocessSDKEnvironment

IN_PROCESS_RUNNER = (
    "apache_beam.runners.portability.fn_api_runner.fn_runner.FnApiRunner"  # --runner= value: this process only
)


#: Below this many images (as the launcher counts them) the local default runs in this process: starting a
#: worker per core, each importing Beam and (then) TensorFlow, cost 3-4 s more than it saved on the shared
#: datasets (289-image chess-coco: 10.6 s with workers, 8.3 s without), and at 10,000 the two were within 5%.
#: Not measured again since the workers stopped importing TensorFlow.
SMALL_JOB_IMAGES = 5_000


#: glibc's malloc serves blocks from this size up with their own mappings, returned to the system when freed
#: (``MALLOC_MMAP_THRESHOLD_``, set for the local workers unless the environment sets it). By default glibc
#: raises this limit each time such a block is freed, after which image files, packed chunks and the data
#: channel's buffers are carved from the heap and leave it fragmented: at 200,000 images each worker peaked at
#: about 1,020 MB; with the limit fixed at 64 KiB, 900 MB (at 128 KiB, 930). Set only for jobs that decode
#: every image: a fixed limit also made the 50,000-photo header-only job about 5% slower (more blocks mapped
#: and unmapped), where its workers stay near 400 MB without it. Measured again once the pixel check no longer
#: imported TensorFlow (200,000 images, decode): the COCO-parsing worker peaked at 771 MB with it and 824 MB
#: without, in 126 and 123 s; at 50,000 127 KB photos it cost 3-7% of the time (57.8-60.4 s against 56.0 s).
#: Kept for the memory. Other C libraries ignore the variable.
WORKER_MMAP_THRESHOLD = 64 << 10
#: glibc's malloc arenas for the launcher and the local workers (``MALLOC_ARENA_MAX``, unless the environment
#: sets it), in jobs that decode every image. The launcher passes every shuffle of the FnApiRunner through its
#: data-channel threads, and glibc gives each thread an arena of its own that stays fragmented: at 200,000
#: images the launcher peaked at 702 MB with neither setting, and, both set in the environment, 639 MB with 2
#: arenas and 569-578 MB with 2 arenas and the fixed mmap threshold (the workers unchanged, 518 and 335 MB).
ARENA_MAX = 2
_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8  # glibc's mallopt parameters (malloc.h)


def launcher_heap() -> None:
    """This process's malloc set as the decoding workers' (:data:`WORKER_MMAP_THRESHOLD`, :data:`ARENA_MAX`), where
    glibc is the C library and the environment does not set them. Called first thing in :func:`main`, before
    any thread of the runner has an arena. At 200,000 images the launcher then peaked at 614-617 MB (702 MB
    without); the same two set in the environment before the interpreter starts gave 569-578 MB, which
    ``mallopt`` cannot reach once Python has started (603 MB even before any import)."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc: nothing to set
        return
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        mallopt(_M_MMAP_THRESHOLD, WORKER_MMAP_THRESHOLD)
    if "MALLOC_ARENA_MAX" not in os.environ:
        mallopt(_M_ARENA_MAX, ARENA_MAX)




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
    glibc's mmap threshold fixed (:data:`WORKER_MMAP_THRESHOLD`) and its arenas
    limited (:data:`ARENA_MAX`), as the launcher does (:func:`launcher_heap`),
    unless the environment sets them. Beam's ``--direct_running_mode=multi_processing``
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
