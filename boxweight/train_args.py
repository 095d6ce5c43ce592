"""``boxweight train``'s command line, apart from the trainer so that ``--help`` needs no TensorFlow."""

from __future__ import annotations

import argparse

from weighting.schemes import DEFAULT_NORMALIZE, NORMALIZATIONS

NORMALIZERS = ("positives", "weight")
"""``positives``: the losses are divided by the number of positive cells (RetinaNet, KerasHub); ``weight``: by
their summed box weight (the TF OD API's ``normalize_loss_by_num_matches``)."""
WEIGHTS_ON = ("both", "classification")
"""Which losses a box's weight scales: classification and box regression, or classification only."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples as written; every option's default after its help, where it has one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "%(default)" not in text and action.option_strings and not (default is None or default is False or default == argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


DESCRIPTION = """\
Train the reference detector with weighted losses on a boxweight prepare output.

Reads the train split of --train (and evaluates on the val split of --val at
the end). The run folder gets checkpoints/ (every epoch and on Ctrl-C;
--resume continues from the latest), history.json, config.json and the final
model.keras. Runs on the GPU when TensorFlow sees one, else on the CPU.
"""

EXAMPLES = """\
examples:
  boxweight train --train build/demo-out --val build/demo-out --out build/run
  boxweight train --train build/demo-out --out build/run --weights none --epochs 20
  boxweight train --train build/demo-out --out build/run --resume
"""


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a number > 0")
    return value


def _image_size(text: str) -> int:
    value = _at_least_one(text)
    if value % 8:
        raise argparse.ArgumentTypeError(f"{value} must be a multiple of 8 (the detector's backbone halves it three times)")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="boxweight train", description=DESCRIPTION, epilog=EXAMPLES, formatter_class=HelpFormatter)
    p.add_argument("--train", required=True, help="a boxweight prepare output folder (its train split), or a glob of shards inside one")
    p.add_argument("--train-split", default=None, help="split of --train to train on (default: train)")
    p.add_argument("--val", default=None, help="output folder (its val split) or glob; evaluated at the end when given")
    p.add_argument("--val-split", default=None, help="split of --val to evaluate on (default: val)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--loss", choices=("focal", "ce"), default="focal", help="classification loss: sigmoid focal or sigmoid cross-entropy")
    p.add_argument("--weights", default="record", help="record | none | a scheme name (recomputed from the job's stats.json)")
    p.add_argument("--normalize", default=DEFAULT_NORMALIZE, choices=NORMALIZATIONS,
                   help="normalization of a --weights scheme; min: the most frequent class 1, rarer more")
    p.add_argument("--max-weight", type=_positive, default=None, help="cap on a --weights scheme's class weights, applied after normalization")
    p.add_argument("--prior", choices=("uniform", "class_frequency"), default="uniform",
                   help="initial class probability of the head: uniform (0.01, as RetinaNet) or class_frequency (0.01 scaled by "
                        "each class's share of the train boxes; logit adjustment at initialization)")
    p.add_argument("--normalizer", choices=NORMALIZERS, default="weight",
                   help="what the losses are divided by: positives (the number of positive cells, as RetinaNet and KerasHub) or "
                        "weight (their summed box weight, as the TF OD API)")
    p.add_argument("--weights-on", choices=WEIGHTS_ON, default="both",
                   help="which losses a box's weight scales: both (classification and box regression) or classification")
    p.add_argument("--eql-threshold", type=float, default=None, metavar="LAMBDA",
                   help="equalization loss: on foreground cells, no negative gradient to classes in fewer than this share of "
                        "the train images (e.g. 0.1); default: off")
    p.add_argument("--seesaw", action="store_true",
                   help="a sigmoid Seesaw-style term: on foreground cells, negative terms of rarer classes scaled by the train-box "
                        "ratio, and raised where a wrong class outscores the right one")
    p.add_argument("--repeat-factor-sampling", action="store_true", help="repeat images by the records' LVIS repeat factors")
    p.add_argument("--epochs", type=_at_least_one, default=10, help="epochs to train (with --resume: in all, counting those done)")
    p.add_argument("--batch-size", type=_at_least_one, default=32, help="images per step")
    p.add_argument("--image-size", type=_image_size, default=128, help="side of the square, letterboxed input in pixels")
    p.add_argument("--width", type=_at_least_one, default=32, help="detector's base channel count")
    p.add_argument("--learning-rate", type=float, default=2e-3, help="Adam's learning rate")
    p.add_argument("--mixed-precision", action="store_true", help="float16 compute (mixed_float16 policy with loss scaling); for GPUs")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, shuffling and augmentation")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's latest checkpoint")
    p.add_argument("--steps-per-epoch", type=_at_least_one, default=None, help="steps per epoch (default: one pass over the train split)")
    return p
