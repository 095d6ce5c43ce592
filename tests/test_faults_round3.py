"""Faults, round 3: each case run as a user types it (``boxweight prepare ...`` as a subprocess).

Every case ends in records and rejects that add up, or in one line naming the
file and the value; never a signal, a traceback, a hang or memory that grows
with what a small file claims. The largest process's peak memory is measured
where memory is the point.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
from pathlib import Path

import google_crc32c
import pytest
import tensorflow as tf

from tests import dialects

BOXWEIGHT = str(Path(sys.executable).with_name("boxweight"))
IN_PROCESS = ["--runner=DirectRunner", "--direct_running_mode=in_memory"]
# the command, run under a parent that reports the largest peak RSS (KiB) among the processes it waited for
_PEAK = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "print(f'PEAK_KB {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}', file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def _prepare(*args: str, timeout: int = 240) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run ``boxweight prepare ARGS``: the finished process and the largest process's peak RSS in MB."""
    done = subprocess.run([sys.executable, "-c", _PEAK, BOXWEIGHT, "prepare", *args],
                          capture_output=True, text=True, timeout=timeout)
    lines = done.stderr.splitlines()
    peak = next(int(line.split()[1]) for line in lines if line.startswith("PEAK_KB"))
    done.stderr = "\n".join(line for line in lines if not line.startswith("PEAK_KB"))
    return done, peak // 1024


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


def _totals(out: Path) -> dict:
    totals = json.loads((out / "stats.json").read_text())["totals"]
    assert totals["images_in"] == totals["images_written"] + totals["images_quarantined"]
    assert totals["boxes_in"] == totals["boxes_written"] + totals["boxes_dropped"]
    return totals


def _rejects(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]


# 1 and 8: TFRecord framing. The shards are written by TensorFlow's own writer, then one record is damaged.
def _examples(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        feature = {
            "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[dialects.jpeg(color=(i * 20, 9, 9))])),
            "image/source_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[f"img{i}".encode()])),
            "image/filename": tf.train.Feature(bytes_list=tf.train.BytesList(value=[f"img{i}.jpg".encode()])),
            "image/object/class/text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"cat"])),
        }
        for k, v in zip(("xmin", "ymin", "xmax", "ymax"), (0.1, 0.1, 0.6, 0.6)):
            feature[f"image/object/bbox/{k}"] = tf.train.Feature(float_list=tf.train.FloatList(value=[v]))
        out.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return out


def _masked(data: bytes) -> bytes:
    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def _shard(path: Path, examples: list[bytes]) -> list[int]:
    """Write with TensorFlow's writer; the byte offset of each record."""
    with tf.io.TFRecordWriter(str(path)) as w:
        for e in examples:
            w.write(e)
    offsets, at = [], 0
    for e in examples:
        offsets.append(at)
        at += 12 + len(e) + 4
    return offsets


def test_a_record_header_claiming_2_62_bytes_is_that_records_reject_not_a_segfault(tmp_path):
    shard = tmp_path / "coco_train.record-00000-of-00001"
    examples = _examples(8)
    at = _shard(shard, examples)[3]
    data = bytearray(shard.read_bytes())
    claimed = struct.pack("<Q", 1 << 62)
    data[at : at + 12] = claimed + _masked(claimed)  # a header that passes its own checksum
    shard.write_bytes(bytes(data))
    done, peak_mb = _prepare("--input", str(shard), "--output", str(tmp_path / "o"), *IN_PROCESS)
    assert done.returncode == 0, done.stderr  # was -11 (SIGSEGV) and no line at all
    totals = _totals(tmp_path / "o")
    assert (totals["images_written"], totals["images_quarantined"]) == (3, 1)
    (reject,) = _rejects(tmp_path / "o")
    assert reject["source"].endswith("record 3") and reject["reason"] == "annotation_malformed"
    assert "claims 4,611,686,018,427,387,904 bytes" in reject["detail"] and "rest of the shard" in reject["detail"]
    assert peak_mb < 1500


def test_a_record_that_fails_its_data_checksum_is_skipped_and_the_records_after_it_are_read(tmp_path):
    shard = tmp_path / "train.tfrecord"
    examples = _examples(8)
    at = _shard(shard, examples)[3]
    data = bytearray(shard.read_bytes())
    data[at + 12 + 40] ^= 0xFF  # a byte inside record 3's data: its length framing still holds
    shard.write_bytes(bytes(data))
    done, _ = _prepare("--input", str(shard), "--output", str(tmp_path / "o"), "--val-fraction=0", *IN_PROCESS)
    assert done.returncode == 0, done.stderr
    totals = _totals(tmp_path / "o")
    assert (totals["images_in"], totals["images_written"], totals["images_quarantined"]) == (8, 7, 1)  # was 4 in
    (reject,) = _rejects(tmp_path / "o")
    assert reject["source"].endswith("record 3") and "fails its CRC-32C" in reject["detail"]
    written = [tf.train.Example.FromString(r.numpy()).features.feature["image/filename"].bytes_list.value[0]
               for r in tf.data.TFRecordDataset(sorted(str(p) for p in (tmp_path / "o").glob("train-*")))]
    assert sorted(written) == [f"img{i}.jpg".encode() for i in (0, 1, 2, 4, 5, 6, 7)]


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"image,xmin,ymin\nthis is a text file, not a shard\n", "not a TFRecord file: its first record's length header fails its checksum"),
        (b"tiny", "not a TFRecord file: it is shorter than a record's header"),
        (None, "not a TFRecord file: it looks gzip-compressed (a gzipped shard's name must end in .gz)"),
    ],
    ids=["text", "short", "gzip-without-.gz"],
)
def test_a_file_that_is_not_a_tfrecord_is_named_as_such(tmp_path, content, said):
    shard = tmp_path / "train.tfrecord"
    if content is None:
        _shard(tmp_path / "plain.tfrecord", _examples(2))
        with tf.io.TFRecordWriter(str(shard), options="GZIP") as w:
            for e in _examples(2):
                w.write(e)
    else:
        shard.write_bytes(content)
    done, _ = _prepare("--input", str(shard), "--output", str(tmp_path / "o"))
    assert done.returncode == 2
    assert _one_line(done) == f"boxweight prepare: error: {shard}: {said}"  # was "no class text or label in any record"


