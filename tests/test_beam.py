"""The prepare job: transforms with TestPipeline, end to end on real datasets, Dataflow translation."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import apache_beam as beam
import google_crc32c
import pytest
import tensorflow as tf
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions
from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

import readers
import validation
from beam_jobs import local, prepare
from beam_jobs.keys import bucket, stable_hash
from beam_jobs.options import JobError
from beam_jobs.read import ReadAnnotations
from beam_jobs.rejects import reject_line
from beam_jobs.shards import WriteShards
from beam_jobs.split import SplitTrainVal, val_count
from beam_jobs.statistics import ClassStatistics
from beam_jobs.validate import Validate
from readers import RawBox, RawImage
from schemas.annotations import Box, ImageRecord
from schemas.features import decode_example
from schemas.label_map import LabelMap
from schemas.manifest import shard_name
from tests.conftest import jpeg_bytes, png_bytes, shared, voc_xml

IN_PROCESS = ["--runner=DirectRunner", "--direct_running_mode=in_memory"]


def _record(key, names, split="train"):
    boxes = tuple(Box(0.1, 0.1, 0.5, 0.5, 1, n) for n in names)
    return ImageRecord(key, f"{key}.jpg", "p", 100, 100, "jpeg", boxes=boxes, split=split)


def test_validate_transform_sends_bad_images_to_the_dead_letter_output(tmp_path):

    (tmp_path / "ok.jpg").write_bytes(jpeg_bytes())
    box = RawBox(1, 1, 9, 9, class_name="a", class_ref="'a'", source="s")
    raws = [
        RawImage("ok", "ok.jpg", str(tmp_path), "s:1", "train", (box,)),
        RawImage("gone", "gone.jpg", str(tmp_path), "s:2", "train", (box, box)),
    ]
    with TestPipeline(options=beam.options.pipeline_options.PipelineOptions(IN_PROCESS)) as p:
        out = p | beam.Create([raws]) | Validate(LabelMap(("a",)))
        assert_that(
            out.records | "Keys" >> beam.FlatMap(lambda c: [(r.source_id, len(r.boxes)) for r in c]),
            equal_to([("ok", 1)]),
            label="records",
        )
        totals = out.accounts | beam.Map(
            lambda a: (a.images_in, a.images_written, a.boxes_in, a.boxes_written, a.boxes_dropped)
        )
        assert_that(totals, equal_to([(2, 1, 3, 1, 2)]), label="accounts")
        assert_that(
            out.rejects | beam.Map(lambda r: (r.reason.value, r.boxes)),
            equal_to([("image_missing", 2)]),
            label="rejects",
        )


def test_class_statistics_transform():
    recs = [_record("1", ["a", "a", "b"]), _record("2", ["a"]), _record("3", [], "val")]
    with TestPipeline(options=beam.options.pipeline_options.PipelineOptions(IN_PROCESS)) as p:
        stats = p | beam.Create([recs[:1], recs[1:]]) | ClassStatistics()
        summary = stats | beam.MapTuple(lambda split, s: (split, s.images, dict(s.class_boxes), dict(s.class_images)))
        assert_that(summary, equal_to([("train", 2, {"a": 3, "b": 1}, {"a": 2, "b": 1}), ("val", 1, {}, {})]))


def test_split_is_stratified_and_deterministic():
    recs = [_record(str(i), ["common"]) for i in range(50)] + [_record(f"r{i}", ["rare"]) for i in range(3)]
    with TestPipeline(options=beam.options.pipeline_options.PipelineOptions(IN_PROCESS)) as p:
        out = (p | beam.Create([recs[i : i + 7] for i in range(0, len(recs), 7)]) | SplitTrainVal(0.2)).chunks
        counts = (
            out | beam.FlatMap(lambda c: [(r.split, r.boxes[0].text) for r in c]) | beam.combiners.Count.PerElement()
        )
        assert_that(
            counts,
            equal_to(
                [(("train", "common"), 40), (("val", "common"), 10), (("train", "rare"), 2), (("val", "rare"), 1)]
            ),
        )
    assert [val_count(n, 0.2) for n in (0, 1, 2, 3, 10, 50)] == [0, 0, 1, 1, 2, 10]


def test_hashes_that_cross_a_beam_coder_fit_its_signed_64_bit_ints_and_keep_the_unsigned_order():
    # apache-beam 2.78's VarIntCoder refuses ints past 2**63 - 1; the unsigned SHA-256 prefix of about
    # half of all keys is past it (the OverflowError of 2.78 in the carve). The order and the placement
    # must stay those of the unsigned prefix, or carves, thumbnails and shards of earlier outputs move.
    keys = [f"train/{i}" for i in range(2000)]
    unsigned = {k: int.from_bytes(hashlib.sha256(k.encode()).digest()[:8], "big") for k in keys}
    assert max(unsigned.values()) >= 2**63  # the keys include the ones that broke
    coder = beam.coders.VarIntCoder()
    for k in keys:
        assert -(2**63) <= stable_hash(k) < 2**63
        assert coder.decode(coder.encode(stable_hash(k))) == unsigned[k] - 2**63  # the prefix, shifted into range
        assert bucket(k, 7) == unsigned[k] % 7
    assert sorted(keys, key=stable_hash) == sorted(keys, key=unsigned.__getitem__)
    # by hand: sha256(b"train/1") starts cd14827ef1010ef4 = 14777579759030308596 (past 2**63),
    # 14777579759030308596 mod 3 = 0 and 14777579759030308596 - 2**63 = 5554207722175532788
    assert (bucket("train/1", 3), stable_hash("train/1")) == (0, 5554207722175532788)


def test_source_splits_are_kept():
    recs = [_record("1", ["a"]), _record("2", ["a"], "val"), _record("3", ["a"], "test")]
    with TestPipeline(options=beam.options.pipeline_options.PipelineOptions(IN_PROCESS)) as p:
        out = (p | beam.Create([recs]) | SplitTrainVal(0.5)).chunks
        assert_that(
            out | beam.FlatMap(lambda c: [(r.source_id, r.split) for r in c]),
            equal_to([("1", "train"), ("2", "val"), ("3", "test")]),
        )


def _read_shards(out: Path, split: str, compression: str = "none"):
    suffix = ".tfrecord.gz" if compression == "gzip" else ".tfrecord"
    files = sorted(out.glob(f"{split}-*-of-*{suffix}"))
    ds = tf.data.TFRecordDataset([str(f) for f in files], compression_type="GZIP" if compression == "gzip" else "")
    return [decode_example(x) for x in ds.as_numpy_iterator()], files


def _check_output(out: Path, doc: dict, compression: str = "none"):
    stats = json.loads((out / "stats.json").read_text())
    assert stats == doc
    t = stats["totals"]
    assert t["images_in"] == t["images_written"] + t["images_quarantined"]
    assert t["boxes_in"] == t["boxes_written"] + t["boxes_dropped"]
    assert t["images_quarantined"] == sum(t["images_quarantined_by_reason"].values())
    assert t["boxes_dropped"] == sum(t["boxes_dropped_by_reason"].values())
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert sum(r["kind"] == "image" for r in rejects) == t["images_quarantined"]
    assert sum(r["boxes"] for r in rejects) == t["boxes_dropped"]
    label_map = LabelMap.from_pbtxt((out / "label_map.pbtxt").read_text())
    written = 0
    for split, entry in stats["splits"].items():
        examples, files = _read_shards(out, split, compression)
        assert files, split
        assert len(examples) == entry["images"]
        written += len(examples)
        counts = Counter(t.decode() for e in examples for t in e.get("image/object/class/text", []))
        assert counts == {c["name"]: c["boxes"] for c in entry["classes"] if c["boxes"]}
        weights = {c["name"]: c["weight"] for c in entry["classes"]}
        for e in examples:
            assert e["image/object/class/weight"] == e["image/object/weight"]
            for text, label, w in zip(
                e["image/object/class/text"], e["image/object/class/label"], e["image/object/weight"]
            ):
                assert label_map.name_of(label) == text.decode()
                assert w == pytest.approx(weights[text.decode()], rel=1e-6)
            assert e["image/key/sha256"].decode() == hashlib.sha256(e["image/encoded"]).hexdigest()
    assert written == t["images_written"]
    # every source id is a decimal int64, read the way Model Garden's parser reads it, unique in
    # its split (COCO ids are kept as they are, and a COCO export numbers each split from 0)
    for split in stats["splits"]:
        ids = [e["image/source_id"] for e in _read_shards(out, split, compression)[0]]
        numbers = tf.strings.to_number(tf.constant(ids), tf.int64).numpy().tolist()
        assert len(set(numbers)) == len(ids)
    return stats


@pytest.mark.slow
@pytest.mark.parametrize(
    ("dataset", "extra"),
    [
        ("chess-coco", ["--scheme=effective_number", "--beta=0.99"]),
        ("cards-voc", ["--scheme=median_frequency", "--num-shards=3", "--difficult-weight=0.5"]),
        ("aquarium-yolo", ["--scheme=balanced", "--compression=gzip", "--max-side=320"]),
    ],
)
def test_end_to_end_on_shared_datasets(tmp_path, dataset, extra):
    out = tmp_path / "out"
    doc = prepare.run(["--input", str(shared(dataset)), "--output", str(out), *extra, *IN_PROCESS], print_report=False)
    compression = "gzip" if "--compression=gzip" in extra else "none"
    stats = _check_output(out, doc, compression)
    if dataset == "cards-voc":
        assert len(list(out.glob("train-*-of-00003.tfrecord"))) == 3
    if dataset == "aquarium-yolo":
        assert stats["totals"]["boxes_dropped_by_reason"] == {"box_zero_area": 2}
        assert set(stats["splits"]) == {"train", "val", "test"}
        examples, _ = _read_shards(out, "val", "gzip")
        assert max(max(e["image/width"], e["image/height"]) for e in examples) == 320
    if dataset == "chess-coco":
        assert stats["splits"]["train"]["classes"][0]["name"] == "pieces"


def _local(argv, images=None, decode=True):
    """(runner, worker processes, the direct_num_workers the options then hold) of local_runner."""
    options = PipelineOptions(argv)
    runner, processes = local.local_runner(argv, options, images, decode=decode)
    return runner, processes, options.view_as(DirectOptions).direct_num_workers


def test_local_default_runner_is_one_worker_process_per_core():
    runner, processes, workers = _local(["--input", "x"])
    assert processes and workers == os.cpu_count()
    assert isinstance(runner, FnApiRunner)
    assert runner._default_environment.command_string.endswith(
        "-m beam_jobs.worker"
    )  # Beam's own worker, Ctrl-C ignored while it starts
    assert _local(["--direct_num_workers=3"])[1:] == (True, 3)  # the user's count stays
    assert _local(["--runner=DataflowRunner"])[0] is None  # Beam picks the named runner


@pytest.mark.parametrize(
    ("decode", "environment", "seen"), [(True, None, "65536"), (True, "262144", "262144"), (False, None, "unset")]
)
def test_workers_that_decode_start_with_a_fixed_mmap_threshold_unless_the_environment_sets_one(
    decode, environment, seen
):
    """The worker command as /bin/sh runs it, with the worker module swapped for a print of what it would see."""
    runner = _local([], None, decode=decode)[0]
    command = runner._default_environment.command_string
    assert command.endswith("-m beam_jobs.worker")
    probe = command.replace(
        "-m beam_jobs.worker", '-c \'import os; print(os.environ.get("MALLOC_MMAP_THRESHOLD_", "unset"))\''
    )
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    if environment:
        env["MALLOC_MMAP_THRESHOLD_"] = environment
    done = subprocess.run(probe, shell=True, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == seen


def test_a_small_job_runs_in_this_process_and_a_large_one_on_a_worker_per_core(tmp_path, demo_dir):
    small = readers.plan(str(demo_dir / "annotations.json"))
    assert small.images is not None and 0 < small.images < local.SMALL_JOB_IMAGES
    runner, processes, workers = _local(["--input", "x"], small.images)
    assert not processes and workers == 1 and isinstance(runner, FnApiRunner)
    assert not hasattr(runner._default_environment, "command_string")  # Beam's embedded (in-process) environment
    assert _local([], local.SMALL_JOB_IMAGES)[1:] == (True, os.cpu_count())
    assert _local([], None)[1:] == (True, os.cpu_count())  # not counted: workers
    assert _local(["--direct_num_workers=2"], 3)[1:] == (True, 2)  # asked for
    boxweight = os.path.join(os.path.dirname(sys.executable), "boxweight")
    command = [boxweight, "--verbose", "prepare", "--input", str(demo_dir / "annotations.json"), "--output", str(tmp_path / "o")]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "annotations read as one stream, runner local, in this process" in done.stderr


@pytest.mark.slow
def test_same_run_twice_gives_identical_shards_and_multiprocess_mode_runs(tmp_path, demo_dir):
    args = ["--input", str(demo_dir / "annotations.json"), "--val-fraction=0.25", "--num-shards=2"]
    a = prepare.run([*args, "--output", str(tmp_path / "a"), *IN_PROCESS], print_report=False)
    b = prepare.run([*args, "--output", str(tmp_path / "b"), "--direct_num_workers=2"], print_report=False)  # worker processes
    _check_output(tmp_path / "b", b)
    names = sorted(p.name for p in (tmp_path / "a").glob("*.tfrecord"))
    assert names == [shard_name(s, i, 2, "none") for s in ("train", "val") for i in range(2)]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert a["splits"] == b["splits"]
    assert b["splits"]["val"]["images"] > 0
    rare = min(b["splits"]["train"]["classes"], key=lambda c: c["boxes"])
    assert next(c for c in b["splits"]["val"]["classes"] if c["name"] == rare["name"])["boxes"] > 0


def test_hostile_dataset_does_not_kill_the_job(tmp_path):

    (tmp_path / "ok.jpg").write_bytes(jpeg_bytes())
    (tmp_path / "png.jpg").write_bytes(png_bytes())
    (tmp_path / "trunc.jpg").write_bytes(jpeg_bytes()[:300])
    names = ["ok.jpg", "png.jpg", "trunc.jpg", "../x.jpg", "missing.jpg"]
    doc = {
        "images": [{"id": i, "file_name": n} for i, n in enumerate(names)],
        "annotations": [
            {"id": i, "image_id": i % 5, "category_id": 1, "bbox": [1 + i, 1, 5, 5 if i != 5 else float("nan")]}
            for i in range(10)
        ],
        "categories": [{"id": 1, "name": "x"}],
    }
    (tmp_path / "a.json").write_text(json.dumps(doc))
    out = tmp_path / "out"
    stats = prepare.run(
        ["--input", str(tmp_path / "a.json"), "--output", str(out), "--val-fraction=0", *IN_PROCESS], print_report=False
    )
    t = stats["totals"]
    assert (t["images_in"], t["images_written"], t["images_quarantined"]) == (5, 2, 3)
    assert (t["boxes_in"], t["boxes_written"]) == (10, 3)
    assert t["boxes_dropped_by_reason"] == {"box_non_finite": 1, "image_quarantined": 6}
    examples, _ = _read_shards(out, "train")
    assert sorted(e["image/format"] for e in examples) == [b"jpeg", b"png"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input", "/nonexistent/x.json"], "does not exist"),
        (["--input", "{demo}", "--scheme", "magic"], r"unknown scheme 'magic'; known: none, inverse"),
        (["--input", "{demo}", "--format", "kitti"], r"unknown format 'kitti'"),
        (["--input", "{demo}", "--compression", "zip"], "unknown compression 'zip'"),
        (["--input", "{demo}", "--output", "/proc/forbidden"], "is not writable"),
    ],
)
def test_unusable_jobs_fail_fast_with_one_message(tmp_path, demo_dir, args, message):
    args = [a.replace("{demo}", str(demo_dir / "annotations.json")) for a in args]
    if "--output" not in args:
        args += ["--output", str(tmp_path / "out")]
    with pytest.raises(JobError, match=message):
        prepare.run([*args, *IN_PROCESS])


def test_no_valid_image_fails_with_a_clear_message(tmp_path):
    (tmp_path / "a.json").write_text(
        json.dumps(
            {"images": [{"id": 1, "file_name": "gone.jpg"}], "annotations": [], "categories": [{"id": 1, "name": "x"}]}
        )
    )
    with pytest.raises(JobError, match="no valid image"):
        prepare.run(
            ["--input", str(tmp_path / "a.json"), "--output", str(tmp_path / "out"), *IN_PROCESS], print_report=False
        )
    assert "image_missing" in (tmp_path / "out" / "rejects.jsonl").read_text()


@pytest.mark.parametrize("dataset", ["coco", "yolo", "voc"])
def test_dataflow_dry_run_translates_offline(tmp_path, demo_dir, dataset):
    """The job translates for Dataflow without a network; YOLO's and VOC's files are read by the workers (ReadItems)."""
    if dataset == "yolo":
        _yolo_with_every_case(tmp_path / "yolo")
    if dataset == "voc":
        _voc_with_every_case(tmp_path / "voc")
    data = demo_dir / "annotations.json" if dataset == "coco" else tmp_path / dataset
    doc = prepare.run(
        [
            "--input",
            str(data),
            "--output",
            str(tmp_path / "out"),
            "--runner=DataflowRunner",
            "--dry_run=True",
            "--no_auth",
            "--project=my-project-123",
            "--region=us-central1",
            "--temp_location=gs://my-bucket/tmp",
            "--staging_location=gs://my-bucket/staging",
            "--sdk_location=container",
        ],
        print_report=False,
    )
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.incomplete").exists()  # a dry run writes nothing
    plan = doc["dry_run"]
    assert plan["stages"][:4] == ["ReadAnnotations", "Validate", "SplitTrainVal", "ClassStatistics"]
    assert {"AttachWeightsEncodeAndWriteShards", "Thumbnails", "Account", "WriteReport"} <= set(plan["stages"])
    assert plan["transforms"] > 30
    if dataset == "coco":  # one annotation file: parsed by one worker, its images spread
        assert plan["read"] == ["Parts", "Parse", "Spread"]
    elif dataset == "yolo":  # listed by one worker, every label file read by some worker, duplicates settled across them
        assert plan["read"] == ["Listing", "List", "SpreadItems", "ReadItems", "UniqueAcrossParts", "Spread"]
    else:  # the XML files parsed across workers, their images found on one
        assert plan["read"] == [
            "Listing", "List", "SpreadItems", "ReadItems", "ToOne", "Gather", "Resolve", "Spread"
        ]
    (image,) = plan["containers"]  # every step runs in Beam's own Python SDK container, this version
    assert image.startswith("gcr.io/cloud-dataflow/v1beta3/beam_python3.11_sdk:") and beam.__version__ in image


def test_dry_run_without_dataflow_is_refused(tmp_path, demo_dir):
    with pytest.raises(JobError, match="--dry_run only applies to --runner=DataflowRunner"):
        prepare.run(
            ["--input", str(demo_dir / "annotations.json"), "--output", str(tmp_path / "out"), "--dry_run=True"]
        )


@pytest.mark.parametrize("runner", ["DataflowRunner", "dataflow"])  # Beam takes either spelling
def test_dataflow_job_with_a_local_output_is_refused(tmp_path, demo_dir, runner):
    with pytest.raises(JobError, match="is a local path; Dataflow workers need gs://"):
        prepare.run(
            [
                "--input",
                str(demo_dir / "annotations.json"),
                "--output",
                str(tmp_path / "out"),
                f"--runner={runner}",
                "--project=my-project-123",
            ]
        )


def test_read_attach_weights_and_write_shards_transforms(tmp_path):
    """ReadAnnotations -> Validate -> WriteShards(plan): every shard file exists, records sorted, weights from the plan."""
    from weighting.apply import WeightPlan
    from weighting.stats import SplitStats

    (tmp_path / "img").mkdir()
    images, anns = [], []
    for i in range(70):  # more than one parse chunk
        (tmp_path / "img" / f"{i:03d}.jpg").write_bytes(jpeg_bytes())
        images.append({"id": i, "file_name": f"img/{i:03d}.jpg", "width": 64, "height": 48})
        anns.append({"id": i, "image_id": i, "category_id": 1 + (i % 3 == 0), "bbox": [1, 1, 20, 20], "iscrowd": 0})
    (tmp_path / "ann.json").write_text(
        json.dumps(
            {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
        )
    )
    lm = LabelMap(("a", "b"))
    counts = Counter(a=46, b=24)
    stats = SplitStats(images=70, class_boxes=counts, class_images=counts, boxes_in_images_with=counts)
    plan = WeightPlan.from_stats(stats, lm.names, "inverse", normalize="none")
    assert plan.class_weights["a"] != plan.class_weights["b"]
    out = tmp_path / "out"
    out.mkdir()
    with TestPipeline(options=beam.options.pipeline_options.PipelineOptions(IN_PROCESS)) as p:
        raw = p | ReadAnnotations(readers.plan(str(tmp_path / "ann.json"), "coco", None, lm))
        assert_that(raw | "Sizes" >> beam.Map(len), equal_to([64, 6]), label="all parsed, in chunks")
        records = (raw | Validate(lm)).records
        plan_si = beam.pvalue.AsSingleton(p | "Plan" >> beam.Create([plan]))
        _ = records | WriteShards(str(out), 80, "none", plan=plan_si)
    recs, files = _read_shards(out, "train")
    # 80 shards for 70 records: some shards are empty, and are still written
    assert [f.name for f in files] == [shard_name("train", i, 80, "none") for i in range(80)]
    assert any(f.stat().st_size == 0 for f in files)
    assert len(recs) == 70
    for f in files:
        keys = [r["image/source_id"].decode() for r in _read_shards_file(f)]
        assert keys == sorted(keys)
    for r in recs:
        want = plan.class_weights[r["image/object/class/text"][0].decode()]
        assert list(r["image/object/class/weight"]) == pytest.approx([want])
        assert list(r["image/object/weight"]) == list(r["image/object/class/weight"])


def _read_shards_file(path: Path):
    return [decode_example(x) for x in tf.data.TFRecordDataset([str(path)]).as_numpy_iterator()]


def test_tfrecords_written_in_pieces_read_back_in_tensorflow(tmp_path):
    """write_tfrecords frames a record given as pieces; TF must read the same bytes."""
    from beam_jobs.tfrecord_file import write_tfrecords

    image = b"y" * 4096
    mixed = [b"a", b"b", image, b"c", b"d" * 4095, b"e" * 70000, b"f"]
    records = [b"", b"one", [b"pi", b"", b"eces" * 5000], [b"x" * 70000], mixed, [image, b"z"], []]
    for gz in (False, True):
        path = tmp_path / f"r{int(gz)}.tfrecord"
        written = write_tfrecords(str(path), records, gzipped=gz)
        assert (written.records, written.bytes) == (len(records), path.stat().st_size)
        assert written.crc32c == f"{google_crc32c.value(path.read_bytes()):08x}"
        back = list(tf.data.TFRecordDataset([str(path)], compression_type="GZIP" if gz else "").as_numpy_iterator())
        assert back == [r if isinstance(r, bytes) else b"".join(r) for r in records]


def test_image_vanishing_after_validation_fails_with_a_clear_message(tmp_path):
    from beam_jobs.shards import _WriteShardFn

    rec = _record("1", ["a"]).replace(path=str(tmp_path / "gone.jpg"))
    with pytest.raises(RuntimeError, match="passed validation but cannot be read now"):
        list(_WriteShardFn(str(tmp_path), "none", None).process((("train", 0), [rec]), {"train": 1}))


def test_the_progress_counts_of_a_run_add_up_to_its_totals(tmp_path):
    """What the progress line reads: every worker's running counts, summed (see beam_jobs.progress)."""
    from beam_jobs import progress

    folder = tmp_path / "progress"
    folder.mkdir()
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 32, "height": 32} for i in range(5)]
    for image in images[:4]:  # the fifth is missing
        (tmp_path / image["file_name"]).write_bytes(jpeg_bytes())
    boxes = [{"id": i, "image_id": i, "category_id": 1, "bbox": [1, 1, 8, 8]} for i in range(5)]
    raw = tmp_path / "annotations.json"
    raw.write_text(json.dumps({"images": images, "annotations": boxes, "categories": [{"id": 1, "name": "a"}]}))
    lm = LabelMap(("a",))
    with TestPipeline(options=beam.options.pipeline_options.PipelineOptions(IN_PROCESS)) as p:
        read = p | ReadAnnotations(readers.plan(str(raw), "coco", None, lm), str(folder))
        checked = read | Validate(lm, progress_dir=str(folder))
        _ = checked.records | WriteShards(str(tmp_path / "out"), 2, "none", progress_dir=str(folder))
    counts = progress.read_counts(str(folder))
    assert counts == {"listed": 5, "parsed": 1, "validated": 5, "accepted": 4, "written": 4}
    stages = {key: progress.Stage() for key in ("listed", "validated", "written")}
    assert progress.local_line(counts, stages, 3.0) == "writing the report (5 images validated, 4 written)"
    assert progress.local_line({"listed": 5, "validated": 2}, stages, 3.0) == "validating images: 2 images"
    assert (
        progress.local_line({"listed": 5, "parsed": 1, "validated": 2}, stages, 3.0)
        == "validating images: 2 / 5 images"
    )
    assert progress.local_line({}, stages, 3.0) == "prepare: starting workers (3 s)"
    assert progress.local_line({}, stages, 3.0, workers=False) == "prepare: starting the runner (3 s)"


