"""The prepare job: annotations -> validated records -> statistics -> weights -> shards + report.

Run ``boxweight prepare --input PATH --output DIR`` (or ``python -m
beam_jobs.prepare ...``); any Beam pipeline option may follow, and anything
else is refused. Without ``--runner`` it runs locally and offline on every
core (Beam's FnApiRunner with one worker process per core, or in this
process for a small job, see :func:`local_runner`); ``--runner=DataflowRunner`` runs it on Dataflow. The
output folder is written as one unit (see :mod:`beam_jobs.output`), with
``manifest.json`` last.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import json
import logging
import os
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import apache_beam as beam
import google_crc32c
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import (
    DirectOptions,
    GoogleCloudOptions,
    PipelineOptions,
    StandardOptions,
    TestOptions,
)
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner
from apache_beam.runners.runner import PipelineRunner, PipelineState
from apache_beam.transforms.environments import SubprocessSDKEnvironment
from apache_beam.typehints.decorators import no_annotations

import readers
from beam_jobs import NAMESPACE, failures, progress
from beam_jobs.combine import Merge
from beam_jobs.options import (
    JobError,
    PrepareOptions,
    check_classes,
    check_known_flags,
    check_options,
    check_weights,
    scheme_params,
)
from beam_jobs.output import OutputFolder, discard, prepare_output, publish, release
from beam_jobs.read import ReadAnnotations
from beam_jobs.rejects import WriteSortedParts, merge_parts, reject_line
from beam_jobs.shards import WriteShards
from beam_jobs.split import SplitTrainVal
from beam_jobs.statistics import ClassStatistics
from beam_jobs.thumbnails import Thumbnails
from beam_jobs.validate import ACCOUNTS, REJECTS, Validate
from boxweight.progress import Progress
from readers import fs
from readers.raw import SourceError
from schemas import tfds_metadata
from schemas.features import SCHEMA_VERSION
from schemas.label_map import LabelMap
from schemas.manifest import MANIFEST_NAME, FileEntry, build_manifest
from weighting import report
from weighting.apply import WeightPlan
from weighting.report import page
from weighting.report.thumbnails import Thumbnail
from weighting.schemes import BoxMultipliers, WeightingError
from weighting.stats import SplitStats

log = logging.getLogger(__name__)
REJECT_PARTS = "_rejects-parts"  # sorted parts of rejects.jsonl, merged and removed before the manifest
IN_PROCESS_RUNNER = (
    "apache_beam.runners.portability.fn_api_runner.fn_runner.FnApiRunner"  # --runner= value: this process only
)


#: Below this many images (as the launcher counts them) the local default runs in this process: starting a
#: worker per core, each importing Beam and (then) TensorFlow, cost 3-4 s more than it saved on the shared
#: datasets (289-image chess-coco: 10.6 s with workers, 8.3 s without), and at 10,000 the two were within 5%.
#: Not measured again since the workers stopped importing TensorFlow.
SMALL_JOB_IMAGES = 5_000


#: glibc's malloc serves blocks from this size up with their own mappings, returned to the system when freed
#: (``MALLOC_MMAP_THRESHOLD_``, set for the local workers unless the environment sets it). By default glibc
#: raises this limit each time such a block is freed, after which image files, packed chunks and the data
#: channel's buffers are carved from the heap and leave it fragmented: at 200,000 images each worker peaked at
#: about 1,020 MB; with the limit fixed at 64 KiB, 900 MB (at 128 KiB, 930). Set only for jobs that decode
#: every image: a fixed limit also made the 50,000-photo header-only job about 5% slower (more blocks mapped
#: and unmapped), where its workers stay near 400 MB without it. Measured again once the pixel check no longer
#: imported TensorFlow (200,000 images, decode): the COCO-parsing worker peaked at 771 MB with it and 824 MB
#: without, in 126 and 123 s; at 50,000 127 KB photos it cost 3-7% of the time (57.8-60.4 s against 56.0 s).
#: Kept for the memory. Other C libraries ignore the variable.
WORKER_MMAP_THRESHOLD = 64 << 10
#: glibc's malloc arenas for the launcher and the local workers (``MALLOC_ARENA_MAX``, unless the environment
#: sets it), in jobs that decode every image. The launcher passes every shuffle of the FnApiRunner through its
#: data-channel threads, and glibc gives each thread an arena of its own that stays fragmented: at 200,000
#: images the launcher peaked at 702 MB with neither setting, and, both set in the environment, 639 MB with 2
#: arenas and 569-578 MB with 2 arenas and the fixed mmap threshold (the workers unchanged, 518 and 335 MB).
ARENA_MAX = 2
_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8  # glibc's mallopt parameters (malloc.h)


def launcher_heap() -> None:
    """This process's malloc set as the decoding workers' (:data:`WORKER_MMAP_THRESHOLD`, :data:`ARENA_MAX`), where
    glibc is the C library and the environment does not set them. Called first thing in :func:`main`, before
    any thread of the runner has an arena. At 200,000 images the launcher then peaked at 614-617 MB (702 MB
    without); the same two set in the environment before the interpreter starts gave 569-578 MB, which
    ``mallopt`` cannot reach once Python has started (603 MB even before any import)."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc: nothing to set
        return
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        mallopt(_M_MMAP_THRESHOLD, WORKER_MMAP_THRESHOLD)
    if "MALLOC_ARENA_MAX" not in os.environ:
        mallopt(_M_ARENA_MAX, ARENA_MAX)


