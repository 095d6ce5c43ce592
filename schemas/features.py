"""The tf.train.Example contract for one detection image, declared once.

Keys follow the TF Object Detection API (``image/object/weight`` is what its
decoder maps to ``groundtruth_weights``). The writer (:func:`encode_example`),
the tf.data parser (:func:`parse_spec`) and the tests all derive from
:data:`FEATURES`; no other module lists the keys.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import struct
from collections.abc import Mapping, Sequence
from typing import Any

SCHEMA_VERSION = 2  # 2: image/source_id is a decimal int64 (schemas.codec.numeric_source_id); 1 wrote the image key


class Dtype(str, enum.Enum):
    BYTES = "bytes"
    INT64 = "int64"
    FLOAT = "float"


@dataclasses.dataclass(frozen=True)
class Feature:
    """One key of the record: scalar per image or one value per box."""

    key: str
    dtype: Dtype
    per_box: bool
    default: Any
    required: bool = False
    doc: str = ""


_B, _I, _F = Dtype.BYTES, Dtype.INT64, Dtype.FLOAT

FEATURES: tuple[Feature, ...] = (
    Feature("image/encoded", _B, False, b"", True, "original JPEG or PNG bytes"),
    Feature("image/format", _B, False, b"jpeg", True, "'jpeg' or 'png', from the bytes, not the name"),
    Feature("image/height", _I, False, 0, True, "pixels"),
    Feature("image/width", _I, False, 0, True, "pixels"),
    Feature("image/filename", _B, False, b"", False, "name relative to the dataset root"),
    Feature("image/source_id", _B, False, b"", True, "decimal int64: a numeric image id, else a stable hash of the image key"),
    Feature("image/key/sha256", _B, False, b"", False, "hex sha256 of image/encoded"),
    Feature("image/repeat_factor", _F, False, 1.0, False, "LVIS image sampling factor, >= 1"),
    Feature("boxweight/schema_version", _I, False, 0, False, "version of this contract"),
    Feature("image/object/bbox/xmin", _F, True, 0.0, False, "normalized to [0, 1]"),
    Feature("image/object/bbox/ymin", _F, True, 0.0, False, "normalized to [0, 1]"),
    Feature("image/object/bbox/xmax", _F, True, 0.0, False, "normalized to [0, 1]"),
    Feature("image/object/bbox/ymax", _F, True, 0.0, False, "normalized to [0, 1]"),
    Feature("image/object/class/label", _I, True, 0, False, "label map id, from 1"),
    Feature("image/object/class/text", _B, True, b"", False, "class name"),
    Feature("image/object/class/weight", _F, True, 1.0, False, "boxweight's per-box weight"),
    Feature("image/object/weight", _F, True, 1.0, False, "TF OD API groundtruth_weights"),
    Feature("image/object/is_crowd", _I, True, 0, False, "COCO iscrowd"),
    Feature("image/object/area", _F, True, 0.0, False, "box area in pixels"),
    Feature("image/object/difficult", _I, True, 0, False, "VOC difficult"),
    Feature("image/object/truncated", _I, True, 0, False, "VOC truncated"),
)

FEATURES_BY_KEY: dict[str, Feature] = {f.key: f for f in FEATURES}
BOX_KEYS: tuple[str, ...] = tuple(f.key for f in FEATURES if f.per_box)


class ExampleError(ValueError):
    """Values that do not fit the record contract."""


def encode_example(values: Mapping[str, Any]) -> bytes:
    """Serialize one image's values as a tf.train.Example, without TensorFlow.

    The bytes of :func:`encode_example_parts`, joined.
    """
    return b"".join(encode_example_parts(values))


def encode_example_parts(values: Mapping[str, Any]) -> list[bytes]:
    """Serialize one image's values as a tf.train.Example, without TensorFlow, in pieces.

    The protobuf wire format of ``Example`` (features, a map of key to
    bytes/float/int64 lists) is written directly, map entries sorted by key:
    the same bytes as ``tf.train.Example.SerializeToString(deterministic=True)``
    (the tests check this against TensorFlow), but the Beam workers need not
    import TensorFlow, which cost seconds per worker and a heavier container.

    Args:
        values: key -> value for keys of :data:`FEATURES`. Scalars for image
            keys, equal-length sequences for per-box keys. Missing optional
            keys take their declared default (per-box: one default per box).

    Returns:
        The serialized Example as a list of pieces whose concatenation is
        the message: the bytes before the image, the image bytes (the very
        object given, not copied) and the bytes after it. Equal values give
        equal bytes.

    Raises:
        ExampleError: an unknown key, a missing required key, per-box
            sequences of different lengths, or a value of the wrong type.
    """
    unknown = values.keys() - FEATURES_BY_KEY.keys()
    if unknown:
        raise ExampleError(f"unknown record keys {sorted(unknown)}; known: {sorted(FEATURES_BY_KEY)}")
    if not _REQUIRED <= values.keys():
        raise ExampleError(f"missing required record keys {[k for k in _REQUIRED_ORDER if k not in values]}")
    lengths = {k: len(values[k]) for k in BOX_KEYS if k in values}
    num_boxes = max(lengths.values(), default=0)
    uneven = {k: n for k, n in lengths.items() if n != num_boxes}
    if uneven:
        raise ExampleError(f"per-box keys disagree on box count {num_boxes}: {uneven}")

    # Each map entry is  0x0A len( key_field 0x12 len( kind_tag len( body ) ) ): its head depends
    # only on the key and the body's length. The entries before and after the image are joined into
    # one piece each; the image bytes stay one uncopied piece.
    pieces: list[bytes] = []
    parts: list[bytes] = []
    total = 0
    for index, f, body_of in _PLAN:
        if f.per_box:
            seq: Sequence[Any] = values[f.key] if f.key in values else [f.default] * num_boxes
        else:
            seq = (values[f.key],) if f.key in values else (f.default,)
        try:
            body = body_of(seq)
        except (TypeError, ValueError, OverflowError, struct.error) as exc:
            raise ExampleError(f"{f.key}: values {list(seq)[:5]!r} are not {f.dtype.value}: {exc}") from exc
        if f is _IMAGE:  # one BytesList item: its tag and length close the first piece, the bytes are the next
            item_head = b"\x0a" + _varint(len(body))
            head, size = _entry_head.__wrapped__(index, len(item_head) + len(body))
            pieces += (head, item_head)
            parts += (b"".join(pieces), body)
            pieces = []
        else:
            head, size = _entry_head(index, len(body))
            pieces += (head, body)
        total += size
    parts.append(b"".join(pieces))
    parts[0] = b"\x0a" + _varint(total) + parts[0]
    return parts


_KIND_FIELD = {Dtype.BYTES: 1, Dtype.FLOAT: 2, Dtype.INT64: 3}  # Feature's oneof field numbers
_SMALL = 1 << 14
_VARINTS: tuple[bytes, ...] = ()  # filled below: encoded varints of 0 .. _SMALL - 1
_INT64_MASK = 0xFFFFFFFFFFFFFFFF


def _varint(n: int) -> bytes:
    if 0 <= n < _SMALL and _VARINTS:
        return _VARINTS[n]
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _varint_len(n: int) -> int:
    return 1 if n < 0x80 else len(_varint(n))


_VARINTS = tuple(_varint(i) for i in range(_SMALL))


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


@functools.lru_cache(maxsize=256)
def _floats(n: int) -> struct.Struct:
    """Packed repeated float: ``n`` little-endian float32, rounded like protobuf's C++ cast."""
    return struct.Struct(f"<{n}f")