# 2. memory from small files: YAML aliases, and more classes than a detector could have
def _alias_bomb(levels: int = 9) -> str:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    prev = "a"
    for name in "bcdefghijk"[: levels - 1]:
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
        prev = name
    return "\n".join(lines) + "\n"


def _yolo(root: Path, yaml_text: str) -> Path:
    (root / "train" / "images").mkdir(parents=True)
    (root / "train" / "labels").mkdir(parents=True)
    (root / "train" / "images" / "a.jpg").write_bytes(dialects.jpeg())
    (root / "train" / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "data.yaml").write_text(yaml_text)
    return root


def test_a_yaml_alias_bomb_in_data_yaml_is_refused_in_one_line_with_bounded_memory(tmp_path):
    root = _yolo(tmp_path / "yolo", _alias_bomb() + "names: *i\n")  # 9**9 = 387,420,489 names once expanded
    done, peak_mb = _prepare("--input", str(root), "--output", str(tmp_path / "o"), timeout=120)
    assert done.returncode == 2
    assert _one_line(done) == (
        f"boxweight prepare: error: {root}/data.yaml: its aliases expand to more than 1,000,000 values (a YAML alias bomb?)"
    )
    assert peak_mb < 600  # was past 5 GiB within a minute


def test_a_yaml_alias_bomb_in_manual_weights_is_refused_in_one_line(tmp_path, demo_dir):
    weights = tmp_path / "w.yaml"
    weights.write_text(_alias_bomb() + "circle: *i\n")
    done, peak_mb = _prepare("--input", str(demo_dir / "annotations.json"), "--output", str(tmp_path / "o"),
                             "--scheme", "manual", "--manual-weights", str(weights), timeout=120)
    assert done.returncode == 2
    assert _one_line(done) == (
        f"boxweight prepare: error: --manual-weights {weights}: {weights}: cannot parse manual weights: "
        "its aliases expand to more than 1,000,000 values (a YAML alias bomb?)"
    )
    assert peak_mb < 1500


