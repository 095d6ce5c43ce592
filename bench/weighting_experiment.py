"""What weighting buys: the reference detector trained with weights off and three candidates, 5 seeds each, on two datasets.

Datasets:

* ``demo``: the embedded demo set (2,000 images, six shapes, Zipf counts:
  the rarest class has 1.86% of the boxes), 20% carved out as val;
* ``aquarium``: ``../shared/datasets/aquarium-yolo`` (real photos, seven
  classes, fish 2,669 boxes vs starfish 116), its own train and valid
  splits, images shrunk by the job to ``--max-side``.

Configurations (identical but for the one change):

* ``none``: all box weights 1 (the reference);
* ``inverse_sqrt``: record weights 1/sqrt(n_c), normalized so the most
  frequent class weighs 1 and rarer ones more (``normalize=min``), so no
  class is pushed toward background;
* ``rfs``: weights 1, LVIS repeat-factor sampling at threshold 0.3 (the
  job's ``--repeat-threshold``), which repeats the rarest classes' images
  2-4 times;
* ``eql``: weights 1, the equalization loss (Tan et al. 2020): on
  foreground cells no negative gradient to the classes in fewer than
  ``--eql-threshold`` of the train images.

    .venv/bin/python -m bench.weighting_experiment [--seeds 0 1 2 3 4] [--epochs N] [--datasets demo aquarium]

Writes build/experiment/results.json and build/experiment/table.md (the
README's "Choosing a scheme" table) and prints them: per-class AP50 mean ±
std over seeds, mAP50, and per candidate the paired per-seed differences
against ``none`` with the goal check (rarest class's AP50 gain positive on
every seed and above twice the std of the differences, mean mAP50 no more
than 0.01 below ``none``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "datasets")
ALL_CONFIGS: dict[str, dict[str, Any]] = {
    "none": {"weights": "none"},
    "inverse_sqrt": {"weights": "inverse_sqrt", "normalize": "min"},
    "effective_number": {"weights": "effective_number", "normalize": "min"},
    "rfs": {"weights": "none", "repeat_factor_sampling": True},
    "eql": {"weights": "none", "eql": True},
}
DEFAULT_CONFIGS = ("none", "inverse_sqrt", "rfs", "eql")
REPEAT_THRESHOLD = 0.3


def prepare_dataset(name: str, out: str, max_side: int) -> str:
    from beam_jobs import prepare
    from boxweight.demo_data import generate

    records = os.path.join(out, f"{name}-records")
    if os.path.exists(os.path.join(records, "manifest.json")):
        return records
    common = ["--output", records, "--overwrite", "--scheme=none", f"--repeat-threshold={REPEAT_THRESHOLD}",
              "--runner=apache_beam.runners.portability.fn_api_runner.fn_runner.FnApiRunner"]
    if name == "demo":
        data = os.path.join(out, "demo")
        generate(data, seed=0)
        prepare.run(["--input", os.path.join(data, "annotations.json"), "--val-fraction=0.2", *common], print_report=False)
    else:
        prepare.run(["--input", os.path.join(SHARED, "aquarium-yolo"), f"--max-side={max_side}", *common], print_report=False)
    return records


def paired(results: dict[str, list[dict[str, Any]]], rare: int) -> dict[str, dict[str, Any]]:
    """Per candidate: per-seed differences against none (rarest class AP50, mAP50) and the goal check."""
    base_rare = np.array([r["classes"][rare]["ap50"] for r in results["none"]])
    base_map = np.array([r["map50"] for r in results["none"]])
    out = {}
    for cfg in (c for c in results if c != "none"):
        d_rare = np.array([r["classes"][rare]["ap50"] for r in results[cfg]]) - base_rare
        d_map = np.array([r["map50"] for r in results[cfg]]) - base_map
        std = float(d_rare.std(ddof=1)) if len(d_rare) > 1 else 0.0
        out[cfg] = {
            "rare_gain": d_rare.round(4).tolist(), "rare_gain_mean": float(d_rare.mean()), "rare_gain_std": std,
            "map_change": d_map.round(4).tolist(), "map_change_mean": float(d_map.mean()),
            "goal_met": bool(len(d_rare) > 1 and (d_rare > 0).all() and d_rare.mean() > 2 * std and d_map.mean() >= -0.01),
        }
    return out


def table(dataset: str, results: dict[str, list[dict[str, Any]]], seeds: list[int]) -> list[str]:
    names = [c["name"] for c in results["none"][0]["classes"]]
    gts = [c["ground_truth"] for c in results["none"][0]["classes"]]
    lines = [f"**{dataset}** (val AP50, mean ± std over seeds {', '.join(map(str, seeds))})", "",
             "| class | val boxes | " + " | ".join(results) + " |", "|---|---|" + "---|" * len(results)]
    for k, name in enumerate(names):
        if not gts[k]:
            continue
        cells = []
        for cfg in results:
            v = np.array([r["classes"][k]["ap50"] for r in results[cfg]])
            cells.append(f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.3f}")
        lines.append(f"| {name} | {gts[k]} | " + " | ".join(cells) + " |")
    cells = []
    for cfg in results:
        v = np.array([r["map50"] for r in results[cfg]])
        cells.append(f"**{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.3f}**")
    lines.append("| mAP50 | | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, nargs=2, default=[20, 40], metavar=("DEMO", "AQUARIUM"), help="default: %(default)s")
    parser.add_argument("--image-size", type=int, nargs=2, default=[64, 96], metavar=("DEMO", "AQUARIUM"),
                        help="detector input side, pixels; default: %(default)s")
    parser.add_argument("--width", type=int, default=16, help="detector's base channel count; default: %(default)s")
    parser.add_argument("--max-side", type=int, default=128, help="aquarium images shrunk by the job to this side; default: %(default)s")
    parser.add_argument("--eql-threshold", type=float, default=0.1, help="equalization loss tail: classes in fewer than this share of the images")
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS), choices=list(ALL_CONFIGS))
    parser.add_argument("--datasets", nargs="+", default=["demo", "aquarium"], choices=["demo", "aquarium"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", default="build/experiment")
    args = parser.parse_args()
    if "none" not in args.configs:
        parser.error("--configs must include none, the reference")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from boxweight.evaluate import run_model
    from boxweight.train import TrainConfig, train
    from schemas.job_output import JobOutput
    from weighting.schemes import tail_classes
    from weighting.training.input_fn import split_counts

    start = time.perf_counter()
    doc: dict[str, Any] = {"epochs": args.epochs, "image_size": args.image_size, "width": args.width, "seeds": args.seeds,
                           "eql_threshold": args.eql_threshold, "repeat_threshold": REPEAT_THRESHOLD, "datasets": {}}
    md: list[str] = []
    for dataset in args.datasets:
        epochs, image_size = (args.epochs[0], args.image_size[0]) if dataset == "demo" else (args.epochs[1], args.image_size[1])
        records = prepare_dataset(dataset, args.out, args.max_side)
        counts = split_counts(JobOutput.open(records), "train")
        tail = sorted(n for n, t in tail_classes(counts, args.eql_threshold).items() if t)
        print(f"{dataset}: train boxes {dict(counts.boxes)}; eql tail (< {args.eql_threshold:g} of images): {tail}", flush=True)
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in args.configs}
        for seed in args.seeds:
            for name in args.configs:
                options = dict(ALL_CONFIGS[name])
                eql = options.pop("eql", False)
                run_dir = os.path.join(args.out, f"{dataset}-{name}-seed{seed}")
                t = time.perf_counter()
                cfg = TrainConfig(train=records, out=run_dir, epochs=epochs, seed=seed, image_size=image_size,
                                  width=args.width, eql_threshold=args.eql_threshold if eql else None, **options)
                train(cfg)
                ev = run_model(run_dir, records)  # its val split
                ev["train_seconds"] = time.perf_counter() - t
                results[name].append(ev)
                print(f"{dataset} {name} seed {seed}: mAP50 {ev['map50']:.3f} ({ev['train_seconds']:.0f} s)", flush=True)
        gts = [c["ground_truth"] for c in results["none"][0]["classes"]]
        rare = min((k for k, n in enumerate(gts) if n), key=lambda k: gts[k])
        rare_name = results["none"][0]["classes"][rare]["name"]
        comparison = paired(results, rare)
        doc["datasets"][dataset] = {"train_boxes": dict(counts.boxes), "eql_tail": tail, "rare_class": rare_name,
                                    "paired": comparison, "results": results}
        md += table(f"{dataset}, {epochs} epochs at {image_size} px", results, args.seeds)
        md += ["", f"Paired per seed against `none`, rarest val class `{rare_name}`:", "",
               "| candidate | rare AP50 gain per seed | mean ± std | mAP50 change (mean) | goal met |", "|---|---|---|---|---|"]
        for cfg, p in comparison.items():
            md.append(f"| {cfg} | {', '.join(f'{v:+.3f}' for v in p['rare_gain'])} | {p['rare_gain_mean']:+.3f} ± {p['rare_gain_std']:.3f} "
                      f"| {p['map_change_mean']:+.3f} | {'yes' if p['goal_met'] else 'no'} |")
        md.append("")
    total = time.perf_counter() - start
    doc["total_seconds"] = total
    md.append(f"{len(args.datasets)} datasets x {len(args.configs)} configurations x {len(args.seeds)} seeds: "
              f"{total / 60:.1f} min in all, on {os.cpu_count()} CPU cores.")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(doc, f, indent=2)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n" + "\n".join(md))


if __name__ == "__main__":
    main()
