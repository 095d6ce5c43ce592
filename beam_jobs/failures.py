"""How a failed job is said: a full disk in one line, any other failure with the runner's own account.

The runner logs a worker's exception (and its traceback) as it happens, long
before the launcher knows why the job failed. Those error records are held
while the job runs (:func:`runner_errors_held`) and written out afterwards,
unless the failure was one the launcher can say in one line: a disk that
filled up (``ENOSPC``), where 111 lines of tracebacks named nothing the user
could act on.
"""

from __future__ import annotations

import contextlib
import errno
import logging
from collections.abc import Iterator

_RUNNER_LOGGERS = ("apache_beam",)


def disk_full(exc: BaseException) -> bool:
    """Whether the exception, or one it wraps or was raised from, is a full disk (as a runner re-raises it: text)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno == errno.ENOSPC:
            return True
        if "[Errno 28] No space left on device" in str(current):  # Beam re-raises a worker's error as its text
            return True
        current = current.__cause__ or current.__context__
    return False


class _Held(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.name.startswith(_RUNNER_LOGGERS):
            self.records.append(record)
            return False
        return True


@contextlib.contextmanager
def runner_errors_held() -> Iterator[list[logging.LogRecord]]:
    """Hold the runner's ERROR records on the root logger's handlers; the caller decides what to write.

    Yields the list that fills with the held records; :func:`write_held` writes them.
    """
    held = _Held()
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(held)
    try:
        yield held.records
    finally:
        for handler in handlers:
            handler.removeFilter(held)


def write_held(records: list[logging.LogRecord]) -> None:
    for record in records:
        logging.getLogger(record.name).handle(record)
    records.clear()