def test_a_data_yaml_with_100000_class_names_is_refused_with_the_flag_that_allows_it(tmp_path):
    root = _yolo(tmp_path / "yolo", "names:\n" + "".join(f"  - c{i}\n" for i in range(100_000)))
    done, _ = _prepare("--input", str(root), "--output", str(tmp_path / "o"), timeout=120)
    assert done.returncode == 2
    assert _one_line(done) == (
        f"boxweight prepare: error: {root}: 100,000 classes, more than --max-classes 10,000; "
        "raise it if the dataset really has that many"
    )


# 3. label map ids a TF OD API label map cannot hold, or that would size a class axis past the limit
@pytest.mark.parametrize(
    ("item_id", "said"),
    [
        ("3000000000", "id 3000000000 is beyond the TF OD API label map's int32 ids (at most 2147483647)"),
        ("99999999999999999999", "id 99999999999999999999 is beyond the TF OD API label map's int32 ids (at most 2147483647)"),
        ("50000", "class id 50,000 is above --max-classes 10,000 (ids index a detector's class axis); renumber the label map or raise the flag"),
    ],
)
def test_label_map_ids_past_int32_or_the_class_limit_are_refused_before_any_work(tmp_path, demo_dir, item_id, said):
    label_map = tmp_path / "lm.pbtxt"
    label_map.write_text(f"item {{\n  id: 1\n  name: 'circle'\n}}\nitem {{\n  id: {item_id}\n  name: 'star'\n}}\n")
    done, _ = _prepare("--input", str(demo_dir / "annotations.json"), "--label-map", str(label_map),
                       "--output", str(tmp_path / "o"), timeout=60)  # the job looped range(max_id + 1) for minutes
    assert done.returncode == 2
    assert _one_line(done) == f"boxweight prepare: error: {label_map}: {said}"


