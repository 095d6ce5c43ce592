"""Faults, round 3: each case run as a user types it (``boxweight prepare ...`` as a subprocess).

Every case ends in records and rejects that add up, or in one line naming the
file and the value; never a signal, a traceback, a hang or memory that grows
with what a small file claims. The largest process's peak memory is measured
where memory is the point.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
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
