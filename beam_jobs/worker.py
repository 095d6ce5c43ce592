"""Beam's own SDK worker, as the local runner starts it (see ``beam_jobs.local.local_runner``).

The runner's command starts this with Ctrl-C ignored, so an interrupt during
the interpreter's start cannot print a fatal error; from here on Ctrl-C ends
the worker at once and silently (the default action, no traceback), and the
job's own process reports the interruption in one line.

The worker's and the job's modules are imported first and then frozen out
of the garbage collector (``gc.freeze``, after one collection): they live as
long as the worker, and each full collection walked all of them again. At
50,000 images that was 1.2 s of each worker's 14 s of CPU; frozen, 0.3 s.
"""

import gc
import runpy
import signal

signal.signal(signal.SIGINT, signal.SIG_DFL)

import apache_beam.runners.worker.sdk_worker  # noqa: E402, F401  (the worker's modules, to be frozen)

import beam_jobs.prepare  # noqa: E402, F401  (the job's: readers, schemas, the weighting)

gc.collect()
gc.freeze()
runpy.run_module("apache_beam.runners.worker.sdk_worker_main", run_name="__main__", alter_sys=True)