def _bytes_items(seq: Sequence[Any]) -> list[bytes]:
    return [v.encode("utf-8") if isinstance(v, str) else v if isinstance(v, bytes) else bytes(v) for v in seq]


def _bytes_body(seq: Sequence[Any]) -> bytes:
    return b"".join([b"\x0a" + _varint(len(v)) + v for v in _bytes_items(seq)])  # BytesList.value, one per item


def _image_body(seq: Sequence[Any]) -> bytes:
    """The image bytes themselves (their item header is written apart, see encode_example_parts)."""
    return _bytes_items(seq)[0]


def _float_body(seq: Sequence[Any]) -> bytes:
    if not seq:
        return b""
    packed = _floats(len(seq)).pack(*[float(v) for v in seq])
    return b"\x0a" + _varint(len(packed)) + packed


def _int_body(seq: Sequence[Any]) -> bytes:
    if not seq:
        return b""
    try:  # labels and flags: ints in 0..127 are one varint byte each, the bytes themselves
        packed = bytes(seq)
        small = packed.isascii()
    except (TypeError, ValueError):  # floats, negative or large ints
        small = False
    if not small:
        packed = b"".join([_varint(int(v) & _INT64_MASK) for v in seq])
    return b"\x0a" + _varint(len(packed)) + packed