def local_runner(
    argv: list[str], images: int | None = None, decode: bool = True
) -> tuple[list[str], PipelineRunner | None]:
    """The local default: Beam's FnApiRunner with one SDK worker process per core, or in this
    process alone for a job of fewer than :data:`SMALL_JOB_IMAGES` images (``images``, when known).

    Returns the arguments and the runner, or ``(argv, None)`` when ``argv``
    names a runner. ``--direct_num_workers`` asks for worker processes,
    whatever the size. Chosen explicitly because ``DirectRunner`` first tries
    the Prism runner, which downloads a binary; offline that logs an error
    before falling back. This is the FnApiRunner's multi-processing mode and Beam's
    own worker (``sdk_worker_main``, through ``beam_jobs.worker``) with one
    change: a terminal sends Ctrl-C to every process of its group, and a
    worker that gets it while its interpreter starts prints a fatal error and
    a traceback, so the worker starts with Ctrl-C ignored, then lets it end
    the worker silently; this process reports it once (see ``main``).
    With ``decode`` (``--pixel-check decode``) the workers also start with
    glibc's mmap threshold fixed (:data:`WORKER_MMAP_THRESHOLD`) and its arenas
    limited (:data:`ARENA_MAX`), as the launcher does (:func:`launcher_heap`),
    unless the environment sets them. Beam's ``--direct_running_mode=multi_processing``
    picks the same runner with the unwrapped command.
    """
    if any(a == "--runner" or a.startswith("--runner=") for a in argv):
        return argv, None
    counted = any(a.startswith("--direct_num_workers") for a in argv)
    if images is not None and images < SMALL_JOB_IMAGES and not counted:
        return argv, FnApiRunner()  # Beam's in-process default: the same runner, no worker processes
    heap = ""
    if decode:
        heap = (f"export MALLOC_MMAP_THRESHOLD_=${{MALLOC_MMAP_THRESHOLD_:-{WORKER_MMAP_THRESHOLD}}} "
                f"MALLOC_ARENA_MAX=${{MALLOC_ARENA_MAX:-{ARENA_MAX}}}; ")
    worker = f"trap '' INT; {heap}exec {shlex.quote(sys.executable)} -m beam_jobs.worker"  # run by /bin/sh
    runner = FnApiRunner(default_environment=SubprocessSDKEnvironment.from_command_string(worker))
    # FnApiRunner warns that several workers want multi-processing mode; this is that mode
    logging.getLogger("apache_beam.runners.portability.fn_api_runner.fn_runner").addFilter(_drop_multi_processing_note)
    if counted:
        return argv, runner
    return argv + [f"--direct_num_workers={os.cpu_count() or 1}"], runner


def _drop_multi_processing_note(record: logging.LogRecord) -> bool:
    return "direct_num_workers is not equal to 1" not in record.getMessage()


