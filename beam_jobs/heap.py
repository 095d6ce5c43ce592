"""glibc's malloc settings for jobs that decode every image: the launcher's (:func:`launcher_heap`) and the
local workers' (their command exports the same values, see :func:`beam_jobs.local.local_runner`)."""

from __future__ import annotations

import os
from collections.abc import Sequence

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


def decodes(argv: Sequence[str]) -> bool:
    """Whether the job of these arguments decodes every image (the default ``--pixel-check decode``)."""
    return not any(a == "--pixel-check=header" or (a, b) == ("--pixel-check", "header") for a, b in zip(argv, [*argv[1:], ""]))


def launcher_heap() -> None:
    """This process's malloc set as the decoding workers' (:data:`WORKER_MMAP_THRESHOLD`, :data:`ARENA_MAX`) with
    ``mallopt``, where glibc is the C library and the environment does not set them. Called first thing in
    ``prepare.main``, before any thread of the runner has an arena. At 200,000 images the launcher peaked at
    702 MB without it; with it, 579, 610 and 579 MB in three runs (2026-12-06, docs/benchmarks.md). Starting
    the command again with the two in its environment (glibc reads them at start) measured no better in the
    same session: 600, 600 and 599 MB, interleaved with those three."""
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc: nothing to set
        return
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        mallopt(_M_MMAP_THRESHOLD, WORKER_MMAP_THRESHOLD)
    if "MALLOC_ARENA_MAX" not in os.environ:
        mallopt(_M_ARENA_MAX, ARENA_MAX)