# 5. names that protobuf's text format must escape, read back by protobuf in the TF OD API's message shape
def _string_int_label_map():
    """StringIntLabelMap as the TF OD API declares it (string_int_label_map.proto), built here: not a dependency."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    f = descriptor_pb2.FileDescriptorProto(name="boxweight_test_label_map.proto", package="boxweight_test")
    item = f.message_type.add(name="StringIntLabelMapItem")
    item.field.add(name="name", number=1, type=9, label=1)
    item.field.add(name="id", number=2, type=5, label=1)  # int32
    item.field.add(name="display_name", number=3, type=9, label=1)
    top = f.message_type.add(name="StringIntLabelMap")
    top.field.add(name="item", number=1, type=11, label=3, type_name=".boxweight_test.StringIntLabelMapItem")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("boxweight_test.StringIntLabelMap"))


def test_every_written_label_map_parses_in_protobufs_text_format_with_the_names_as_given(tmp_path, demo_dir):
    from google.protobuf import text_format

    from schemas.label_map import LabelMap

    names = ["cr\rhere", "quote'single", 'quote"double', "back\\slash", "tab\tand\nnewline", "é 日本 🐟",
             *(f"ctl{chr(c)}" for c in [*range(0, 32), 127])]
    written = LabelMap.from_names(names).to_pbtxt()
    parsed = text_format.Parse(written, _string_int_label_map()())
    assert [(i.id, i.name) for i in parsed.item] == list(enumerate(names, 1))
    assert LabelMap.from_pbtxt(written).names == tuple(names)

    # and as the job writes it: a COCO category named with a carriage return
    doc = json.loads((demo_dir / "annotations.json").read_text())
    doc["categories"][0]["name"] = "cr\rhere"
    (tmp_path / "a.json").write_text(json.dumps(doc))
    done, _ = _prepare("--input", str(tmp_path / "a.json"), "--image-root", str(demo_dir), "--output",
                       str(tmp_path / "o"), *IN_PROCESS)
    assert done.returncode == 0, done.stderr
    parsed = text_format.Parse((tmp_path / "o" / "label_map.pbtxt").read_text(), _string_int_label_map()())
    assert "cr\rhere" in [i.name for i in parsed.item]  # was: "String missing ending quote"


# 6 and 7: weights refused before the job, in one line naming the file and the value
@pytest.mark.parametrize(
    ("content", "suffix", "extra", "said"),
    [
        ("circle: 1.0e+308\n", ".yaml", ["--normalize", "none"],
         "the weight of class 'circle' comes out as 1e+308, beyond float32 (the records' type)"),
        ("circle: 1.0e+308\n", ".yaml", ["--normalize", "boxes"],
         "which float32 (the records' type) stores as 0"),  # every other class: 1 / 1e308 of it
        ("{circle: 0, square: 0, triangle: 0, star: 0, cross: 0, ring: 0}\n", ".yaml", [],
         "every class with boxes gets the weight 0: no box would count in training"),
        ("circel: 2\n", ".yaml", [], "manual weights name unknown classes ['circel']"),
        ("circle: -1\n", ".yaml", [], "manual weight for 'circle' is -1; need a finite number >= 0"),
        ("circle: .nan\n", ".yaml", [], "manual weight for 'circle' is nan; need a finite number >= 0"),
        ("circle: .inf\n", ".yaml", [], "manual weight for 'circle' is inf; need a finite number >= 0"),
        ("circle: heavy\n", ".yaml", [], "manual weight for 'circle' is 'heavy'; need a finite number >= 0"),
        ("[" * 100_000 + "]" * 100_000, ".json", [], "cannot parse manual weights: nested too deep to read"),
        (b"circle: 2 # \xff\xfe\n", ".yaml", [], "not UTF-8 text (byte 12: b'\\xff')"),
    ],
    ids=["inf-none", "underflow-boxes", "all-zero", "unknown", "negative", "nan", "inf", "string", "deep-json", "not-utf8"],
)
def test_manual_weights_that_cannot_work_are_refused_before_the_job_in_one_line(tmp_path, demo_dir, content, suffix, extra, said):
    weights = tmp_path / f"w{suffix}"
    if isinstance(content, bytes):
        weights.write_bytes(content)
    else:
        weights.write_text(content)
    done, _ = _prepare("--input", str(demo_dir / "annotations.json"), "--output", str(tmp_path / "o"),
                       "--scheme", "manual", "--manual-weights", str(weights), *extra, timeout=60)
    assert done.returncode == 2  # was exit 0 with every weight 0, or a 147-line traceback from inside the job
    line = _one_line(done)
    assert line.startswith(f"boxweight prepare: error: --manual-weights {weights}: ") and said in line, line
    assert not (tmp_path / "o").exists()


# 4. two runs into one output
def test_a_second_job_into_an_output_another_job_is_writing_is_refused_and_the_first_finishes_whole(tmp_path, demo_dir):
    from boxweight.demo_data import generate

    big = tmp_path / "big"  # a first job of several seconds: the second must meet it still running
    generate(str(big), num_images=4900, image_size=96, seed=1)
    out = tmp_path / "o"
    first = subprocess.Popen([BOXWEIGHT, "prepare", "--input", str(big / "annotations.json"), "--output", str(out),
                              "--scheme", "none"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        claim = Path(f"{out}.lock")
        for _ in range(600):  # the claim is the first thing a job takes
            if claim.exists() and claim.read_text():
                break
            assert first.poll() is None, first.communicate()
            time.sleep(0.05)
        second, _ = _prepare("--input", str(demo_dir / "annotations.json"), "--output", str(out),
                             "--scheme", "inverse", "--overwrite", timeout=120)
        assert first.poll() is None, "the first job ended before the second was refused: the test proves nothing"
    finally:
        stdout, stderr = first.communicate(timeout=300)
    assert second.returncode == 2
    line = _one_line(second)
    assert line.startswith(f"boxweight prepare: error: output '{out}' is being written by another boxweight prepare (pid {first.pid} ")
    assert line.endswith("; wait for it to finish, or choose another folder")
    assert first.returncode == 0, stderr  # was: both exit 0, and the folder held the second run's output
    assert f"outputs in {out}" in stdout
    assert json.loads((out / "stats.json").read_text())["scheme"]["name"] == "none"
    _totals(out)
    assert not claim.exists()  # released at the end
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big", "o"]


def test_a_claim_left_by_a_killed_job_does_not_block_the_next_one(tmp_path, demo_dir):
    out = tmp_path / "o"
    Path(f"{out}.lock").write_text("pid 999999 on elsewhere, since 00:00:00 UTC\n")  # a file, but no process holds it
    done, _ = _prepare("--input", str(demo_dir / "annotations.json"), "--output", str(out), *IN_PROCESS)
    assert done.returncode == 0, done.stderr
    assert not Path(f"{out}.lock").exists()


# 7. JSON nested 100,000 deep: one line or one reject, never a RecursionError traceback
def test_coco_json_nested_100000_deep_is_one_line_naming_the_file(tmp_path):
    ann = tmp_path / "a.json"
    ann.write_text('{"images": ' + "[" * 100_000 + "]" * 100_000 + ', "annotations": [], "categories": [{"id": 1, "name": "x"}]}')
    done, _ = _prepare("--input", str(ann), "--output", str(tmp_path / "o"), timeout=120)
    assert done.returncode == 2
    assert _one_line(done) == f"boxweight prepare: error: {ann}: malformed JSON: a value nested too deep to read at character 12"


def test_a_labelme_file_nested_100000_deep_is_its_own_reject(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "deep.json").write_text('{"shapes": ' + "[" * 100_000 + "]" * 100_000 + ', "imagePath": "x.jpg"}')
    (data / "ok.jpg").write_bytes(dialects.jpeg())
    (data / "ok.json").write_text(json.dumps({
        "shapes": [{"label": "cat", "points": [[2, 2], [20, 20]], "shape_type": "rectangle"}],
        "imagePath": "ok.jpg", "imageHeight": dialects.H, "imageWidth": dialects.W}))
    done, _ = _prepare("--input", str(data), "--format", "labelme", "--output", str(tmp_path / "o"), *IN_PROCESS, timeout=120)
    assert done.returncode == 0, done.stderr
    assert _totals(tmp_path / "o")["images_written"] == 1
    (reject,) = _rejects(tmp_path / "o")
    assert reject["source"] == str(data / "deep.json") and "nested too deep to read" in reject["detail"]


# 10. messages that name the file, the flag and the value
@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"item {\n  id: 1\n  name: 'circle\\xZZ'\n}\n", "{lm}:3: string \"'circle\\\\xZZ'\" cannot be read: invalid \\x escape at position 6"),
        (b"item {\n  id: 1\n  name: 'circle\xff'\n}\n", "--label-map {lm}: not UTF-8 text (byte 30); a label_map.pbtxt is UTF-8"),
    ],
    ids=["bad-escape", "not-utf8"],
)
def test_a_label_map_that_cannot_be_read_is_named_with_its_flag_or_file(tmp_path, demo_dir, content, said):
    lm = tmp_path / "lm.pbtxt"
    lm.write_bytes(content)
    done, _ = _prepare("--input", str(demo_dir / "annotations.json"), "--label-map", str(lm), "--output", str(tmp_path / "o"))
    assert done.returncode == 2
    assert _one_line(done) == "boxweight prepare: error: " + said.format(lm=lm)  # was: "invalid \x escape at position 6"


def test_an_image_file_named_with_a_backslash_is_found(tmp_path):
    (tmp_path / "back\\slash.jpg").write_bytes(dialects.jpeg())
    doc = {"images": [{"id": 1, "file_name": "back\\slash.jpg", "width": dialects.W, "height": dialects.H}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 10]}],
           "categories": [{"id": 1, "name": "x"}]}
    (tmp_path / "a.json").write_text(json.dumps(doc))
    done, _ = _prepare("--input", str(tmp_path / "a.json"), "--output", str(tmp_path / "o"), *IN_PROCESS)
    assert done.returncode == 0, done.stderr
    assert _totals(tmp_path / "o")["images_written"] == 1  # was: image_missing


# 9. a stray quote in one CSV row
def test_a_csv_row_with_a_stray_quote_is_dropped_alone(tmp_path):
    for i in range(20):
        (tmp_path / f"c{i}.jpg").write_bytes(dialects.jpeg())
    rows = [f'{chr(34) if i == 1 else ""}c{i}.jpg,{dialects.W},{dialects.H},x,1,1,20,20' for i in range(20)]
    (tmp_path / "train_labels.csv").write_text("filename,width,height,class,xmin,ymin,xmax,ymax\n" + "\n".join(rows) + "\n")
    done, _ = _prepare("--input", str(tmp_path / "train_labels.csv"), "--output", str(tmp_path / "o"),
                       "--val-fraction=0", *IN_PROCESS)
    assert done.returncode == 0, done.stderr
    totals = _totals(tmp_path / "o")
    # was 19 boxes dropped as one merged row; the image of the bad row has no other row, so it is not an image here
    assert (totals["boxes_in"], totals["boxes_written"], totals["boxes_dropped"]) == (20, 19, 1)
    assert totals["images_written"] == 19
    (reject,) = _rejects(tmp_path / "o")
    assert reject["source"] == f"{tmp_path / 'train_labels.csv'}:3" and "an unbalanced quote?" in reject["detail"]


# 2. an image with 1,000,000 boxes (a CVAT export): quarantined before any box is checked, memory bounded
def test_an_image_with_a_million_boxes_is_quarantined_and_the_rest_written(tmp_path):
    data = tmp_path / "cvat"
    (data / "images").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg"):
        (data / "images" / name).write_bytes(dialects.jpeg())
    box = '<box label="x" occluded="0" xtl="1" ytl="1" xbr="20" ybr="20"/>\n'
    with open(data / "annotations.xml", "w") as f:
        f.write('<?xml version="1.0" encoding="utf-8"?>\n<annotations><version>1.1</version>'
                "<meta><task><labels><label><name>x</name></label></labels></task></meta>\n")
        f.write(f'<image id="0" name="a.jpg" width="{dialects.W}" height="{dialects.H}">\n{box * 1_000_000}</image>\n')
        f.write(f'<image id="1" name="b.jpg" width="{dialects.W}" height="{dialects.H}">\n{box}</image>\n</annotations>\n')
    done, peak_mb = _prepare("--input", str(data), "--output", str(tmp_path / "o"), "--val-fraction=0", timeout=300)
    assert done.returncode == 0, done.stderr
    totals = _totals(tmp_path / "o")
    assert (totals["images_written"], totals["boxes_written"], totals["boxes_dropped"]) == (1, 1, 1_000_000)
    (reject,) = _rejects(tmp_path / "o")
    assert reject["reason"] == "image_too_many_boxes" and reject["image"] == "a.jpg"
    assert reject["detail"] == "1,000,000 boxes, above the 10,000-box limit (--max-boxes-per-image raises it)"
    assert peak_mb < 2000  # was past 3.3 GiB, and past 150 s; 1.1-1.5 GB now (the 1M boxes read, then quarantined)


# 7. --overwrite onto a full disk: one line, and the previous output stays whole
@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3M", "tmpfs", str(disk)], capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a small tmpfs for a full disk here (needs root): {mounted.stderr.strip()}")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_overwrite_onto_a_full_disk_is_one_line_and_the_previous_output_stays_whole(tmp_path, small_disk):
    from boxweight.demo_data import generate

    generate(str(tmp_path / "small"), num_images=20, image_size=96, seed=1)
    generate(str(tmp_path / "large"), num_images=1500, image_size=96, seed=2)  # more than the 3 MiB disk holds
    out = small_disk / "o"
    first, _ = _prepare("--input", str(tmp_path / "small" / "annotations.json"), "--output", str(out), *IN_PROCESS)
    assert first.returncode == 0, first.stderr
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    done, _ = _prepare("--input", str(tmp_path / "large" / "annotations.json"), "--output", str(out), "--overwrite", *IN_PROCESS)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "Errno" not in done.stderr, done.stderr  # was 111 lines
    assert done.stderr.strip().splitlines()[-1] == (
        f"boxweight prepare: error: no space left on the disk of '{out}' while the job wrote it; "
        "the output folder was left as it was (free space, or choose another --output)"
    )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in small_disk.iterdir()) == ["o"]  # no staging folder, no claim left