class Prepare(beam.PTransform):
    """The whole job as one transform: every stage labelled, in data-flow order."""

    def __init__(
        self,
        opts: PrepareOptions,
        plan: readers.ReadPlan,
        command: str,
        params: dict[str, Any],
        target: str,
        progress_dir: str | None = None,
    ) -> None:
        """Args: the job's flags; the read plan (format, label map, the parts to read) and the
        scheme parameters as values, resolved on the launcher; the command line for the report; the
        folder the pipeline writes into (the staging folder of a local output); the
        scratch folder of the progress line (see :mod:`beam_jobs.progress`), or None."""
        super().__init__()
        self.opts, self.plan, self.command, self.params, self.target = opts, plan, command, params, target
        self.label_map = plan.label_map
        self.progress_dir = progress_dir

    @no_annotations  # returns no single PCollection: Beam 2.78 warns of any other annotation
    def expand(self, pbegin: beam.pvalue.PBegin) -> None:
        o, lm, tally = self.opts, self.label_map, self.progress_dir
        read = pbegin | "ReadAnnotations" >> ReadAnnotations(self.plan, tally)
        checked = read.chunks | "Validate" >> Validate(
            lm, o.max_image_mb << 20, tally, decode=o.pixel_check == "decode", max_boxes=o.max_boxes_per_image
        )
        split = checked.records | "SplitTrainVal" >> SplitTrainVal(o.val_fraction)
        records = split.chunks
        stats = records | "ClassStatistics" >> ClassStatistics()
        plan = stats | "WeightsFromStatistics" >> beam.combiners.ToList() | beam.Map(self._plan)
        # weights attach after the shard shuffle, on the writing worker (see WriteShards)
        shards = records | "AttachWeightsEncodeAndWriteShards" >> WriteShards(
            self.target,
            o.num_shards,
            o.compression,
            o.max_side or None,
            plan=beam.pvalue.AsSingleton(plan),
            progress_dir=tally,
        )
        pictures = records | "Thumbnails" >> Thumbnails()
        reject_parts = (
            checked[REJECTS]
            | "RejectLines" >> beam.Map(reject_line)
            | "WriteRejectParts" >> WriteSortedParts(fs.join(self.target, REJECT_PARTS))
        )
        accounting = checked[ACCOUNTS] | "Account" >> beam.CombineGlobally(Merge(readers.Accounting))
        _ = (
            pbegin
            | "ReportSeed" >> beam.Create([None])
            | "WriteReport"
            >> beam.Map(
                self._write_report,
                beam.pvalue.AsList(stats),
                beam.pvalue.AsSingleton(plan),
                beam.pvalue.AsSingleton(accounting),
                beam.pvalue.AsList(reject_parts),
                beam.pvalue.AsList(shards),
                beam.pvalue.AsDict(pictures),
                beam.pvalue.AsList(read.unreadable),
                beam.pvalue.AsSingleton(split.summary),
            )
        )

    def _plan(self, stats: list[tuple[str, SplitStats]]) -> WeightPlan:
        o = self.opts
        by_split = dict(stats)
        train = by_split.get("train") or SplitStats()
        return WeightPlan.from_stats(
            train,
            self.label_map.names,
            o.scheme,
            normalize=o.normalize,
            max_weight=o.max_weight,
            repeat_threshold=o.repeat_threshold,
            multipliers=BoxMultipliers(o.difficult_weight, o.crowd_weight, o.truncated_weight),
            **self.params,
        )

    def _write_report(
        self,
        _: Any,
        stats: list,
        plan: WeightPlan,
        acc: readers.Accounting,
        reject_parts: list[tuple[str, int]],
        shards: list[FileEntry],
        pictures: dict[str, list[Thumbnail]],
        unreadable: list[str],
        carve: dict[str, Any] | None,
    ) -> None:
        if unreadable:  # no report of a job that lost whole files: the launcher refuses it with these lines
            _write_file(self.target, UNREADABLE_NAME, "".join(f"{line}\n" for line in sorted(unreadable)))
            return
        o = self.opts
        doc = report.build_stats(
            dict(stats),
            plan,
            self.label_map,
            acc.totals(),
            command=self.command,
            input_info={
                "path": o.input,
                "format": o.format,
                "image_root": o.image_root,
                "pixel_check": o.pixel_check,
                "shards": sorted(s.name for s in shards),
                "val_carve": carve,  # None: the source's own splits (or --val-fraction 0)
            },
        )
        parts = sorted(path for path, _ in reject_parts)
        shown: list[dict[str, Any]] = []

        def rejects() -> Iterator[str]:  # merged and written as a stream; the first lines kept for the page
            for line in merge_parts(parts):
                if len(shown) < page.REJECTS_SHOWN:
                    shown.append(json.loads(line))
                yield line

        files = [_write_lines(self.target, "rejects.jsonl", rejects())]
        if parts:
            FileSystems.delete(parts)
        fs.remove_empty_folder(fs.join(self.target, REJECT_PARTS))
        texts = {
            "stats.json": report.dumps(doc),
            "report.csv": report.to_csv(doc),
            "label_map.pbtxt": self.label_map.to_pbtxt(),
            "report.html": page.render(doc, shown, sum(n for _, n in reject_parts), pictures),
            **tfds_metadata.metadata_files(shards, self.label_map, f"boxweight output; {self.command}"),
        }
        files += [_write_file(self.target, name, text) for name, text in texts.items()]
        manifest = build_manifest(shards, files, SCHEMA_VERSION, self.label_map)
        _write_file(self.target, MANIFEST_NAME, manifest.to_json())  # last: it makes the folder complete


