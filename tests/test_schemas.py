"""The record contract: encode -> parse round trip, golden bytes, validation, label maps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from schemas import FEATURES, SCHEMA_VERSION, decode_example, encode_example, parse_spec
from schemas.annotations import AnnotationError, Box, ImageRecord
from schemas.codec import encode_record, record_values
from schemas.features import BOX_KEYS, ExampleError
from schemas.label_map import LabelMap, LabelMapError
from schemas.report import StatsLayoutError, bin_label, check_stats
from tests.conftest import FIXTURES
from tests.fixtures.make_golden import golden_image, golden_record


def _parse(serialized: bytes) -> dict:
    parsed = tf.io.parse_single_example(serialized, parse_spec())
    return {
        k: (tf.sparse.to_dense(v) if isinstance(v, tf.sparse.SparseTensor) else v).numpy() for k, v in parsed.items()
    }


def test_round_trip_through_tf_parse_equals_values():
    record, image = golden_record(), golden_image()
    values = record_values(record, image)
    parsed = _parse(encode_record(record, image))
    for f in FEATURES:
        got, want = parsed[f.key], values[f.key]
        if f.dtype.value == "bytes":
            want = (
                [w.encode() if isinstance(w, str) else w for w in want]
                if f.per_box
                else (want.encode() if isinstance(want, str) else want)
            )
            assert list(got) == want if f.per_box else got == want, f.key
        else:
            np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=f.key)


def test_both_weight_keys_carry_the_box_weights():
    parsed = _parse(encode_record(golden_record(), golden_image()))
    np.testing.assert_allclose(parsed["image/object/class/weight"], [0.25, 3.5])
    np.testing.assert_allclose(parsed["image/object/weight"], [0.25, 3.5])
    assert parsed["boxweight/schema_version"] == SCHEMA_VERSION


def test_golden_record_bytes_are_stable():
    # The golden file was made by tests/fixtures/make_golden.py; re-encoding the
    # same values (with the image bytes taken from the file) must give the same bytes.
    golden = next(iter(tf.data.TFRecordDataset(str(FIXTURES / "golden.tfrecord")))).numpy()
    image = decode_example(golden)["image/encoded"]
    assert encode_record(golden_record(), image) == golden


def test_parse_spec_and_encoder_share_one_key_list():
    assert set(parse_spec()) == {f.key for f in FEATURES}
    assert set(record_values(golden_record(), b"x")) == {f.key for f in FEATURES}
    assert {"image/object/class/weight", "image/object/weight"} <= set(BOX_KEYS)


def test_encode_refuses_unknown_and_missing_keys_and_uneven_boxes():
    values = record_values(golden_record(), golden_image())
    with pytest.raises(ExampleError, match=r"unknown record keys \['image/bogus'\]"):
        encode_example({**values, "image/bogus": 1})
    with pytest.raises(ExampleError, match=r"missing required record keys \['image/encoded'\]"):
        encode_example({k: v for k, v in values.items() if k != "image/encoded"})
    with pytest.raises(ExampleError, match="per-box keys disagree"):
        encode_example({**values, "image/object/bbox/xmin": [0.1]})


def test_optional_box_keys_default_per_box():
    values = record_values(golden_record(), golden_image())
    del values["image/object/difficult"]
    parsed = _parse(encode_example(values))
    assert list(parsed["image/object/difficult"]) == [0, 0]


def test_box_validation_names_the_bad_value():
    with pytest.raises(AnnotationError, match=r"xmin=nan is not in \[0, 1\]"):
        Box(math.nan, 0, 1, 1, label=1, text="a")
    with pytest.raises(AnnotationError, match=r"ymax=1.5 is not in \[0, 1\]"):
        Box(0, 0, 1, 1.5, label=1, text="a")
    with pytest.raises(AnnotationError, match="empty extent xmin=0.5 xmax=0.5"):
        Box(0.5, 0, 0.5, 1, label=1, text="a")
    with pytest.raises(AnnotationError, match="label id 0 < 1"):
        Box(0, 0, 1, 1, label=0, text="a")
    with pytest.raises(AnnotationError, match=r"weight=-1.0"):
        Box(0, 0, 1, 1, label=1, text="a", weight=-1.0)


def test_image_validation_names_the_bad_value():
    with pytest.raises(AnnotationError, match="size 0x10 is not positive"):
        ImageRecord("k", "f.jpg", "p", height=10, width=0, format="jpeg")
    with pytest.raises(AnnotationError, match=r"format 'gif' not in"):
        ImageRecord("k", "f.gif", "p", height=1, width=1, format="gif")
    with pytest.raises(AnnotationError, match=r"repeat_factor=0.5 must be >= 1"):
        ImageRecord("k", "f.jpg", "p", height=1, width=1, format="jpeg", repeat_factor=0.5)


@pytest.mark.parametrize(
    "names",
    [("cat", "dog"), ("it's", 'say "hi"', "back\\slash"), ("café", "猫", "🐟 fish"), ("tab\tname", "new\nline")],
)
def test_label_map_round_trip(names):
    lm = LabelMap.from_names(names)
    text = lm.to_pbtxt()
    assert text.startswith("item {\n  id: 1\n  name: '")
    assert LabelMap.from_pbtxt(text) == lm


def test_label_map_reads_tf_od_api_style_with_comments_and_double_quotes():
    text = """
    # a comment
    item {
      name: "/m/01g317"
      id: 2
      display_name: "person"
    }
    item { id: 1 name: 'dog' }
    """
    assert LabelMap.from_pbtxt(text).names == ("dog", "/m/01g317")


def test_label_map_keeps_ids_with_gaps_as_the_tf_od_api_coco_map_has():
    text = "item { name: '/m/01g317' id: 1 display_name: 'person' }\nitem { id: 90 name: 'toothbrush' }\nitem { id: 3 name: 'car' }\n"
    lm = LabelMap.from_pbtxt(text)
    assert list(lm) == [(1, "/m/01g317"), (3, "car"), (90, "toothbrush")]
    assert (lm.id_of("car"), lm.name_of(90), lm.max_id, len(lm)) == (3, "toothbrush", 90, 3)
    assert LabelMap.from_pbtxt(lm.to_pbtxt()) == lm
    with pytest.raises(LabelMapError, match=r"label id 2 is not in the label map \(ids 1, 3, 90\)"):
        lm.name_of(2)
    assert LabelMap(("a", "b")) == LabelMap.from_pairs([(2, "b"), (1, "a")])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("item { id: 0 name: 'a' }", "id 0 < 1"),
        ("item { id: 1 name: 'a' } item { id: 1 name: 'b' }", "id 1 appears twice"),
        ("item { id: 1 }", "lacks id or name"),
        ("item { id: 1 name: 'a' ", "unterminated item"),
        ("", "no items"),
        ("item { id: 1 name: 'a' } item { id: 2 name: 'a' }", r"names \['a'\] have more than one id"),
    ],
)
def test_label_map_errors(text, message):
    with pytest.raises(LabelMapError, match=message):
        LabelMap.from_pbtxt(text)


def test_boxes_per_image_bins():
    assert [bin_label(n) for n in (0, 1, 5, 6, 7, 9, 14, 19, 20, 500)] == [
        "0",
        "1",
        "5",
        "6-7",
        "6-7",
        "8-9",
        "10-14",
        "15-19",
        "20+",
        "20+",
    ]


def test_check_stats_refuses_totals_that_do_not_add_up():
    doc = {
        "stats_version": 1,
        "schema_version": 1,
        "command": "",
        "input": {},
        "scheme": {},
        "label_map": [],
        "splits": {},
        "totals": {
            "images_in": 3,
            "images_written": 2,
            "images_quarantined": 0,
            "boxes_in": 0,
            "boxes_written": 0,
            "boxes_dropped": 0,
            "images_quarantined_by_reason": {},
            "boxes_dropped_by_reason": {},
            "repairs": {},
            "classes": {},
        },
    }
    with pytest.raises(StatsLayoutError, match="images_in != images_written"):
        check_stats(doc)
    doc["totals"]["images_in"] = 2
    doc["totals"]["classes"] = {
        "cat": {"boxes_in": 2, "boxes_written": 1, "boxes_dropped": 0, "boxes_dropped_by_reason": {}}
    }
    with pytest.raises(StatsLayoutError, match="class 'cat': boxes_in != boxes_written \\+ boxes_dropped"):
        check_stats(doc)
    doc["totals"]["classes"]["cat"].update(boxes_dropped=1, boxes_dropped_by_reason={"box_zero_area": 1})
    with pytest.raises(StatsLayoutError, match="per-class boxes_in do not add up to boxes_in"):
        check_stats(doc)
    del doc["splits"]
    with pytest.raises(StatsLayoutError, match="missing key 'splits'"):
        check_stats(doc)


def _tf_reference(values):
    """The same values serialized by TensorFlow's own protobuf classes."""
    from schemas.features import Dtype

    feature = {}
    for f in FEATURES:
        seq = values[f.key] if f.per_box else [values[f.key]]
        if f.dtype is Dtype.BYTES:
            feature[f.key] = tf.train.Feature(
                bytes_list=tf.train.BytesList(value=[v.encode() if isinstance(v, str) else v for v in seq])
            )
        elif f.dtype is Dtype.INT64:
            feature[f.key] = tf.train.Feature(int64_list=tf.train.Int64List(value=seq))
        else:
            feature[f.key] = tf.train.Feature(float_list=tf.train.FloatList(value=seq))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(deterministic=True)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=150, deadline=None)
