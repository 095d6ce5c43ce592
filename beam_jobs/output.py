"""The job's output folder as one unit: staged, then published whole, or refused.

Local output: the job writes into a sibling folder ``OUT.incomplete`` and the
launcher renames it to ``OUT`` once the pipeline has succeeded (a previous
output replaced by ``--overwrite`` is moved aside first and deleted after).
A killed job leaves only the ``.incomplete`` sibling, which the next run
removes. Remote output (``gs://``) cannot be renamed cheaply, so the job
writes in place and ``manifest.json``, its last write, is what makes the
folder complete; ``--overwrite`` deletes the old manifest before anything
else. Either way a reader that goes through the manifest never sees a half
output, and never sees a file that this job did not write. A local job
holds ``OUT.lock`` from its first look at the folder to its end
(:func:`claim`), so a second job into the same folder is refused; on
``gs://`` no claim is taken (the README says so).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import shutil
import socket
import time

from beam_jobs.options import JobError
from schemas.manifest import MANIFEST_NAME, PARTIAL_MARKER, STAGING_SUFFIX
from storage import fs

_OWN_MARKERS = (MANIFEST_NAME, "stats.json", PARTIAL_MARKER)


CLAIM_SUFFIX = ".lock"


@dataclasses.dataclass(frozen=True)
class OutputFolder:
    """Where the user wants the output (``final``), where the pipeline writes it (``target``), and the
    descriptor of this job's claim on a local output (``OUT.lock``, see :func:`claim`)."""

    final: str
    target: str
    claim: int | None = dataclasses.field(default=None, compare=False)

    @property
    def staged(self) -> bool:
        return self.target != self.final


def _listing(path: str) -> list[str]:
    if fs.is_local(path):
        return sorted(os.listdir(path)) if os.path.isdir(path) else []
    return [fs.relpath(p, path) for p in fs.list_files(path)]


def _inside(child: str, parent: str) -> bool:
    child, parent = os.path.realpath(child), os.path.realpath(parent)
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


def prepare_output(output: str, overwrite: bool, input_path: str) -> OutputFolder:
    """Check ``output`` and make the folder the pipeline writes into.

    Raises:
        JobError: the folder holds files and ``overwrite`` is off; it holds
            files that are not a boxweight output; it lies inside the input
            folder; or it cannot be written.
    """
    claimed = None
    if fs.is_local(output):
        output = os.path.normpath(output)
        claimed = claim(output)  # before anything is looked at: a second job must not see a half state
    try:
        return _prepare(output, overwrite, input_path, claimed)
    except BaseException:
        release(OutputFolder(output, output, claimed))
        raise


def _prepare(output: str, overwrite: bool, input_path: str, claimed: int | None) -> OutputFolder:
    if fs.is_local(output):
        if fs.is_local(input_path) and os.path.isdir(input_path) and _inside(output, input_path):
            raise JobError(f"output {output!r} is inside the input folder {input_path!r}; the next run would read it as input. Choose a folder outside it")
        if os.path.exists(output) and not os.path.isdir(output):
            raise JobError(f"output {output!r} is a file, not a folder")
    names = _listing(output)
    if names:
        own = any(n in _OWN_MARKERS for n in names)
        partial_only = PARTIAL_MARKER in names and MANIFEST_NAME not in names
        if not overwrite and not partial_only:
            raise JobError(
                f"output {output!r} is not empty ({len(names)} entries); add --overwrite to replace a previous "
                "boxweight output as a whole, or choose a new folder"
            )
        if not own:
            raise JobError(
                f"refusing to overwrite {output!r}: it holds no {MANIFEST_NAME} or stats.json, so it is not a "
                "boxweight output; remove it yourself or choose a new folder"
            )
    try:
        if fs.is_local(output):
            staging = output + STAGING_SUFFIX
            shutil.rmtree(staging, ignore_errors=True)  # a killed run's leftovers
            os.makedirs(staging)
            return OutputFolder(output, staging, claimed)
        if names:
            _delete_remote(output, names)
        with fs.create(fs.join(output, PARTIAL_MARKER)) as f:
            f.write(b"a boxweight prepare job writes here; the folder is complete once manifest.json exists\n")
        return OutputFolder(output, output)
    except OSError as exc:
        raise JobError(f"output {output!r} is not writable: {exc}") from None


def _delete_remote(output: str, names: list[str]) -> None:
    # the manifest goes first, so the folder stops being a complete output before anything else changes
    first = [fs.join(output, MANIFEST_NAME)] if MANIFEST_NAME in names else []
    rest = [fs.join(output, n) for n in names if n != MANIFEST_NAME]
    for batch in (first, rest):
        if batch:
            fs.delete(batch)


def publish(folder: OutputFolder) -> None:
    """Make a staged output the user's folder, replacing a previous output as a whole."""
    if not folder.staged:
        return
    replaced = folder.final + ".replaced"
    shutil.rmtree(replaced, ignore_errors=True)
    if os.path.isdir(folder.final):
        os.rename(folder.final, replaced)
    os.rename(folder.target, folder.final)
    shutil.rmtree(replaced, ignore_errors=True)


def discard(folder: OutputFolder) -> None:
    """Remove what a failed or interrupted job staged; a remote folder keeps no manifest, so no reader takes it."""
    if folder.staged:
        shutil.rmtree(folder.target, ignore_errors=True)


def claim(output: str) -> int:
    """Hold ``OUT.lock`` with an exclusive ``flock`` for as long as this process writes ``output``.

    Two jobs into one folder would remove each other's staging folder and the
    last to finish would silently replace the first one's output; the second
    is refused instead. The kernel drops the lock when its process ends, so a
    killed job never leaves the folder claimed.

    Raises:
        JobError: another running job holds the claim (its pid in the line), or the folder cannot be written.
    """
    path = output + CLAIM_SUFFIX
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
                os.close(fd)
                raise JobError(
                    f"output {output!r} is being written by another boxweight prepare ({holder}); "
                    "wait for it to finish, or choose another folder"
                ) from None
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # its holder removed it between our open and our lock: claim the file there now
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%H:%M:%S UTC', time.gmtime())}\n".encode())
        return fd
    except OSError as exc:
        raise JobError(f"output {output!r} is not writable: {exc}") from None


def release(folder: OutputFolder) -> None:
    """Give up the claim taken by :func:`claim` (removed while still held, so no one takes a stale file)."""
    if folder.claim is None:
        return
    with contextlib.suppress(OSError):
        os.unlink(folder.final + CLAIM_SUFFIX)
    os.close(folder.claim)