#: Written in place of the report when an annotation file could not be read at all (see ``beam_jobs.read.Read``).
UNREADABLE_NAME = "unreadable.txt"


def _refuse_unreadable(target: str) -> None:
    """Raise JobError with the lines of the annotation files the job could not read, if any."""
    path = fs.join(target, UNREADABLE_NAME)
    if fs.exists(path):
        raise JobError("; ".join(fs.read_text(path).splitlines()), exit_code=1)


def translated(proto: Any) -> dict[str, Any]:
    """What a dry run translated: the job's stages in order, those of its read, its leaf transforms and the worker containers."""
    transforms, environments = proto.components.transforms, proto.components.environments
    (job,) = [t for t in transforms.values() if t.unique_name == "Prepare"]
    leaves, todo = [], list(job.subtransforms)
    while todo:
        t = transforms[todo.pop(0)]
        if t.subtransforms:
            todo[:0] = list(t.subtransforms)
        else:
            leaves.append(t)
    images = set()
    for t in leaves:
        if t.environment_id:
            payload = beam_runner_api_pb2.DockerPayload.FromString(environments[t.environment_id].payload)
            images.add(payload.container_image)
    (read,) = [transforms[tid] for tid in job.subtransforms if transforms[tid].unique_name == "Prepare/ReadAnnotations"]
    return {
        "stages": [transforms[tid].unique_name.removeprefix("Prepare/") for tid in job.subtransforms],
        "read": [transforms[tid].unique_name.removeprefix("Prepare/ReadAnnotations/") for tid in read.subtransforms],
        "transforms": len(leaves),
        "containers": sorted(images),
    }


def _follow_dataflow(result: Any, options: PipelineOptions, line: Progress) -> None:
    """Name the Dataflow job and, on a terminal, show its counters until it ends."""
    gcp = options.view_as(GoogleCloudOptions)
    job = result.job_id()
    print(
        f"Dataflow job {job}: https://console.cloud.google.com/dataflow/jobs/{gcp.region}/{job}?project={gcp.project}",
        file=sys.stderr,
    )
    while line.on and not PipelineState.is_terminal(result.state):
        counters = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
        line.show(
            progress.dataflow_line({c.key.metric.name: c.committed or c.attempted or 0 for c in counters}, result.state)
        )
        time.sleep(10)
    line.clear()


def finished(output: str) -> str:
    """What a Ctrl-C that came after the output was published leaves."""
    return f"the job had finished: its outputs in {os.path.normpath(output) if '://' not in output else output} are complete"


def dataflow_goes_on(job: str, options: PipelineOptions) -> str:
    """What an interrupt while following a Dataflow job leaves: the job, still running, and how to stop it."""
    gcp = options.view_as(GoogleCloudOptions)
    return (
        f"the Dataflow job {job} goes on and will write {options.view_as(PrepareOptions).output}; stop it with "
        f"gcloud dataflow jobs cancel {job} --region {gcp.region} --project {gcp.project}"
    )


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


def _write_lines(folder: str, name: str, lines: Iterable[str]) -> FileEntry:
    """Write text lines as they come (a file too large to hold); its manifest entry."""
    crc, size, it = 0, 0, iter(lines)
    with FileSystems.create(fs.join(folder, name), compression_type="uncompressed") as f:
        while batch := list(itertools.islice(it, 4096)):
            data = "".join(batch).encode("utf-8")
            crc, size = google_crc32c.extend(crc, data), size + len(data)
            f.write(data)
    return FileEntry(name, size, f"{crc:08x}")