@given(data=st.data(), n=st.integers(0, 6))
def test_hand_written_wire_format_equals_tensorflow_serialization(data, n):
    from schemas.features import Dtype

    floats = st.floats(width=32, allow_nan=False)
    ints = st.integers(-(2**63), 2**63 - 1)
    texts = st.one_of(st.text(max_size=12), st.binary(max_size=40))
    values = {}
    for f in FEATURES:
        elem = {Dtype.BYTES: texts, Dtype.INT64: ints, Dtype.FLOAT: floats}[f.dtype]
        values[f.key] = data.draw(st.lists(elem, min_size=n, max_size=n)) if f.per_box else data.draw(elem)
    assert encode_example(values) == _tf_reference(values)


@pytest.mark.parametrize(
    "labels", [[0, 127], [128, 1], [-1, 3], [True, False], [1.0, 2.0], [np.int64(5), np.int64(300)], [2**63 - 1, 0]]
)
def test_int_lists_encode_as_tensorflow_does_small_or_not(labels):
    """Ints in 0..127 take a one-byte-per-value path; the rest (large, negative, bools, floats, numpy) the general one."""
    values = record_values(golden_record(), golden_image())  # two boxes
    assert encode_example({**values, "image/object/class/label": labels}) == _tf_reference(
        {**values, "image/object/class/label": [int(v) for v in labels]}
    )


