"""What weighting buys: train the reference detector with weights off and on, 3 seeds each.

On the demo dataset (rarest class 1.86% of boxes), identical configurations
differ only in how boxes are weighted:

* ``none``: all box weights 1;
* ``effective_number``: Cui et al. 2019 class weights (beta 0.999, mean 1
  over boxes), recomputed at read time from the job's stats.json; milder
  than ``balanced``, whose 50:1 ratio an earlier run showed costing the
  frequent classes more than it gave the rare one (see the README);
* ``rfs``: weights 1, LVIS repeat-factor sampling (t = 0.1) instead.

    .venv/bin/python -m bench.weighting_experiment [--epochs 6] [--seeds 0 1 2] [--configs none effective_number rfs]

The default (3 configurations x 3 seeds x 6 epochs) is sized to finish
within 30 minutes on a 2-core CPU.

Writes build/experiment/results.json and prints per-class AP50 (mean and
spread over seeds) and the rarest class's AP50 difference against ``none``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

ALL_CONFIGS = {
    "none": {"weights": "none"},
    "effective_number": {"weights": "effective_number"},
    "balanced": {"weights": "balanced"},
    "inverse_sqrt": {"weights": "inverse_sqrt"},
    "rfs": {"weights": "none", "repeat_factor_sampling": True},
}
DEFAULT_CONFIGS = ("none", "effective_number", "rfs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS), choices=list(ALL_CONFIGS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="build/experiment")
    args = parser.parse_args()
    configs = {name: ALL_CONFIGS[name] for name in args.configs}
    if "none" not in configs:
        parser.error("--configs must include none, the reference")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from beam_jobs import prepare
    from boxweight.demo_data import generate
    from boxweight.evaluate import run_model
    from boxweight.train import TrainConfig, train

    start = time.perf_counter()
    data, records = os.path.join(args.out, "demo"), os.path.join(args.out, "records")
    if not os.path.exists(os.path.join(records, "manifest.json")):
        generate(data, seed=0)
        prepare.run(["--input", os.path.join(data, "annotations.json"), "--output", records, "--scheme=balanced",
                     "--repeat-threshold=0.1", "--val-fraction=0.2"], print_report=False)
    results: dict[str, list] = {name: [] for name in configs}
    for seed in args.seeds:
        for name, options in configs.items():
            run_dir = os.path.join(args.out, f"{name}-seed{seed}")
            t = time.perf_counter()
            train(TrainConfig(train=records, out=run_dir, epochs=args.epochs, seed=seed, **options))  # its train split
            ev = run_model(run_dir, records)  # its val split
            ev["train_seconds"] = time.perf_counter() - t
            results[name].append(ev)
            print(f"{name} seed {seed}: mAP50 {ev['map50']:.3f} ({ev['train_seconds']:.0f} s)", flush=True)
    total = time.perf_counter() - start
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"epochs": args.epochs, "seeds": args.seeds, "configs": list(configs), "total_seconds": total, "results": results}, f, indent=2)

    names = [c["name"] for c in results["none"][0]["classes"]]
    gts = [c["ground_truth"] for c in results["none"][0]["classes"]]
    print(f"\nper-class AP50 on val, mean ± std over seeds {args.seeds}, {args.epochs} epochs, {total / 60:.1f} min in all")
    print("| class | val boxes | " + " | ".join(configs) + " |")
    print("|---|---|" + "---|" * len(configs))
    for k, name in enumerate(names):
        cells = []
        for cfg in configs:
            v = np.array([r["classes"][k]["ap50"] for r in results[cfg]])
            cells.append(f"{v.mean():.3f} ± {v.std():.3f}")
        print(f"| {name} | {gts[k]} | " + " | ".join(cells) + " |")
    for cfg in configs:
        v = np.array([r["map50"] for r in results[cfg]])
        print(f"mAP50 {cfg}: {v.mean():.3f} ± {v.std():.3f}")
    rare = int(np.argmin(gts))
    base = np.array([r["classes"][rare]["ap50"] for r in results["none"]])
    for cfg in (c for c in configs if c != "none"):
        diff = np.array([r["classes"][rare]["ap50"] for r in results[cfg]]) - base
        print(f"rarest class ({names[rare]}) AP50 {cfg} - none, per seed: {np.round(diff, 3).tolist()}, mean {diff.mean():+.3f} ± {diff.std():.3f}")
    print(f"total {total / 60:.1f} min ({'within' if total <= 1800 else 'OVER'} the 30 min budget)")


if __name__ == "__main__":
    main()
