"""What weighting buys, pre-registered: the default recipe against weights off, paired by seed, on a yardstick that can see it.

Datasets (trained the same way every run; only the configuration changes):

* ``demo``: trained on the embedded demo set (``demo-data --seed 0``, 2,000
  images, six shapes, Zipf counts), 20% carved out as val. Scored on an
  independent set from the same generator (``demo-data --images 5000
  --seed 11``), whole: the rarest class, ``star``, has about 190 boxes there
  against 15 in val.
* ``aquarium``: ``../shared/datasets/aquarium-yolo`` (real photos, seven
  classes), trained on its train split with images shrunk by the job to
  ``--max-side``. Scored on its valid and test splits pooled; the yardstick
  is the mean AP50 of the 4 classes with the fewest train boxes.

* ``longtail`` (``--explore`` only): a many-class long tail closer to the
  LVIS setting, 24 colour-shape classes with Zipf exponent 1.2 on grey
  backgrounds (``demo_data.generate(num_classes=24, exponent=1.2)``), 2,000
  images, 20% val; scored on an independent 5,000-image set by the mean AP50
  of the rarest third (8 classes).

The val split alone is scored too (``val`` in each run), for continuity with
earlier runs, whose rare class had 15 (demo) and 27 (aquarium) boxes there.

    .venv/bin/python -m bench.weighting_experiment            # the gate: make experiment
    .venv/bin/python -m bench.weighting_experiment --explore  # candidates apart: make explore

The gate runs ``none`` and ``DEFAULT``, 6 seeds on demo and 10 on aquarium,
and checks the goal (``goal``) on what it wrote: ``bench/weighting_experiment_results.json``
(``--results``) and ``build/experiment/table.md``. ``--explore`` runs the
candidates in ``EXPLORE`` (and ``none``) into ``build/explore/`` and checks
each against the same goal; they never touch the gate's results.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared", "datasets")
RESULTS = os.path.join(ROOT, "bench", "weighting_experiment_results.json")

CONFIGS: dict[str, dict[str, Any]] = {
    "none": {"weights": "none"},
    # inverse_sqrt, normalize=min; box weights on classification and box regression; the losses divided
    # by the summed weight of the positive cells, as the TF OD API does (the trainer's defaults)
    "inverse_sqrt": {"weights": "inverse_sqrt", "normalize": "min", "weights_on": "both", "normalizer": "weight"},
    # the same, divided by the number of positive cells (RetinaNet, KerasHub)
    "inverse_sqrt_positives": {"weights": "inverse_sqrt", "normalize": "min", "weights_on": "both", "normalizer": "positives"},
    # box weights on classification only
    "inverse_sqrt_cls": {"weights": "inverse_sqrt", "normalize": "min", "weights_on": "classification", "normalizer": "weight"},
    "inverse_sqrt_cls_positives": {"weights": "inverse_sqrt", "normalize": "min", "weights_on": "classification", "normalizer": "positives"},
    "rfs": {"weights": "none", "repeat_factor_sampling": True},
    # repeat-factor sampling and inverse_sqrt capped at 3, so that the two do not stack to 17x
    "rfs_inverse_sqrt_capped": {"weights": "inverse_sqrt", "normalize": "min", "max_weight": 3.0, "repeat_factor_sampling": True},
    # the head's initial class probabilities from the train class frequencies (logit adjustment)
    "logit_adjusted": {"weights": "none", "prior": "class_frequency"},
    "seesaw": {"weights": "none", "seesaw": True},
}
DEFAULT = "inverse_sqrt"
"""The configuration boxweight ships as its default (``boxweight prepare``'s scheme, ``boxweight train``'s and the
library's defaults), chosen before the gate ran: see ``bench/weighting_normalizer_decision.json``."""
EXPLORE = (DEFAULT, "inverse_sqrt_cls", "rfs", "rfs_inverse_sqrt_capped", "logit_adjusted", "seesaw")
SEEDS = {"demo": list(range(6)), "aquarium": list(range(10))}
EXPLORE_SEEDS = [0, 1, 2]
EPOCHS = {"demo": 20, "aquarium": 40, "longtail": 20}
IMAGE_SIZE = {"demo": 64, "aquarium": 96, "longtail": 64}
REPEAT_THRESHOLD = 0.3
RARE_GROUP = {"demo": 1, "aquarium": 4, "longtail": 8}  # the classes with the fewest train boxes, scored together
LONGTAIL = {"num_classes": 24, "exponent": 1.2}


def _prepare(args: list[str]) -> None:
    from beam_jobs import prepare

    runner = "--runner=apache_beam.runners.portability.fn_api_runner.fn_runner.FnApiRunner"
    prepare.run([*args, "--overwrite", "--scheme=none", f"--repeat-threshold={REPEAT_THRESHOLD}", runner], print_report=False)


def prepare_dataset(name: str, out: str, max_side: int) -> tuple[str, str]:
    """Train records and the yardstick's data (an output folder or shard globs) of one dataset."""
    from boxweight.demo_data import generate

    records = os.path.join(out, f"{name}-records")
    if name in ("demo", "longtail"):
        options = LONGTAIL if name == "longtail" else {}
        yardstick = os.path.join(out, f"{name}-independent-records")
        if not os.path.exists(os.path.join(records, "manifest.json")):
            generate(os.path.join(out, name), num_images=2000, seed=0, **options)
            _prepare(["--input", os.path.join(out, name, "annotations.json"), "--output", records, "--val-fraction=0.2"])
        if not os.path.exists(os.path.join(yardstick, "manifest.json")):
            generate(os.path.join(out, f"{name}-independent"), num_images=5000, seed=11, **options)
            _prepare(["--input", os.path.join(out, f"{name}-independent", "annotations.json"), "--output", yardstick])
        return records, yardstick + "/train-*"  # a job without a val fraction writes every image to train
    if not os.path.exists(os.path.join(records, "manifest.json")):
        _prepare(["--input", os.path.join(SHARED, "aquarium-yolo"), "--output", records, f"--max-side={max_side}"])
    return records, f"{records}/val-*,{records}/test-*"


def _classes(ev: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": c["name"], "ground_truth": c["ground_truth"], "ap50": c["ap50"]} for c in ev["classes"]]


def rare_classes(dataset: str, train_boxes: dict[str, int]) -> list[str]:
    """The classes the goal is about: the ``RARE_GROUP`` with the fewest train boxes (demo: the rarest)."""
    ranked = sorted(train_boxes, key=lambda n: (train_boxes[n], n))
    return ranked[: RARE_GROUP[dataset]]


def _ap(run: dict[str, Any], names: list[str]) -> float:
    by_name = {c["name"]: c["ap50"] for c in run["classes"]}
    return float(np.mean([by_name[n] for n in names]))


def _map50(run: dict[str, Any]) -> float:
    return float(np.mean([c["ap50"] for c in run["classes"] if c["ground_truth"]]))


def goal(doc: dict[str, Any], config: str | None = None) -> dict[str, dict[str, Any]]:
    """The issue's goal, computed from a results document, per dataset, for ``config`` (default: ``doc["default"]``) vs ``none``.

    demo: the rarest train class has >= 150 boxes on the yardstick; its AP50
    gain is > 0 on every seed, its mean > 2 x the std of the paired
    differences and >= +0.05; mean mAP50 change >= -0.01; the most frequent
    class's mean AP50 change >= -0.02. aquarium: >= 10 seeds; the mean AP50
    of the 4 rarest train classes, one-sided paired t-test p < 0.05; mean
    mAP50 change >= -0.01.
    """
    from scipy import stats

    config = config or doc["default"]
    out: dict[str, dict[str, Any]] = {}
    for dataset, d in doc["datasets"].items():
        base, cand = d["results"].get("none", []), d["results"].get(config, [])
        seeds = [r["seed"] for r in base]
        if not base or [r["seed"] for r in cand] != seeds:
            out[dataset] = {"met": False, "why": f"{config} and none not run on the same seeds"}
            continue
        rare = rare_classes(dataset, d["train_boxes"])
        frequent = max(d["train_boxes"], key=lambda n: d["train_boxes"][n])
        gain = np.array([_ap(c, rare) - _ap(b, rare) for b, c in zip(base, cand)])
        map_change = float(np.mean([_map50(c) - _map50(b) for b, c in zip(base, cand)]))
        std = float(gain.std(ddof=1)) if len(gain) > 1 else 0.0
        gt = sum(c["ground_truth"] for c in base[0]["classes"] if c["name"] in rare)
        row: dict[str, Any] = {"rare": rare, "rare_ground_truth": gt, "seeds": seeds, "rare_gain": gain.round(4).tolist(),
                               "rare_gain_mean": float(gain.mean()), "rare_gain_std": std, "map50_change_mean": map_change}
        if dataset == "demo":
            freq = float(np.mean([_ap(c, [frequent]) - _ap(b, [frequent]) for b, c in zip(base, cand)]))
            row.update(frequent=frequent, frequent_change_mean=freq)
            row["met"] = bool(len(seeds) >= 6 and gt >= 150 and (gain > 0).all() and gain.mean() > 2 * std
                              and gain.mean() >= 0.05 and map_change >= -0.01 and freq >= -0.02)
        else:
            p = float(stats.ttest_rel([_ap(c, rare) for c in cand], [_ap(b, rare) for b in base], alternative="greater").pvalue) if std else 1.0
            row["p_value"] = p
            row["met"] = bool(len(seeds) >= 10 and gt >= 150 and p < 0.05 and map_change >= -0.01)
        out[dataset] = row
    return out


def _trained(cfg: Any) -> bool:
    """Whether ``cfg.out`` holds a finished run of exactly ``cfg``."""
    import dataclasses

    try:
        with open(os.path.join(cfg.out, "config.json")) as f:
            done = json.load(f)
    except (OSError, ValueError):
        return False
    return os.path.exists(os.path.join(cfg.out, "model.keras")) and all(done.get(k) == v for k, v in dataclasses.asdict(cfg).items())


def run_dataset(dataset: str, configs: list[str], seeds: list[int], out: str, max_side: int, reuse: bool = False) -> dict[str, Any]:
    from boxweight.evaluate import run_model
    from boxweight.train import TrainConfig, train
    from storage.job_output import JobOutput
    from weighting.training.input_fn import split_counts

    records, yardstick = prepare_dataset(dataset, out, max_side)
    train_boxes = dict(split_counts(JobOutput.open(records), "train").boxes)
    print(f"{dataset}: train boxes {train_boxes}; rare {rare_classes(dataset, train_boxes)}", flush=True)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
    for seed in seeds:
        for name in configs:
            run_dir = os.path.join(out, f"{dataset}-{name}-seed{seed}")
            t = time.perf_counter()
            cfg = TrainConfig(train=records, out=run_dir, epochs=EPOCHS[dataset], seed=seed, image_size=IMAGE_SIZE[dataset], width=16,
                              **CONFIGS[name])
            if reuse and _trained(cfg):
                seconds = None  # a finished run of this very configuration (the seed decides the model on a CPU)
            else:
                train(cfg)
                seconds = round(time.perf_counter() - t, 1)
            t = time.perf_counter()
            scored = run_model(run_dir, yardstick)
            val = run_model(run_dir, records)
            run = {"seed": seed, "classes": _classes(scored), "map50": scored["map50"], "val": {"classes": _classes(val), "map50": val["map50"]},
                   "train_seconds": seconds, "evaluate_seconds": round(time.perf_counter() - t, 1)}
            results[name].append(run)
            print(f"{dataset} {name} seed {seed}: yardstick mAP50 {run['map50']:.3f}, "
                  f"rare {_ap(run, rare_classes(dataset, train_boxes)):.3f} ({'reused' if seconds is None else f'{seconds:.0f} s'})", flush=True)
    return {"train_boxes": train_boxes, "yardstick": yardstick.replace(out + "/", ""), "epochs": EPOCHS[dataset],
            "image_size": IMAGE_SIZE[dataset], "results": results}


def table(doc: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for dataset, d in doc["datasets"].items():
        configs = list(d["results"])
        first = d["results"]["none"][0]
        seeds = [r["seed"] for r in d["results"]["none"]]
        lines += [f"**{dataset}**, {d['epochs']} epochs at {d['image_size']} px; AP50 on the yardstick ({d['yardstick']}), "
                  f"mean ± std over seeds {', '.join(map(str, seeds))}; val AP50 means in brackets", "",
                  "| class | train boxes | yardstick boxes | " + " | ".join(configs) + " |", "|---|---|---|" + "---|" * len(configs)]
        for k, c in enumerate(first["classes"]):
            cells = []
            for cfg in configs:
                v = np.array([r["classes"][k]["ap50"] for r in d["results"][cfg]])
                val = np.mean([r["val"]["classes"][k]["ap50"] for r in d["results"][cfg]])
                cells.append(f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.3f} ({val:.3f})")
            lines.append(f"| {c['name']} | {d['train_boxes'].get(c['name'], 0)} | {c['ground_truth']} | " + " | ".join(cells) + " |")
        cells = []
        for cfg in configs:
            v = np.array([r["map50"] for r in d["results"][cfg]])
            val = np.mean([r["val"]["map50"] for r in d["results"][cfg]])
            cells.append(f"**{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.3f}** ({val:.3f})")
        lines += ["| mAP50 | | | " + " | ".join(cells) + " |", ""]
        lines += ["| against `none` | rare AP50 gain per seed | mean ± std | mAP50 change | other | goal met |", "|---|---|---|---|---|---|"]
        for cfg in configs:
            if cfg == "none":
                continue
            g = goal(doc, cfg)[dataset]
            other = f"{g['frequent']} {g['frequent_change_mean']:+.3f}" if "frequent" in g else f"p = {g['p_value']:.4f}"
            lines.append(f"| {cfg} ({', '.join(g['rare'])}, {g['rare_ground_truth']} boxes) | {', '.join(f'{v:+.3f}' for v in g['rare_gain'])} "
                         f"| {g['rare_gain_mean']:+.3f} ± {g['rare_gain_std']:.3f} | {g['map50_change_mean']:+.3f} | {other} | {'yes' if g['met'] else 'no'} |")
        lines.append("")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--explore", action="store_true", help="run the candidates (EXPLORE) apart from the gate, into build/explore")
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), help="default: none and DEFAULT (with --explore: none and EXPLORE)")
    parser.add_argument("--datasets", nargs="+", choices=["demo", "aquarium", "longtail"],
                        help="default: demo and aquarium (with --explore: demo and longtail)")
    parser.add_argument("--seeds", type=int, nargs="+", help="default: 0-5 on demo, 0-9 on aquarium (with --explore: 0-2)")
    parser.add_argument("--reuse", action="store_true",
                        help="evaluate, without training again, runs in OUT finished with the same configuration (the gate never reuses)")
    parser.add_argument("--max-side", type=int, default=128, help="aquarium images shrunk by the job to this side; default: %(default)s")
    parser.add_argument("--out", help="default: build/experiment (build/explore with --explore)")
    parser.add_argument("--results", help=f"results file; default: {os.path.relpath(RESULTS, ROOT)} for the gate, OUT/results.json otherwise")
    args = parser.parse_args(argv)
    configs = args.configs or ["none", *(EXPLORE if args.explore else [DEFAULT])]
    if "none" not in configs:
        parser.error("--configs must include none, the reference")
    out = args.out or os.path.join("build", "explore" if args.explore else "experiment")
    datasets = args.datasets or (["demo", "longtail"] if args.explore else ["demo", "aquarium"])
    gate = not args.explore and not args.reuse and args.configs is None and args.seeds is None and datasets == ["demo", "aquarium"]
    results = args.results or (RESULTS if gate else os.path.join(out, "explore.json" if args.explore else "results.json"))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    start = time.perf_counter()
    doc: dict[str, Any] = {"default": DEFAULT, "configs": {c: CONFIGS[c] for c in configs}, "datasets": {}}
    for dataset in datasets:
        seeds = args.seeds or (EXPLORE_SEEDS if args.explore else SEEDS[dataset])
        doc["datasets"][dataset] = run_dataset(dataset, configs, seeds, out, args.max_side, args.reuse)
    doc["total_seconds"] = round(time.perf_counter() - start, 1)
    doc["cpu_count"] = os.cpu_count()
    doc["goal"] = {cfg: goal(doc, cfg) for cfg in configs if cfg != "none"}
    os.makedirs(out, exist_ok=True)
    with open(results, "w") as f:
        json.dump(doc, f, indent=2)
    md = table(doc) + [f"{len(datasets)} datasets x {len(configs)} configurations: {doc['total_seconds'] / 60:.1f} min "
                       f"on {os.cpu_count()} CPU cores. Results: {results}"]
    with open(os.path.join(out, "explore.md" if args.explore else "table.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n" + "\n".join(md))


if __name__ == "__main__":
    main()
