"""One status line on a terminal, rewritten in place as a long command runs.

Nothing is written when the stream is not a terminal, so logs and pipes get
only the command's own lines.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.on = self.stream.isatty()
        self.shown = False
        self.start = time.perf_counter()

    def restart(self) -> None:
        self.start = time.perf_counter()

    def rate(self, done: float) -> float:
        """``done`` per second since the last (re)start."""
        return done / max(time.perf_counter() - self.start, 1e-9)

    def show(self, text: str) -> None:
        if not self.on:
            return
        width = shutil.get_terminal_size().columns - 1
        self.stream.write("\r" + text[:width] + "\x1b[K")  # \x1b[K: erase the rest of the line
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        """Erase the status line, before a line that stays."""
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False


def eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds < 3600 else f"{seconds // 3600}h{seconds % 3600 // 60:02d}"
