"""TFRecords in the record contract, including ones made by the TF OD API's tools.

Those may lack ``class/label`` (names are then taken from ``class/text``),
``class/text`` (names become ``class_<id>``), or weights (ignored anyway:
the job recomputes them). Boxes are normalized corners. The split is named in
the shard's name (``train-00000-of-00010``, ``coco_val.record-00000-of-00001``),
else by its folder, else ``train``.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from typing import Any

from readers.raw import RawBox, RawImage, SourceError
from readers.splits import split_in_name, split_name
from readers.tfimport import tensorflow
from readers.tfrecord_frames import NOT_TFRECORD, BadRecord, records
from schemas.annotations import Reject
from schemas.features import ExampleError, decode_example
from schemas.label_map import LabelMap
from schemas.reasons import RejectReason
from storage import fs

SUFFIXES = (".tfrecord", ".record", ".tfrecords", ".tfrecord.gz")


def _names(values: dict[str, Any]) -> list[str | None]:
    texts = [t.decode("utf-8", "replace") for t in values.get("image/object/class/text", [])]
    labels = values.get("image/object/class/label", [])
    n = max(len(texts), len(labels), len(values.get("image/object/bbox/xmin", [])))
    return [texts[i] if i < len(texts) and texts[i] else (f"class_{labels[i]}" if i < len(labels) else None) for i in range(n)]


def _known(name: str | None, label_map: LabelMap) -> str | None:
    return name if name and label_map.id_of(name) else None


class TfRecordSource:
    """Images and boxes from existing TFRecord shards."""

    format = "tfrecord"

    def __init__(self, path: str, image_root: str | None = None, label_map: LabelMap | None = None) -> None:
        del image_root  # bytes are embedded
        if any(c in path for c in "*?[") and not fs.exists(path):
            self.files = fs.glob(path)
        elif path.lower().endswith(SUFFIXES) or "-of-" in posixpath.basename(path):
            self.files = [path]
        else:
            self.files = [f for f in fs.list_files(path) if f.lower().endswith(SUFFIXES) or "-of-" in posixpath.basename(f)]
        if not self.files:
            raise SourceError(f"{path}: no TFRecord files (*.tfrecord, *.record, *-of-*)")
        if label_map is None:
            tensorflow()  # decode_example parses with TensorFlow's protos: imported quietly first
            pairs: dict[str, int] = {}
            for f in self.files:
                for _, data in records(f):
                    if isinstance(data, BadRecord) and data.message.startswith(NOT_TFRECORD):
                        raise SourceError(f"{f}: {data.message}")
                    if isinstance(data, bytes):
                        try:
                            values = decode_example(data)
                        except ExampleError:
                            continue  # reported when the records are read
                        labels = values.get("image/object/class/label", [])
                        for i, name in enumerate(_names(values)):
                            if name is not None:
                                pairs.setdefault(name, labels[i] if i < len(labels) else 1 << 30)
            if not pairs:
                raise SourceError(f"{path}: no class text or label in any record; pass --label-map")
            label_map = LabelMap.from_names(sorted(pairs, key=lambda n: (pairs[n], n)))
        self.label_map = label_map

    def __iter__(self) -> Iterator[RawImage | Reject]:
        for f in self.files:
            yield from self.read_part(f)

    def parts(self) -> list[str]:
        """One part per shard, read by a worker of its own (see :class:`readers.ReadPlan`)."""
        return list(self.files)

    def read_part(self, f: str) -> Iterator[RawImage | Reject]:
        # the shard's name (train-00000-of-00010, coco_val.record-00000-of-00001), else its folder
        split = split_in_name(posixpath.basename(f)) or split_name(posixpath.basename(posixpath.dirname(f)))
        tensorflow()  # decode_example parses with TensorFlow's protos: imported quietly first
        for index, data in records(f):
            where = f"{f}: record {index}"
            if isinstance(data, BadRecord):
                lost = "; the rest of the shard cannot be read" if data.framing_lost else ""
                yield Reject(where, RejectReason.ANNOTATION_MALFORMED, f"{data.message}{lost}")
                continue
            try:
                values = decode_example(data)
            except ExampleError as exc:
                yield Reject(where, RejectReason.ANNOTATION_MALFORMED, str(exc))
                continue
            yield self._image(values, where, split)

    def _image(self, values: dict[str, Any], where: str, split: str) -> RawImage | Reject:
        coords = [values.get(f"image/object/bbox/{k}", []) for k in ("xmin", "ymin", "xmax", "ymax")]
        names = _names(values)
        crowd = values.get("image/object/is_crowd", [])
        difficult = values.get("image/object/difficult", [])
        truncated = values.get("image/object/truncated", [])
        n = len(coords[0])
        encoded = values.get("image/encoded")
        source_id = (values.get("image/source_id") or b"").decode("utf-8", "replace")
        filename = (values.get("image/filename") or b"").decode("utf-8", "replace")
        if not encoded:
            return Reject(where, RejectReason.IMAGE_MISSING, "record has no image/encoded", image=filename, boxes=n)
        if any(len(c) != n for c in coords):
            return Reject(where, RejectReason.ANNOTATION_MALFORMED, f"bbox lists differ in length {[len(c) for c in coords]}", image=filename, boxes=max(len(c) for c in coords))
        boxes = tuple(
            RawBox(
                coords[0][i], coords[1][i], coords[2][i], coords[3][i],
                class_name=_known(names[i] if i < len(names) else None, self.label_map),
                class_ref=repr(names[i] if i < len(names) else None),
                source=f"{where} box {i}",
                normalized=True,
                is_crowd=bool(crowd[i]) if i < len(crowd) else False,
                difficult=bool(difficult[i]) if i < len(difficult) else False,
                truncated=bool(truncated[i]) if i < len(truncated) else False,
            )
            for i in range(n)
        )
        return RawImage(
            key=source_id or filename or where,
            file_name=filename or source_id or "image",
            image_root="",
            source=where,
            split=split,
            boxes=boxes,
            declared_width=values.get("image/width"),
            declared_height=values.get("image/height"),
            encoded=encoded,
        )
