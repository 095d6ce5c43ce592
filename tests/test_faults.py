"""Hostile input and faults: each case of the "Hostile input and faults" issue as a generated fixture.

Every case ends in a record or a reject with its reason (never a crash, a
hang or a read outside the dataset), or in a one-line refusal of the whole
job where the input as a whole is unusable.
"""

from __future__ import annotations

import io
import json
import os
import random
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import readers
import validation
from beam_jobs import prepare
from beam_jobs.options import JobError
from readers.coco import KNOWN_KEYS, read_header
from readers.json_stream import JsonStreamError, Members
from readers.raw import RawBox, RawImage
from schemas.label_map import LabelMap
from storage.job_output import JobOutput
from tests import dialects
from tests.conftest import read_dataset as _read

IN_PROCESS = ["--runner=apache_beam.runners.portability.fn_api_runner.fn_runner.FnApiRunner"]




def _coco(folder: Path, names: list, ids: list | None = None) -> Path:
    doc = {
        "images": [{"id": i if ids is None else ids[k], "file_name": n} for k, (i, n) in enumerate(enumerate(names))],
        "annotations": [],
        "categories": [{"id": 1, "name": "x"}],
    }
    (folder / "a.json").write_text(json.dumps(doc))
    return folder / "a.json"


# 1. links inside the image folder that lead outside it
def test_a_linked_image_that_leads_outside_the_image_folder_is_never_read(tmp_path):
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "secret.jpg").write_bytes(dialects.jpeg(color=(255, 0, 0)))
    data = tmp_path / "data"
    data.mkdir()
    (data / "ok.jpg").write_bytes(dialects.jpeg())
    (data / "link.jpg").symlink_to(tmp_path / "secret" / "secret.jpg")
    records, rejects, _ = _read(_coco(data, ["ok.jpg", "link.jpg"]))
    assert [r.filename for r in records] == ["ok.jpg"]
    assert [(r.image, r.reason.value) for r in rejects] == [("link.jpg", "path_unsafe")]
    assert "outside the image folder" in rejects[0].detail


def test_a_folder_replaced_by_a_link_outside_is_refused_on_the_next_read_in_the_same_process(tmp_path):
    # folders are resolved once per read (a cache): the second read must not reuse the first one's answer
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.jpg").write_bytes(dialects.jpeg(color=(255, 0, 0)))
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "images" / "a.jpg").write_bytes(dialects.jpeg())
    annotations = _coco(data, ["images/a.jpg"])
    records, rejects, _ = _read(annotations)
    assert [r.filename for r in records] == ["images/a.jpg"] and rejects == []
    (data / "images" / "a.jpg").unlink()
    (data / "images").rmdir()
    (data / "images").symlink_to(outside)
    records, rejects, _ = _read(annotations)
    assert records == [] and [(r.image, r.reason.value) for r in rejects] == [("images/a.jpg", "path_unsafe")]
    assert f"is a link to {outside / 'a.jpg'}" in rejects[0].detail


# 2. a named pipe called x.jpg
def test_a_named_pipe_is_rejected_without_being_opened(tmp_path):
    os.mkfifo(tmp_path / "x.jpg")
    (tmp_path / "ok.jpg").write_bytes(dialects.jpeg())
    records, rejects, _ = _read(_coco(tmp_path, ["x.jpg", "ok.jpg"]))
    assert [r.filename for r in records] == ["ok.jpg"]
    assert [(r.image, r.reason.value) for r in rejects] == [("x.jpg", "image_unreadable")]
    assert "is not a regular file" in rejects[0].detail


# 3. a sparse "JPEG": a valid header, gigabytes of zeros, an end marker
def test_a_sparse_file_above_the_size_limit_is_rejected_before_it_is_read(tmp_path):
    head = dialects.jpeg()
    with open(tmp_path / "huge.jpg", "wb") as f:
        f.write(head[:-2])
        f.truncate(150 << 20)  # sparse: 150 MiB on paper, a few KB on disk
        f.seek(0, 2)
        f.write(b"\xff\xd9")
    records, rejects, _ = _read(_coco(tmp_path, ["huge.jpg"]))
    assert records == [] and [(r.reason.value) for r in rejects] == ["image_too_large"]
    assert "above the 104,857,600-byte limit (--max-image-mb raises it)" in rejects[0].detail


