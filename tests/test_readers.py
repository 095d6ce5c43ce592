"""Readers on the real shared datasets, counted independently, and on hostile input."""

from __future__ import annotations

import csv
import io
import json
import os
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import readers
import validation
from readers import RawBox, RawImage, SourceError, detect_format
from schemas.annotations import ImageRecord, Reject
from tests.conftest import jpeg_bytes, png_bytes, shared, voc_xml
from validation import Accounting, probe, read


def _read_all(path, **kw):
    acc = Accounting()
    items = list(read(str(path), accounting=acc, **kw))
    records = [i for i in items if isinstance(i, ImageRecord)]
    rejects = [i for i in items if isinstance(i, Reject)]
    assert acc.balanced(), acc
    return records, rejects, acc


def _class_counts(records):
    return Counter(b.text for r in records for b in r.boxes)


def test_chess_coco_matches_pycocotools():
    from pycocotools.coco import COCO

    root = shared("chess-coco")
    records, rejects, acc = _read_all(root)
    expected: Counter[str] = Counter()
    images = 0
    for split in ("train", "valid", "test"):
        coco = COCO(str(root / split / "_annotations.coco.json"))
        images += len(coco.getImgIds())
        for ann in coco.loadAnns(coco.getAnnIds()):
            expected[coco.loadCats(ann["category_id"])[0]["name"]] += 1
    # Known quirk: one exact duplicate box in the data, dropped with a reason.
    dupes = [r for r in rejects if r.reason.value == "box_duplicate"]
    assert len(dupes) == 1
    expected[records[0].boxes[0].text] += 0
    got = _class_counts(records)
    got[next(iter(_dupe_class(dupes[0], root)))] += 1
    assert got == expected
    assert acc.images_in == images == len(records) == 289
    assert acc.boxes_in == sum(expected.values()) == 2870
    # category 0 ('pieces', unused) keeps label id 1; 'bishop' has a single box in train
    assert readers.open_source(str(root)).label_map.names[0] == "pieces"
    train = [r for r in records if r.split == "train"]
    assert _class_counts(train)["bishop"] == 1
    assert sum(1 for r in records if r.split == "test" and not r.boxes) == 1


def _dupe_class(reject, root):
    path, _, rest = reject.source.partition(": annotations[")
    index = int(rest.split("]")[0])
    doc = json.loads(Path(path).read_text())
    ann = doc["annotations"][index]
    return [c["name"] for c in doc["categories"] if c["id"] == ann["category_id"]]


def test_cards_voc_matches_direct_xml_parse():
    root = shared("cards-voc")
    records, rejects, acc = _read_all(root)
    expected = Counter(
        obj.findtext("name") for xml in root.rglob("*.xml") for obj in ET.parse(xml).getroot().iter("object")
    )
    assert _class_counts(records) == expected
    assert len(records) == len(list(root.rglob("*.xml"))) == 363
    assert not rejects
    assert {r.split for r in records} == {"train", "test"}
    assert {Path(r.path).suffix for r in records} == {".JPG", ".jpg"}  # mixed case kept


def test_cards_csv_matches_direct_csv_parse():
    path = shared("cards-voc") / "images" / "train_labels.csv"
    records, rejects, _ = _read_all(path)
    rows = list(csv.DictReader(path.open()))
    assert _class_counts(records) == Counter(r["class"] for r in rows)
    assert len(records) == len({r["filename"] for r in rows})
    assert not rejects


def test_aquarium_yolo_matches_direct_parse():
    root = shared("aquarium-yolo")
    records, rejects, acc = _read_all(root)
    names = yaml.safe_load((root / "data.yaml").read_text())["names"]
    expected: Counter[str] = Counter()
    zero = 0
    for label in root.rglob("labels/*.txt"):
        for line in label.read_text().split("\n"):
            if line.strip():
                c, _, _, w, h = line.split()
                if float(w) == 0 or float(h) == 0:
                    zero += 1
                    continue
                expected[names[int(c)]] += 1
    assert _class_counts(records) == expected
    # Known quirks: two zero-size boxes in test (dropped with a reason), one empty label file (a negative).
    assert zero == 2
    assert Counter(r.reason.value for r in rejects) == {"box_zero_area": 2}
    assert len(records) == len(list(root.rglob("images/*.jpg"))) == 638
    assert {r.split for r in records} == {"train", "val", "test"}
    assert acc.boxes_in == 4817


