"""The prepare job's flags, checked on the launcher before any work starts.

A module of its own, apart from ``beam_jobs.prepare``, because Beam collects
every ``PipelineOptions`` subclass by class: when ``python -m
beam_jobs.prepare`` loaded the module both as ``__main__`` and by name, the
flags were registered twice and argparse refused them all.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Sequence
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

import readers
import validation
from schemas.label_map import LabelMap
from weighting.schemes import (
    DEFAULT_NORMALIZE,
    DEFAULT_SCHEME,
    NORMALIZATIONS,
    SCHEMES,
    BoxMultipliers,
    ClassCounts,
    WeightingError,
    class_weights,
    load_manual_weights,
)

PIXEL_CHECKS = ("decode", "header")


MAX_CLASSES = 10_000  # LVIS has 1,203 classes and Open Images 600; a larger set is more likely a broken file


def check_classes(opts: PrepareOptions, label_map: LabelMap, source: str) -> None:
    """Refuse a class set, or a largest id, beyond ``--max-classes``: each costs work per class and per id.

    Raises:
        JobError: naming where the classes came from, the count or id, and the flag.
    """
    if len(label_map) > opts.max_classes:
        raise JobError(f"{source}: {len(label_map):,} classes, more than --max-classes {opts.max_classes:,}; "
                       "raise it if the dataset really has that many")
    if label_map.max_id > opts.max_classes:
        raise JobError(f"{source}: class id {label_map.max_id:,} is above --max-classes {opts.max_classes:,} "
                       "(ids index a detector's class axis); renumber the label map or raise the flag")


class JobError(Exception):
    """An unusable job: the command prints this one line and exits with ``exit_code``
    (2 for a usage error found before any work, 1 for a job that ran and failed)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(f"boxweight prepare: error: {message}")
        self.exit_code = exit_code


class PrepareOptions(PipelineOptions):
    """Job flags (dashes or underscores both work)."""

    @classmethod
    def _add_argparse_args(cls, parser: Any) -> None:
        def add(name: str, **kw: Any) -> None:
            dest = name.replace("-", "_")
            parser.add_argument(f"--{name}", *([f"--{dest}"] if "-" in name else []), dest=dest, **kw)

        add("input", help="annotation file, folder or TFRecord glob (local or gs://)")
        add("format", default="auto", help="auto|" + "|".join(readers.FORMATS))
        add("image-root", default=None, help="folder that image file names are relative to")
        add("label-map", default=None, help="fix the class set and ids with a label_map.pbtxt")
        add("output", help="output folder (local or gs://); must be new or empty unless --overwrite")
        add("overwrite", action="store_true", default=False, help="replace a previous boxweight output in --output as a whole")
        add("scheme", default=DEFAULT_SCHEME, help="weighting scheme: " + "|".join(SCHEMES) + " (see README: Choosing a scheme)")
        add("normalize", default=DEFAULT_NORMALIZE, help="|".join(NORMALIZATIONS) + "; min: the most frequent class weighs 1, rarer classes more")
        add("max-weight", type=float, default=None, help="cap on class weights, applied last")
        add("beta", type=float, default=0.999, help="effective_number: beta")
        add("repeat-threshold", type=float, default=0.001, help="LVIS repeat factor threshold t")
        add("manual-weights", default=None, help="manual: JSON or YAML file, class name -> weight")
        add("difficult-weight", type=float, default=1.0, help="multiplier for difficult boxes")
        add("crowd-weight", type=float, default=1.0, help="multiplier for is_crowd boxes")
        add("truncated-weight", type=float, default=1.0, help="multiplier for truncated boxes")
        add("val-fraction", type=float, default=0.1, help="val share carved from train when the source declares no val split")
        add("num-shards", type=int, default=0, help="shards per split; 0 = about 64 MiB each")
        add("compression", default="none", help="none|gzip")
        add("max-side", type=int, default=0, help="re-encode images whose longer side exceeds this (0 = never)")
        add("max-image-mb", type=int, default=100, help="image files larger than this are quarantined, never read")
        add(
            "max-boxes-per-image",
            type=int,
            default=validation.MAX_BOXES_PER_IMAGE,
            help="images with more boxes are quarantined (image_too_many_boxes) before any box is checked",
        )
        add(
            "max-classes",
            type=int,
            default=MAX_CLASSES,
            help="refuse a class set larger than this, or a label map id above it (a detector's class axis is that long)",
        )
        add(
            "pixel-check",
            default="decode",
            help="decode: every image is decoded with TensorFlow and one that does not decode is quarantined; "
            "header: headers, sizes and end markers only (2.6x faster at 50k photos; a corrupt image then fails in training)",
        )


def _all_pipeline_flags() -> argparse.ArgumentParser:
    # The parser Beam itself builds from every PipelineOptions subclass
    # (PipelineOptions.get_all_options), which only logs a warning for what
    # it cannot parse. Beam's own options use plain add_argument.
    parser = argparse.ArgumentParser(allow_abbrev=False, add_help=False)
    seen: dict[str, type] = {}
    for cls in PipelineOptions.__subclasses__():
        seen.setdefault(str(cls), cls)
    for cls in seen.values():
        cls._add_argparse_args(parser)  # type: ignore[arg-type]  # Beam's parser is an ArgumentParser subclass
    return parser


