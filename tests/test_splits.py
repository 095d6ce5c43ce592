"""Declared splits are kept in every format; val is carved only when none is declared, by image key alone.

The datasets are generated here: a BCCD-like VOC tree with ``ImageSets/Main``
lists, a Roboflow-style YOLO ``data.yaml``, COCO files named per split, CSVs
in split folders and TF OD API shard names.
"""

from __future__ import annotations

import json
import posixpath
import shutil
from collections import Counter
from pathlib import Path

import pytest

import validation
from beam_jobs import prepare
from schemas.annotations import ImageRecord, Reject
from storage.job_output import JobOutput
from tests.conftest import bccd_like, jpeg_bytes

IN_PROCESS = ["--runner=apache_beam.runners.portability.fn_api_runner.fn_runner.FnApiRunner"]


def _splits(path: Path | str, **kw) -> dict[str, str]:
    """source id -> split, as the reader yields them (valid records only)."""
    out = {}
    for item in validation.read(str(path), **kw):
        if isinstance(item, ImageRecord):
            out[item.source_id] = item.split
    return out


def _shard_ids(out: Path, split: str) -> list[str]:
    import tensorflow as tf

    from schemas.features import decode_example

    files = JobOutput.open(str(out)).files(split)  # the image keys (file stems): source ids are numbers since schema 2
    names = [decode_example(x)["image/filename"].decode() for x in tf.data.TFRecordDataset(files).as_numpy_iterator()]
    return [posixpath.splitext(posixpath.basename(n))[0] for n in names]


@pytest.mark.slow
def test_voc_image_sets_are_kept_whichever_folder_the_input_names(tmp_path):
    lists = {"train": list(range(6)), "val": [6, 7, 8], "test": [9, 10, 11], "trainval": list(range(9))}
    ids = bccd_like(tmp_path / "BCCD", image_sets=lists)
    outs = {}
    for name, where in (("root", tmp_path / "BCCD"), ("annotations", tmp_path / "BCCD" / "Annotations")):
        outs[name] = tmp_path / f"out-{name}"
        prepare.run(["--input", str(where), "--output", str(outs[name]), *IN_PROCESS], print_report=False)
    output = JobOutput.open(str(outs["root"]))
    assert output.splits == ["train", "val", "test"]
    for split, members in (("train", lists["train"]), ("val", lists["val"]), ("test", lists["test"])):
        assert sorted(_shard_ids(outs["root"], split)) == [ids[i] for i in members]
    for shard in output.manifest.shards:
        assert (outs["root"] / shard.name).read_bytes() == (outs["annotations"] / shard.name).read_bytes()


def test_images_a_voc_list_omits_or_names_twice_are_quarantined_with_the_reason(tmp_path):
    ids = bccd_like(tmp_path / "d", n=6, image_sets={"train": [0, 1, 2], "test": [2, 3]})
    items = list(validation.read(str(tmp_path / "d")))
    splits = {r.source_id: r.split for r in items if isinstance(r, ImageRecord)}
    assert splits == {ids[0]: "train", ids[1]: "train", ids[3]: "test"}
    rejects = sorted((r.reason.value, r.detail) for r in items if isinstance(r, Reject))
    assert rejects == [
        ("split_conflict", f"{ids[2]} is listed in test.txt, train.txt of ImageSets/Main"),
        ("split_undeclared", f"{ids[4]} is in no split list of ImageSets/Main"),
        ("split_undeclared", f"{ids[5]} is in no split list of ImageSets/Main"),
    ]
    acc = validation.Accounting()
    list(validation.read(str(tmp_path / "d"), accounting=acc))
    assert acc.balanced() and acc.images_in == 6 and acc.images_quarantined_by_reason == {"split_conflict": 1, "split_undeclared": 2}


def test_trainval_counts_as_train_and_val_is_carved_from_it_only(tmp_path):
    ids = bccd_like(tmp_path / "d", n=10, image_sets={"trainval": list(range(7)), "test": [7, 8, 9]})
    splits = _splits(tmp_path / "d")
    assert {ids[i]: "train" for i in range(7)} | {ids[i]: "test" for i in (7, 8, 9)} == splits


@pytest.mark.slow
def test_the_carved_val_split_depends_on_the_image_key_not_on_how_the_path_is_written(tmp_path):
    bccd_like(tmp_path / "BCCD", n=40)  # no ImageSets: val is carved
    stats = []
    for i, where in enumerate((tmp_path / "BCCD", tmp_path / "BCCD" / "Annotations", f"{tmp_path}/BCCD/./Annotations/")):
        out = tmp_path / f"out{i}"
        doc = prepare.run(["--input", str(where), "--output", str(out), "--val-fraction=0.25", *IN_PROCESS], print_report=False)
        stats.append({s: (e["images"], e["boxes"]) for s, e in doc["splits"].items()})
        assert _shard_ids(out, "val") == _shard_ids(tmp_path / "out0", "val")
    assert stats[0] == stats[1] == stats[2]
    assert stats[0]["val"][0] > 0


