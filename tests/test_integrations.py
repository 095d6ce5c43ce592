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
        "import weighting.training.input_fn, weighting.training.losses\n"
        "assert create_input_fn is weighting.training.input_fn.create_input_fn and WeightedSigmoidFocalLoss is weighting.training.losses.WeightedSigmoidFocalLoss\n"
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
    from storage.job_output import JobOutput

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


def _small_retinanet(num_classes: int, size: int):
    import keras
    import keras_hub

    from weighting.training.kerashub import WeightedRetinaNetObjectDetector

    keras.utils.set_random_seed(0)
    encoder = keras_hub.models.ResNetBackbone(  # small, no pretrained weights
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 64, 64],
        stackwise_num_blocks=[1, 1, 1], stackwise_num_strides=[1, 2, 2], block_type="basic_block", image_shape=(size, size, 3),
    )
    backbone = keras_hub.models.RetinaNetBackbone(image_encoder=encoder, min_level=3, max_level=4, use_p5=False, image_shape=(size, size, 3))
    model = WeightedRetinaNetObjectDetector(backbone=backbone, num_classes=num_classes, bounding_box_format="yxyx", pre_logits_num_conv_layers=1)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    return model


@pytest.mark.slow
def test_keras_hub_retinanet_trains_from_create_input_fn_and_its_losses_read_the_box_weights(job_out):
    pytest.importorskip("keras_hub", reason="keras-hub is not installed: pip install 'boxweight[keras-hub]'")
    import numpy as np
    import tensorflow as tf

    from weighting import JobOutput, create_input_fn
    from weighting.training.kerashub import to_keras_hub

    size = 96
    model = _small_retinanet(JobOutput.open(str(job_out)).labels().max_id, size)
    history = model.fit(create_input_fn(str(job_out), 8, True, image_size=(size, size))().map(to_keras_hub), epochs=1, steps_per_epoch=3, verbose=0)
    assert np.isfinite(history.history["loss"]).all()

    images, targets = next(iter(create_input_fn(str(job_out), 8, False, image_size=(size, size))().map(to_keras_hub)))
    real = targets["labels"] >= 0
    assert targets["labels"].numpy().max() < model.num_classes and float(tf.reduce_max(targets["boxes"])) > 1.0  # ids from 0, pixels
    predictions = model(images, training=False)

    def loss(weights=None) -> float:
        y = dict(targets) if weights is not None else {k: v for k, v in targets.items() if k != "weights"}
        if weights is not None:
            y["weights"] = weights
        return float(model.compute_loss(x=images, y=y, y_pred=predictions))

    record = targets["weights"]
    assert float(tf.reduce_max(record)) > 1.0, "the demo's rare classes weigh more than 1 (normalize=min)"
    ones, zeros = tf.where(real, 1.0, 0.0), tf.zeros_like(record)
    assert loss(ones) == pytest.approx(loss(), rel=1e-6)  # weight 1 everywhere is KerasHub's own loss
    assert loss(zeros) < loss(ones) < loss(record)  # zero weights leave the background's loss only
    doubled = loss(2 * ones) - loss(zeros)
    assert doubled == pytest.approx(2 * (loss(ones) - loss(zeros)), rel=1e-4)  # positives' share scales with the weight


def _readme_block(marker: str) -> str:
    """The README's fenced Python block whose first line is ``marker``: the documented lines, run as written."""
    text = (Path(__file__).parent.parent / "README.md").read_text()
    block = text.split("```python\n" + marker + "\n", 1)[1].split("```", 1)[0]
    return marker + "\n" + block


@pytest.mark.slow
def test_the_readme_model_garden_lines_give_one_weight_per_box_in_box_order(job_out):
    import tensorflow as tf

    from schemas.features import decode_example
    from storage.job_output import JobOutput

    class ModelGardenDecoder:  # stands in for TfExampleDecoder: its decode returns the boxes, in record order
        def decode(self, serialized):
            parsed = tf.io.parse_single_example(serialized, {"image/object/bbox/ymin": tf.io.VarLenFeature(tf.float32)})
            return {"groundtruth_boxes_ymin": tf.sparse.to_dense(parsed["image/object/bbox/ymin"])}

    lines = _readme_block("# Model Garden: groundtruth_weights from a boxweight record")
    namespace: dict = {"tf": tf, "ModelGardenDecoder": ModelGardenDecoder}
    exec("class WeightedDecoder(ModelGardenDecoder):\n" + "".join("    " + line + "\n" for line in lines.splitlines()), namespace)
    decoder = namespace["WeightedDecoder"]()
    data = JobOutput.open(str(job_out))
    checked = 0
    for serialized in tf.data.TFRecordDataset(data.files("train")).take(40):
        decoded = decoder.decode(serialized)
        expected = decode_example(serialized.numpy())
        assert decoded["groundtruth_weights"].numpy().tolist() == pytest.approx(expected["image/object/weight"])
        assert decoded["groundtruth_weights"].shape == decoded["groundtruth_boxes_ymin"].shape
        checked += len(expected["image/object/weight"])
    assert checked > 0