# 4. NaN anywhere made the COCO rewriting pass quadratic; the stream parser reads NaN as json does
@given(
    st.lists(st.integers(1, 40), min_size=1, max_size=30),
    st.sampled_from(["compact", "default", "indent"]),
    st.sampled_from([8, 1 << 16]),  # a buffer of a few characters (cut everywhere), or all of it (the fast path)
)
@settings(max_examples=80, deadline=None)
def test_the_stream_parser_agrees_with_json_at_every_read_boundary(sizes, style, chunk):
    doc = {"s": 'NaN in a "string" \\ and Infinity, é ü 🦀', "images": [{"v": [float("nan"), float("-inf"), 1.5e300, -7]}, 12345678901234567890, "x" * 300 + "\\", True, None, []],
           "annotations": [], "t": {"nested": [1, {"a": "b"}]}, "n": -0.5}
    doc["images"] += [{"id": i, "bbox": [i, 0.5, 2, 3]} for i in range(40)]  # many short elements
    layout = {"compact": {"separators": (",", ":")}, "default": {}, "indent": {"indent": 1}}[style]
    text = json.dumps(doc, ensure_ascii=False, **layout).encode()  # type: ignore[arg-type]

    class Chunks:  # a stream that hands over a few bytes at a time, cutting tokens and UTF-8 sequences anywhere
        def __init__(self) -> None:
            self.f, self.k = io.BytesIO(text), 0

        def read(self, n: int) -> bytes:
            self.k += 1
            return self.f.read(min(n, sizes[self.k % len(sizes)]))

    got: dict = {}
    for key, index, value in Members(Chunks(), frozenset({"images", "annotations"}), chunk=chunk):  # type: ignore[arg-type]
        if index is None:
            got[key] = value
        else:
            assert index == len(got.setdefault(key, []))
            got[key].append(value)
    expected = json.loads(text)
    del expected["annotations"]  # an empty streamed array has no element to report
    assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"images": [1, 2', r"expected ',' or '\]' after images\[1\], found 'the end' at character 16"),
        ('{"images": [1 2]}', r"expected ',' or '\]' after images\[0\], found '2' at character 14"),
        ('{"a": 1} x', r"unexpected text after the top-level object at character 9"),
        ("[1]", r"expected '\{' at the start, found '\[' at character 0"),
        ('{"images": [1,]}', r"Expecting value at character 14"),
        ('{a: 1}', r"expected a member name in double quotes at character 1"),
        ('{"a": "x', r"Unterminated string starting at character 6"),
        ('{"a": tru}', r"Expecting value at character 6"),
        ("", r"expected '\{' at the start, found 'the end' at character 0"),
        ('{"a": "\\q"}', r"Invalid \\escape"),
    ],
)
def test_the_stream_parser_names_what_is_wrong_and_where(text, message):
    for chunk in (1, 3, 1 << 20):
        with pytest.raises(JsonStreamError, match=message):
            list(Members(io.BytesIO(text.encode()), frozenset({"images"}), chunk=chunk))
    with pytest.raises(JsonStreamError, match="not UTF-8 near byte 7: invalid start byte"):
        list(Members(io.BytesIO(b'{"a": "\xff"}'), chunk=4))


def test_a_long_string_with_a_nan_elsewhere_streams_through(tmp_path):
    path = tmp_path / "a.json"
    path.write_bytes(b'{"info": {"description": "' + b"x" * 4_000_000 + b'"}, "images": [], "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [NaN, 1, 2, 3]}], "categories": [{"id": 1, "name": "x"}]}')
    _, rejects, _ = _read(path)
    assert [r.reason.value for r in rejects] == ["box_orphan"]


