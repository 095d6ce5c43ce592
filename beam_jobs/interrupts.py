"""Ctrl-C in a local job: said once, and never a half-written output.

A terminal sends Ctrl-C to every process of its group: the local workers end
at once and silently (``beam_jobs.worker``), and the runner's threads in the
launcher that watch them then log and fail, and may fail the run before the
main thread sees the interrupt. So :class:`Watch` notes the interrupt as it
arrives, silences the runner's complaints after it, and a run that ends in
any way after it is reported once, as interrupted. It also ends the local
workers itself (:func:`end_children`): a worker still starting when the
Ctrl-C came had it ignored (``beam_jobs.worker``), and Beam's runner, on its
way out, waits for every worker to exit: that worker then connected to a
runner that had closed its control channel and waited for instructions
forever, and the job hung (measured: every time the Ctrl-C came as the
workers' processes appeared). :func:`interrupts_held`
defers a Ctrl-C past the renaming of the output folder; :func:`exiting`
ignores one that comes while the process only exits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from types import TracebackType
from typing import Any


def finished_line(output: str) -> str:
    """What a Ctrl-C that came after the output was published leaves."""
    return f"the job had finished: its outputs in {os.path.normpath(output) if '://' not in output else output} are complete"


class Watch:
    """For the block's length: a Ctrl-C sets :attr:`interrupted` (and raises KeyboardInterrupt in the main
    thread), the logging after it is silenced, and the runner threads' uncaught errors are held in
    :attr:`held_thread_errors`, to be dropped after an interrupt or shown after the command's own lines."""

    def __init__(self) -> None:
        self.interrupted = threading.Event()
        self._left = threading.Event()  # the block has ended: no more workers to end
        self.held_thread_errors: list[threading.ExceptHookArgs] = []
        self._previous_hook: Any = None
        self._previous_sigint: Any = None

    def __enter__(self) -> Watch:
        self._previous_hook, threading.excepthook = threading.excepthook, self.held_thread_errors.append
        if threading.current_thread() is threading.main_thread():
            self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if not self.interrupted.is_set():
            threading.Thread(target=_end_children_until, args=(self._left,), name="boxweight-end-workers", daemon=True).start()
        self.interrupted.set()
        logging.disable(logging.CRITICAL)  # the runner's threads log the workers' end; the interrupt is said once
        raise KeyboardInterrupt

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._left.set()
        # after an interrupt the runner's threads may still fail and log as the process exits: not news
        threading.excepthook = (lambda args: None) if self.interrupted.is_set() else self._previous_hook
        if self._previous_sigint is not None:
            signal.signal(signal.SIGINT, self._previous_sigint)
            if not self.interrupted.is_set():
                logging.disable(logging.NOTSET)
        if self.interrupted.is_set():
            self.held_thread_errors.clear()

    def show_held(self) -> None:
        """The held thread errors, through the hook in place before (after an interrupt there are none)."""
        for args in self.held_thread_errors:
            self._previous_hook(args)


def end_children() -> list[int]:
    """Send SIGTERM to every child process of this one (Linux ``/proc``; elsewhere none); their pids."""
    me, ended = str(os.getpid()), list[int]()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return ended
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = f.read().rsplit(")", 1)[1].split()[1]
        except (OSError, IndexError):
            continue  # ended while we looked
        if parent == me:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry), signal.SIGTERM)
                ended.append(int(entry))
    return ended


def _end_children_until(left: threading.Event) -> None:
    # again and again until the watched block ends (by then the runner has waited for its workers): a worker
    # the runner was starting as the Ctrl-C came appears after the first pass
    while not left.is_set():
        end_children()
        left.wait(0.2)


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Defer Ctrl-C to the end of the block: a SIGINT inside it is noted, then raised again once it ends.

    The Python-level handler is swapped, not the thread's signal mask: the runner's threads would take a
    masked signal for the process.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread runs signal handlers
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            signal.raise_signal(signal.SIGINT)  # to the handler in place before: an interrupt, a kill or nothing


def exiting() -> None:
    """Ignore Ctrl-C from here on: the command has ended and said so, and the process only exits.

    Python joins the job runner's threads on the way out (up to about half a second after a
    local job). A Ctrl-C there ended the process by the signal, exit -2, with no line at all,
    after a job that had finished and printed its report.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
