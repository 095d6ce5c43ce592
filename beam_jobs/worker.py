"""Beam's own SDK worker, as the local runner starts it (see ``prepare.local_runner``).

The runner's command starts this with Ctrl-C ignored, so an interrupt during
the interpreter's start cannot print a fatal error; from here on Ctrl-C ends
the worker at once and silently (the default action, no traceback), and the
job's own process reports the interruption in one line.
"""

import runpy
import signal

signal.signal(signal.SIGINT, signal.SIG_DFL)
runpy.run_module("apache_beam.runners.worker.sdk_worker_main", run_name="__main__", alter_sys=True)