# 5. one bad value killed the whole job
def test_overflowing_sizes_and_oversized_csv_fields_are_per_file_problems(tmp_path):
    voc = tmp_path / "voc"
    voc.mkdir()
    (voc / "a.jpg").write_bytes(dialects.jpeg())
    (voc / "a.xml").write_text("<annotation><filename>a.jpg</filename><size><width>1e999</width><height>inf</height></size>"
                               "<object><name>x</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>")
    records, rejects, _ = _read(voc)
    assert len(records) == 1 and rejects == []
    csvs = tmp_path / "csv"
    csvs.mkdir()
    (csvs / "a.jpg").write_bytes(dialects.jpeg())
    header = "filename,width,height,class,xmin,ymin,xmax,ymax\n"
    (csvs / "train_labels.csv").write_text(header + "a.jpg,inf,1e999,x,1,1,9,9\n")
    (csvs / "test_labels.csv").write_text(header + "b.jpg,64,48,x,1,1,9,9," + "y" * 200_000 + "\n")
    records, rejects, _ = _read(csvs, format="csv", image_root=str(csvs))
    assert [r.filename for r in records] == ["a.jpg"]
    assert [(Path(r.source).name, r.reason.value, r.boxes) for r in rejects] == [("test_labels.csv:2", "box_malformed", 1)]
    assert "field larger than field limit" in rejects[0].detail  # that line alone: a CSV row never spans lines


# 6. malformed EXIF in a JPEG that asks to be rotated
def _exif_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "maker"
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 20, 30)).save(out, format="JPEG", exif=exif.tobytes())
    return out.getvalue()


_EXIF = _exif_jpeg()
_EXIF_AT = _EXIF.index(b"Exif\x00\x00")


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning", "ignore:Truncated File Read:UserWarning")
@given(st.lists(st.tuples(st.integers(0, 120), st.integers(0, 255)), min_size=1, max_size=6))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_mutated_exif_and_headers_give_a_record_or_a_reject_never_a_crash(tmp_path, flips):
    data = bytearray(_EXIF)
    for offset, value in flips:
        at = (_EXIF_AT + offset) if offset < 100 else offset - 100  # mostly the EXIF block, some the SOI/APP headers
        data[at % len(data)] = value
    (tmp_path / "m.jpg").write_bytes(bytes(data))
    raw = RawImage("m", "m.jpg", str(tmp_path), "s", "train", (RawBox(1, 1, 9, 9, "x", "'x'", "s"),))
    result = validation.validate_image(raw, LabelMap(("x",)))
    assert (result.record is None) == bool(result.rejects and result.rejects[0].is_image)


def test_an_exif_block_that_cannot_be_parsed_keeps_the_image_as_stored(tmp_path):
    data = bytearray(_EXIF)
    data[_EXIF_AT + 6 : _EXIF_AT + 8] = b"XX"  # neither II nor MM: no byte order, no EXIF
    (tmp_path / "m.jpg").write_bytes(bytes(data))
    raw = RawImage("m", "m.jpg", str(tmp_path), "s", "train")
    result = validation.validate_image(raw, LabelMap(("x",)))
    assert result.record is not None and (result.record.width, result.record.height) in ((64, 48), (48, 64))


# 7. a CSV with one stray opening quote: that line is its own reject, the lines after it are read (faults round 3, #9)
def test_a_stray_quote_costs_its_own_line_and_the_rows_after_it_are_read(tmp_path):
    (tmp_path / "a.jpg").write_bytes(dialects.jpeg())
    quote = '"'
    rows = ["a.jpg,64,48,x,1,1,9,9"] + [f"{quote if i == 2 else ''}a.jpg,64,48,x,{i % 15},1,{20 + i % 20},20" for i in range(2, 50)]
    (tmp_path / "train_labels.csv").write_text("filename,width,height,class,xmin,ymin,xmax,ymax\n" + "\n".join(rows) + "\n")
    records, rejects, acc = _read(tmp_path, format="csv", image_root=str(tmp_path))
    assert acc.boxes_in == 49  # as many boxes as lines
    (bad,) = rejects
    assert (bad.source, bad.reason.value, bad.boxes) == (f"{tmp_path / 'train_labels.csv'}:3", "box_malformed", 1)
    assert "line 3 cannot be parsed as CSV (unexpected end of data; an unbalanced quote?)" == bad.detail
    (record,) = records
    assert len(record.boxes) == 48  # was 1: 48 rows merged into the bad one


