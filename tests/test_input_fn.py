"""create_input_fn: shapes, alignment through augmentation, weight fallbacks, reweighting, repeat factors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageDraw

from beam_jobs import prepare
from schemas.annotations import Box, ImageRecord
from schemas.codec import numeric_source_id, record_values
from schemas.features import decode_example, encode_example
from weighting.training.input_fn import Augment, ReweightSpec, _crop_and_flip, create_input_fn, one_hot_classes

IN_PROCESS = ["--runner=DirectRunner", "--direct_running_mode=in_memory"]
COLORS = {1: (255, 0, 0), 2: (0, 255, 0), 3: (0, 0, 255), 4: (255, 255, 0)}


def _image_with_boxes(size=(120, 80)):
    """Each box is filled with its class's color; weights are 0.1 * class."""
    w, h = size
    corners = {1: (5, 5, 35, 30), 2: (60, 10, 110, 40), 3: (10, 45, 40, 75), 4: (70, 50, 100, 75)}
    img = Image.new("RGB", size, (128, 128, 128))
    draw = ImageDraw.Draw(img)
    boxes = []
    for label, (x0, y0, x1, y1) in corners.items():
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=COLORS[label])
        boxes.append(Box(x0 / w, y0 / h, x1 / w, y1 / h, label, f"c{label}", weight=0.1 * label))
    buf = io.BytesIO()
    img.save(buf, format="PNG")  # lossless, so colors survive
    record = ImageRecord("img", "img.png", "p", h, w, "png", boxes=tuple(boxes), repeat_factor=1.0)
    return record, buf.getvalue()


def _write(path, values_list):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for values in values_list:
            writer.write(encode_example(values))
    return str(path)


def test_shapes_dtypes_and_padding(tmp_path):
    record, data = _image_with_boxes()
    path = _write(tmp_path / "a.tfrecord", [record_values(record, data)] * 3)
    images, labels = next(iter(create_input_fn(path, 2, False, image_size=(64, 96), max_boxes=6)()))
    assert images.shape == (2, 64, 96, 3) and images.dtype == tf.float32
    assert labels["groundtruth_boxes"].shape == (2, 6, 4)
    assert labels["groundtruth_classes"].dtype == tf.int32
    assert labels["num_groundtruth_boxes"].numpy().tolist() == [4, 4]
    np.testing.assert_allclose(labels["groundtruth_weights"][0].numpy(), [0.1, 0.2, 0.3, 0.4, 0, 0], rtol=1e-6)
    assert labels["groundtruth_classes"][0].numpy().tolist() == [1, 2, 3, 4, 0, 0]
    onehot = one_hot_classes(labels["groundtruth_classes"], 4).numpy()
    assert onehot[0, 0].tolist() == [1, 0, 0, 0] and onehot[0, 5].sum() == 0


@pytest.mark.parametrize("crop_min_scale", [0.5, 1.0])  # 1.0: every window starts at column 0, the flip's edge case
def test_boxes_classes_and_weights_stay_aligned_through_flip_crop_and_padding(tmp_path, crop_min_scale):
    record, data = _image_with_boxes()
    path = _write(tmp_path / "a.tfrecord", [record_values(record, data)])
    aug = Augment(flip=True, crop_min_scale=crop_min_scale, min_visible=0.7, color=False)
    # batches of 4: each image has its own crop window and flip
    ds = create_input_fn(path, 4, True, image_size=(80, 160), augment=aug, shuffle_buffer=1)()
    seen_dropped, seen_flipped = 0, 0
    for images, labels in ds.take(15):
        for b in range(4):
            n = int(labels["num_groundtruth_boxes"][b])
            seen_dropped += n < 4
            img = images[b].numpy()
            for i in range(n):
                label = int(labels["groundtruth_classes"][b, i])
                assert float(labels["groundtruth_weights"][b, i]) == pytest.approx(0.1 * label)
                ymin, xmin, ymax, xmax = labels["groundtruth_boxes"][b, i].numpy() * [80, 160, 80, 160]
                # the box's pixels have its color up to 1.5 px inside each edge, and not 1.5 px outside
                for y, x in ((ymin + 1.5, xmin + 1.5), (ymin + 1.5, xmax - 1.5), (ymax - 1.5, xmin + 1.5), (ymax - 1.5, xmax - 1.5)):
                    np.testing.assert_allclose(img[int(y), int(x)], COLORS[label], atol=40)
                for y, x in ((ymin - 1.5, (xmin + xmax) / 2), (ymax + 1.5, (xmin + xmax) / 2), ((ymin + ymax) / 2, xmin - 1.5), ((ymin + ymax) / 2, xmax + 1.5)):
                    if 0 <= y < 80 and 0 <= x < 160:
                        assert np.abs(img[int(y), int(x)] - COLORS[label]).max() > 40
            seen_flipped += bool(n and int(labels["groundtruth_classes"][b, 0]) == 1 and labels["groundtruth_boxes"][b, 0, 1] > 0.25)
            # kept boxes first, then padding that carries nothing
            assert not labels["groundtruth_classes"][b, n:].numpy().any()
            assert not labels["groundtruth_weights"][b, n:].numpy().any()
            assert not labels["groundtruth_boxes"][b, n:].numpy().any()
    assert seen_flipped > 0  # class 1 sits at the left: on the right half, the image was mirrored
    if crop_min_scale < 1:
        assert seen_dropped > 0  # crops did cut boxes, and their classes and weights went with them