def check_known_flags(argv: list[str]) -> None:
    """Refuse any argument that is neither a job flag nor a Beam pipeline option.

    Raises:
        JobError: naming the first unknown argument and the closest flag.
    """
    parser = _all_pipeline_flags()
    _, unknown = parser.parse_known_args(argv)
    if not unknown:
        return
    flags = [s for action in parser._actions for s in action.option_strings]
    first = unknown[0]
    if not first.startswith("-"):
        raise JobError(
            f"unexpected argument {first!r}: every value follows its flag (--input PATH); "
            "quote globs so the shell does not expand them"
        )
    name = first.split("=", 1)[0]
    close = difflib.get_close_matches(name, flags, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else "; see 'boxweight prepare --help'"
    raise JobError(f"unknown flag {name}{hint}")


def scheme_params(opts: PrepareOptions) -> dict[str, Any]:
    """The scheme's parameters as values; manual weights are read here, on the launcher, once.

    Raises:
        JobError: ``manual`` without ``--manual-weights``, or an unreadable file.
    """
    if opts.scheme == "effective_number":
        return {"beta": opts.beta}
    if opts.scheme == "repeat_factor":
        return {"threshold": opts.repeat_threshold}
    if opts.scheme == "manual":
        if not opts.manual_weights:
            raise JobError("--scheme manual needs --manual-weights FILE")
        try:
            return {"weights": load_manual_weights(opts.manual_weights)}
        except (OSError, WeightingError) as exc:
            raise JobError(f"--manual-weights {opts.manual_weights}: {exc}") from None
    return {}


def check_weights(opts: PrepareOptions, params: dict[str, Any], class_names: Sequence[str]) -> None:
    """The scheme's weights computed once before the job, as if each class had one box in one image.

    The same function the job runs: a manual weight for a class that does not
    exist, a negative, NaN, inf or text value, or weights that cannot be
    stored, are refused here in one line instead of failing the job after
    its read.

    Raises:
        JobError: naming the flag (or the file) and the value.
    """
    counts = ClassCounts(
        boxes={n: 1 for n in class_names},
        images_with={n: 1 for n in class_names},
        num_images=max(1, len(class_names)),
        boxes_in_images_with={n: 1 for n in class_names},
    )
    try:
        class_weights(counts, opts.scheme, normalize=opts.normalize, max_weight=opts.max_weight, **params)
    except WeightingError as exc:
        where = f"--manual-weights {opts.manual_weights}" if opts.scheme == "manual" else f"--scheme {opts.scheme}"
        raise JobError(f"{where}: {exc}") from None


def check_options(opts: PrepareOptions) -> None:
    """Fail fast, before any work, on flags that cannot work.

    Raises:
        JobError: naming the flag and its value.
    """
    if not opts.input:
        raise JobError("--input is required")
    if not opts.output:
        raise JobError("--output is required")
    if opts.scheme not in SCHEMES:
        raise JobError(f"unknown scheme {opts.scheme!r}; known: {', '.join(SCHEMES)}")
    if opts.normalize not in NORMALIZATIONS:
        raise JobError(f"unknown normalization {opts.normalize!r}; known: {', '.join(NORMALIZATIONS)}")
    if opts.compression not in ("none", "gzip"):
        raise JobError(f"unknown compression {opts.compression!r}; known: none, gzip")
    if not 0.0 <= opts.val_fraction < 1.0:
        raise JobError(f"--val-fraction {opts.val_fraction} must be in [0, 1)")
    if opts.num_shards < 0 or opts.max_side < 0:
        raise JobError("--num-shards and --max-side must be >= 0")
    if opts.pixel_check not in PIXEL_CHECKS:
        raise JobError(f"unknown --pixel-check {opts.pixel_check!r}; known: {', '.join(PIXEL_CHECKS)}")
    if opts.max_boxes_per_image < 1:
        raise JobError(f"--max-boxes-per-image {opts.max_boxes_per_image} must be >= 1")
    if opts.max_classes < 1:
        raise JobError(f"--max-classes {opts.max_classes} must be >= 1")
    if opts.max_image_mb <= 0:
        raise JobError(f"--max-image-mb {opts.max_image_mb} must be > 0")
    try:
        BoxMultipliers(opts.difficult_weight, opts.crowd_weight, opts.truncated_weight)
    except WeightingError as exc:
        raise JobError(str(exc)) from None


def parse(argv: list[str]) -> PipelineOptions:
    """The job's options, parsed once: unknown arguments refused, then the flags' values checked.

    Raises:
        JobError: as :func:`check_known_flags` and :func:`check_options`.
    """
    check_known_flags(argv)
    options = PipelineOptions(argv)
    check_options(options.view_as(PrepareOptions))
    return options


def help_text() -> str:
    """``boxweight prepare --help``: the job's flags from :class:`PrepareOptions`, with examples."""
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
