"""TensorFlow Datasets metadata for a job output, so ``tfds.builder_from_directory(OUT)`` reads it.

Three files beside the shards, in the layouts that TFDS 4.9's own
``tfds.folder_dataset.write_metadata`` writes: ``features.json`` (the
feature tree, derived from :data:`schemas.features.FEATURES`),
``dataset_info.json`` (each split's shard lengths and bytes, from the
manifest's entries) and the class names of the label feature, from the label
map. Plain JSON: the job neither imports nor needs TFDS.

TFDS reads uncompressed TFRecords only, so a gzip output gets none of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from schemas.features import FEATURES, Dtype, Feature
from schemas.label_map import LabelMap
from schemas.manifest import FileEntry

FEATURES_FILE = "features.json"
INFO_FILE = "dataset_info.json"
LABEL_KEY = "image/object/class/label"
LABELS_FILE = LABEL_KEY.replace("/", "-") + ".labels.txt"  # where TFDS's ClassLabel keeps its names
FILE_TEMPLATE = "{SPLIT}-{SHARD_X_OF_Y}.{FILEFORMAT}"  # schemas.manifest.shard_name's layout
_PKG = "tensorflow_datasets.core.features."


def _tensor(dtype: str, per_box: bool) -> dict[str, Any]:
    shape: dict[str, Any] = {"dimensions": ["-1"]} if per_box else {}
    return {"pythonClassName": _PKG + "tensor_feature.Tensor", "tensor": {"dtype": dtype, "encoding": "none", "shape": shape}}


def _text() -> dict[str, Any]:
    return {"pythonClassName": _PKG + "text_feature.Text", "text": {}}


def _sequence(feature: dict[str, Any]) -> dict[str, Any]:
    return {"pythonClassName": _PKG + "sequence_feature.Sequence", "sequence": {"feature": feature, "length": "-1"}}


def _leaf(f: Feature, num_classes: int) -> dict[str, Any]:
    if f.key == "image/encoded":  # decoded by TFDS to uint8 [H, W, 3], JPEG or PNG alike
        return {"pythonClassName": _PKG + "image_feature.Image", "image": {"dtype": "uint8", "shape": {"dimensions": ["-1", "-1", "3"]}}}
    if f.key == LABEL_KEY:
        return _sequence({"pythonClassName": _PKG + "class_label_feature.ClassLabel", "classLabel": {"numClasses": str(num_classes)}})
    if f.dtype is Dtype.BYTES:
        return _sequence(_text()) if f.per_box else _text()
    return _tensor("int64" if f.dtype is Dtype.INT64 else "float32", f.per_box)


def _tree(leaves: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``{"a/b": leaf}`` -> nested FeaturesDicts; TFDS joins the names back with ``/`` into the record keys."""
    children: dict[str, Any] = {}
    for key, leaf in leaves.items():
        node = children
        *parents, name = key.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[name] = leaf

    def wrap(node: dict[str, Any]) -> dict[str, Any]:
        features = {k: (v if "pythonClassName" in v else wrap(v)) for k, v in node.items()}
        return {"pythonClassName": _PKG + "features_dict.FeaturesDict", "featuresDict": {"features": features}}

    return wrap(children)


def class_names(label_map: LabelMap) -> list[str]:
    """ClassLabel names by id, 0 to the largest id, one per line of the labels file.

    Ids without a class (0, gaps in a TF OD API label map) get ``(no class N)``;
    line breaks in a name become spaces. TFDS wants the names distinct, so a
    name that collides gets ``_`` appended.
    """
    by_id = dict(label_map)
    names: list[str] = []
    for i in range(label_map.max_id + 1):
        name = " ".join(by_id[i].splitlines()) if i in by_id else f"(no class {i})"
        while name in names:
            name += "_"
        names.append(name)
    return names


def features_json(label_map: LabelMap) -> dict[str, Any]:
    return _tree({f.key: _leaf(f, label_map.max_id + 1) for f in FEATURES})


def dataset_info_json(shards: Iterable[FileEntry], description: str) -> dict[str, Any]:
    by_split: dict[str, list[FileEntry]] = {}
    for s in sorted(shards, key=lambda s: s.name):  # shard_name sorts by index within a split
        by_split.setdefault(s.split, []).append(s)
    splits = [
        {
            "filepathTemplate": FILE_TEMPLATE,
            "name": split,
            "numBytes": str(sum(s.bytes for s in entries)),
            "shardLengths": [str(s.records) for s in entries],
        }
        for split, entries in sorted(by_split.items())
    ]
    return {"description": description, "fileFormat": "tfrecord", "splits": splits, "version": "1.0.0"}


def metadata_files(shards: list[FileEntry], label_map: LabelMap, description: str) -> dict[str, str]:
    """File name -> text of the TFDS metadata; empty for gzip shards, which TFDS does not read."""
    if any(s.name.endswith(".gz") for s in shards):
        return {}
    return {
        FEATURES_FILE: json.dumps(features_json(label_map), indent=2, sort_keys=True) + "\n",
        INFO_FILE: json.dumps(dataset_info_json(shards, description), indent=2, sort_keys=True) + "\n",
        LABELS_FILE: "".join(name + "\n" for name in class_names(label_map)),
    }
