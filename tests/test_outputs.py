"""A job output is one unit, read through its manifest; no flag, split or class set is silently wrong.

Each test names the case of the "Trustworthy outputs" issue it covers; the
commands run the way a user types them (``boxweight ...``, ``python -m ...``).
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tensorflow as tf

import readers
from beam_jobs import dataflow, interrupts, prepare
from beam_jobs.options import PrepareOptions, scheme_params
from beam_jobs.pipeline import Prepare
from schemas.label_map import LabelMap
from schemas.manifest import MANIFEST_NAME
from storage.job_output import DataError, JobOutput
from tests.conftest import bccd_like, jpeg_bytes
from weighting.stats import SplitStats
from weighting.training.input_fn import ReweightSpec, create_input_fn

BOXWEIGHT = str(Path(sys.executable).with_name("boxweight"))
IN_PROCESS = "--runner=apache_beam.runners.portability.fn_api_runner.fn_runner.FnApiRunner"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _boxweight(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BOXWEIGHT, *args], capture_output=True, text=True, timeout=timeout, env=ENV)


def _count(ds: tf.data.Dataset) -> int:
    return sum(int(labels["num_groundtruth_boxes"].shape[0]) for _, labels in ds)


@pytest.fixture(scope="module")
def demo_out(demo_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("job") / "out"
    done = _boxweight(
        "prepare",
        "--input",
        str(demo_dir / "annotations.json"),
        "--output",
        str(out),
        "--num-shards",
        "2",
        "--val-fraction",
        "0.25",
        IN_PROCESS,
    )
    assert done.returncode == 0, done.stderr
    return out


def test_manifest_lists_every_file_with_split_records_and_checksum(demo_out):
    manifest = json.loads((demo_out / MANIFEST_NAME).read_text())
    listed = {e["name"] for e in manifest["shards"] + manifest["files"]}
    assert listed | {MANIFEST_NAME} == {p.name for p in demo_out.iterdir()}
    stats = json.loads((demo_out / "stats.json").read_text())
    for split, entry in stats["splits"].items():
        shards = [s for s in manifest["shards"] if s["split"] == split]
        assert len(shards) == 2
        assert sum(s["records"] for s in shards) == entry["images"]
        for s in shards:
            assert s["records"] == sum(1 for _ in tf.data.TFRecordDataset(str(demo_out / s["name"])))
    assert JobOutput.open(str(demo_out)).verify() == []
    (demo_out / "stats.json").write_bytes((demo_out / "stats.json").read_bytes().replace(b'"images"', b'"imageZ"', 1))
    try:
        assert JobOutput.open(str(demo_out)).verify() == [
            f"stats.json: crc32c {_crc(demo_out / 'stats.json')}, manifest.json says {_listed_crc(manifest, 'stats.json')}"
        ]
    finally:
        (demo_out / "stats.json").write_bytes(
            (demo_out / "stats.json").read_bytes().replace(b'"imageZ"', b'"images"', 1)
        )


def _crc(path: Path) -> str:
    import google_crc32c

    return f"{google_crc32c.value(path.read_bytes()):08x}"


def _listed_crc(manifest: dict, name: str) -> str:
    return next(f["crc32c"] for f in manifest["files"] if f["name"] == name)


# Case 1: old shards stay beside new ones; a killed job leaves shards that look complete.
def test_second_run_into_a_full_folder_is_refused_and_overwrite_replaces_it_whole(demo_dir, tmp_path):
    out = tmp_path / "out"
    args = ["prepare", "--input", str(demo_dir / "annotations.json"), "--output", str(out), IN_PROCESS]
    assert _boxweight(*args, "--num-shards", "1").returncode == 0
    refused = _boxweight(*args, "--num-shards", "3")
    assert refused.returncode == 2
    assert (
        refused.stderr.strip().splitlines()
        == [
            f"boxweight prepare: error: output {str(out)!r} is not empty (11 entries); add --overwrite to replace a previous boxweight output as a whole, or choose a new folder"  # 8 + TFDS metadata
        ]
    )
    assert (out / "train-00000-of-00001.tfrecord").exists()
    assert _boxweight(*args, "--num-shards", "3", "--overwrite").returncode == 0
    assert sorted(p.name for p in out.glob("train-*")) == [f"train-0000{i}-of-00003.tfrecord" for i in range(3)]
    train = JobOutput.open(str(out)).records_in(JobOutput.open(str(out)).files("train"))
    assert _count(create_input_fn(str(out / "train-*"), 1, False, augment=False, image_size=(32, 32))()) == train
    assert not Path(str(out) + ".incomplete").exists()


def test_overwrite_never_deletes_a_folder_that_is_not_a_boxweight_output(demo_dir, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    done = _boxweight(
        "prepare", "--input", str(demo_dir / "annotations.json"), "--output", str(tmp_path), "--overwrite", IN_PROCESS
    )
    assert done.returncode == 2
    assert "it holds no manifest.json or stats.json, so it is not a boxweight output" in done.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_glob_matching_shards_the_manifest_does_not_list_is_refused(demo_out, tmp_path):
    stray = demo_out / "train-00000-of-00001.tfrecord"
    stray.write_bytes((demo_out / "train-00000-of-00002.tfrecord").read_bytes())
    try:
        with pytest.raises(
            DataError,
            match=r"train-00000-of-00001.tfrecord is not listed in .*manifest.json \(left from another run\?\)",
        ):
            create_input_fn(str(demo_out / "train-*"), 4, True)
        # the folder itself reads only what the manifest lists
        files = JobOutput.open(str(demo_out)).files("train")
        assert [Path(f).name for f in files] == ["train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
    finally:
        stray.unlink()


@pytest.mark.slow
def test_a_killed_job_leaves_nothing_a_reader_accepts_and_a_rerun_succeeds(demo_dir, tmp_path):
    out = tmp_path / "out"
    staging = Path(str(out) + ".incomplete")
    cmd = [BOXWEIGHT, "prepare", "--input", str(demo_dir / "annotations.json"), "--output", str(out), IN_PROCESS]
    job = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    _wait_for(staging, job)
    job.kill()
    job.wait()
    assert not out.exists()
    with pytest.raises(
        DataError, match="has no manifest.json: a boxweight prepare job is writing it or was stopped before it finished"
    ):
        create_input_fn(str(out), 4, True)
    done = _boxweight("prepare", *cmd[2:])
    assert done.returncode == 0, done.stderr
    assert not staging.exists()
    assert JobOutput.open(str(out)).splits == ["train", "val"]


def _wait_for(path: Path, job: subprocess.Popen, seconds: float = 120) -> None:
    end = time.monotonic() + seconds
    while not path.exists():
        assert job.poll() is None, "the job ended before it started writing"
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.02)


def test_a_folder_without_manifest_is_refused_in_one_line(tmp_path):
    (tmp_path / "train-00000-of-00001.tfrecord").write_bytes(b"")
    with pytest.raises(
        DataError,
        match=r"has no manifest.json: it is not a complete boxweight prepare output; rerun the job, or pass the shard files",
    ):
        create_input_fn(str(tmp_path), 4, True)
    done = _boxweight("report", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"boxweight report: error: {tmp_path} has no manifest.json: it is not a complete boxweight prepare output; rerun the job, or pass the shard files or a glob of them"
    ]


def test_a_listed_file_that_changed_is_refused(demo_out, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(demo_out, copy)
    with open(copy / "val-00001-of-00002.tfrecord", "ab") as f:
        f.write(b"x")
    with pytest.raises(
        DataError,
        match=r"val-00001-of-00002.tfrecord has \d+ bytes, manifest.json says \d+; the folder changed after the job",
    ):
        JobOutput.open(str(copy))


# Case 2: a folder meant every split.
def test_a_folder_reads_one_split_train_when_training_else_val(demo_out):
    output = JobOutput.open(str(demo_out))
    train, val = (output.records_in(output.files(s)) for s in ("train", "val"))
    assert train > val > 0
    assert _count(create_input_fn(str(demo_out), 1, False, image_size=(32, 32))()) == val
    assert _count(create_input_fn(str(demo_out), 1, False, split="train", image_size=(32, 32))()) == train
    training = create_input_fn(str(demo_out), 1, True, image_size=(32, 32), augment=False, shuffle_buffer=1)()
    ids = {
        bytes(x)
        for x in tf.data.TFRecordDataset(output.files("train"))
        .map(
            lambda s: tf.io.parse_single_example(s, {"image/source_id": tf.io.FixedLenFeature([], tf.string)})[
                "image/source_id"
            ]
        )
        .as_numpy_iterator()
    }
    assert len(ids) == train
    assert sum(1 for _ in training.take(train)) == train  # repeats forever; the first pass is train only
    with pytest.raises(DataError, match=r"no split 'test' here; splits: train, val"):
        create_input_fn(str(demo_out), 1, False, split="test")
    with pytest.raises(DataError, match=r"split='train' picks a split of an output folder; .* names files already"):
        create_input_fn(str(demo_out / "val-*"), 1, False, split="train")
    files = output.files("val")
    assert (
        _count(create_input_fn(tuple(files), 1, False, image_size=(32, 32))()) == val
    )  # a tuple, as tf.data users pass


def test_readme_example_reads_the_train_split(demo_out):
    spec = ReweightSpec(str(demo_out), "effective_number", params={"beta": 0.999})
    train_fn = create_input_fn(str(demo_out), 32, True, weights=spec, repeat_factor_sampling=False, image_size=(32, 32))
    images, labels = next(iter(train_fn()))
    assert images.shape == (32, 32, 32, 3)
    weights = spec.class_weights()
    stats = JobOutput.open(str(demo_out)).stats()
    assert set(weights) == {c["name"] for c in stats["splits"]["train"]["classes"]}


# Case 3: a misspelled flag was ignored.
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--shceme", "inverse"], "unknown flag --shceme; did you mean --scheme?"),
        (["--val_fractoin=0.2"], "unknown flag --val_fractoin; did you mean --val_fraction?"),
        (["--zzz"], "unknown flag --zzz; see 'boxweight prepare --help'"),
        (
            ["stray.json"],
            "unexpected argument 'stray.json': every value follows its flag (--input PATH); quote globs so the shell does not expand them",
        ),
    ],
)
def test_unknown_arguments_stop_the_job_before_it_starts(demo_dir, tmp_path, extra, message):
    out = tmp_path / "out"
    done = _boxweight("prepare", "--input", str(demo_dir / "annotations.json"), "--output", str(out), *extra)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"boxweight prepare: error: {message}"]
    assert not out.exists() and not Path(str(out) + ".incomplete").exists()


def test_beam_pipeline_options_are_still_accepted():
    from beam_jobs.options import check_known_flags

    check_known_flags(
        [
            "--input",
            "x",
            "--runner=DataflowRunner",
            "--project",
            "my-project-123",
            "--no_auth",
            "--direct_num_workers=2",
            "--experiments=a",
            "--overwrite",
        ]
    )


# Case 6: python -m beam_jobs.prepare failed on every input.
def test_python_dash_m_runs_the_job(demo_dir, tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "beam_jobs.prepare",
            "--input",
            str(demo_dir / "annotations.json"),
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert JobOutput.open(str(out)).splits == ["train", "val"]
    helped = subprocess.run(
        [sys.executable, "-m", "beam_jobs.prepare", "--help"], capture_output=True, text=True, timeout=60, env=ENV
    )
    assert helped.returncode == 0 and helped.stdout.startswith("usage: boxweight prepare --input PATH --output DIR")
    assert "\nexamples:\n  boxweight prepare --input data/annotations.json --output out\n" in helped.stdout
    assert "--scheme " in helped.stdout and "(default inverse_sqrt)" in helped.stdout


# Case 7: --manual-weights was read again on a worker.
def test_manual_weights_reach_the_job_as_values(tmp_path):
    weights = tmp_path / "w.yaml"
    weights.write_text("a: 3.0\n")
    opts = PrepareOptions(["--scheme", "manual", "--manual-weights", str(weights), "--normalize", "none"])
    params = scheme_params(opts)
    plan = readers.ReadPlan("in.json", "coco", None, LabelMap(("a", "b")))
    job = Prepare(opts, plan, "cmd", params, str(tmp_path / "out"))
    weights.unlink()  # what a worker sees when the launcher's path is not on it
    shipped = pickle.loads(pickle.dumps(job))
    weight_plan = shipped.weights_from([("train", SplitStats(images=2, class_boxes={"a": 1, "b": 1}, class_images={"a": 1, "b": 1}))])
    assert dict(weight_plan.class_weights) == {"a": 3.0, "b": 1.0}


def test_unreadable_manual_weights_fail_on_the_launcher_in_one_line(demo_dir, tmp_path):
    done = _boxweight(
        "prepare",
        "--input",
        str(demo_dir / "annotations.json"),
        "--output",
        str(tmp_path / "o"),
        "--scheme",
        "manual",
        "--manual-weights",
        str(tmp_path / "nope.yaml"),
    )
    assert done.returncode == 2
    assert done.stderr.strip().startswith(f"boxweight prepare: error: --manual-weights {tmp_path / 'nope.yaml'}:")
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("runner", "files"), [([], 1), ([IN_PROCESS], 1), ([IN_PROCESS], 2)])
def test_a_large_coco_file_that_breaks_off_fails_on_its_worker_in_one_line(tmp_path, runner, files):
    """Above 4 MiB the launcher reads a COCO file only up to its categories; the worker that parses it
    finds the broken JSON, and the job ends with the same one line, not a worker's traceback. With a
    second, good file beside it (read as another part, tagged by order), the same."""
    from readers import coco

    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    (data / "train" / "a.jpg").write_bytes(jpeg_bytes())
    boxes = [{"id": i, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "note": "x" * 60} for i in range(50_000)]
    doc = {"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": boxes, "categories": [{"id": 1, "name": "cat"}]}
    text = json.dumps(doc).replace('"id": 25000,', '"id": 25000,,')
    assert len(text) > coco.KEY_CHECK_BYTES
    broken = data / "train" / "_annotations.coco.json"
    broken.write_text(text)
    if files == 2:
        (data / "valid").mkdir()
        (data / "valid" / "a.jpg").write_bytes(jpeg_bytes())
        (data / "valid" / "_annotations.coco.json").write_text(json.dumps({**doc, "annotations": boxes[:3]}))
    out = tmp_path / "out"
    done = _boxweight("prepare", "--input", str(broken if files == 1 else data), "--output", str(out), *runner)
    assert done.returncode == 1, done.stderr
    at = text.index('"id": 25000,,') + len('"id": 25000,')
    assert done.stderr.strip().splitlines()[-1] == (
        f"boxweight prepare: error: {broken}: malformed JSON: "
        f"Expecting property name enclosed in double quotes at character {at}"
    )
    assert "Traceback" not in done.stderr and "ERROR" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no output, nothing staged


# Ctrl-C
def test_a_ctrl_c_while_the_output_is_published_lands_after_it():
    with pytest.raises(KeyboardInterrupt):
        with interrupts.interrupts_held():
            os.kill(os.getpid(), signal.SIGINT)  # Python's own handler raises KeyboardInterrupt
            time.sleep(0.05)
            done = True  # reached: the interrupt waited for the block's end
    assert done


def test_a_ctrl_c_while_following_a_dataflow_job_says_the_job_goes_on_and_how_to_stop_it():
    from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions(["--output", "gs://my-bucket/out", "--project", "my-project-123", "--region", "europe-west1"])
    assert dataflow.goes_on("2026-11-24_01_02_03-123", options) == (
        "the Dataflow job 2026-11-24_01_02_03-123 goes on and will write gs://my-bucket/out; stop it with "
        "gcloud dataflow jobs cancel 2026-11-24_01_02_03-123 --region europe-west1 --project my-project-123"
    )


def _main_with_launch(monkeypatch, capsys, launch, argv=("--input", "in.json", "--output", "out")):
    """``prepare.main`` run in this process with ``launch`` in place of the job: (exit status, stderr lines)."""
    import logging

    monkeypatch.setattr(prepare, "launch", launch)
    try:
        status = prepare.main(list(argv))
    finally:
        logging.disable(logging.NOTSET)  # an interrupted run leaves logging off: the process is about to exit
    return status, capsys.readouterr().err.strip().splitlines()


def test_a_ctrl_c_while_the_job_runs_is_one_line_and_exit_130(monkeypatch, capsys):
    def interrupted(options, argv):
        signal.raise_signal(signal.SIGINT)  # as a terminal's Ctrl-C reaches the launcher
        raise AssertionError("the interrupt did not stop the run")

    status, said = _main_with_launch(monkeypatch, capsys, interrupted)
    assert (status, said) == (130, ["boxweight prepare: interrupted; the output folder was left as it was"])
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler before is back


def test_the_runner_threads_failing_after_a_ctrl_c_are_not_news(monkeypatch, capsys):
    """The workers end at the Ctrl-C and the runner's threads fail: one line is said, their errors are dropped."""
    import threading

    def interrupted_then_threads_fail(options, argv):
        signal.raise_signal(signal.SIGINT)

    def after_the_interrupt(options, argv):
        try:
            interrupted_then_threads_fail(options, argv)
        finally:
            worker = threading.Thread(target=lambda: 1 / 0)
            worker.start()
            worker.join()

    status, said = _main_with_launch(monkeypatch, capsys, after_the_interrupt)
    assert (status, said) == (130, ["boxweight prepare: interrupted; the output folder was left as it was"])