def test_the_image_is_one_uncopied_piece_between_two_joined_ones():
    from schemas.features import encode_example_parts

    values = record_values(golden_record(), golden_image())
    parts = encode_example_parts(values)
    assert len(parts) == 3 and parts[1] is values["image/encoded"]
    assert b"".join(parts) == _tf_reference(values)


def test_records_pickle_to_equal_records():
    """Beam pickles records between stages through a compact __reduce__; nothing may change on the way."""
    import pickle

    from schemas.annotations import Box, ImageRecord

    box = Box(0.1, 0.2, 0.5, 0.6, 3, "rare", area=12.5, is_crowd=True, difficult=True, truncated=False).with_weight(7.5)
    rec = ImageRecord(
        "k",
        "a/b.png",
        "gs://bkt/a/b.png",
        10,
        20,
        "png",
        (box, box),
        split="val",
        repeat_factor=2.0,
        encoded=b"\x89PNG",
        nbytes=4,
    )
    back = pickle.loads(pickle.dumps(rec))
    assert back == rec and back.boxes[1].weight == 7.5 and hash(back) == hash(rec)
    with pytest.raises(ValueError):
        box.with_weight(float("nan"))


def test_source_id_is_a_decimal_int64_numeric_keys_as_they_are_others_a_stable_hash():
    from schemas.codec import numeric_source_id

    assert numeric_source_id("42") == "42"  # a COCO image id
    assert numeric_source_id("0007") == "0007"  # to_number reads it as 7
    # a file stem: the value is pinned, so records written by any version and machine agree
    assert numeric_source_id("BloodImage_00000") == "1463092587097900199"
    others = ["BloodImage_00000", "BloodImage_00001", "-1", "1.5", "²", str(1 << 63), "images/a b.jpg"]
    ids = [numeric_source_id(k) for k in others]
    assert len(set(ids)) == len(ids) and all(0 <= int(i) < 1 << 63 for i in ids)
    parsed = (
        tf.strings.to_number(tf.constant(ids + ["42", "0007"]), tf.int64).numpy().tolist()
    )  # as Model Garden reads it
    assert parsed == [int(i) for i in ids] + [42, 7]


def test_box_shapes_and_centres_are_counted_per_class():
    from schemas.annotations import Box, ImageRecord
    from schemas.report import POSITION_GRID, aspect_bucket
    from weighting.stats import SplitStats

    # a 200 x 100 image: a box 20 x 60 px (tall) centred at (0.1, 0.7), one 40 x 40 (square) in the middle
    boxes = (Box(0.05, 0.4, 0.15, 1.0, 1, "a"), Box(0.4, 0.3, 0.6, 0.7, 1, "a"))
    stats = SplitStats.of([ImageRecord("1", "1.jpg", "p", height=100, width=200, format="jpeg", boxes=boxes)])
    assert stats.class_aspects["a"] == {"tall": 1, "square": 1}
    cells = stats.class_positions["a"]
    assert len(cells) == POSITION_GRID**2 and sum(cells) == 2
    assert cells[3 * POSITION_GRID + 0] == 1 and cells[2 * POSITION_GRID + 2] == 1  # fourth row at the left, centre
    merged = SplitStats.of([]).merge(stats).merge(stats)
    assert merged.class_positions["a"][15] == 2 and merged.class_aspects["a"]["tall"] == 2
    assert [aspect_bucket(w, 100) for w in (49, 50, 79, 80, 124, 125, 199, 200)] == [
        "tall",
        "portrait",
        "portrait",
        "square",
        "square",
        "landscape",
        "landscape",
        "wide",
    ]
    assert aspect_bucket(10, 0) == "wide"