def test_rejects_are_sorted_in_parts_and_merged_as_one_sorted_stream(tmp_path, monkeypatch):
    """rejects.jsonl never gathers on one worker: parts sorted apart, then merged line by line."""
    import random

    from beam_jobs import rejects

    monkeypatch.setattr(rejects, "PART_LINES", 64)
    rng = random.Random(3)
    words = ["a", "ab", "b", "é", "\u00e9t\u00e9", 'z"q', "x\\y", "日本", "0", ""]
    lines = [
        json.dumps(
            {"detail": "".join(rng.choices(words, k=rng.randint(0, 4))), "n": rng.randint(0, 9)}, ensure_ascii=False
        )
        for _ in range(1000)
    ]
    with TestPipeline(options=beam.options.pipeline_options.PipelineOptions(IN_PROCESS)) as p:
        parts = p | beam.Create(lines) | rejects.WriteSortedParts(str(tmp_path / "parts"))
        assert_that(parts | beam.MapTuple(lambda path, n: n) | beam.CombineGlobally(sum), equal_to([1000]))
    paths = sorted(str(f) for f in (tmp_path / "parts").iterdir())
    assert len(paths) == 16  # ceil(1000 / 64)
    assert list(rejects.merge_parts(paths)) == [line + "\n" for line in sorted(lines)]