# 8. YOLO label files that are not UTF-8, or named .TXT
def test_an_unreadable_yolo_label_file_quarantines_its_image(tmp_path):
    dialects.yolo_segmentation(tmp_path)
    (tmp_path / "train" / "labels" / "b.txt").write_bytes(b"1 0.5 0.5 0.2 0.2\n\xff\xfe 0.1\n")
    (tmp_path / "train" / "labels" / "a.txt").rename(tmp_path / "train" / "labels" / "a.TXT")
    records, rejects, acc = _read(tmp_path)
    assert [(r.filename, len(r.boxes)) for r in records] == [("a.jpg", 2)]
    assert [(r.image, r.reason.value, r.boxes) for r in rejects] == [("b.jpg", "annotation_malformed", 2)]
    assert acc.images_in == 2


# 9. COCO keys misspelled, a bbox that is a string
def test_coco_without_annotations_is_refused_and_a_string_bbox_dropped(tmp_path):
    (tmp_path / "a.jpg").write_bytes(dialects.jpeg())
    doc = {"images": [{"id": 1, "file_name": "a.jpg"}], "anotations": [], "categories": [{"id": 1, "name": "x"}]}
    (tmp_path / "a.json").write_text(json.dumps(doc))
    with pytest.raises(readers.SourceError, match=r"images but no 'annotations' key \(misspelled\?\)"):
        readers.open_source(str(tmp_path / "a.json"))
    doc["annotations"] = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": "1234"}]
    (tmp_path / "a.json").write_text(json.dumps(doc))
    _, rejects, _ = _read(tmp_path / "a.json")
    assert [(r.reason.value, r.image, r.classes) for r in rejects] == [("box_malformed", "a.jpg", ("x",))]
    assert "bbox '1234' is not [x, y, width, height]" in rejects[0].detail