def test_detect_format_on_each_dataset_and_error_lists_what_was_looked_for(tmp_path):
    assert detect_format(str(shared("chess-coco"))) == "coco"
    assert detect_format(str(shared("cards-voc"))) == "voc"
    assert detect_format(str(shared("aquarium-yolo"))) == "yolo"
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(
        SourceError,
        match=r"no known annotation format found \(1 \.txt\); looked for coco: a \*.json file, .*; or pass --format$",
    ):
        detect_format(str(tmp_path))
    with pytest.raises(SourceError, match="does not exist"):
        detect_format(str(tmp_path / "nope"))
    with pytest.raises(SourceError, match=r"unknown format 'kitti'; known: auto, coco, voc"):
        readers.open_source(str(tmp_path), "kitti")


# ---------------------------------------------------------------- hostile input


def _coco(tmp_path, images, annotations, categories=({"id": 0, "name": "thing"},)):
    doc = {"images": images, "annotations": annotations, "categories": list(categories)}
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(doc))
    return path


def test_hostile_images_are_quarantined_with_reasons(tmp_path):
    good = jpeg_bytes()
    (tmp_path / "ok.jpg").write_bytes(good)
    (tmp_path / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "png_named.jpg").write_bytes(png_bytes())
    (tmp_path / "garbage.jpg").write_bytes(b"not an image at all")
    (tmp_path / "empty.jpg").write_bytes(b"")
    gif = io.BytesIO()
    Image.new("P", (4, 4)).save(gif, format="GIF")
    (tmp_path / "anim.gif").write_bytes(gif.getvalue())
    (tmp_path.parent / "secret.jpg").write_bytes(good)
    names = [
        "ok.jpg",
        "truncated.jpg",
        "png_named.jpg",
        "garbage.jpg",
        "empty.jpg",
        "anim.gif",
        "missing.jpg",
        "../secret.jpg",
        "/etc/passwd",
        "C:\\x.jpg",
    ]
    images = [{"id": i, "file_name": n, "width": 64, "height": 48} for i, n in enumerate(names)]
    anns = [{"id": i, "image_id": i, "category_id": 0, "bbox": [1, 1, 10, 10]} for i in range(len(names))]
    records, rejects, acc = _read_all(_coco(tmp_path, images, anns))
    by_image = {r.image: r.reason.value for r in rejects}
    assert by_image == {
        "truncated.jpg": "image_unreadable",
        "garbage.jpg": "image_unreadable",
        "empty.jpg": "image_unreadable",
        "anim.gif": "image_format_unsupported",
        "missing.jpg": "image_missing",
        "../secret.jpg": "path_unsafe",
        "/etc/passwd": "path_unsafe",
        "C:\\x.jpg": "path_unsafe",
    }
    assert {r.filename: r.format for r in records} == {"ok.jpg": "jpeg", "png_named.jpg": "png"}
    assert acc.repairs["format_misnamed"] == 1
    assert acc.boxes_dropped_by_reason["image_quarantined"] == 8
    assert "truncated" in next(r.detail for r in rejects if r.image == "truncated.jpg").lower()


def test_bad_boxes_are_dropped_or_clipped_with_reasons(tmp_path):
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes())  # 64 x 48
    boxes = [
        [1, 1, 10, 10],  # kept
        [1, 1, 10, 10],  # exact duplicate -> dropped
        [float("nan"), 1, 5, 5],
        [1, 1, float("inf"), 5],
        [5, 5, 0, 4],  # zero width
        [5, 5, -3, 4],  # negative width
        [60, 40, 10, 10],  # partly outside -> clipped
        [100, 100, 5, 5],  # entirely outside
    ]
    anns = [{"id": i, "image_id": 0, "category_id": 0, "bbox": b} for i, b in enumerate(boxes)]
    anns.append({"id": 99, "image_id": 0, "category_id": 42, "bbox": [1, 1, 5, 5]})  # unknown class
    anns.append({"id": 100, "image_id": 7, "category_id": 0, "bbox": [1, 1, 5, 5]})  # no such image
    anns.append({"id": 101, "image_id": 0, "category_id": 0, "bbox": "oops"})
    path = tmp_path / "ann.json"
    # json.dumps writes NaN/Infinity, which COCO files from Python tools do contain
    path.write_text(
        json.dumps(
            {
                "images": [{"id": 0, "file_name": "a.jpg", "width": 640, "height": 480}],
                "annotations": anns,
                "categories": [{"id": 0, "name": "thing"}],
            }
        )
    )
    records, rejects, acc = _read_all(path)
    assert Counter(r.reason.value for r in rejects) == {
        "box_duplicate": 1,
        "box_non_finite": 2,
        "box_zero_area": 2,
        "box_outside_image": 1,
        "box_unknown_class": 1,
        "box_orphan": 1,
        "box_malformed": 1,
    }
    (record,) = records
    assert len(record.boxes) == 2
    clipped = record.boxes[1]
    assert (clipped.xmax, clipped.ymax) == (1.0, 1.0)
    assert acc.repairs == {"size_mismatch": 1, "box_clipped": 1}
    assert (record.width, record.height) == (64, 48)  # the file wins over the declared 640x480
    assert acc.boxes_in == len(anns)
    assert "category_id 42 is not in the label map" in next(
        r.detail for r in rejects if r.reason.value == "box_unknown_class"
    )


