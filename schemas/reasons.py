"""Closed set of reasons an image is quarantined, a box is dropped or repaired.

Every reason is a stable string: it appears in ``rejects.jsonl``, in the Beam
counter names and in ``stats.json``, so renaming one is a schema change.
"""

from __future__ import annotations

import enum


class RejectReason(str, enum.Enum):
    """Why an image was quarantined or a box dropped."""

    # Image level: the whole image (and its boxes) is quarantined.
    IMAGE_MISSING = "image_missing"
    IMAGE_UNREADABLE = "image_unreadable"
    IMAGE_CORRUPT = "image_corrupt"  # header and end intact, pixel data does not decode
    IMAGE_TOO_LARGE = "image_too_large"
    IMAGE_TOO_MANY_BOXES = "image_too_many_boxes"  # above --max-boxes-per-image: more likely a broken export
    IMAGE_FORMAT_UNSUPPORTED = "image_format_unsupported"
    PATH_UNSAFE = "path_unsafe"
    DUPLICATE_IMAGE = "duplicate_image"
    ANNOTATION_MALFORMED = "annotation_malformed"
    ANNOTATION_MISSING = "annotation_missing"
    SPLIT_UNDECLARED = "split_undeclared"  # the source lists its splits, and not this image
    SPLIT_CONFLICT = "split_conflict"  # the source lists this image in two splits
    # Box level: one box is dropped, the image is kept.
    BOX_NON_FINITE = "box_non_finite"
    BOX_ZERO_AREA = "box_zero_area"
    BOX_OUTSIDE_IMAGE = "box_outside_image"
    BOX_UNKNOWN_CLASS = "box_unknown_class"
    BOX_DUPLICATE = "box_duplicate"
    BOX_MALFORMED = "box_malformed"
    BOX_ORPHAN = "box_orphan"
    SHAPE_NOT_A_BOX = "shape_not_a_box"  # a point, line or other annotation that has no box
    SHAPE_IGNORED = "shape_ignored"  # LabelMe's __ignore__ label: a region to leave out, not an object
    # The boxes of a quarantined image, counted under one reason.
    IMAGE_QUARANTINED = "image_quarantined"
    # File level: a whole annotation file a worker could not read (its JSON breaks off where the launcher did not
    # read). Its images are unknown, so the job cannot account for them: the launcher refuses the output.
    ANNOTATION_FILE_UNREADABLE = "annotation_file_unreadable"

    @property
    def is_image_level(self) -> bool:
        return self in _IMAGE_LEVEL

    @property
    def is_file_level(self) -> bool:
        return self is RejectReason.ANNOTATION_FILE_UNREADABLE


_IMAGE_LEVEL = frozenset(
    {
        RejectReason.IMAGE_MISSING,
        RejectReason.IMAGE_UNREADABLE,
        RejectReason.IMAGE_CORRUPT,
        RejectReason.IMAGE_TOO_LARGE,
        RejectReason.IMAGE_TOO_MANY_BOXES,
        RejectReason.IMAGE_FORMAT_UNSUPPORTED,
        RejectReason.PATH_UNSAFE,
        RejectReason.DUPLICATE_IMAGE,
        RejectReason.ANNOTATION_MALFORMED,
        RejectReason.ANNOTATION_MISSING,
        RejectReason.SPLIT_UNDECLARED,
        RejectReason.SPLIT_CONFLICT,
    }
)


class Repair(str, enum.Enum):
    """A fix applied to a kept image or box; counted, never silent."""

    BOX_CLIPPED = "box_clipped"
    SIZE_MISMATCH = "size_mismatch"
    EXIF_ROTATED = "exif_rotated"
    FORMAT_MISNAMED = "format_misnamed"
    RESIZED = "resized"
    POLYGON_TO_BOX = "polygon_to_box"  # a segmentation polygon read as its bounding box
    PIECES_MERGED = "pieces_merged"  # LabelMe shapes of one object (same label and group_id): one box, their union
    ABSOLUTE_PATH = "absolute_path"  # an absolute file name found by its base name under --image-root
    MULTI_FRAME = "multi_frame"  # an MPO (phone) image: kept whole, decoders read its first frame
    EXIF_UNREADABLE = "exif_unreadable"  # orientation unknown: the stored frame is taken as the one annotated
    TRAILING_BYTES = "trailing_bytes"  # bytes after the image's end marker, kept (TensorFlow ignores them)
