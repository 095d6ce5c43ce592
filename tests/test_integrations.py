"""Working with the trainers people use: the public imports, KerasHub, TFDS, Model Garden's decoder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def test_weighting_exports_the_input_function_and_losses_and_loads_tensorflow_only_when_they_are_used():
    code = (
        "import sys, weighting\n"
        "from weighting import ClassCounts, class_weights\n"
        "class_weights(ClassCounts(boxes={'a': 3, 'b': 1}), 'inverse')\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'loaded by the schemes'\n"
        "from weighting import create_input_fn, WeightedSigmoidFocalLoss, ReweightSpec, JobOutput\n"
        "assert 'tensorflow' in sys.modules\n"
        "import weighting.input_fn, weighting.losses\n"
        "assert create_input_fn is weighting.input_fn.create_input_fn and WeightedSigmoidFocalLoss is weighting.losses.WeightedSigmoidFocalLoss\n"
        "assert set(weighting.__all__) <= set(dir(weighting))\n"
        "try:\n"
        "    weighting.nope\n"
        "except AttributeError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "module 'weighting' has no attribute 'nope'"


IN_PROCESS = "--runner=apache_beam.runners.portability.fn_api_runner.fn_runner.FnApiRunner"


@pytest.fixture(scope="module")
def job_out(demo_dir, tmp_path_factory) -> Path:
    from beam_jobs import prepare

    out = tmp_path_factory.mktemp("job") / "out"
    prepare.run(["--input", str(demo_dir / "annotations.json"), "--output", str(out), "--num-shards=2", "--val-fraction=0.25", IN_PROCESS], print_report=False)
    return out


def test_tfds_class_names_fill_ids_without_a_class_and_stay_distinct():
    from schemas.label_map import LabelMap
    from schemas.tfds_metadata import class_names

    assert class_names(LabelMap.from_pairs([(1, "a"), (3, "b\nc")])) == ["(no class 0)", "a", "(no class 2)", "b c"]
    assert class_names(LabelMap.from_pairs([(2, "(no class 0)"), (3, "(no class 1)")])) == ["(no class 0)", "(no class 1)", "(no class 0)_", "(no class 1)_"]


@pytest.mark.slow
def test_the_output_loads_with_tfds_builder_from_directory_record_for_record(job_out):
    tfds = pytest.importorskip("tensorflow_datasets", reason="tensorflow-datasets is not installed: pip install 'boxweight[tfds]'")
    import tensorflow as tf

    from schemas.features import decode_example
    from weighting.job_output import JobOutput

    data = JobOutput.open(str(job_out))
    builder = tfds.builder_from_directory(str(job_out))
    assert builder.info.features["image"]["object"]["class"]["label"].feature.names == ["(no class 0)", *(name for _, name in data.label_map)]
    for split in data.splits:
        ours = {e["image/source_id"]: e for e in map(decode_example, tf.data.TFRecordDataset(data.files(split)).as_numpy_iterator())}
        theirs = list(builder.as_dataset(split=split).as_numpy_iterator())  # TFDS interleaves the shards
        assert builder.info.splits[split].num_examples == len(ours) == len(theirs) > 0
        for b in theirs:
            image, obj = b["image"], b["image"]["object"]
            a = ours.pop(image["source_id"])
            assert image["filename"] == a["image/filename"]
            assert image["encoded"].shape == (a["image/height"], a["image/width"], 3)
            assert obj["class"]["label"].tolist() == a["image/object/class/label"]
            assert obj["weight"].tolist() == pytest.approx(a["image/object/weight"])
            assert obj["bbox"]["ymax"].tolist() == pytest.approx(a["image/object/bbox/ymax"])
            assert b["boxweight"]["schema_version"] == a["boxweight/schema_version"]
        assert ours == {}


@pytest.mark.slow
def test_a_gzip_output_has_no_tfds_metadata_which_could_not_read_it(demo_dir, tmp_path):
    from beam_jobs import prepare

    out = tmp_path / "out"
    prepare.run(["--input", str(demo_dir / "annotations.json"), "--output", str(out), "--compression=gzip", IN_PROCESS], print_report=False)
    assert not (out / "features.json").exists() and not (out / "dataset_info.json").exists()