def test_crop_and_flip_is_one_slice_equal_to_numpy():
    image = tf.reshape(tf.range(5 * 7 * 3, dtype=tf.int32), [5, 7, 3])
    for oy, ox, ch, cw in ((0, 0, 5, 7), (0, 0, 3, 4), (1, 2, 4, 5), (2, 3, 3, 4), (4, 6, 1, 1)):
        for flip in (False, True):
            got = _crop_and_flip(image, *(tf.constant(v) for v in (oy, ox, ch, cw)), tf.constant(flip)).numpy()
            want = image.numpy()[oy : oy + ch, ox : ox + cw]
            np.testing.assert_array_equal(got, want[:, ::-1] if flip else want)


def test_weight_fallbacks(tmp_path):
    record, data = _image_with_boxes()
    full = record_values(record, data)
    od_only = {k: v for k, v in full.items() if k != "image/object/class/weight"}
    od_only["image/object/weight"] = [2.0, 3.0, 4.0, 5.0]
    neither = {k: v for k, v in od_only.items() if k != "image/object/weight"}

    def first_weights(values):
        # encode_example fills absent per-box keys with defaults, so strip them at the proto level
        serialized = encode_example(values)
        ex = tf.train.Example.FromString(serialized)
        for key in ("image/object/class/weight", "image/object/weight"):
            if key not in values:
                del ex.features.feature[key]
        p = tmp_path / f"{len(list(tmp_path.iterdir()))}.tfrecord"
        with tf.io.TFRecordWriter(str(p)) as w:
            w.write(ex.SerializeToString())
        _, labels = next(iter(create_input_fn(str(p), 1, False, image_size=(32, 32))()))
        return labels["groundtruth_weights"][0, :4].numpy().tolist()

    assert first_weights(full) == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert first_weights(od_only) == [2.0, 3.0, 4.0, 5.0]
    assert first_weights(neither) == [1.0, 1.0, 1.0, 1.0]
    _, labels = next(iter(create_input_fn(str(tmp_path / "0.tfrecord"), 1, False, image_size=(32, 32), weights="none")()))
    assert labels["groundtruth_weights"][0, :4].numpy().tolist() == [1.0] * 4


def test_a_record_with_coordinate_lists_of_different_lengths_fails_with_the_key(tmp_path):
    record, data = _image_with_boxes()
    ex = tf.train.Example.FromString(encode_example(record_values(record, data)))
    del ex.features.feature["image/object/bbox/xmax"].float_list.value[-1]
    path = tmp_path / "bad.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as w:
        w.write(ex.SerializeToString())
    with pytest.raises(tf.errors.InvalidArgumentError, match="image/object/bbox/xmax and image/object/bbox/ymin differ in length"):
        next(iter(create_input_fn(str(path), 1, False, image_size=(32, 32))()))


def test_max_boxes_keeps_the_first_boxes_and_warns(tmp_path, capfd):
    record, data = _image_with_boxes()
    path = _write(tmp_path / "a.tfrecord", [record_values(record, data)])
    _, labels = next(iter(create_input_fn(path, 1, False, image_size=(32, 32), max_boxes=2)()))
    assert labels["groundtruth_classes"][0].numpy().tolist() == [1, 2]
    assert 'images ["img.png"] have [4] boxes; keeping the first 2' in capfd.readouterr().err  # named by file