def test_exif_rotated_jpeg_is_stored_upright_with_boxes_in_the_displayed_frame(tmp_path):
    import numpy as np

    # Stored 64x48 with orientation 6 (rotate 90 CW to display): displayed 48x64.
    (tmp_path / "r.jpg").write_bytes(jpeg_bytes((64, 48), exif_orientation=6))
    images = [{"id": 0, "file_name": "r.jpg", "width": 48, "height": 64}]
    anns = [
        {"id": 0, "image_id": 0, "category_id": 0, "bbox": [32, 0, 16, 16]}
    ]  # marker's displayed position: top-right
    records, _, acc = _read_all(_coco(tmp_path, images, anns))
    (record,) = records
    assert (record.width, record.height) == (48, 64)
    assert acc.repairs["exif_rotated"] == 1
    pixels = np.asarray(Image.open(io.BytesIO(record.encoded)))  # what TF will decode: no EXIF applied
    assert pixels.shape[:2] == (64, 48)
    box = record.boxes[0]
    y0, y1, x0, x1 = int(box.ymin * 64), int(box.ymax * 64), int(box.xmin * 48), int(box.xmax * 48)
    assert pixels[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2].mean() > 200  # the white marker is inside the box


def test_decompression_bomb_is_quarantined(tmp_path):
    # A small PNG declaring a huge size: Pillow's pixel limit is kept and enforced.
    big = Image.MAX_IMAGE_PIXELS + 1
    side = int(big**0.5) + 1
    img = Image.new("1", (side, side))
    img.save(tmp_path / "bomb.png", format="PNG", optimize=True)
    images = [{"id": 0, "file_name": "bomb.png"}]
    _, rejects, _ = _read_all(_coco(tmp_path, images, []))
    assert [r.reason.value for r in rejects] == ["image_too_large"]


def test_voc_hostile_xml(tmp_path):
    (tmp_path / "a.JPG").write_bytes(jpeg_bytes())
    (tmp_path / "a.xml").write_text(voc_xml("a"))  # no extension, different case
    (tmp_path / "b.jpg").write_bytes(jpeg_bytes())
    (tmp_path / "b.xml").write_text(
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
        "<annotation><filename>&lol2;</filename></annotation>"
    )
    (tmp_path / "c.jpg").write_bytes(jpeg_bytes())
    (tmp_path / "c.xml").write_text(
        '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><annotation><filename>&e;</filename></annotation>'
    )
    (tmp_path / "d.xml").write_text("<annotation><filename>d.jpg</filename><object>")  # malformed
    (tmp_path / "e.xml").write_text(voc_xml("../../etc/passwd"))
    (tmp_path / "f.xml").write_text(voc_xml("f.jpg"))  # image missing
    (tmp_path / "g.jpg").write_bytes(jpeg_bytes())  # no XML
    records, rejects, acc = _read_all(tmp_path)
    reasons = {Path(r.source).name: r.reason.value for r in rejects}
    assert reasons == {
        "b.xml": "annotation_malformed",
        "c.xml": "annotation_malformed",
        "d.xml": "annotation_malformed",
        "e.xml": "path_unsafe",
        "f.xml": "image_missing",
        "g.jpg": "annotation_missing",
    }
    assert "EntitiesForbidden" in next(r.detail for r in rejects if r.source.endswith("b.xml")) or "DTD" in next(
        r.detail for r in rejects if r.source.endswith("b.xml")
    )
    (record,) = records
    assert record.boxes[0].difficult and record.filename == "a.JPG"
    assert acc.images_in == 7