def test_a_ctrl_c_after_the_output_was_published_says_it_is_complete(monkeypatch, capsys):
    def published_then_interrupted(options, argv):
        raise KeyboardInterrupt(interrupts.finished_line("out"))  # what launch raises after the rename

    status, said = _main_with_launch(monkeypatch, capsys, published_then_interrupted)
    assert (status, said) == (130, ["boxweight prepare: interrupted; the job had finished: its outputs in out are complete"])


def test_a_ctrl_c_no_code_saw_means_the_job_went_on_to_its_end(monkeypatch, capsys):
    """A Ctrl-C that reaches the process (the watch notes it) while the runner's code swallowed it."""

    def swallowed(options, argv):
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            pass  # a runner thread's code, say, that went on to the job's end
        return {"totals": {"images_written": 1}}

    status, said = _main_with_launch(monkeypatch, capsys, swallowed)
    assert (status, said) == (130, ["boxweight prepare: interrupted; the job had finished: its outputs in out are complete"])


def test_without_a_ctrl_c_a_job_error_is_its_one_line(monkeypatch, capsys):
    from beam_jobs.options import JobError

    def refused(options, argv):
        raise JobError("no valid image in in.json", exit_code=1)

    status, said = _main_with_launch(monkeypatch, capsys, refused)
    assert (status, said) == (1, ["boxweight prepare: error: no valid image in in.json"])


