"""The ``boxweight`` command: ``prepare``, ``report``, ``train``, ``evaluate``, ``demo-data``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from beam_jobs.interrupts import exiting
from boxweight.train_args import HelpFormatter
from readers.tfimport import VERBOSE, tensorflow


def _quiet_logs(verbose: bool) -> None:
    """Our own INFO lines; Beam's, TensorFlow's and absl's only from WARNING up unless ``--verbose``."""
    if verbose:
        os.environ[VERBOSE] = "1"  # TensorFlow's start-up lines too, here and in the job's workers
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for name in ("apache_beam", "absl", "tensorflow"):
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    # Each local worker process warns that it has no semi-persistent directory (a Dataflow
    # container notion); it means nothing locally and would greet every run twice.
    logging.getLogger("apache_beam.runners.portability.local_job_service").addFilter(
        lambda record: "No semi_persistent_directory" not in record.getMessage()
    )


def _prepare(argv: list[str]) -> int:
    from beam_jobs import prepare

    return prepare.main(argv)


def _report(args: argparse.Namespace) -> int:
    from weighting import report

    if args.compare:
        a, b = (report.load(d).attrs["stats"] for d in args.compare)
        print(report.render_compare(a, b, *args.compare))
        return 0
    doc = report.load(args.dir).attrs["stats"]
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        print(report.render_table(doc))
    return 0


def _demo_data(args: argparse.Namespace) -> int:
    from boxweight.demo_data import generate

    counts = generate(args.out, num_images=args.images, image_size=args.size, seed=args.seed)
    total = sum(counts.values())
    print(f"wrote {args.images} images, {total} boxes to {args.out}/annotations.json")
    for name, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<10} {n:>6} boxes ({100 * n / total:.2f}%)")
    return 0


EXAMPLES = """\
examples:
  boxweight demo-data --out build/demo
  boxweight prepare --input build/demo/annotations.json --output build/demo-out
  boxweight report build/demo-out
  boxweight train --train build/demo-out --val build/demo-out --out build/run
  boxweight evaluate --model build/run --data build/demo-out

--verbose (anywhere on the line) shows TensorFlow's, absl's and Beam's own log lines.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="boxweight",
        description="Per-box class weights for object detection datasets: prepare weighted TFRecords and inspect class statistics.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's, absl's and Beam's log lines")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("prepare", help="run the Beam job: annotations -> weighted TFRecords + report (see 'prepare --help')", add_help=False)
    rep = sub.add_parser(
        "report", help="print the class statistics of a prepare output folder", formatter_class=HelpFormatter,
        epilog="examples:\n  boxweight report build/demo-out\n  boxweight report --json build/demo-out\n  boxweight report --compare build/out-a build/out-b\n",
    )
    rep.add_argument("dir", nargs="?", help="output folder of 'boxweight prepare'")
    rep.add_argument("--json", action="store_true", help="print stats.json instead of the table")
    rep.add_argument("--compare", nargs=2, metavar=("A", "B"), help="two output folders side by side")
    sub.add_parser("train", help="train the reference detector with weighted losses (see 'train --help')", add_help=False)
    ev = sub.add_parser(
        "evaluate", help="per-class AP50, AP[.5:.95] and recall of a trained run", formatter_class=HelpFormatter,
        epilog="example:\n  boxweight evaluate --model build/run --data build/demo-out --split val --json build/run/eval.json\n",
    )
    ev.add_argument("--model", required=True, help="run folder of 'boxweight train'")
    ev.add_argument("--data", required=True, help="a boxweight prepare output folder (one split is read) or a glob of shards inside one")
    ev.add_argument("--split", default=None, help="split of a --data folder to evaluate on (default: val)")
    ev.add_argument("--json", default=None, help="also write the results to this JSON file")
    demo = sub.add_parser(
        "demo-data", help="write the embedded demo dataset (COCO JSON, deterministic by seed)", formatter_class=HelpFormatter,
        epilog="example:\n  boxweight demo-data --out build/demo --images 2000\n",
    )
    demo.add_argument("--out", default="build/demo", help="folder for annotations.json and images/")
    demo.add_argument("--images", type=int, default=2000, help="number of images")
    demo.add_argument("--size", type=int, default=128, help="image side in pixels")
    demo.add_argument("--seed", type=int, default=0, help="the same seed writes the same bytes")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command: exit 0, 1 (a run that failed), 2 (bad arguments or data) or 130 (Ctrl-C)."""
    status = _main(argv)
    exiting()
    return status


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv
    argv = [a for a in argv if a != "--verbose"]
    _quiet_logs(verbose)
    command = argv[0] if argv else ""
    try:
        return _dispatch(argv)
    except KeyboardInterrupt as exc:
        print(f"boxweight {command}: interrupted" + (f"; {exc}" if str(exc) else ""), file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`boxweight report DIR | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes at exit
        return 141  # as a command ended by SIGPIPE
    except ValueError as exc:
        from schemas.manifest import ManifestError
        from storage.job_output import DataError
        from weighting.schemes import WeightingError

        if not isinstance(exc, (DataError, ManifestError, WeightingError)):
            raise
        print(f"boxweight {command}: error: {exc}", file=sys.stderr)
        return 2


def _dispatch(argv: list[str]) -> int:
    if argv and argv[0] == "prepare":
        return _prepare(argv[1:])
    if argv and argv[0] == "train":
        if any(a in ("-h", "--help") for a in argv[1:]):
            from boxweight.train_args import parser as train_parser

            train_parser().parse_args(argv[1:])  # prints the help and exits 0, without TensorFlow
        tensorflow()  # before the trainer module imports it: its start-up lines withheld
        from boxweight.train import main as train_main

        return train_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "report":
        if not args.dir and not args.compare:
            parser.error("report needs DIR or --compare A B")
        return _report(args)
    if args.command == "evaluate":
        tensorflow()
        from boxweight.evaluate import render, run_model

        result = run_model(args.model, args.data, args.split)
        print(render(result))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=2)
        return 0
    if args.command == "demo-data":
        return _demo_data(args)
    parser.print_usage(sys.stderr)
    print("boxweight: error: a command is required (boxweight --help lists them)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