_IMAGE = FEATURES_BY_KEY["image/encoded"]
_BODY = {Dtype.BYTES: _bytes_body, Dtype.FLOAT: _float_body, Dtype.INT64: _int_body}
# map entries in key order, as protobuf's deterministic mode
_SORTED = sorted(FEATURES, key=lambda f: f.key.encode("utf-8"))
#: (index, feature, the function that encodes its body), in entry order
_PLAN = tuple((i, f, _image_body if f is _IMAGE else _BODY[f.dtype]) for i, f in enumerate(_SORTED))
_REQUIRED_ORDER = [f.key for f in FEATURES if f.required]
_REQUIRED = frozenset(_REQUIRED_ORDER)


@functools.lru_cache(maxsize=4096)
def _entry_head(index: int, body_len: int) -> tuple[bytes, int]:
    """The bytes of map entry ``index`` up to its body, for a body of ``body_len`` bytes, and the
    entry's whole length on the wire (its head and body)."""
    f = _SORTED[index]
    key_field = _field(1, f.key.encode("utf-8"))
    kind_tag = _varint(_KIND_FIELD[f.dtype] << 3 | 2)
    feature_len = len(kind_tag) + _varint_len(body_len) + body_len
    entry_len = len(key_field) + 1 + _varint_len(feature_len) + feature_len
    head = b"\x0a" + _varint(entry_len) + key_field + b"\x12" + _varint(feature_len) + kind_tag + _varint(body_len)
    return head, len(head) + body_len


def parse_spec() -> dict[str, Any]:
    """The ``tf.io.parse_*example`` spec for :data:`FEATURES`.

    Image keys are ``FixedLenFeature([])`` with their default (required keys
    have none, so a record lacking them fails to parse). Per-box keys are
    ``VarLenFeature`` so records from other tools that lack some box keys
    (weights, labels) still parse; callers fall back explicitly.
    """
    import tensorflow as tf

    tf_dtype = {Dtype.BYTES: tf.string, Dtype.INT64: tf.int64, Dtype.FLOAT: tf.float32}
    spec: dict[str, Any] = {}
    for f in FEATURES:
        if f.per_box:
            spec[f.key] = tf.io.VarLenFeature(tf_dtype[f.dtype])
        elif f.required and f.key != "image/filename":
            spec[f.key] = tf.io.FixedLenFeature([], tf_dtype[f.dtype])
        else:
            spec[f.key] = tf.io.FixedLenFeature([], tf_dtype[f.dtype], default_value=f.default)
    return spec


def decode_example(serialized: bytes) -> dict[str, Any]:
    """Parse one serialized Example into plain Python values (no TF graph).

    Used by the TFRecord reader and the tests. Keys outside the contract are
    ignored; absent keys are left out so callers can tell "missing" from
    "default".
    """
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    try:
        example = tf.train.Example.FromString(serialized)
    except DecodeError as exc:
        raise ExampleError(f"not a tf.train.Example: {exc}") from None
    out: dict[str, Any] = {}
    for key, feat in example.features.feature.items():
        f = FEATURES_BY_KEY.get(key)
        if f is None:
            continue
        kind = feat.WhichOneof("kind")
        values = list(getattr(feat, kind).value) if kind else []
        if f.per_box:
            out[key] = values
        elif values:
            out[key] = values[0]
    return out