def test_parts_are_read_apart_and_an_image_in_two_parts_is_written_once(tmp_path):
    """Two COCO files, read by the job as two parts: what both list is refused in the later one, with the reject
    a sequential read (validation.read, the code the fuzz tests exercise) gives."""

    for split, names in (("train", ["a.jpg", "b.jpg", "c.jpg"]), ("val", ["c.jpg", "d.jpg"])):
        images = [{"id": i, "file_name": n, "width": 32, "height": 32} for i, n in enumerate(names)]
        boxes = [{"id": i, "image_id": i, "category_id": 1, "bbox": [1, 1, 8, 8]} for i in range(len(names))]
        doc = {"images": images, "annotations": boxes, "categories": [{"id": 1, "name": "a"}]}
        (tmp_path / f"custom_{split}.json").write_text(json.dumps(doc))
    for name in "abcd":
        (tmp_path / f"{name}.jpg").write_bytes(jpeg_bytes())
    plan = readers.plan(str(tmp_path))
    assert plan.format == "coco" and len(plan.parts) == 2
    out = tmp_path.parent / f"{tmp_path.name}-out"
    prepare.run(["--input", str(tmp_path), "--output", str(out), *IN_PROCESS], print_report=False)
    rejects = (out / "rejects.jsonl").read_text().splitlines()
    sequential = [r for r in validation.read(str(tmp_path)) if not isinstance(r, ImageRecord)]
    assert rejects == sorted(reject_line(r) for r in sequential)
    (only,) = [json.loads(line) for line in rejects]
    assert only["reason"] == "duplicate_image" and only["source"].endswith("custom_val.json: images[0]")
    assert only["detail"] == f"image file {tmp_path}/c.jpg is also {tmp_path}/custom_train.json: images[2]; the first is kept"


