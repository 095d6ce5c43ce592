"""Reference detector: training reduces the loss, zero weights give zero gradients, resume continues."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from beam_jobs import prepare
from boxweight.detector import assign_targets, build_detector, decode_boxes, detect
from boxweight.train import TrainConfig, train
from weighting.training.losses import WeightedSigmoidFocalLoss

IN_PROCESS = ["--runner=DirectRunner", "--direct_running_mode=in_memory"]


@pytest.fixture(scope="module")
def records(demo_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("records")
    prepare.run(["--input", str(demo_dir / "annotations.json"), "--output", str(out), "--val-fraction=0.2", *IN_PROCESS], print_report=False)
    return out


def test_targets_carry_box_weights_to_their_cells():
    boxes = tf.constant([[[0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9], [0, 0, 0, 0]]])
    classes = tf.constant([[1, 2, 0]])
    weights = tf.constant([[3.0, 0.5, 0.0]])
    t = assign_targets(boxes, classes, weights, 2, 64)
    pos = t["positive"][0].numpy()
    assert pos.sum() > 0
    cls = np.argmax(t["class_targets"][0].numpy(), axis=-1)
    w = t["class_weights"][0].numpy()
    assert set(np.round(w[pos], 3)) == {3.0, 0.5}
    assert np.all(w[~pos] == 1.0)  # background is not reweighted
    assert np.all(w[pos & (cls == 0)] == 3.0) and np.all(w[pos & (cls == 1)] == 0.5)
    assert np.all(t["box_weights"][0].numpy()[~pos] == 0)


def test_zero_weight_class_gets_zero_gradient_on_its_cells():
    model = build_detector(2, 64)
    images = tf.random.uniform([1, 64, 64, 3], 0, 255)
    boxes = tf.constant([[[0.1, 0.1, 0.5, 0.5], [0.55, 0.55, 0.95, 0.95]]])
    t = assign_targets(boxes, tf.constant([[1, 2]]), tf.constant([[0.0, 1.0]]), 2, 64)
    with tf.GradientTape() as tape:
        out = model(images, training=True)
        logits = out["class_logits"]
        tape.watch(logits)
        loss = WeightedSigmoidFocalLoss(reduction="sum")(t["class_targets"], logits, sample_weight=t["class_weights"][..., None])
    grad = tape.gradient(loss, logits)[0].numpy()
    cls = np.argmax(t["class_targets"][0].numpy(), axis=-1)
    zero_cells = t["positive"][0].numpy() & (cls == 0)
    assert zero_cells.sum() > 0
    assert np.all(grad[zero_cells] == 0.0)
    assert np.any(grad[t["positive"][0].numpy() & (cls == 1)] != 0.0)


def _losses(weights, **options):
    import keras

    from boxweight.train import _Trainer

    keras.utils.set_random_seed(0)  # the same model every call
    model = build_detector(2, 64, 8)
    boxes = tf.constant([[[0.1, 0.1, 0.5, 0.5], [0.55, 0.55, 0.95, 0.95]]])
    t = assign_targets(boxes, tf.constant([[1, 2]]), tf.constant([weights], tf.float32), 2, 64)
    trainer = _Trainer(model, 2, 64, "focal", **options)
    cls, box = trainer.losses_of(t, model(tf.fill([1, 64, 64, 3], 90.0), training=False))
    return float(cls), float(box)


def test_the_normalizer_and_weights_on_options_do_what_they_say():
    """positives: a common scale on the box weights scales the positive terms; weight: it cancels; classification: boxes unweighted."""
    one, two = [1.0, 3.0], [2.0, 6.0]
    cls_1, box_1 = _losses(one, normalizer="positives")
    cls_2, box_2 = _losses(two, normalizer="positives")
    assert box_2 == pytest.approx(2 * box_1, rel=1e-5) and cls_2 > cls_1
    cls_1w, box_1w = _losses(one, normalizer="weight")
    cls_2w, box_2w = _losses(two, normalizer="weight")
    assert box_2w == pytest.approx(box_1w, rel=1e-5) and cls_2w < cls_1w  # the positive part cancels, the background shrinks
    _, box_c1 = _losses(one, weights_on="classification")
    _, box_c2 = _losses(two, weights_on="classification", normalizer="positives")
    _, box_plain = _losses([1.0, 1.0], normalizer="positives")
    assert box_c1 == pytest.approx(box_plain, rel=1e-5) and box_c2 == pytest.approx(box_plain, rel=1e-5)
    with pytest.raises(ValueError, match="normalizer 'count'"):
        _losses(one, normalizer="count")


def test_class_priors_set_the_heads_initial_probabilities(records):
    from boxweight.detector import PRIOR
    from boxweight.train import _priors
    from storage.job_output import JobOutput

    data = JobOutput.open(str(records))
    labels = data.labels()
    priors = _priors(TrainConfig(train=str(records), out="x", prior="class_frequency"), data, labels)
    assert priors is not None and len(priors) == labels.max_id
    assert np.mean(priors) == pytest.approx(PRIOR, rel=1e-6)  # no class below 1e-4 in the demo set
    boxes = {name: n for name, n in __import__("weighting.training.input_fn", fromlist=["split_counts"]).split_counts(data, "train").boxes.items()}
    ids = dict(labels)
    assert priors.index(max(priors)) + 1 == next(i for i, n in ids.items() if n == max(boxes, key=boxes.get))
    model = build_detector(labels.max_id, 64, 8, priors)
    np.testing.assert_allclose(tf.sigmoid(model.get_layer("cls_logits").bias).numpy(), priors, rtol=1e-5)
    assert _priors(TrainConfig(train=str(records), out="x"), data, labels) is None
    with pytest.raises(ValueError, match="probabilities in"):
        build_detector(2, 64, 8, [0.5, 1.0])


def test_detect_shapes():
    model = build_detector(3, 64)
    out = detect(model(tf.zeros([2, 64, 64, 3])), 64, max_detections=7)
    assert out["boxes"].shape == (2, 7, 4) and out["classes"].shape == (2, 7)
    assert decode_boxes(tf.zeros([1, 256, 4]), 64).shape == (1, 256, 4)


def test_training_reduces_loss_and_resume_continues_at_the_same_step(records, tmp_path):
    cfg = TrainConfig(train=str(records / "train-*"), out=str(tmp_path / "run"), epochs=3, batch_size=8, image_size=96, steps_per_epoch=10, learning_rate=3e-3)
    history = train(cfg)
    first, last = history[0], history[-1]
    assert last["cls_loss"] + last["box_loss"] < first["cls_loss"] + first["box_loss"]
    assert last["step"] == 30
    resumed = train(TrainConfig(**{**cfg.__dict__, "epochs": 4, "resume": True}))
    assert [h["step"] for h in resumed] == [10, 20, 30, 40]
    assert json.loads((tmp_path / "run" / "history.json").read_text())[-1]["epoch"] == 4
    assert (tmp_path / "run" / "model.keras").exists()


def test_the_same_seed_trains_the_same_weights_run_after_run(records, tmp_path):
    """On a CPU the seed decides everything: weights, batches and their augmentation (so paired seeds pair)."""
    import keras

    def run(name, seed):
        cfg = TrainConfig(train=str(records / "train-*"), out=str(tmp_path / name), epochs=1, batch_size=8, image_size=64, steps_per_epoch=6, seed=seed, repeat_factor_sampling=True)
        history = train(cfg)
        return history[-1]["cls_loss"], keras.saving.load_model(str(tmp_path / name / "model.keras")).get_weights()

    (loss_a, weights_a), (loss_b, weights_b), (loss_c, weights_c) = run("a", 3), run("b", 3), run("c", 4)
    assert loss_a == loss_b
    assert len(weights_a) == len(weights_b) > 10
    for a, b in zip(weights_a, weights_b, strict=True):
        np.testing.assert_array_equal(a, b)
    assert loss_c != loss_a and any(not np.array_equal(a, c) for a, c in zip(weights_a, weights_c, strict=True))


@pytest.mark.gpu
def test_gpu_path_trains_with_mixed_precision(records, tmp_path):
    if not tf.config.list_physical_devices("GPU"):
        pytest.skip("no GPU visible to TensorFlow")
    import keras

    cfg = TrainConfig(train=str(records / "train-*"), out=str(tmp_path / "gpu"), epochs=1, batch_size=8, image_size=96, steps_per_epoch=5, mixed_precision=True)
    try:
        assert np.isfinite(train(cfg)[0]["cls_loss"])
    finally:
        keras.mixed_precision.set_global_policy("float32")


MIRRORED = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
tf.distribute.get_strategy = lambda: mirrored  # what train() picks when it sees several GPUs
from boxweight.train import TrainConfig, train
history = train(TrainConfig(train=sys.argv[1], out=sys.argv[2], epochs=2, batch_size=8, image_size=96, steps_per_epoch=4))
print("RESULT", mirrored.num_replicas_in_sync, history[-1]["step"], history[-1]["cls_loss"])
"""


def test_mirrored_strategy_trains_on_two_logical_devices(records, tmp_path):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", MIRRORED, str(records / "train-*"), str(tmp_path / "mirrored")],
        capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    replicas, step, cls_loss = out.stdout.split("RESULT")[1].split()
    assert (replicas, step) == ("2", "8") and np.isfinite(float(cls_loss))
