"""The launcher: arguments -> read plan -> pipeline run -> published output.

:func:`run` is the job as a function (``run([...])`` in a test); ``boxweight prepare``
(:mod:`beam_jobs.prepare`) adds the exit codes and the one-line messages.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import shutil
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions, TestOptions
from apache_beam.runners.runner import PipelineRunner

import readers
from beam_jobs import dataflow, progress
from beam_jobs.interrupts import finished_line, interrupts_held
from beam_jobs.local import IN_PROCESS_RUNNER, local_runner
from beam_jobs.options import JobError, PrepareOptions, check_classes, check_weights, parse, scheme_params
from beam_jobs.output import OutputFolder, discard, prepare_output, publish, release
from beam_jobs.pipeline import Prepare
from beam_jobs.report_sink import refuse_unreadable
from readers.raw import SourceError
from schemas.label_map import LabelMap
from storage import fs
from storage.terminal import Progress
from weighting import report
from weighting.schemes import WeightingError

log = logging.getLogger(__name__)


def run(argv: Sequence[str] | None = None, *, print_report: bool = True) -> dict[str, Any]:
    """Run the job; returns the ``stats.json`` document (``{"dry_run": ...}`` for a Dataflow dry run).

    Raises:
        JobError: an unknown flag, missing input, unknown format or scheme,
            an output folder that is not empty (without ``--overwrite``) or
            not writable, an annotation file a worker could not read at all
            (see ``beam_jobs.read.Read``), or no valid image at all.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    return launch(parse(argv), argv, print_report=print_report)


def launch(options: PipelineOptions, argv: list[str], *, print_report: bool = True) -> dict[str, Any]:
    """Run the job of parsed ``options`` (:func:`beam_jobs.options.parse` of ``argv``, which is kept for
    the report's command line and for what the user typed about the runner). Raises as :func:`run`."""
    opts = options.view_as(PrepareOptions)
    command = "boxweight prepare " + shlex.join(argv)
    try:
        fixed = _label_map(opts.label_map) if opts.label_map else None
        read_plan = readers.plan(opts.input, opts.format, opts.image_root, fixed)
    except (SourceError, WeightingError, ValueError, OSError) as exc:
        raise JobError(str(exc)) from None
    runner, processes = local_runner(argv, options, read_plan.images, decode=opts.pixel_check == "decode")
    return _run(options, runner, processes, read_plan, command, print_report)



def _label_map(path: str) -> LabelMap:
    try:
        return LabelMap.from_pbtxt(fs.read_text(path), path)
    except UnicodeDecodeError as exc:
        raise JobError(f"--label-map {path}: not UTF-8 text (byte {exc.start}); a label_map.pbtxt is UTF-8") from None
    except OSError as exc:
        raise JobError(f"--label-map {path}: cannot be read: {exc.strerror or exc}") from None


def _run(
    options: PipelineOptions,
    runner: PipelineRunner | None,
    processes: bool,
    read_plan: readers.ReadPlan,
    command: str,
    print_report: bool,
) -> dict[str, Any]:
    opts = options.view_as(PrepareOptions)
    params = scheme_params(opts)
    opts.format = read_plan.format
    label_map = read_plan.label_map
    check_classes(opts, label_map, opts.label_map or opts.input)
    check_weights(opts, params, label_map.names)
    runner_name = options.view_as(StandardOptions).runner or ""
    dry_run = bool(options.view_as(TestOptions).dry_run)
    on_dataflow = "dataflow" in runner_name.lower()  # Beam takes DataflowRunner, dataflow, a full class path
    if dry_run and not on_dataflow:
        raise JobError("--dry_run only applies to --runner=DataflowRunner (a local run would run the whole job)")
    if on_dataflow and "://" not in opts.output and not dry_run:
        raise JobError(f"--output {opts.output!r} is a local path; Dataflow workers need gs://")
    # a dry run translates the job and writes nothing, so it needs no output folder
    folder = (
        OutputFolder(opts.output, opts.output) if dry_run else prepare_output(opts.output, opts.overwrite, opts.input)
    )
    published: str | None = None
    progress_dir: str | None = None
    try:  # from here on, a failure or Ctrl-C removes what the job staged, at any point
        workers = options.view_as(DirectOptions).direct_num_workers
        where = runner_name or (f"local, {workers} worker processes" if processes else "local, in this process")
        if read_plan.itemized:
            parts = "annotation files listed once and read in parallel"
        else:
            parts = f"{len(read_plan.parts)} annotation files read in parallel" if len(read_plan.parts) > 1 else "annotations read as one stream"
        log.info("prepare: %s as %s, %d classes, %s, runner %s", opts.input, read_plan.format, len(label_map), parts, where)

        line = Progress()
        local = runner is not None or runner_name == IN_PROCESS_RUNNER
        progress_dir = tempfile.mkdtemp(prefix="boxweight-progress-") if local and line.on else None
        pipeline = beam.Pipeline(runner=runner, options=options)
        _ = pipeline | "Prepare" >> Prepare(opts, read_plan, command, params, folder.target, progress_dir)
        watcher = progress.Watcher(progress_dir, line, len(read_plan.parts), workers=processes) if progress_dir else None
        with watcher or contextlib.nullcontext():
            result = pipeline.run()  # a local run returns when the job has ended
        remote = on_dataflow and not dry_run
        try:
            if remote:
                dataflow.follow(result, options, line)
            result.wait_until_finish()
            if not dry_run:
                refuse_unreadable(result, folder.target)
        except KeyboardInterrupt:
            if remote:  # Ctrl-C stops the following, not the job
                raise KeyboardInterrupt(dataflow.goes_on(result.job_id(), options)) from None  # type: ignore[attr-defined]
            raise
        if dry_run:
            summary = dataflow.translated(result.job.proto_pipeline)  # type: ignore[attr-defined]  # set by DataflowRunner's dry run
            if print_report:
                print(
                    f"dry run: the job translates for {runner_name}: {len(summary['stages'])} stages, {summary['transforms']} "
                    f"transforms, workers in {', '.join(summary['containers'])}; nothing was submitted or written"
                )
            return {"dry_run": summary}
        with interrupts_held():  # the folder is renamed whole, and the flag says so, before a Ctrl-C is taken
            publish(folder)
            published = folder.final
        doc = report.load(folder.final).attrs["stats"]
        if print_report:
            print(report.render_table(doc))
            print(f"outputs in {folder.final}")
    except KeyboardInterrupt:
        if published:  # only the report's printing was cut
            raise KeyboardInterrupt(finished_line(published)) from None
        discard(folder)
        raise
    except BaseException:
        if not published:
            discard(folder)  # a failed job leaves nothing a reader accepts
        raise
    finally:
        release(folder)
        if progress_dir:
            shutil.rmtree(progress_dir, ignore_errors=True)
    if doc["totals"]["images_written"] == 0:
        raise JobError(f"no valid image in {opts.input}; see {fs.join(folder.final, 'rejects.jsonl')}", exit_code=1)
    return doc