def _write_file(folder: str, name: str, text: str) -> FileEntry:
    data = text.encode("utf-8")
    with FileSystems.create(fs.join(folder, name), compression_type="uncompressed") as f:
        f.write(data)
    return FileEntry(name, len(data), f"{google_crc32c.value(data):08x}")


def run(argv: Sequence[str] | None = None, *, print_report: bool = True) -> dict[str, Any]:
    """Run the job; returns the ``stats.json`` document.

    Raises:
        JobError: an unknown flag, missing input, unknown format or scheme,
            an output folder that is not empty (without ``--overwrite``) or
            not writable, an annotation file a worker could not read at all
            (see ``beam_jobs.read.Read``), or no valid image at all.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    command = "boxweight prepare " + shlex.join(argv)
    check_known_flags(argv)
    opts = PipelineOptions(argv).view_as(PrepareOptions)
    check_options(opts)
    try:
        fixed = _label_map(opts.label_map) if opts.label_map else None
        plan = readers.plan(opts.input, opts.format, opts.image_root, fixed)
    except (SourceError, WeightingError, ValueError, OSError) as exc:
        raise JobError(str(exc)) from None
    argv, runner = local_runner(argv, plan.images, decode=opts.pixel_check == "decode")
    processes = any(a.startswith("--direct_num_workers") for a in argv)
    return _run(PipelineOptions(argv), runner, processes, plan, command, print_report)


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
    plan: readers.ReadPlan,
    command: str,
    print_report: bool,
) -> dict[str, Any]:
    opts = options.view_as(PrepareOptions)
    params = scheme_params(opts)
    opts.format = plan.format
    label_map = plan.label_map
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
        if plan.itemized:
            parts = "annotation files listed once and read in parallel"
        else:
            parts = f"{len(plan.parts)} annotation files read in parallel" if len(plan.parts) > 1 else "annotations read as one stream"
        log.info("prepare: %s as %s, %d classes, %s, runner %s", opts.input, plan.format, len(label_map), parts, where)

        line = Progress()
        local = runner is not None or runner_name == IN_PROCESS_RUNNER
        progress_dir = tempfile.mkdtemp(prefix="boxweight-progress-") if local and line.on else None
        pipeline = beam.Pipeline(runner=runner, options=options)
        _ = pipeline | "Prepare" >> Prepare(opts, plan, command, params, folder.target, progress_dir)
        watcher = progress.Watcher(progress_dir, line, len(plan.parts), workers=processes) if progress_dir else None
        with watcher or contextlib.nullcontext():
            result = pipeline.run()  # a local run returns when the job has ended
        remote = on_dataflow and not dry_run
        try:
            if remote:
                _follow_dataflow(result, options, line)
            result.wait_until_finish()
            if not dry_run:
                _refuse_unreadable(folder.target)
        except KeyboardInterrupt:
            if remote:  # Ctrl-C stops the following, not the job
                raise KeyboardInterrupt(dataflow_goes_on(result.job_id(), options)) from None  # type: ignore[attr-defined]
            raise
        if dry_run:
            summary = translated(result.job.proto_pipeline)  # type: ignore[attr-defined]  # set by DataflowRunner's dry run
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
            raise KeyboardInterrupt(finished(published)) from None
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


def help_text() -> str:
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    PrepareOptions._add_argparse_args(parser)
    flags = [
        f"  {a.option_strings[0]:<22} {a.help or ''}"
        + ("" if a.default is None or a.default == "" or a.default is False else f" (default {a.default})")
        for a in parser._actions
    ]
    return "\n".join(
        [
            "usage: boxweight prepare --input PATH --output DIR [flags] [Beam pipeline options]",
            "",
            "Scan an annotation dataset, validate every image and box, compute class weights and",
            "write weighted TFRecord shards, stats.json, report.html, rejects.jsonl, label_map.pbtxt",
            "and manifest.json into DIR. Any Beam pipeline option (--runner, --direct_num_workers,",
            "Dataflow options) may follow; anything else is refused.",
            "",
            "flags:",
            *flags,
            "",
            "examples:",
            "  boxweight prepare --input data/annotations.json --output out",
            "  boxweight prepare --input data/voc --output out --scheme effective_number --beta 0.999 --max-weight 10",
            "  boxweight prepare --input 'shards/train-*' --output out --overwrite --direct_num_workers=8",
            "  boxweight prepare --input gs://my-bucket/coco/instances_train2017.json --image-root gs://my-bucket/coco/train2017 \\",
            "    --output gs://my-bucket/out --runner DataflowRunner --project my-project-123 --region us-central1 \\",
            "    --temp_location gs://my-bucket/tmp --setup_file ./setup.py   (see the README: Run on Dataflow)",
        ]
    )


def _interrupt_handler(interrupted: threading.Event) -> Any:
    def on_sigint(signum: int, frame: Any) -> None:
        interrupted.set()
        logging.disable(logging.CRITICAL)  # the runner's threads log the workers' end; the interrupt is said once
        raise KeyboardInterrupt

    return on_sigint


def main(argv: Sequence[str] | None = None) -> int:
    """``boxweight prepare`` / ``python -m beam_jobs.prepare``: exit 0, 1 (the job failed), 2 (usage) or 130 (Ctrl-C)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not any(a == "--pixel-check=header" or (a, b) == ("--pixel-check", "header") for a, b in zip(argv, [*argv[1:], ""])):
        launcher_heap()  # as the decoding workers' (see local_runner)
    if not argv or argv[0] in ("-h", "--help"):
        print(help_text(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    # Ctrl-C reaches every process of the terminal's group: the local workers end at once
    # and silently (beam_jobs.worker), and the runner's threads here that watch them then
    # log and fail, and may fail the run before the main thread sees the interrupt. So
    # the interrupt is noted as it arrives, the runner's complaints after it are silenced,
    # and a run that ends in any way after it is reported once, as interrupted.
    held: list[threading.ExceptHookArgs] = []
    previous_hook, threading.excepthook = threading.excepthook, held.append
    interrupted = threading.Event()
    on_main = threading.current_thread() is threading.main_thread()
    previous_sigint = signal.signal(signal.SIGINT, _interrupt_handler(interrupted)) if on_main else None
    status, message, became = 0, "", "the output folder was left as it was"
    runner_errors: list[logging.LogRecord] = []
    try:
        with failures.runner_errors_held() as runner_errors:
            done = run(argv)
        # a Ctrl-C that no code here saw: the job went on to its end
        became = "the dry run had finished" if "dry_run" in done else finished(PipelineOptions(argv).view_as(PrepareOptions).output)
    except JobError as exc:
        status, message = exc.exit_code, str(exc)
    except KeyboardInterrupt as exc:
        interrupted.set()
        became = str(exc) or became
    except Exception as exc:
        if interrupted.is_set():
            pass
        elif failures.disk_full(exc):  # one line the user can act on; the runner's tracebacks say no more
            runner_errors.clear()
            output = PipelineOptions(argv).view_as(PrepareOptions).output
            status, message = 1, (
                f"boxweight prepare: error: no space left on the disk of {output!r} while the job wrote it; "
                "the output folder was left as it was (free space, or choose another --output)"
            )
        else:  # a worker error: the runner's account and the traceback, then what became of the output
            failures.write_held(runner_errors)
            traceback.print_exc()
            status, message = (
                1,
                "boxweight prepare: error: the job failed (see above); the output folder was left as it was",
            )
    finally:
        # after an interrupt the runner's threads may still fail and log as the process exits: not news
        threading.excepthook = (lambda args: None) if interrupted.is_set() else previous_hook
        if previous_sigint is not None:
            signal.signal(signal.SIGINT, previous_sigint)
            if not interrupted.is_set():
                logging.disable(logging.NOTSET)
    if interrupted.is_set():
        runner_errors.clear()
        held.clear()
        status, message = 130, f"boxweight prepare: interrupted; {became}"
    failures.write_held(runner_errors)  # a run that went on after them: they were not its failure
    for args in held:
        previous_hook(args)
    if message:  # last, after any held thread errors: the line a user reads
        print(message, file=sys.stderr)
    return status


if __name__ == "__main__":
    # Run the module imported by name, so workers unpickle its classes by reference.
    from beam_jobs import prepare as _job
    from boxweight.cli import exiting

    code = _job.main()
    exiting()
    sys.exit(code)
