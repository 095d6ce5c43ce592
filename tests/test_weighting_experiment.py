"""The experiment's goal check, on results documents built by hand (the experiment itself is `make experiment`)."""

from __future__ import annotations

import json
import os

import pytest

from bench.weighting_experiment import CONFIGS, DEFAULT, RESULTS, goal, rare_classes

DEMO_TRAIN = {"circle": 2241, "square": 575, "star": 63}
AQUA_TRAIN = {"fish": 1961, "jellyfish": 385, "penguin": 330, "puffin": 175, "shark": 152, "stingray": 98, "starfish": 78}


def _run(seed, ap50, gt):
    return {"seed": seed, "classes": [{"name": n, "ground_truth": gt.get(n, 100), "ap50": a} for n, a in ap50.items()]}


def _demo(base, cand, star_gt=190, circle=(0.9, 0.9)):
    seeds = range(len(base))
    gt = {"star": star_gt}
    return {"train_boxes": DEMO_TRAIN, "results": {
        "none": [_run(s, {"circle": circle[0], "square": 0.9, "star": b}, gt) for s, b in zip(seeds, base)],
        "x": [_run(s, {"circle": circle[1], "square": 0.9, "star": c}, gt) for s, c in zip(seeds, cand)],
    }}


def test_rare_classes_are_the_rarest_in_train():
    assert rare_classes("demo", DEMO_TRAIN) == ["star"]
    assert rare_classes("aquarium", AQUA_TRAIN) == ["starfish", "stingray", "shark", "puffin"]


def test_demo_goal_needs_every_seed_a_wide_margin_and_a_big_enough_yardstick():
    base = [0.50, 0.52, 0.48, 0.55, 0.50, 0.51]
    met = goal({"default": "x", "datasets": {"demo": _demo(base, [b + 0.10 + 0.01 * (i % 2) for i, b in enumerate(base)])}})["demo"]
    assert met["met"] and met["rare"] == ["star"] and met["rare_gain_mean"] == pytest.approx(0.105)
    one_loses = [b + 0.10 for b in base[:5]] + [base[5] - 0.01]
    assert not goal({"default": "x", "datasets": {"demo": _demo(base, one_loses)}})["demo"]["met"]
    small = [b + 0.03 for b in base]  # every seed, no spread, but below +0.05
    assert not goal({"default": "x", "datasets": {"demo": _demo(base, small)}})["demo"]["met"]
    few_boxes = _demo(base, [b + 0.1 for b in base], star_gt=15)
    assert not goal({"default": "x", "datasets": {"demo": few_boxes}})["demo"]["met"]
    head_pays = _demo(base, [b + 0.1 for b in base], circle=(0.90, 0.87))
    row = goal({"default": "x", "datasets": {"demo": head_pays}})["demo"]
    assert not row["met"] and row["frequent"] == "circle" and row["frequent_change_mean"] == pytest.approx(-0.03)
    assert not goal({"default": "x", "datasets": {"demo": _demo(base[:5], [b + 0.1 for b in base[:5]])}})["demo"]["met"]  # 5 seeds


def test_aquarium_goal_is_a_one_sided_paired_t_test_on_the_rare_group():
    rare = ["starfish", "stingray", "shark", "puffin"]
    gts = {n: 50 for n in rare}

    def doc(gains):
        base = [_run(s, {"fish": 0.3, **{n: 0.2 + 0.01 * s for n in rare}}, gts) for s in range(len(gains))]
        cand = [_run(s, {"fish": 0.3, **{n: 0.2 + 0.01 * s + g for n in rare}}, gts) for s, g in enumerate(gains)]
        return {"default": "x", "datasets": {"aquarium": {"train_boxes": AQUA_TRAIN, "results": {"none": base, "x": cand}}}}

    row = goal(doc([0.02, 0.01, 0.03, -0.01, 0.02, 0.02, 0.0, 0.03, 0.01, 0.02]))["aquarium"]
    assert row["met"] and row["p_value"] < 0.01 and row["rare_ground_truth"] == 200
    assert not goal(doc([0.02, -0.02, 0.03, -0.03, 0.0, 0.01, -0.01, 0.0, 0.01, -0.02]))["aquarium"]["met"]
    assert goal(doc([0.02] * 9 + [0.03]))["aquarium"]["met"]  # nearly constant gains pass too
    assert not goal(doc([0.02, 0.01, 0.03]))["aquarium"]["met"]  # fewer than 10 seeds


def test_unpaired_seeds_never_meet_the_goal():
    d = _demo([0.5] * 6, [0.7] * 6)
    d["results"]["x"] = d["results"]["x"][1:]
    assert goal({"default": "x", "datasets": {"demo": d}})["demo"] == {"met": False, "why": "x and none not run on the same seeds"}


def test_the_shipped_default_is_the_trainers_default_and_the_committed_results_name_it():
    from boxweight.train import TrainConfig
    from boxweight.train_args import parser

    cfg = TrainConfig(train="t", out="o")
    args = vars(parser().parse_args(["--train", "t", "--out", "o"]))
    for key, value in CONFIGS[DEFAULT].items():
        if key == "weights":  # the trainer reads the records' weights; the job's default scheme writes them
            from weighting.schemes import DEFAULT_SCHEME

            assert DEFAULT_SCHEME == value
            continue
        assert getattr(cfg, key) == value == args[key], key
    if os.path.exists(RESULTS):
        with open(RESULTS) as f:
            assert json.load(f)["default"] == DEFAULT


def test_the_many_class_long_tail_set_is_colour_shape_pairs_with_zipf_counts(tmp_path):
    from boxweight.demo_data import CLASSES, class_counts, class_names, generate

    assert class_names() == CLASSES and class_names(7)[:2] == ("red-circle", "red-square") and len(set(class_names(30))) == 30
    with pytest.raises(ValueError, match="at most 30 classes"):
        class_names(31)
    counts = class_counts(10_000, 24, 1.2)
    assert sum(counts) == 10_000 and counts == sorted(counts, reverse=True)
    assert counts[0] / counts[23] == pytest.approx(24**1.2, rel=0.02)
    got = generate(str(tmp_path / "lt"), num_images=120, seed=3, num_classes=24, exponent=1.2)
    doc = json.loads((tmp_path / "lt" / "annotations.json").read_text())
    assert [c["name"] for c in doc["categories"]] == list(class_names(24))
    assert sum(got.values()) == len(doc["annotations"]) and got["red-circle"] == max(got.values())
    from PIL import Image

    corner = Image.open(tmp_path / "lt" / doc["images"][0]["file_name"]).convert("RGB").crop((0, 0, 8, 8))
    r, g, b = (sum(ch.getdata()) / 64 for ch in corner.split())
    assert max(r, g, b) - min(r, g, b) < 12  # grey, so that colour names the class