def test_repeat_factor_sampling_frequencies(tmp_path):
    record, data = _image_with_boxes()
    rows = []
    for i, factor in enumerate([1.0, 2.5]):
        rows.append(record_values(record.replace(source_id=f"r{i}", repeat_factor=factor), data))
    path = _write(tmp_path / "a.tfrecord", rows)
    ds = create_input_fn(path, 1, True, image_size=(8, 8), repeat_factor_sampling=True, augment=False, shuffle_buffer=1)
    # one epoch = 2 records; draw 400 epochs' worth from the repeating stream and count by source
    ids = tf.data.Dataset.from_tensor_slices([path]).repeat(400)
    ids = ids.interleave(tf.data.TFRecordDataset, cycle_length=1)
    from weighting.training.input_fn import _repeat_by_factor

    r0, r1 = (numeric_source_id(k).encode() for k in ("r0", "r1"))
    counts = {r0: 0, r1: 0}
    for serialized in ids.enumerate().flat_map(_repeat_by_factor(0)):
        counts[decode_example(serialized.numpy())["image/source_id"]] += 1
    assert counts[r0] == 400
    assert counts[r1] / 400 == pytest.approx(2.5, abs=0.15)
    assert next(iter(ds()))[0].shape == (1, 8, 8, 3)


def test_the_same_seed_gives_the_same_batches_and_another_seed_others(tmp_path):
    """Every draw (shuffles, repeat factors, crop, flip, colour) derives from the seed, however the parallel map runs."""
    record, data = _image_with_boxes()
    rows = [record_values(record.replace(source_id=f"r{i}", repeat_factor=1.0 + (i % 3) / 2), data) for i in range(48)]
    paths = [_write(tmp_path / f"{k}.tfrecord", rows[k::3]) for k in range(3)]

    def batches(seed):
        ds = create_input_fn(paths, 4, True, image_size=(32, 32), repeat_factor_sampling=True, shuffle_buffer=16, seed=seed)()
        return [(images.numpy(), {k: v.numpy() for k, v in labels.items()}) for images, labels in ds.take(12)]

    first, again, other = batches(5), batches(5), batches(6)
    for (a_img, a_lab), (b_img, b_lab) in zip(first, again, strict=True):
        np.testing.assert_array_equal(a_img, b_img)
        for key in a_lab:
            np.testing.assert_array_equal(a_lab[key], b_lab[key])
    assert len(first) == 12
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, other, strict=True))
    with pytest.raises(ValueError, match="seed=-1"):
        create_input_fn(paths, 4, True, seed=-1)


@pytest.mark.slow
def test_job_records_read_back_exactly_and_read_time_reweighting_matches_written(tmp_path, demo_dir):
    base = ["--input", str(demo_dir / "annotations.json"), "--val-fraction=0", *IN_PROCESS]
    prepare.run([*base, "--output", str(tmp_path / "eff"), "--scheme=effective_number", "--beta=0.99"], print_report=False)
    prepare.run([*base, "--output", str(tmp_path / "none"), "--scheme=none"], print_report=False)
    # exact box values: no augmentation, output size = the 96x96 source size
    written = [decode_example(x) for x in tf.data.TFRecordDataset(sorted(str(p) for p in (tmp_path / "eff").glob("train-*"))).as_numpy_iterator()]
    fn = create_input_fn(str(tmp_path / "eff"), 1, False, split="train", image_size=(96, 96), max_boxes=10)
    assert len(written) > 10  # the demo set's train split: a loop over nothing would pass
    for (_, labels), rec in zip(fn(), written, strict=True):
        n = int(labels["num_groundtruth_boxes"][0])
        got = labels["groundtruth_boxes"][0, :n].numpy()
        want = np.stack([rec[f"image/object/bbox/{k}"] for k in ("ymin", "xmin", "ymax", "xmax")], axis=1).astype("float32") if n else np.zeros((0, 4))
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(labels["groundtruth_weights"][0, :n].numpy(), np.asarray(rec["image/object/class/weight"], "float32"))
    spec = ReweightSpec(str(tmp_path / "none"), "effective_number", params={"beta": 0.99})
    a = create_input_fn(str(tmp_path / "eff"), 16, False, split="train", image_size=(32, 32))()
    b = create_input_fn(str(tmp_path / "none"), 16, False, split="train", image_size=(32, 32), weights=spec)()
    batches = 0
    for (_, la), (_, lb) in zip(a, b, strict=True):
        np.testing.assert_allclose(la["groundtruth_weights"].numpy(), lb["groundtruth_weights"].numpy(), rtol=1e-5)
        batches += 1
    assert batches == -(-len(written) // 16)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="no file matches"):
        create_input_fn(str(tmp_path / "nothing-*"), 1, False)
    with pytest.raises(ValueError, match="weights='balanced'"):
        create_input_fn(str(tmp_path), 1, False, weights="balanced")