# 10. glob characters in paths
def test_paths_with_glob_characters_are_taken_literally(tmp_path):
    for name, color in (("voc[1]", (0, 0, 255)), ("voc1", (255, 0, 0))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.jpg").write_bytes(dialects.jpeg(color=color))
        (tmp_path / name / "a.xml").write_text(f"<annotation><filename>a.jpg</filename><object><name>{name[:3]}{len(name)}</name>"
                                               "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>")
    records, _, _ = _read(tmp_path / "voc[1]")
    assert [b.text for r in records for b in r.boxes] == ["voc6"]
    coco = tmp_path / "set [v2]"
    coco.mkdir()
    (coco / "a.jpg").write_bytes(dialects.jpeg())
    assert readers.detect_format(str(_coco(coco, ["a.jpg"]))) == "coco"


# 9. unknown top-level COCO keys are named in a warning, as the user runs the job
def test_unknown_top_level_coco_keys_are_named_in_a_warning(tmp_path):
    (tmp_path / "a.jpg").write_bytes(dialects.jpeg())
    doc = {"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [], "categories": [{"id": 1, "name": "x"}],
           "categoriez": [{"id": 2, "name": "y"}], "info": {"note": {"nested": "not a top-level key"}}}
    (tmp_path / "a.json").write_text(json.dumps(doc))
    result = subprocess.run([sys.executable, "-m", "beam_jobs.prepare", "--input", str(tmp_path / "a.json"),
                             "--output", str(tmp_path / "out"), *IN_PROCESS], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "a.json: top-level keys 'categoriez' are not COCO's; they are not read" in result.stderr
    assert "nested" not in result.stderr
    assert sorted(read_header(str(tmp_path / "a.json")).keys - KNOWN_KEYS) == ["categoriez"]


# 11. pixel data that does not decode, behind an intact header and end marker
def _photo(size: tuple[int, int] = (160, 120), progressive: bool = False, format: str = "JPEG") -> bytes:
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, size[0])[None, :, None] * np.ones((size[1], 1, 3))
    pixels = np.clip(ramp + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255).astype("uint8")
    out = io.BytesIO()
    if format == "PNG":
        Image.fromarray(pixels).save(out, format="PNG")
    else:
        Image.fromarray(pixels).save(out, format="JPEG", quality=90, progressive=progressive)
    return out.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


def _decodes_in_tensorflow(data: bytes) -> bool:
    try:
        tf.io.decode_image(data, channels=3)
    except tf.errors.InvalidArgumentError:
        return False
    return True


def test_corrupt_pixel_data_is_quarantined_and_every_written_image_decodes_in_training(tmp_path):
    good = _photo((640, 480))
    mid = len(good) // 2
    noisy = good[:mid] + random.Random(1).randbytes(2000) + good[mid + 2000 :]
    assert noisy.endswith(b"\xff\xd9") and not _decodes_in_tensorflow(noisy)
    header_only = _png_header_only(9000, 9000)
    assert len(header_only) == 45 and not _decodes_in_tensorflow(header_only)
    for name, data in (("good.jpg", good), ("noisy.jpg", noisy), ("empty.png", header_only)):
        (tmp_path / name).write_bytes(data)
    records, rejects, acc = _read(_coco(tmp_path, ["good.jpg", "noisy.jpg", "empty.png"]))
    assert [r.filename for r in records] == ["good.jpg"]
    assert sorted((r.image, r.reason.value) for r in rejects) == [("empty.png", "image_corrupt"), ("noisy.jpg", "image_corrupt")]
    assert all("pixel data does not decode" in r.detail for r in rejects)
    assert acc.images_in == 3 and acc.images_quarantined == 2


def test_pixel_check_header_trusts_the_pixels_and_says_so(tmp_path):
    good = _photo((640, 480))
    noisy = good[: len(good) // 2] + random.Random(1).randbytes(2000) + good[len(good) // 2 + 2000 :]
    for name, data in (("good.jpg", good), ("noisy.jpg", noisy)):
        (tmp_path / name).write_bytes(data)
    ann = str(_coco(tmp_path, ["good.jpg", "noisy.jpg"]))
    command = [sys.executable, "-m", "beam_jobs.prepare", "--input", ann, *IN_PROCESS, "--val-fraction=0"]
    done = subprocess.run([*command, "--output", str(tmp_path / "header"), "--pixel-check", "header"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = JobOutput.open(str(tmp_path / "header"))
    assert out.stats()["totals"]["images_written"] == 2 and out.stats()["input"]["pixel_check"] == "header"
    assert "pixels not decoded (--pixel-check header)" in (tmp_path / "header" / "report.html").read_text()
    default = subprocess.run([*command, "--output", str(tmp_path / "decode")], capture_output=True, text=True)
    assert default.returncode == 0, default.stderr
    stats = JobOutput.open(str(tmp_path / "decode")).stats()
    assert stats["totals"]["images_written"] == 1 and stats["input"]["pixel_check"] == "decode"
    wrong = subprocess.run([*command, "--output", str(tmp_path / "x"), "--pixel-check", "fast"], capture_output=True, text=True)
    assert wrong.returncode == 2
    assert wrong.stderr.strip() == "boxweight prepare: error: unknown --pixel-check 'fast'; known: decode, header"


# the pixel check against TensorFlow's full decode, on thousands of corruptions: tests/test_pixel_check.py


# 12. images wrongly refused: MPO (phones)
def test_a_two_frame_mpo_is_kept_and_tensorflow_decodes_it(tmp_path):
    first, second = Image.new("RGB", (64, 48), (200, 10, 10)), Image.new("RGB", (64, 48), (10, 10, 200))
    out = io.BytesIO()
    first.save(out, format="MPO", save_all=True, append_images=[second])
    (tmp_path / "p.jpg").write_bytes(out.getvalue())
    records, rejects, acc = _read(_coco(tmp_path, ["p.jpg"]))
    assert rejects == [] and records[0].format == "jpeg" and acc.repairs["multi_frame"] == 1
    pixels = tf.io.decode_jpeg(out.getvalue()).numpy()
    assert pixels.shape == (48, 64, 3) and pixels[..., 0].mean() > 150  # the first frame


# 13. the output folder inside an input folder
def test_an_output_folder_inside_the_input_folder_is_refused_and_old_outputs_are_not_read(tmp_path, demo_dir):
    csvs = tmp_path / "csvs"
    csvs.mkdir()
    (csvs / "a.jpg").write_bytes(dialects.jpeg())
    (csvs / "train_labels.csv").write_text("filename,width,height,class,xmin,ymin,xmax,ymax\na.jpg,64,48,x,1,1,9,9\n")
    with pytest.raises(JobError, match=r"is inside the input folder .*; the next run would read it as input"):
        prepare.run(["--input", str(csvs), "--output", str(csvs / "out"), *IN_PROCESS], print_report=False)
    prepare.run(["--input", str(csvs), "--output", str(tmp_path / "out"), *IN_PROCESS], print_report=False)
    (tmp_path / "out").rename(csvs / "old-out")  # an earlier output moved in by hand
    records, _, _ = _read(csvs, format="csv", image_root=str(csvs))
    assert [r.filename for r in records] == ["a.jpg"]  # its report.csv is not read as annotations


# 15. colliding source ids and duplicate files
def test_colliding_ids_and_duplicate_files_are_rejected_naming_the_first(tmp_path):
    (tmp_path / "x.jpg").write_bytes(dialects.jpeg())
    (tmp_path / "y.jpg").write_bytes(dialects.jpeg())
    path = _coco(tmp_path, ["x.jpg", "y.jpg", "./x.jpg"], ids=[5, "5", 7])
    records, rejects, _ = _read(path)
    assert [r.filename for r in records] == ["x.jpg"]
    assert sorted(r.detail.split(" is also")[0] for r in rejects) == ["image file " + str(tmp_path / "x.jpg"), "image key 'train/5'"]
    yolo = tmp_path / "yolo"
    dialects.yolo_segmentation(yolo)
    (yolo / "train" / "images" / "a.png").write_bytes(dialects.png())  # one label file, two images
    records, rejects, _ = _read(yolo)
    assert sorted(r.filename for r in records) == ["a.jpg", "b.jpg"]
    assert [(r.image, r.reason.value) for r in rejects] == [("a.png", "duplicate_image")]


@pytest.mark.slow
def test_shards_do_not_depend_on_the_worker_count_with_colliding_ids(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    names = []
    for i in range(40):
        (images / f"{i}.jpg").write_bytes(dialects.jpeg(color=(random.Random(i).randrange(256), 0, 0)))
        names.append(f"{i}.jpg")
    path = _coco(images, names + names[:10], ids=list(range(40)) + [str(i) for i in range(10)])
    outs = []
    for k, workers in enumerate(("--direct_num_workers=1", "--direct_num_workers=2")):
        out = tmp_path / f"out{k}"
        prepare.run(["--input", str(path), "--output", str(out), "--num-shards=3", workers], print_report=False)
        outs.append(out)
    output = JobOutput.open(str(outs[0]))
    assert output.stats()["totals"]["images_quarantined_by_reason"] == {"duplicate_image": 10}
    for shard in output.manifest.shards:
        assert (outs[0] / shard.name).read_bytes() == (outs[1] / shard.name).read_bytes()


# 14. the disk fills up while the report is written
@pytest.mark.slow
def test_a_write_that_fails_mid_report_publishes_nothing_and_keeps_the_previous_output(tmp_path):
    import resource
    import subprocess
    import sys

    from boxweight.demo_data import generate

    generate(str(tmp_path / "demo"), num_images=240, image_size=32, seed=3)
    out = tmp_path / "out"
    cmd = [str(Path(sys.executable).with_name("boxweight")), "prepare", "--input", str(tmp_path / "demo" / "annotations.json"),
           "--output", str(out), "--num-shards", "60", *IN_PROCESS]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    assert subprocess.run(cmd, capture_output=True, env=env, timeout=300).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # a file size limit that the shards and stats.json fit under and report.html does not: the
    # write fails half way through the report files, as on a full disk (Python gets EFBIG)
    limit = max(len(data) for name, data in before.items() if name not in ("report.html", "manifest.json")) + 1
    if len(before["report.html"]) <= limit:
        pytest.skip("report.html is not the largest report file here; the case needs it to be")

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    failed = subprocess.run([*cmd, "--overwrite", "--scheme", "inverse"], capture_output=True, text=True, env=env, timeout=300, preexec_fn=small_files)
    assert failed.returncode == 1
    assert "File too large" in failed.stderr
    assert failed.stderr.strip().splitlines()[-1] == "boxweight prepare: error: the job failed (see above); the output folder was left as it was"
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the previous output, whole
    assert not Path(str(out) + ".incomplete").exists()
    assert JobOutput.open(str(out)).verify() == []
