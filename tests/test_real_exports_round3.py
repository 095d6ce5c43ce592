"""Real exports, round 3: LabelMe objects as LabelMe means them, the val carve said out loud, training that
refuses before it trains. Each case run as a user types it (a subprocess, exit code and lines checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests import dialects

BOXWEIGHT = str(Path(sys.executable).with_name("boxweight"))
IN_PROCESS = ["--runner=DirectRunner", "--direct_running_mode=in_memory"]


def _run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BOXWEIGHT, *args], capture_output=True, text=True, timeout=timeout)


def _stats(out: Path) -> dict:
    return json.loads((out / "stats.json").read_text())


# 1-3. LabelMe: group_id, __ignore__, mask
def test_labelme_pieces_ignore_regions_and_masks_through_the_job(tmp_path):
    dialects.labelme_objects(tmp_path / "lm")
    done = _run("prepare", "--input", str(tmp_path / "lm"), "--output", str(tmp_path / "o"), "--val-fraction=0", *IN_PROCESS)
    assert done.returncode == 0, done.stderr
    label_map = (tmp_path / "o" / "label_map.pbtxt").read_text()
    assert "__ignore__" not in label_map and "name: 'sofa'" in label_map  # was: __ignore__ with id 1 and a weight
    totals = _stats(tmp_path / "o")["totals"]
    assert (totals["boxes_in"], totals["boxes_written"], totals["boxes_dropped_by_reason"]) == (5, 4, {"shape_ignored": 1})
    assert totals["repairs"] == {"pieces_merged": 1, "polygon_to_box": 2}  # was: 3 sofa boxes, the mask dropped
    assert totals["classes"]["sofa"]["boxes_written"] == 2


# 4. train checks its data arguments before the first step
def test_train_with_a_val_split_that_is_not_there_refuses_before_training(tmp_path, demo_dir):
    out = tmp_path / "o"
    done = _run("prepare", "--input", str(demo_dir / "annotations.json"), "--output", str(out), "--val-fraction=0", *IN_PROCESS)
    assert done.returncode == 0, done.stderr
    trained = _run("train", "--train", str(out), "--val", str(out), "--out", str(tmp_path / "run"), "--epochs", "50")
    assert trained.returncode == 2
    assert trained.stderr.strip().splitlines()[-1] == f"boxweight train: error: {out}: no split 'val' here; splits: train"
    assert "epoch" not in trained.stdout and not (tmp_path / "run").exists()  # was: every epoch trained, then exit 2


def test_train_refuses_an_image_size_the_detector_cannot_take_before_loading_anything(tmp_path, demo_dir):
    trained = _run("train", "--train", str(tmp_path), "--out", str(tmp_path / "run"), "--image-size", "100")
    assert trained.returncode == 2
    assert trained.stderr.strip().splitlines()[-1] == (
        "boxweight train: error: argument --image-size: 100 must be a multiple of 8 (the detector's backbone halves it three times)"
    )


# 5 and 6. the carve said out loud; classes that no train box reaches named
def test_the_carve_and_unlearnable_classes_are_said_on_the_console_in_stats_and_on_the_page(tmp_path, demo_dir):
    doc = json.loads((demo_dir / "annotations.json").read_text())
    doc["categories"].append({"id": 99, "name": "unicorn"})  # in the label map, in no annotation
    (tmp_path / "a.json").write_text(json.dumps(doc))
    done = _run("prepare", "--input", str(tmp_path / "a.json"), "--image-root", str(demo_dir), "--output", str(tmp_path / "o"), *IN_PROCESS)
    assert done.returncode == 0, done.stderr
    carve = _stats(tmp_path / "o")["input"]["val_carve"]
    assert (carve["train_images_before"], carve["val_images"], carve["far_from_asked"]) == (240, 24, False)
    assert "val: carved from train, 24 of 240 images (10.0%; asked 10%), stratified" in done.stdout  # was: nothing
    assert "warning: 1 of 7 classes have no train box and will never be learned, though they keep their id and a weight: unicorn" in done.stdout
    page = (tmp_path / "o" / "report.html").read_text()
    assert "carved from train, 24 of 240 images" in page and "will never be learned" in page


def test_a_small_set_whose_carve_is_far_from_the_fraction_says_so(tmp_path):
    images = tmp_path / "data"
    images.mkdir()
    entries, anns = [], []
    for i in range(12):  # 6 classes in 2 images each: each keeps one image in val, 6 of 12
        (images / f"{i}.jpg").write_bytes(dialects.jpeg())
        entries.append({"id": i + 1, "file_name": f"{i}.jpg", "width": dialects.W, "height": dialects.H})
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": i // 2 + 1, "bbox": [2, 2, 20, 20]})
    cats = [{"id": k + 1, "name": f"c{k}"} for k in range(6)]
    (images / "a.json").write_text(json.dumps({"images": entries, "annotations": anns, "categories": cats}))
    done = _run("prepare", "--input", str(images / "a.json"), "--output", str(tmp_path / "o"), *IN_PROCESS)
    assert done.returncode == 0, done.stderr
    assert "val: carved from train, 6 of 12 images (50.0%; asked 10%)" in done.stdout
    assert "warning: the carved val split is 50.0% of train, far from the asked 10%" in done.stdout
    assert _stats(tmp_path / "o")["input"]["val_carve"]["far_from_asked"] is True


# 9. long class names are shown whole
def test_long_class_names_are_shown_whole_in_the_evaluate_and_prepare_tables(tmp_path, demo_dir):
    from boxweight.evaluate import render

    long_a, long_b = "Plastic bag - wrapper and film", "Plastic bag - wrapper, other"
    table = render({"classes": [
        {"id": 1, "name": long_a, "ground_truth": 5, "ap50": 0.5, "ap": 0.25, "recall": 0.6},
        {"id": 2, "name": long_b, "ground_truth": 3, "ap50": None, "ap": None, "recall": None},
    ], "score_threshold": 0.5, "map50": 0.5, "map": 0.25})
    assert long_a in table and long_b in table  # was "Plastic bag - wrappe" twice
    header, first, second = table.splitlines()[:3]
    assert header.index(" gt") + 3 == first.index(" 5 ") + 2 == second.index(" 3 ") + 2  # the columns still line up
    doc = json.loads((demo_dir / "annotations.json").read_text())
    doc["categories"][0]["name"] = long_a
    (tmp_path / "a.json").write_text(json.dumps(doc))
    done = _run("prepare", "--input", str(tmp_path / "a.json"), "--image-root", str(demo_dir), "--output", str(tmp_path / "o"), *IN_PROCESS)
    assert done.returncode == 0, done.stderr
    assert f"  {long_a} " in done.stdout
    shown = _run("report", str(tmp_path / "o"))
    assert shown.returncode == 0 and f"  {long_a} " in shown.stdout


# 7. a folder with two annotation sets
def test_a_folder_with_two_annotation_sets_is_refused_naming_both(tmp_path):
    data = tmp_path / "export"
    dialects.cvat_export(data)
    coco = {"images": [{"id": 1, "file_name": "images/f0.jpg", "width": dialects.W, "height": dialects.H}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 9, 9]}],
            "categories": [{"id": 1, "name": "truck"}]}
    (data / "instances_default.json").write_text(json.dumps(coco))
    done = _run("prepare", "--input", str(data), "--output", str(tmp_path / "o"))
    assert done.returncode == 2  # was: one of them read without a word
    assert done.stderr.strip() == (
        f"boxweight prepare: error: {data} holds more than one annotation set: cvat (annotations.xml); "
        "coco (instances_default.json). Give the one you mean as --input (its file), or pass --format"
    )
    chosen = _run("prepare", "--input", str(data), "--format", "cvat", "--output", str(tmp_path / "o"), *IN_PROCESS)
    assert chosen.returncode == 0, chosen.stderr
    label_map = (tmp_path / "o" / "label_map.pbtxt").read_text()
    assert "name: 'car'" in label_map and "truck" not in label_map


# 8. messages that point the way
def _yolo(root: Path, yaml_text: str) -> Path:
    for split in ("train", "valid"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir(parents=True)
        (root / split / "images" / "a.jpg").write_bytes(dialects.jpeg())
        (root / split / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "data.yaml").write_text(yaml_text)
    return root


def test_a_wrong_format_or_an_image_folder_says_what_was_found_and_where(tmp_path):
    root = _yolo(tmp_path / "yolo", "names: [fish]\ntrain: train/images\nval: valid/images\n")
    done = _run("prepare", "--input", str(root), "--format", "coco", "--output", str(tmp_path / "o"))
    assert done.returncode == 2
    assert done.stderr.strip().endswith("(it looks like yolo: pass --format yolo, or leave --format out)")
    dialects.cvat_export(tmp_path / "cvat")
    done = _run("prepare", "--input", str(tmp_path / "cvat" / "annotations.xml"), "--format", "voc", "--output", str(tmp_path / "o"))
    assert done.returncode == 2
    assert done.stderr.strip() == (f"boxweight prepare: error: {tmp_path / 'cvat' / 'annotations.xml'}: no Pascal VOC *.xml files found "
                                   "(it looks like cvat: pass --format cvat, or leave --format out)")
    done = _run("prepare", "--input", str(root / "train" / "images"), "--output", str(tmp_path / "o"))
    assert done.returncode == 2
    assert f"no known annotation format found (1 .jpg), but {root} holds data.yaml: give that folder as --input;" in done.stderr


def test_data_yaml_split_paths_from_another_machine_are_said_in_one_line(tmp_path):
    root = _yolo(tmp_path / "yolo", "names: [fish]\ntrain: /kaggle/input/fish/train/images\nval: /kaggle/input/fish/valid/images\n")
    done = _run("prepare", "--input", str(root), "--output", str(tmp_path / "o"), *IN_PROCESS)
    assert done.returncode == 0, done.stderr
    for key, split in (("train", "train"), ("val", "valid")):
        assert (f"WARNING readers.yolo: {root}/data.yaml: {key}: /kaggle/input/fish/{split}/images is no folder here; "
                "those images take their split from their folder names") in done.stderr
    assert sorted(_stats(tmp_path / "o")["splits"]) == ["train", "val"]  # still right, from the folder names
