"""Real-world annotation dialects are read as their tools write them, and every box and image is accounted for.

Datasets come from :mod:`tests.dialects`; each case names the item of the
"Real-world annotation dialects" issue it covers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf

import readers
from beam_jobs import prepare
from beam_jobs.options import JobError
from schemas.annotations import ImageRecord
from schemas.features import decode_example
from schemas.label_map import LabelMap
from storage.job_output import JobOutput
from tests import dialects
from tests.conftest import read_dataset as _read

IN_PROCESS = ["--runner=apache_beam.runners.portability.fn_api_runner.fn_runner.FnApiRunner"]




# 1. YOLO segmentation exports and float class ids
def test_yolo_polygon_lines_are_read_as_their_bounding_boxes(tmp_path):
    expected = dialects.yolo_segmentation(tmp_path)
    records, rejects, acc = _read(tmp_path)
    assert rejects == []
    got = {
        Path(r.filename).stem: [(b.text, b.xmin, b.ymin, b.xmax, b.ymax) for b in r.boxes]
        for r in records
    }
    for stem, boxes in expected.items():
        assert [b[0] for b in got[stem]] == [b[0] for b in boxes]
        for have, want in zip(got[stem], boxes):
            assert have[1:] == pytest.approx(want[1:], abs=1e-6)
    assert acc.repairs == {"polygon_to_box": 2}
    assert acc.boxes_in == acc.boxes_written == 3


def test_yolo_lines_that_are_neither_box_nor_polygon_are_dropped_naming_image_and_class(tmp_path):
    dialects.yolo_segmentation(tmp_path)
    (tmp_path / "train" / "labels" / "b.txt").write_text("1 0.5 0.5 0.2\n0.5 0.1 0.1 0.2 0.2\nx 0.5 0.5 0.2 0.2\n")
    _, rejects, acc = _read(tmp_path)
    assert [(r.image, r.classes, r.reason.value) for r in rejects] == [
        ("b.jpg", ("shark",), "box_malformed"),
        ("b.jpg", ("index '0.5'",), "box_malformed"),
        ("b.jpg", ("index 'x'",), "box_malformed"),
    ]
    assert "4 fields, expected 5 (class cx cy w h) or a polygon" in rejects[0].detail
    assert "class id '0.5' is not an integer" in rejects[1].detail
    totals = acc.totals()["classes"]
    assert totals["shark"] == {"boxes_in": 2, "boxes_written": 1, "boxes_dropped": 1, "boxes_dropped_by_reason": {"box_malformed": 1}}


# 2. CSV folders: an image in two CSVs is written once
def test_csv_images_repeated_across_files_are_kept_once_in_their_declared_split(tmp_path):
    splits = dialects.csv_tutorial_folder(tmp_path)
    records, rejects, acc = _read(tmp_path, format="csv", image_root=str(tmp_path / "images"))
    assert {r.filename: r.split for r in records} == splits
    assert sorted((r.image, r.reason.value) for r in rejects) == [(n, "duplicate_image") for n in sorted(splits)]
    assert all(f"is already annotated in {tmp_path}/" in r.detail and r.source.startswith(str(tmp_path / "raccoon_labels.csv")) for r in rejects)
    assert (acc.images_in, acc.images_written, acc.boxes_in, acc.boxes_written) == (6, 3, 6, 3)


# 5. symlinked split folders
def test_linked_folders_inside_the_dataset_are_read_and_ones_leading_outside_are_refused(tmp_path):
    dataset = tmp_path / "ds"
    dialects.yolo_segmentation(dataset)
    store = dataset / "_exports" / "test"
    (store / "images").mkdir(parents=True)
    (store / "labels").mkdir()
    for i in range(3):
        (store / "images" / f"t{i}.jpg").write_bytes(dialects.jpeg())
        (store / "labels" / f"t{i}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (dataset / "test").symlink_to(store, target_is_directory=True)
    records, _, _ = _read(dataset)
    assert sorted(r.split for r in records) == ["test"] * 3 + ["train"] * 2
    outside = tmp_path / "outside"
    shutil.move(str(store), str(outside))
    (dataset / "test").unlink()
    (dataset / "test").symlink_to(outside, target_is_directory=True)
    with pytest.raises(JobError, match=r"ds/test is a link to .*outside, outside the dataset folder .*ds; boxweight reads only inside it"):
        prepare.run(["--input", str(dataset), "--output", str(tmp_path / "out"), *IN_PROCESS], print_report=False)


# 6. a complete JPEG with bytes after its end
def test_padded_images_are_kept_and_truncated_ones_refused_even_with_an_exif_thumbnail(tmp_path):
    padded = dialects.jpeg() + b"\0" * 2410
    thumb = dialects.jpeg(exif_thumbnail=True)
    assert thumb.count(b"\xff\xd9") >= 2  # the thumbnail's end marker sits inside the file
    files = {
        "padded.jpg": padded,
        "png_tail.png": dialects.png() + b"junk" * 30,
        "cut.jpg": thumb[: len(thumb) - 10],  # into the scan data: its end marker is gone, the thumbnail's is not
        "whole.jpg": thumb,
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    doc = {
        "images": [{"id": i, "file_name": n} for i, n in enumerate(files)],
        "annotations": [],
        "categories": [{"id": 1, "name": "x"}],
    }
    (tmp_path / "a.json").write_text(json.dumps(doc))
    records, rejects, acc = _read(tmp_path / "a.json")
    assert sorted(r.filename for r in records) == ["padded.jpg", "png_tail.png", "whole.jpg"]
    assert [(r.image, r.reason.value) for r in rejects] == [("cut.jpg", "image_unreadable")]
    assert "truncated JPEG" in rejects[0].detail
    assert acc.repairs["trailing_bytes"] == 2
    assert tf.io.decode_jpeg(padded).shape == (dialects.H, dialects.W, 3)  # TensorFlow reads it whole


# 7. VOC annotations/ + images/ siblings; a missing image counted once, with where it was looked for
def test_voc_images_in_a_sibling_images_folder_and_missing_ones_counted_once(tmp_path):
    dialects.voc_annotations_images(tmp_path)
    records, rejects, acc = _read(tmp_path / "annotations")
    assert sorted(r.filename for r in records) == ["a.jpg", "b.jpg"]
    assert acc.repairs["absolute_path"] == 1
    (missing,) = rejects
    assert missing.reason.value == "image_missing" and missing.boxes == 1 and missing.classes == ("cell",)
    assert f"no image file for <filename>'c.png' in {tmp_path}/images;" in missing.detail
    assert f"{tmp_path}/extra/c.png has that name: pass --image-root {tmp_path}/extra" in missing.detail
    assert acc.images_in == 3  # c.png is not counted again as an image without XML


# 8. absolute file names from Colab and Windows exports
def test_absolute_coco_file_names_are_found_by_base_name_under_image_root(tmp_path):
    dialects.coco_absolute_paths(tmp_path)
    records, rejects, acc = _read(tmp_path / "export.json", image_root=str(tmp_path / "imgs"))
    assert sorted(r.filename for r in records) == ["x.jpg", "y.jpg"] and rejects == []
    assert acc.repairs["absolute_path"] == 2
    _, rejects, _ = _read(tmp_path / "export.json")
    assert [r.reason.value for r in rejects] == ["path_unsafe", "path_unsafe"]
    assert "or pass --image-root FOLDER to look it up there by its base name" in rejects[0].detail


# 9. the TF OD API's own label map, ids with gaps
@pytest.mark.slow
def test_a_label_map_with_gaps_keeps_its_ids(tmp_path):
    dialects.coco_absolute_paths(tmp_path)
    (tmp_path / "mscoco_label_map.pbtxt").write_text(dialects.MSCOCO_LABEL_MAP)
    doc = json.loads((tmp_path / "export.json").read_text())
    doc["categories"] = [{"id": 1, "name": "/m/01g317"}, {"id": 3, "name": "car"}]
    doc["annotations"][1]["category_id"] = 3
    (tmp_path / "export.json").write_text(json.dumps(doc))
    out = tmp_path / "out"
    prepare.run(
        ["--input", str(tmp_path / "export.json"), "--image-root", str(tmp_path / "imgs"), "--label-map", str(tmp_path / "mscoco_label_map.pbtxt"),
         "--output", str(out), "--val-fraction=0", *IN_PROCESS],
        print_report=False,
    )
    assert LabelMap.from_pbtxt((out / "label_map.pbtxt").read_text()) == LabelMap.from_pbtxt(dialects.MSCOCO_LABEL_MAP)
    output = JobOutput.open(str(out))
    assert output.labels().max_id == 90
    written = [decode_example(x) for x in tf.data.TFRecordDataset(output.files("train")).as_numpy_iterator()]
    assert sorted((list(e["image/object/class/label"]), [t.decode() for t in e["image/object/class/text"]]) for e in written) == [
        ([1], ["/m/01g317"]), ([3], ["car"])
    ]
    assert [c["id"] for c in output.stats()["splits"]["train"]["classes"]] == [1, 3, 90]


# 10. messages that name what was found and what was expected
def test_yolo_given_as_data_yaml_and_labelimg_classes_txt(tmp_path):
    dialects.yolo_segmentation(tmp_path / "seg")
    records, _, _ = _read(tmp_path / "seg" / "data.yaml", format="yolo")
    assert len(records) == 2
    assert readers.detect_format(str(tmp_path / "seg" / "data.yaml")) == "yolo"
    dialects.labelimg_yolo(tmp_path / "li")
    records, rejects, _ = _read(tmp_path / "li")
    assert rejects == [] and [b.text for b in records[0].boxes] == ["cat"]


def test_a_coco_folder_without_split_files_says_what_it_found(tmp_path):
    (tmp_path / "export.json").write_text("{}")
    (tmp_path / "notes.json").write_text("{}")
    with pytest.raises(readers.SourceError, match=r"found export.json, notes.json\. Give the file itself as --input"):
        readers.open_source(str(tmp_path), "coco")
    custom = tmp_path / "custom"
    custom.mkdir()
    for split in ("train", "val"):
        shutil.copy(tmp_path / "export.json", custom / f"custom_{split}.json")
    assert readers.detect_format(str(custom)) == "coco"


# 11. per-class accounting in stats.json and the report, as a user reads it
def test_stats_and_report_carry_per_class_losses(tmp_path):
    dialects.yolo_segmentation(tmp_path / "ds")
    (tmp_path / "ds" / "train" / "labels" / "b.txt").write_text("1 0.5 0.5 0.2\n1 0.5 0.5 0.0 0.2\n")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    boxweight = str(Path(sys.executable).with_name("boxweight"))
    done = subprocess.run([boxweight, "prepare", "--input", str(tmp_path / "ds"), "--output", str(tmp_path / "out"), *IN_PROCESS],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    classes = JobOutput.open(str(tmp_path / "out")).stats()["totals"]["classes"]
    assert classes["shark"] == {"boxes_in": 3, "boxes_written": 1, "boxes_dropped": 2, "boxes_dropped_by_reason": {"box_malformed": 1, "box_zero_area": 1}}
    assert classes["fish"]["boxes_dropped"] == 0
    assert "shark                          3 in =       1 written +      2 dropped (box_malformed 1, box_zero_area 1)" in done.stdout
    rejects = [json.loads(line) for line in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    assert sorted((r["image"], r["classes"], r["reason"]) for r in rejects) == [("b.jpg", ["shark"], "box_malformed"), ("b.jpg", ["shark"], "box_zero_area")]
    assert "Dropped boxes by class" in (tmp_path / "out" / "report.html").read_text()


def test_the_fixture_script_writes_every_dialect(tmp_path):
    done = subprocess.run([sys.executable, "-m", "tests.dialects", str(tmp_path)], capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stderr
    assert {p.name for p in tmp_path.iterdir()} == {"yolo-seg", "csv-tutorial", "voc-annotations-images", "coco-absolute", "labelimg-yolo", "labelme", "labelme-objects", "cvat", "mscoco_label_map.pbtxt"}


def _pixel_boxes(record: ImageRecord) -> list[tuple]:
    return [(b.text, b.xmin * record.width, b.ymin * record.height, b.xmax * record.width, b.ymax * record.height) for b in record.boxes]


# LabelMe and CVAT, the annotation tools' own exports
def test_labelme_shapes_become_boxes_and_other_shapes_are_dropped_with_a_reason(tmp_path):
    expected = dialects.labelme_folder(tmp_path)
    assert readers.detect_format(str(tmp_path)) == "labelme"
    records, rejects, acc = _read(tmp_path)
    for r in records:
        assert r.split == "train"
        for have, want in zip(_pixel_boxes(r), expected[r.filename], strict=True):
            assert have[0] == want[0] and have[1:] == pytest.approx(want[1:], abs=1e-4)
    assert sorted(r.filename for r in records) == ["gone.jpg", "one.jpg"]
    assert [(r.reason.value, r.image, r.classes) for r in rejects] == [("shape_not_a_box", "one.jpg", ("dog",))]
    assert acc.repairs == {"polygon_to_box": 2}


def test_labelme_objects_in_pieces_are_one_box_ignore_regions_no_class_and_masks_boxes(tmp_path):
    expected = dialects.labelme_objects(tmp_path / "lm")
    source = readers.open_source(str(tmp_path / "lm"))
    assert source.label_map.names == ("person", "sofa")  # no __ignore__ class
    records, rejects, acc = _read(tmp_path / "lm")
    (record,) = records
    for have, want in zip(_pixel_boxes(record), expected["objects.jpg"], strict=True):
        assert have[0] == want[0] and have[1:] == pytest.approx(want[1:], abs=1e-4)
    assert [(r.reason.value, r.image, r.classes, r.boxes) for r in rejects] == [("shape_ignored", "objects.jpg", ("__ignore__",), 1)]
    assert acc.repairs == {"pieces_merged": 1, "polygon_to_box": 2}  # the sofa of a polygon and two rectangles; the mask
    assert (acc.boxes_in, acc.boxes_written) == (5, 4)  # objects, not pieces: 3 pieces are one sofa


def test_cvat_export_boxes_splits_and_shapes(tmp_path):
    expected = dialects.cvat_export(tmp_path)
    assert readers.detect_format(str(tmp_path)) == "cvat"
    assert readers.detect_format(str(tmp_path / "annotations.xml")) == "cvat"
    source = readers.open_source(str(tmp_path))
    assert source.label_map.names == ("car", "person")
    records, rejects, acc = _read(tmp_path)
    for r in records:
        split, boxes = expected[r.filename]
        assert r.split == split
        for have, want in zip(_pixel_boxes(r), boxes, strict=True):
            assert have[0] == want[0] and have[1:] == pytest.approx(want[1:], abs=1e-4)
    assert next(r for r in records if r.filename == "f0.jpg").boxes[0].truncated  # occluded
    assert [(r.reason.value, r.image, r.classes) for r in rejects] == [("shape_not_a_box", "f1.jpg", ("car",))]
    assert acc.repairs == {"polygon_to_box": 3}


@pytest.mark.slow
def test_labelme_and_cvat_run_through_the_job(tmp_path):
    dialects.labelme_folder(tmp_path / "lm")
    dialects.cvat_export(tmp_path / "cvat")
    for name in ("lm", "cvat"):
        doc = prepare.run(["--input", str(tmp_path / name), "--output", str(tmp_path / f"out-{name}"), "--val-fraction=0", *IN_PROCESS], print_report=False)
        t = doc["totals"]
        assert (t["images_written"], t["boxes_dropped_by_reason"]) == (2, {"shape_not_a_box": 1})