@pytest.fixture(scope="module")
def demo_6000(tmp_path_factory) -> Path:
    """A job on local worker processes long enough to be interrupted on this machine (any outcome is checked)."""
    from boxweight.demo_data import generate

    root = tmp_path_factory.mktemp("demo6000")
    generate(str(root), num_images=6000, image_size=96, seed=1)
    return root / "annotations.json"


@pytest.mark.slow
def test_ctrl_c_during_prepare_on_workers_prints_one_line_and_leaves_nothing_half_done(tmp_path, demo_6000):
    """End to end, whatever the machine's speed: Ctrl-C to the whole group once the workers run. Either the
    job is interrupted (130, one line, nothing staged, no worker left) or it had already finished and says so."""
    out = tmp_path / "out"
    job = subprocess.Popen(
        [BOXWEIGHT, "prepare", "--input", str(demo_6000), "--output", str(out), "--direct_num_workers=2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        start_new_session=True,
    )
    _wait_for(Path(str(out) + ".incomplete"), job)
    deadline = time.monotonic() + 120
    while len(_live_processes_in_group(job.pid)) < 3 and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the launcher and its two workers
    os.killpg(job.pid, signal.SIGINT)  # a terminal sends Ctrl-C to the whole foreground group
    stdout, stderr = job.communicate(timeout=120)
    said = [line for line in stderr.strip().splitlines() if not line.startswith("INFO beam_jobs.launcher: prepare: ")]
    assert not Path(str(out) + ".incomplete").exists()
    if job.returncode == 0:  # it had ended and said so; the Ctrl-C came while the process exited
        assert f"outputs in {out}" in stdout and said == [] and JobOutput.open(str(out)).verify() == []
    elif out.exists():  # published when the interrupt came: it says so
        assert job.returncode == 130, stderr[-3000:]
        assert said == [f"boxweight prepare: interrupted; the job had finished: its outputs in {out} are complete"]
        assert JobOutput.open(str(out)).verify() == []
    else:
        assert job.returncode == 130, stderr[-3000:]
        assert said == ["boxweight prepare: interrupted; the output folder was left as it was"]
    deadline = time.monotonic() + 30
    while _live_processes_in_group(job.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _live_processes_in_group(job.pid) == []  # no worker left behind


@pytest.mark.slow
def test_prepare_on_local_workers_says_its_start_line_and_nothing_from_tensorflow(demo_dir, tmp_path):
    # TensorFlow 2.21 writes oneDNN, CUDA-driver and cuInit lines from C++ at start-up in
    # every worker that decodes images, whatever TF_CPP_MIN_LOG_LEVEL says
    done = subprocess.run(
        [BOXWEIGHT, "prepare", "--input", str(demo_dir / "annotations.json"), "--output", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert [line.split(":")[0] for line in done.stderr.splitlines()] == ["INFO beam_jobs.launcher"], done.stderr[-3000:]


def _live_processes_in_group(pgid: int) -> list[str]:
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended while we looked
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":  # a zombie has ended; only its parent's wait is missing
            live.append(stat.parent.name)
    return live


# Case 2 (train and evaluate read one split) and case 5 (classes are checked).
@pytest.fixture(scope="module")
def other_classes_out(tmp_path_factory) -> Path:

    root = tmp_path_factory.mktemp("bccd")
    bccd_like(root / "BCCD", n=12)
    prepare.run(["--input", str(root / "BCCD"), "--output", str(root / "out"), IN_PROCESS], print_report=False)
    return root / "out"


@pytest.mark.slow
def test_train_and_evaluate_read_one_split_and_refuse_other_classes(demo_out, other_classes_out, tmp_path):
    run = tmp_path / "run"
    done = _boxweight(
        "train",
        "--train",
        str(demo_out),
        "--out",
        str(run),
        "--epochs",
        "1",
        "--steps-per-epoch",
        "2",
        "--batch-size",
        "8",
        "--image-size",
        "96",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["shards"] == ["train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
    demo_classes = ", ".join(f"{i} {n}" for i, n in JobOutput.open(str(demo_out)).label_map)
    assert config["label_map"] == [list(e) for e in JobOutput.open(str(demo_out)).label_map]

    evaluated = _boxweight(
        "evaluate", "--model", str(run), "--data", str(demo_out), "--json", str(tmp_path / "eval.json")
    )
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["data"]["shards"] == ["val-00000-of-00002.tfrecord", "val-00001-of-00002.tfrecord"]
    val = JobOutput.open(str(demo_out)).stats()["splits"]["val"]
    assert {c["name"]: c["ground_truth"] for c in result["classes"]} == {c["name"]: c["boxes"] for c in val["classes"]}

    wrong = _boxweight("evaluate", "--model", str(run), "--data", str(other_classes_out))
    assert wrong.returncode == 2
    assert wrong.stderr.strip().splitlines() == [
        f"boxweight evaluate: error: classes differ: model {run} has [{demo_classes}], {other_classes_out} has [1 Platelets, 2 RBC, 3 WBC]"
    ]
    resumed = _boxweight("train", "--train", str(other_classes_out), "--out", str(run), "--resume", "--epochs", "2")
    assert resumed.returncode == 2
    assert (
        resumed.stderr.strip().splitlines()[-1]
        == f"boxweight train: error: classes differ: run {run} has [{demo_classes}], {other_classes_out} has [1 Platelets, 2 RBC, 3 WBC]"
    )
    unknown = _boxweight("evaluate", "--model", str(run), "--data", str(demo_out), "--split", "test")
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [
        f"boxweight evaluate: error: {demo_out}: no split 'test' here; splits: train, val"
    ]
    missing = _boxweight("evaluate", "--model", str(tmp_path / "nope"), "--data", str(demo_out))
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"boxweight evaluate: error: {tmp_path / 'nope'} is not a finished boxweight train run (no config.json or model.keras)"
    ]


def test_train_takes_the_loss_options_as_typed_and_refuses_unknown_values_in_one_line(demo_out, tmp_path):
    run = tmp_path / "run"
    done = _boxweight(
        "train", "--train", str(demo_out), "--out", str(run), "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "8",
        "--image-size", "64", "--width", "8", "--weights", "inverse_sqrt", "--max-weight", "3", "--weights-on", "classification",
        "--normalizer", "positives", "--prior", "class_frequency", "--seesaw",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    config = json.loads((run / "config.json").read_text())
    assert {k: config[k] for k in ("weights", "max_weight", "weights_on", "normalizer", "prior", "seesaw")} == {
        "weights": "inverse_sqrt", "max_weight": 3.0, "weights_on": "classification", "normalizer": "positives",
        "prior": "class_frequency", "seesaw": True,
    }
    assert (run / "model.keras").exists()
    wrong = _boxweight("train", "--train", str(demo_out), "--out", str(tmp_path / "x"), "--normalizer", "count")
    assert wrong.returncode == 2
    assert wrong.stderr.strip().splitlines()[-1] == (
        "boxweight train: error: argument --normalizer: invalid choice: 'count' (choose from 'positives', 'weight')"
    )
    capped = _boxweight("train", "--train", str(demo_out), "--out", str(tmp_path / "x"), "--weights", "inverse_sqrt", "--max-weight", "-1")
    assert capped.returncode == 2
    assert capped.stderr.strip().splitlines()[-1] == "boxweight train: error: argument --max-weight: -1 must be a number > 0"


def test_reweighting_with_another_jobs_statistics_is_refused(demo_out, other_classes_out):
    spec = ReweightSpec(str(other_classes_out), "inverse")
    with pytest.raises(
        DataError, match=r"classes differ: ReweightSpec\('.*out'\) has \[1 Platelets, 2 RBC, 3 WBC\], .* has \[1 "
    ):
        create_input_fn(str(demo_out), 4, True, weights=spec)


def test_readme_training_input_snippet_runs_as_written(demo_out, tmp_path, monkeypatch):
    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Training input and losses", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "demo-out").symlink_to(demo_out)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(snippet, "README.md", "exec"), scope)
    train, val = (JobOutput.open(str(demo_out)).files(s) for s in ("train", "val"))
    assert scope["images"].shape == (32, 512, 512, 3)
    assert _count(scope["val_fn"]()) == sum(1 for _ in tf.data.TFRecordDataset(val))
    assert _count(scope["train_eval_fn"]()) == sum(1 for _ in tf.data.TFRecordDataset(train))


@pytest.mark.slow
def test_ctrl_c_during_train_saves_a_checkpoint_says_so_in_one_line_and_exits_130(demo_out, tmp_path):
    run = tmp_path / "run"
    job = subprocess.Popen(
        [
            BOXWEIGHT,
            "train",
            "--train",
            str(demo_out),
            "--out",
            str(run),
            "--epochs",
            "50",
            "--batch-size",
            "8",
            "--image-size",
            "96",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        start_new_session=True,
    )
    _wait_for(run / "config.json", job)
    time.sleep(3.0)  # inside fit
    os.killpg(job.pid, signal.SIGINT)
    _, stderr = job.communicate(timeout=120)
    assert job.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    assert "cuInit" not in stderr and "absl::InitializeLog" not in stderr  # TensorFlow's start-up lines are withheld
    ours = [line for line in stderr.splitlines() if line.startswith("boxweight")]
    assert (
        len(ours) == 1
        and ours[0].startswith(f"boxweight train: interrupted; saved {run}/checkpoints/ckpt-")
        and ours[0].endswith("continue with --resume")
    )


def test_a_ctrl_c_ends_the_workers_even_one_that_ignored_it():
    """A worker still starting ignores Ctrl-C; the runner then waits for it forever, unless the launcher ends it."""
    child = subprocess.Popen(["/bin/sh", "-c", "trap '' INT; exec sleep 60"])
    try:
        with pytest.raises(KeyboardInterrupt), interrupts.Watch():
            time.sleep(0.2)  # the shell has set its trap
            signal.raise_signal(signal.SIGINT)
        assert child.wait(timeout=10) == -signal.SIGTERM
        later = subprocess.Popen(["sleep", "0.5"])  # the block is over: a child started now is left alone
        assert later.wait(timeout=10) == 0
    finally:
        import logging

        logging.disable(logging.NOTSET)
        if child.poll() is None:
            child.kill()
