"""Worker processes of the local runner: started ahead of need, and quick to exit.

The local default runner (``beam_jobs.prepare.local_runner``) is Beam's
FnApiRunner with one worker process per core, each running
``python -m beam_jobs.local_worker``. On a 10k-image job on 2 cores two costs
of Beam's own worker (``sdk_worker_main``) were large (measured):

* **Start**: a worker imports Beam (pandas, pyarrow, grpc) before it can take
  work: 1.3-1.5 s of CPU each, and the runner starts its workers only when
  the first stage runs. So the job starts :class:`Standbys` first: one
  process imports Beam while the pipeline is being built, forks one copy per
  further worker, and each waits on a Unix socket.
  The runner's command (:func:`main`) is a small process that hands its
  environment (the worker settings: ``CONTROL_API_SERVICE_DESCRIPTOR``,
  ``PIPELINE_OPTIONS``, ``WORKER_ID``...) to a free standby, and exits with the standby's
  status when the harness ends. With no standby free, it runs the harness
  itself, as Beam's worker does.
* **Stop**: once the runner closes the control channel, every bundle is done
  and every output file closed; what is left is the interpreter tearing down
  Beam's imports, about 0.6 s, and the runner stops its workers one after
  another. A harness that returns normally exits at once (``os._exit``); one
  that fails exits the usual way, with its traceback and a non-zero status.

This module imports nothing from Beam at the top: the runner's command must
start fast.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import traceback

STANDBY_DIR = "BOXWEIGHT_STANDBY_DIR"  # environment variable: the folder of the standbys' sockets
_ACK_TIMEOUT = 120.0  # seconds a worker command waits for a standby to take it (the import takes about 2)


def _run_harness() -> int:
    """Beam's SDK harness with this process's environment; 0 when it returns normally."""
    from apache_beam.runners.worker import sdk_worker_main

    try:
        sdk_worker_main.main(sys.argv)
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def _exit_now(status: int) -> None:
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def standby_count(argv: list[str]) -> int | None:
    """How many workers the local default runner will start for job arguments ``argv``; None if it is not used.

    Read from the arguments alone (no Beam import), so a command can start
    the standbys before it imports Beam itself.
    """
    count = None
    for i, arg in enumerate(argv):
        if arg == "--runner" or arg.startswith("--runner="):
            return None
        if arg.startswith("--direct_num_workers="):
            count = arg.split("=", 1)[1]
        elif arg == "--direct_num_workers" and i + 1 < len(argv):
            count = argv[i + 1]
    try:
        n = int(count) if count is not None else 0
    except ValueError:
        n = 0  # Beam reports the bad value when it parses the options
    return n if n > 0 else os.cpu_count() or 1


class Standbys:
    """Worker processes started ahead of need, each waiting with Beam imported.

    One process imports Beam and the job's modules, then forks the others, so
    the import is paid once rather than once per worker. Use as a context
    manager around the pipeline run: it points the runner's workers at the
    standbys (an environment variable the runner's processes inherit) and,
    on exit, ends the standbys no worker attached to.
    """

    def __init__(self, count: int) -> None:
        self.dir = tempfile.mkdtemp(prefix="boxweight-workers-")
        self.leader = subprocess.Popen(
            [sys.executable, "-m", "beam_jobs.local_worker", "--standbys", self.dir, str(count)],
            stdin=subprocess.PIPE,
        )
        self._previous = os.environ.get(STANDBY_DIR)
        os.environ[STANDBY_DIR] = self.dir

    def __enter__(self) -> Standbys:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._previous is None:
            os.environ.pop(STANDBY_DIR, None)
        else:
            os.environ[STANDBY_DIR] = self._previous
        if self.leader.stdin is not None:  # every unattached standby exits when this input closes
            self.leader.stdin.close()
        try:
            self.leader.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.leader.kill()
            self.leader.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def _standbys(folder: str, count: int) -> None:
    """Listen on every socket first (a worker can connect at once), import, fork, serve one worker each."""
    servers = []
    for k in range(count):
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(os.path.join(folder, f"{k}.sock"))
        server.listen(1)
        servers.append(server)
    attached = _watch_input()  # a job that fails fast ends its standbys at once, mid-import
    # the slow imports, done once: Beam's harness, and the job's own modules its steps unpickle
    from apache_beam.runners.worker import sdk_worker_main  # noqa: F401

    import beam_jobs.transforms  # noqa: F401

    mine = 0
    for k in range(1, count):  # the watching thread blocks in a system call and holds no lock
        if os.fork() == 0:
            mine = k
            attached = _watch_input()  # threads do not survive a fork
            break
    for k, server in enumerate(servers):
        if k != mine:
            server.close()
    _serve(servers[mine], attached)


def _watch_input() -> threading.Event:
    """Exit when the job's input pipe closes (the job ended, or died) unless a worker attached."""
    attached = threading.Event()

    def watch() -> None:
        while os.read(0, 1 << 16):  # os.read, not sys.stdin: no buffer lock held across a fork
            pass
        if not attached.is_set():
            os._exit(0)

    threading.Thread(target=watch, daemon=True).start()
    return attached


def _serve(server: socket.socket, attached: threading.Event) -> None:
    conn, _ = server.accept()
    attached.set()
    path = server.getsockname()
    server.close()
    os.unlink(path)
    with conn, conn.makefile("rwb") as stream:
        line = stream.readline()
        if not line:  # the worker command gave up waiting and runs the harness itself
            os._exit(0)
        settings = json.loads(line)
        os.environ.clear()  # exactly the worker command's environment, as if the runner had started this process
        os.environ.update(settings)
        stream.write(b"ok\n")
        stream.flush()
        status = _run_harness()
        stream.write(f"{status}\n".encode())
        stream.flush()
    _exit_now(status)


def _attach(folder: str) -> int | None:
    """Hand this worker's settings to a free standby; its exit status, or None if none was free."""
    settings = dict(os.environ)  # the runner's worker settings, and whatever else it passed
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return None
    for name in names:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.settimeout(_ACK_TIMEOUT)  # a standby stuck before serving must not hang the job
            conn.connect(os.path.join(folder, name))
            with conn, conn.makefile("rwb") as stream:
                stream.write(json.dumps(settings).encode() + b"\n")
                stream.flush()
                if stream.readline() != b"ok\n":
                    continue  # another worker took this one
                conn.settimeout(None)  # the harness runs as long as the job needs it
                status = stream.readline().strip()
        except OSError:
            conn.close()
            continue
        return int(status) if status.isdigit() else 1  # no status: the standby died
    return None


def main() -> None:
    # Ctrl-C reaches every process of the terminal's group: a worker ends at once and
    # silently (the default action, no KeyboardInterrupt traceback); the job's own
    # process reports the interruption in one line (see prepare.main).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if len(sys.argv) == 4 and sys.argv[1] == "--standbys":
        _standbys(sys.argv[2], int(sys.argv[3]))
        return
    folder = os.environ.get(STANDBY_DIR)
    status = _attach(folder) if folder else None
    if status is None:
        status = _run_harness()
    if status:
        sys.exit(status)
    _exit_now(0)


if __name__ == "__main__":
    main()
