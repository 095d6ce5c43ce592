"""The record contract: tf.Example keys, the annotation model, label maps, report layout."""

from schemas.annotations import AnnotationError, Box, ImageRecord, Reject
from schemas.features import (
    FEATURES,
    SCHEMA_VERSION,
    ExampleError,
    Feature,
    decode_example,
    encode_example,
    parse_spec,
)
from schemas.label_map import LabelMap, LabelMapError
from schemas.reasons import RejectReason, Repair
from schemas.report import STATS_VERSION, check_stats

__all__ = [
    "FEATURES",
    "SCHEMA_VERSION",
    "STATS_VERSION",
    "AnnotationError",
    "Box",
    "ExampleError",
    "Feature",
    "ImageRecord",
    "LabelMap",
    "LabelMapError",
    "Reject",
    "RejectReason",
    "Repair",
    "check_stats",
    "decode_example",
    "encode_example",
    "parse_spec",
]