def _yolo_with_every_case(root: Path, extra: int = 0) -> None:
    """A YOLO dataset where reading file by file matters: two images sharing one label file (x.jpg, x.png),
    a label file without its image, one that is not UTF-8, and ``extra`` plain images."""
    from tests.dialects import jpeg, png

    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "data.yaml").write_text("names: [cat, dog]\n")
    (root / "images" / "x.jpg").write_bytes(jpeg())
    (root / "images" / "x.png").write_bytes(png())
    (root / "labels" / "x.txt").write_text("0 0.5 0.5 0.25 0.25\n1 0.2 0.2 0.1 0.1\n")
    (root / "labels" / "orphan.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    (root / "images" / "latin.jpg").write_bytes(jpeg())
    (root / "labels" / "latin.txt").write_bytes(b"0 0.5 0.5 0.2 0.2 \xe9t\xe9\n")
    for i in range(extra):
        (root / "images" / f"p{i:04d}.jpg").write_bytes(jpeg())
        (root / "labels" / f"p{i:04d}.txt").write_text(f"{i % 2} 0.5 0.5 0.2 0.2\n")


def test_a_file_per_image_is_read_across_workers_as_one_sequential_read_would(tmp_path):
    """YOLO is listed on one worker and its label files are read on all (ReadItems): the records and the rejects
    are those of a sequential read (validation.read), on worker processes and in this process alike, and the
    launcher's plan does not carry the listing (it would grow the Dataflow graph with the dataset)."""
    import pickle

    data = tmp_path / "yolo"
    _yolo_with_every_case(data, extra=40)
    plan = readers.plan(str(data))
    assert plan.itemized and plan.images == 43
    small = len(pickle.dumps(plan))
    _yolo_with_every_case(tmp_path / "more", extra=400)  # 360 more files: a listing would add 360 paths
    assert len(pickle.dumps(readers.plan(str(tmp_path / "more")))) < small + 50

    rejects, written = _job_reads_as_one_sequential_read(data, tmp_path)
    assert sorted(json.loads(line)["reason"] for line in rejects) == ["annotation_malformed", "duplicate_image", "image_missing"]
    assert written == 41


def _job_reads_as_one_sequential_read(data: Path, tmp_path: Path) -> tuple[list[str], int]:
    """Run the job on worker processes and in this process: each gives the rejects and the image count of
    validation.read (the sequential read), and the two give the same shards. Returns the reject lines and the count."""
    sequential = list(validation.read(str(data)))
    expected_rejects = sorted(reject_line(r) for r in sequential if not isinstance(r, ImageRecord))
    written = sum(isinstance(r, ImageRecord) for r in sequential)
    shards = {}
    for name, runner in (("workers", ["--direct_num_workers=2"]), ("in-process", IN_PROCESS)):
        out = tmp_path / name
        prepare.run(["--input", str(data), "--output", str(out), "--num-shards=2", *runner], print_report=False)
        assert (out / "rejects.jsonl").read_text().splitlines() == expected_rejects
        assert json.loads((out / "stats.json").read_text())["totals"]["images_written"] == written
        shards[name] = {p.name: p.read_bytes() for p in out.glob("train-*")}
    assert shards["workers"] == shards["in-process"] and len(shards["workers"]) == 2
    return expected_rejects, written


def _voc_with_every_case(root: Path, extra: int = 0) -> None:
    """A VOC tree where finding images needs every XML and every listed image: two XML files claiming one
    image, an XML whose image is in another folder, one that is not XML, an image no XML claims, split
    lists naming an image twice and not at all, and ``extra`` plain pairs."""
    from tests.dialects import jpeg

    ann, img, main = root / "Annotations", root / "JPEGImages", root / "ImageSets" / "Main"
    for folder in (ann, img, main, root / "elsewhere"):
        folder.mkdir(parents=True)
    names = [f"p{i:04d}" for i in range(extra)] + ["a", "twin", "lost", "broken", "both", "none"]
    for name in names:
        if name not in ("lost", "twin"):
            (img / f"{name}.jpg").write_bytes(jpeg())
        (ann / f"{name}.xml").write_text(voc_xml(f"{name}.jpg", name="cat" if name < "p" else "dog"))
    (ann / "twin.xml").write_text(voc_xml("a.jpg"))  # claims a.jpg, which a.xml claims first
    (root / "elsewhere" / "lost.jpg").write_bytes(jpeg())  # lost.xml's image, outside the folders searched
    (ann / "broken.xml").write_text("<annotation><filename>broken.jpg")
    (img / "unclaimed.jpg").write_bytes(jpeg())
    (main / "train.txt").write_text("\n".join(n for n in names if n != "none") + "\n")
    (main / "val.txt").write_text("both\n")


def test_voc_files_are_parsed_across_workers_and_their_images_found_as_one_sequential_read_would(tmp_path):
    """VOC's XML files are parsed on every worker (ReadItems) and their images found on one (Resolve): the
    rejects are those of a sequential read, on worker processes and in this process alike, and the plan
    carries neither listing."""
    import pickle

    data = tmp_path / "voc"
    _voc_with_every_case(data, extra=70)
    plan = readers.plan(str(data))
    assert plan.itemized and plan.resolves and plan.images == 76
    small = len(pickle.dumps(plan))
    _voc_with_every_case(tmp_path / "vvv", extra=400)  # 330 more XML files and images: a listing would add their paths
    assert len(pickle.dumps(readers.plan(str(tmp_path / "vvv")))) < small + 50

    rejects, written = _job_reads_as_one_sequential_read(data, tmp_path)
    assert written == 71
    assert Counter(json.loads(line)["reason"] for line in rejects) == {
        "duplicate_image": 1,  # twin.xml
        "image_missing": 1,  # lost.xml, with the hint
        "annotation_malformed": 1,  # broken.xml
        "annotation_missing": 1,  # unclaimed.jpg
        "split_conflict": 1,  # both
        "split_undeclared": 1,  # none
    }
    assert f"{data}/elsewhere/lost.jpg has that name" in "".join(rejects)
