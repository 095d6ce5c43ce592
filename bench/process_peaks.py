"""Peak memory of every process of a command, launcher and local workers apart.

    .venv/bin/python -m bench.process_peaks [--every 1.0] -- COMMAND [ARGS...]

Runs the command, reads ``VmHWM`` (the peak resident set) from ``/proc/PID/status`` of
it and of all its descendants every ``--every`` seconds, and prints each process's
peak, largest first, with its wall time. ``resource.getrusage`` gives only the largest
child's peak, not which process it was; the job's launcher and its workers peak apart.
Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue  # ended while we looked
    return found


def _peak_mb(pid: int) -> tuple[int, str] | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            hwm = int(f.read().split("VmHWM:")[1].split()[0]) // 1024
        with open(f"/proc/{pid}/cmdline") as f:
            return hwm, f.read().replace("\0", " ").strip()[:80]
    except (OSError, IndexError, ValueError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", type=float, default=1.0, help="seconds between samples")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    start = time.perf_counter()
    job = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    peaks: dict[int, tuple[int, str]] = {}
    while job.poll() is None:
        todo, tree = [job.pid], []
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo += _children(pid)
        for pid in tree:
            seen = _peak_mb(pid)
            if seen and seen[0] >= peaks.get(pid, (0, ""))[0]:
                peaks[pid] = seen
        time.sleep(args.every)
    print(f"exit {job.returncode} after {time.perf_counter() - start:.1f} s; peak resident set by process:")
    for mb, cmd in sorted(peaks.values(), reverse=True):
        print(f"{mb:>6} MB  {cmd}")


if __name__ == "__main__":
    main()
