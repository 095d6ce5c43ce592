"""``boxweight prepare``: annotations -> validated records -> statistics -> weights -> shards + report.

Run ``boxweight prepare --input PATH --output DIR`` (or ``python -m
beam_jobs.prepare ...``); any Beam pipeline option may follow, and anything
else is refused. Without ``--runner`` it runs locally and offline on every
core (:mod:`beam_jobs.local`); ``--runner=DataflowRunner`` runs it on
Dataflow (:mod:`beam_jobs.dataflow`). The output folder is written as one
unit (:mod:`beam_jobs.output`), with ``manifest.json`` last.

Where the rest lives: the job as one transform, :mod:`beam_jobs.pipeline`;
the launcher (arguments -> plan -> run -> publish), :mod:`beam_jobs.launcher`;
the report and manifest, :mod:`beam_jobs.report_sink`; Ctrl-C,
:mod:`beam_jobs.interrupts`. This module turns a run into an exit code and
one line a user reads.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence

from beam_jobs import failures, interrupts
from beam_jobs.heap import decodes, launcher_heap
from beam_jobs.launcher import launch, run
from beam_jobs.options import JobError, PrepareOptions, help_text, parse

__all__ = ["main", "run"]


def main(argv: Sequence[str] | None = None) -> int:
    """``boxweight prepare`` / ``python -m beam_jobs.prepare``: exit 0, 1 (the job failed), 2 (usage) or 130 (Ctrl-C)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if decodes(argv):
        launcher_heap()  # set as the decoding workers' are, before the runner's threads take arenas (beam_jobs.heap)
    if not argv or argv[0] in ("-h", "--help"):
        print(help_text(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    status, message, became = 0, "", "the output folder was left as it was"
    output = ""
    runner_errors: list = []
    with interrupts.Watch() as watch:
        try:
            options = parse(argv)
            output = options.view_as(PrepareOptions).output
            with failures.runner_errors_held() as runner_errors:
                done = launch(options, argv)
            # a Ctrl-C that no code here saw: the job went on to its end
            became = "the dry run had finished" if "dry_run" in done else interrupts.finished_line(output)
        except JobError as exc:
            status, message = exc.exit_code, str(exc)
        except KeyboardInterrupt as exc:
            watch.interrupted.set()
            became = str(exc) or became
        except Exception as exc:
            if watch.interrupted.is_set():
                pass
            elif failures.disk_full(exc):  # one line the user can act on; the runner's tracebacks say no more
                runner_errors.clear()
                status, message = 1, (
                    f"boxweight prepare: error: no space left on the disk of {output!r} while the job wrote it; "
                    "the output folder was left as it was (free space, or choose another --output)"
                )
            else:  # a worker error: the runner's account and the traceback, then what became of the output
                failures.write_held(runner_errors)
                traceback.print_exc()
                status, message = 1, "boxweight prepare: error: the job failed (see above); the output folder was left as it was"
    if watch.interrupted.is_set():
        runner_errors.clear()
        status, message = 130, f"boxweight prepare: interrupted; {became}"
    failures.write_held(runner_errors)  # a run that went on after them: they were not its failure
    watch.show_held()
    if message:  # last, after any held thread errors: the line a user reads
        print(message, file=sys.stderr)
    return status


if __name__ == "__main__":
    # Run the module imported by name, so workers unpickle its classes by reference.
    from beam_jobs import prepare as _job

    code = _job.main()
    interrupts.exiting()
    sys.exit(code)