def test_yolo_missing_image_bad_lines_and_negatives(tmp_path):
    (tmp_path / "data.yaml").write_text("names: {0: fish, 1: shark}\n")
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(jpeg_bytes())
    (tmp_path / "labels" / "a.txt").write_text(
        "0 0.5 0.5 0.2 0.2\n1 0.5 0.5 nan 0.2\n7 0.5 0.5 0.1 0.1\nfoo bar\n0 0.5\n"
    )
    (tmp_path / "images" / "neg.jpg").write_bytes(jpeg_bytes())  # no label file: negative
    (tmp_path / "labels" / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n1 0.2 0.2 0.1 0.1\n")
    records, rejects, acc = _read_all(tmp_path)
    assert Counter(r.reason.value for r in rejects) == {
        "box_non_finite": 1,
        "box_unknown_class": 1,
        "box_malformed": 2,
        "image_missing": 1,
    }
    assert sorted(len(r.boxes) for r in records) == [0, 1]
    assert acc.boxes_in == 5 + 2
    assert "labels/a.txt:4" in next(r.source for r in rejects if r.reason.value == "box_malformed")


def test_csv_header_driven_with_extra_columns(tmp_path):
    (tmp_path / "x.jpg").write_bytes(jpeg_bytes())
    (tmp_path / "labels.csv").write_text(
        "xmin,ymin,xmax,ymax,filename,class,width,height,note\n1,1,9,9,x.jpg,cat,64,48,hi\nbad,1,9,9,x.jpg,cat,64,48,\n"
    )
    records, rejects, _ = _read_all(tmp_path / "labels.csv")
    assert len(records[0].boxes) == 1
    assert rejects[0].reason.value == "box_malformed" and rejects[0].source.endswith("labels.csv:3")
    (tmp_path / "bad.csv").write_text("file,label\n")
    with pytest.raises(SourceError, match=r"lacks columns \['filename'"):
        list(read(str(tmp_path / "bad.csv")))


def test_tfrecord_written_by_other_tools_without_labels_or_weights(tmp_path):
    import tensorflow as tf

    def feat(kind, values):
        return tf.train.Feature(
            **{
                kind: getattr(
                    tf.train, {"bytes_list": "BytesList", "float_list": "FloatList", "int64_list": "Int64List"}[kind]
                )(value=values)
            }
        )

    ex = tf.train.Example(
        features=tf.train.Features(
            feature={
                "image/encoded": feat("bytes_list", [jpeg_bytes()]),
                "image/format": feat("bytes_list", [b"jpeg"]),
                "image/height": feat("int64_list", [48]),
                "image/width": feat("int64_list", [64]),
                "image/source_id": feat("bytes_list", [b"42"]),
                "image/object/bbox/xmin": feat("float_list", [0.1, 0.5]),
                "image/object/bbox/xmax": feat("float_list", [0.4, 0.9]),
                "image/object/bbox/ymin": feat("float_list", [0.1, 0.5]),
                "image/object/bbox/ymax": feat("float_list", [0.4, 0.9]),
                "image/object/class/text": feat("bytes_list", [b"dog", b"cat"]),
            }
        )
    )
    path = tmp_path / "train-00000-of-00001.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as w:
        w.write(ex.SerializeToString())
        w.write(b"not a proto")
    records, rejects, _ = _read_all(path)
    assert [b.text for b in records[0].boxes] == ["dog", "cat"]
    assert records[0].source_id == "42" and records[0].split == "train"
    assert [r.reason.value for r in rejects] == ["annotation_malformed"]


# --------------------------------------------------------------- property-based

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.floats(allow_nan=True), max_size=5),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_coco_files_only_give_records_rejects_or_source_error(tmp_path, data):
    (tmp_path / "a.jpg").write_bytes(_JPEG)
    doc = {
        "images": [{"id": 0, "file_name": "a.jpg", "width": 64, "height": 48}, {"id": 1, "file_name": "a.jpg"}],
        "annotations": [
            {"id": i, "image_id": i % 2, "category_id": 0, "bbox": [1, 2, 10, 10], "iscrowd": 0} for i in range(3)
        ],
        "categories": [{"id": 0, "name": "thing"}],
    }
    for _ in range(data.draw(st.integers(1, 4))):
        section = data.draw(st.sampled_from(["images", "annotations", "categories"]))
        entry = data.draw(st.integers(0, len(doc[section]) - 1))
        key = data.draw(st.sampled_from(sorted(doc[section][entry]) + ["extra"]))
        doc[section][entry][key] = data.draw(_values)
    text = json.dumps(doc)
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(0, len(text)))
        text = text[:cut]
    path = tmp_path / "ann.json"
    path.write_text(text)
    try:
        items = list(read(str(path), accounting=(acc := Accounting())))
    except SourceError:
        return
    assert all(isinstance(i, (ImageRecord, Reject)) for i in items)
    assert acc.balanced()


_JPEG = jpeg_bytes()