def test_yolo_data_yaml_entries_name_the_splits(tmp_path):
    root = tmp_path / "yolo"
    for folder in ("train", "holdout", "test"):
        (root / folder / "images").mkdir(parents=True)
        (root / folder / "labels").mkdir(parents=True)
        for i in range(2):
            (root / folder / "images" / f"{folder}{i}.jpg").write_bytes(jpeg_bytes())
            (root / folder / "labels" / f"{folder}{i}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    # Roboflow writes paths one folder too high; 'holdout' is no split name, data.yaml says val
    (root / "data.yaml").write_text("train: ../train/images\nval: ../holdout/images\nnames: ['cell']\n")
    assert _splits(root) == {"train/images/train0": "train", "train/images/train1": "train", "holdout/images/holdout0": "val",
                             "holdout/images/holdout1": "val", "test/images/test0": "test", "test/images/test1": "test"}


def test_coco_files_named_per_split(tmp_path):
    (tmp_path / "imgs").mkdir()
    for split in ("train", "val"):
        (tmp_path / "imgs" / f"{split}.jpg").write_bytes(jpeg_bytes())
        doc = {"images": [{"id": 1, "file_name": f"{split}.jpg"}], "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 9, 9]}], "categories": [{"id": 1, "name": "x"}]}
        (tmp_path / f"custom_{split}.json").write_text(json.dumps(doc))
    items = [r for r in validation.read(str(tmp_path), "coco", image_root=str(tmp_path / "imgs")) if isinstance(r, ImageRecord)]
    assert sorted((r.split, r.filename) for r in items) == [("train", "train.jpg"), ("val", "val.jpg")]


def test_csv_split_from_its_name_else_its_folder(tmp_path):
    header = "filename,width,height,class,xmin,ymin,xmax,ymax\n"
    for folder in ("train", "valid", "test"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / f"{folder}.jpg").write_bytes(jpeg_bytes())
        (tmp_path / folder / "_annotations.csv").write_text(header + f"{folder}.jpg,64,48,cell,1,1,9,9\n")
    assert _splits(tmp_path, format="csv") == {"train.jpg": "train", "valid.jpg": "val", "test.jpg": "test"}


@pytest.mark.slow
def test_tf_od_api_shard_names_name_the_split(tmp_path, demo_dir):
    out = tmp_path / "job"
    prepare.run(["--input", str(demo_dir / "annotations.json"), "--output", str(out), "--num-shards=1", *IN_PROCESS], print_report=False)
    records = tmp_path / "records"
    records.mkdir()
    shutil.copy(out / "train-00000-of-00001.tfrecord", records / "coco_train.record-00000-of-00001")
    shutil.copy(out / "val-00000-of-00001.tfrecord", records / "pet_faces_val.record-00000-of-00001")
    counts = Counter(_splits(records).values())
    stats = JobOutput.open(str(out)).stats()["splits"]
    assert counts == {"train": stats["train"]["images"], "val": stats["val"]["images"]}


# The carve of a val split out of train (real exports, round 3, #5)
def _carve(images, fraction):
    from beam_jobs.split import carve_val

    val, summary = carve_val([(h, tuple(sorted(c))) for h, c in images], fraction)
    return val, summary


def test_a_class_in_two_images_lands_in_both_splits_even_when_it_is_not_their_rarest_class():
    # person is in 2 images, but each of those holds a rarer class: the old stratum (rarest class) never carved it
    images = [(1, {"person", "kite"}), (2, {"person", "boat"})] + [(10 + i, {"car"}) for i in range(20)]
    images += [(100, {"kite"}), (101, {"boat"})]
    val, summary = _carve(images, 0.1)
    assert sum(1 for h, c in images if h in val and "person" in c) == 1
    assert summary["classes_in_both"] == ["boat", "car", "kite", "person"] and summary["classes_train_only"] == []
    # one image each of boat, kite (not the person-and-kite one: person would lose its last train image) and car
    assert summary["val_images"] == 3 and not summary["far_from_asked"]


def test_no_class_loses_its_last_train_image_and_a_small_set_says_it_is_far_from_the_fraction():
    # 12 images, 6 classes in 2 images each: every class in both splits needs 6 val images (50% at 0.1)
    images = [(i, {f"c{i // 2}"}) for i in range(12)]
    val, summary = _carve(images, 0.1)
    assert len(val) == 6 and {f"c{h // 2}" for h in val} == {f"c{i}" for i in range(6)}
    assert summary["far_from_asked"] and summary["fraction"] == 0.5
    single = [(1, {"only"}), (2, {"a"}), (3, {"a"})]
    val, summary = _carve(single, 0.5)
    assert 1 not in val and summary["classes_train_only"] == ["only"]


def test_the_carve_is_stratified_and_depends_only_on_the_images():
    import random

    images = [(random.Random(f"common{i}").getrandbits(63), {"common"}) for i in range(900)]
    images += [(random.Random(f"rare{i}").getrandbits(63), {"rare"}) for i in range(100)]
    val, summary = _carve(images, 0.1)
    assert summary["val_images"] == 100
    counts = {name: sum(1 for h, c in images if h in val and name in c) for name in ("common", "rare")}
    assert counts == {"common": 90, "rare": 10}  # each stratum its share
    shuffled = images[::-1]
    assert _carve(shuffled, 0.1)[0] == val