def _mutate(data, text: str) -> str:
    """Random character-level edits: deletions, insertions of hostile characters, truncation."""
    for _ in range(data.draw(st.integers(1, 6))):
        if not text:
            break
        i = data.draw(st.integers(0, len(text) - 1))
        op = data.draw(st.sampled_from(["delete", "insert", "truncate"]))
        if op == "delete":
            text = text[:i] + text[i + 1 :]
        elif op == "insert":
            text = (
                text[:i]
                + data.draw(st.sampled_from(["<", ">", "&", "nan", "-1e309", " ", "\n", "é", "0", "..", "\x00"]))
                + text[i:]
            )
        else:
            text = text[:i]
    return text


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_voc_and_yolo_files_only_give_records_rejects_or_source_error(tmp_path, data):
    voc = tmp_path / "voc"
    voc.mkdir(exist_ok=True)
    (voc / "a.jpg").write_bytes(_JPEG)
    (voc / "a.xml").write_text(_mutate(data, voc_xml("a.jpg")), encoding="utf-8")
    (voc / "b.jpg").write_bytes(_JPEG)
    (voc / "b.xml").write_text(voc_xml("b.jpg", name="other"))
    yolo = tmp_path / "yolo"
    (yolo / "images").mkdir(parents=True, exist_ok=True)
    (yolo / "labels").mkdir(exist_ok=True)
    (yolo / "images" / "a.jpg").write_bytes(_JPEG)
    (yolo / "data.yaml").write_text(
        _mutate(data, "names: [fish, shark]\n") if data.draw(st.booleans()) else "names: [fish, shark]\n"
    )
    (yolo / "labels" / "a.txt").write_text(_mutate(data, "0 0.5 0.5 0.2 0.2\n1 0.25 0.25 0.1 0.1\n"), encoding="utf-8")
    for root in (voc, yolo):
        acc = Accounting()
        try:
            items = list(read(str(root), accounting=acc))
        except SourceError:
            continue
        assert all(isinstance(i, (ImageRecord, Reject)) for i in items)
        assert acc.balanced()


def test_probe_reads_a_file_once_to_decode_it(tmp_path):
    """Validation decodes every image (so training never meets a corrupt one), reading the file once."""
    rng = np.random.default_rng(0)
    big = Image.fromarray(rng.integers(0, 255, (600, 800, 3), dtype=np.uint8))
    buf = io.BytesIO()
    big.save(buf, format="JPEG", quality=95)
    data = buf.getvalue()
    assert len(data) > 500_000

    class Counting(io.BytesIO):
        fetched = 0

        def read(self, n=-1):
            out = super().read(n)
            Counting.fetched += len(out)
            return out

    info = probe.probe_stream(Counting(data), len(data), "big.jpg")
    assert (info.format, info.width, info.height) == ("jpeg", 800, 600)
    assert len(data) <= Counting.fetched < len(data) + 64 * 1024
    # and a truncated copy is caught from the tail, before any decoding
    with pytest.raises(probe.ProbeError, match="truncated JPEG"):
        probe.probe_stream(io.BytesIO(data[: len(data) // 2]), len(data) // 2, "cut.jpg")


def test_raw_items_survive_pickling_exactly():
    """Beam pickles raw items through the shuffle after parsing (dataclasses' own pickling)."""
    import pickle

    box = RawBox(
        1.5, 2.0, 30.0, 40.0, "a", "'a'", "ann 7", normalized=False, is_crowd=True, difficult=False, truncated=True
    )
    raw = RawImage("7", "x/y.jpg", "root", "ann.json", "val", (box, box), 640, 480, b"\xff\xd8bytes")
    assert pickle.loads(pickle.dumps(raw)) == raw


def test_the_file_per_image_benchmark_converts_every_image_and_box(tmp_path):
    """bench.file_per_image measures YOLO and VOC trees made from the COCO bench dataset: all three read
    as the same images with the same classes and boxes (to the pixel)."""
    from bench.file_per_image import make_voc, make_yolo
    from bench.prepare_job import make_dataset

    coco = make_dataset(str(tmp_path / "coco"), images=6, unique=3)

    def boxes(path):
        out = {}
        for r in validation.read(path):
            assert isinstance(r, ImageRecord), r
            out[os.path.splitext(os.path.basename(r.filename))[0]] = sorted(
                (b.text, round(b.xmin * r.width), round(b.ymin * r.height), round(b.xmax * r.width), round(b.ymax * r.height))
                for b in r.boxes
            )
        return out

    expected = boxes(coco)
    assert len(expected) == 6 and sum(map(len, expected.values())) > 6
    assert boxes(make_yolo(coco, str(tmp_path / "yolo"))) == expected
    assert boxes(make_voc(coco, str(tmp_path / "voc"))) == expected
