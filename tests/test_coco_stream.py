"""The COCO reader's one pass: what the launcher reads of a file (the categories) and what the worker's pass yields."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest

from readers import coco
from readers.coco import CocoSource, read_header
from readers.raw import RawImage, SourceError
from schemas.annotations import Reject


def _doc(order: tuple[str, ...], n: int = 30) -> dict:
    members = {
        "info": {"description": 'a "categories": [{"id": 9, "name": "decoy"}]} inside a string'},
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": 64, "height": 48} for i in range(n)],
        "annotations": [
            {"id": 100 + i, "image_id": i % n, "category_id": 1 + i % 2, "bbox": [1, 2, 10, 20], "iscrowd": 0}
            for i in range(2 * n)
        ],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    }
    return {key: members[key] for key in order}


COCO_ORDER = ("info", "images", "annotations", "categories")  # pycocotools' and COCO 2017's own files
ROBOFLOW_ORDER = ("info", "categories", "images", "annotations")
MIDDLE_ORDER = ("info", "images", "categories", "annotations")
ANNOTATIONS_FIRST = ("annotations", "categories", "info", "images")


def _write(path: Path, doc: dict, indent: int | None = None) -> str:
    path.write_text(json.dumps(doc, indent=indent))
    return str(path)


@pytest.mark.parametrize("order", [COCO_ORDER, ROBOFLOW_ORDER, MIDDLE_ORDER, ANNOTATIONS_FIRST])
@pytest.mark.parametrize("large", [False, True])
def test_the_launcher_finds_the_categories_wherever_they_are(tmp_path, monkeypatch, order, large):
    if large:  # read as a large file is: from the start up to the first element, then the end
        monkeypatch.setattr(coco, "KEY_CHECK_BYTES", 0)
    path = _write(tmp_path / "a.json", _doc(order), indent=1)
    header = read_header(path)
    assert [c["name"] for c in header.categories] == ["cat", "dog"]
    assert header.has_annotations
    assert header.all_keys == (not large)  # between the arrays they are read from the start, up to the annotations


def test_a_large_file_is_not_parsed_between_its_head_and_its_tail_on_the_launcher(tmp_path, monkeypatch):
    """A broken annotation in the middle: the launcher does not read there; the worker's pass names it."""
    monkeypatch.setattr(coco, "KEY_CHECK_BYTES", 0)
    text = json.dumps(_doc(COCO_ORDER)).replace('"image_id": 7,', '"image_id": 7,,', 1)
    path = tmp_path / "a.json"
    path.write_text(text)
    assert [c["name"] for c in read_header(str(path)).categories] == ["cat", "dog"]
    source = CocoSource(str(path))
    with pytest.raises(
        SourceError,
        match=r"a\.json: malformed JSON: Expecting property name enclosed in double quotes at character \d+",
    ):
        list(source)
    monkeypatch.setattr(coco, "KEY_CHECK_BYTES", 64 << 20)  # a small file is read whole on the launcher
    with pytest.raises(
        SourceError,
        match=r"a\.json: malformed JSON: Expecting property name enclosed in double quotes at character \d+",
    ):
        CocoSource(str(path))


def test_a_truncated_large_file_is_refused_on_the_launcher(tmp_path, monkeypatch):
    monkeypatch.setattr(coco, "KEY_CHECK_BYTES", 0)
    text = json.dumps(_doc(COCO_ORDER))
    path = tmp_path / "a.json"
    path.write_text(text[: len(text) // 2])  # an interrupted download: no end to find the categories in
    with pytest.raises(SourceError, match=r"a\.json: malformed JSON: .* at character \d+"):
        CocoSource(str(path))


def test_an_escaped_decoy_at_the_end_is_not_taken_for_the_categories(tmp_path, monkeypatch):
    monkeypatch.setattr(coco, "KEY_CHECK_BYTES", 0)
    doc = _doc(("info", "images", "categories", "annotations"))
    doc["annotations"][-1]["note"] = '"categories": [{"id": 1, "name": "decoy"}]}'
    path = _write(tmp_path / "a.json", doc)
    assert [c["name"] for c in read_header(path).categories] == ["cat", "dog"]


def _items(path: str) -> list:
    return [(type(item).__name__, item) for item in CocoSource(path)]


@pytest.mark.parametrize("order", [ROBOFLOW_ORDER, MIDDLE_ORDER, ANNOTATIONS_FIRST])
def test_one_pass_yields_the_same_whatever_the_order_of_the_members(tmp_path, order):
    expected = _items(_write(tmp_path / "coco.json", _doc(COCO_ORDER)))
    got = _items(_write(tmp_path / "other.json", _doc(order)))

    def same(items: list) -> list:  # the sources differ only in the file name
        return [repr(item).replace("other.json", "coco.json") for item in items]

    assert same(got) == same(expected)
    images = [item for _, item in expected if isinstance(item, RawImage)]
    assert len(images) == 30 and sum(len(i.boxes) for i in images) == 60
    assert images[3].boxes[0].source.endswith("coco.json: annotations[3] (id 103)")
    assert images[3].boxes[0].class_name == "dog"


def test_orphans_and_malformed_boxes_are_named_after_a_single_pass(tmp_path):
    doc = _doc(ANNOTATIONS_FIRST, n=2)  # the annotations come before the images they name
    doc["annotations"] += [
        {"id": 900, "image_id": 7.0, "category_id": 1, "bbox": [1, 2, 3, 4]},
        {"id": 901, "image_id": 1, "category_id": 1, "bbox": "1234"},
        {"id": 902, "image_id": 1, "category_id": 3, "bbox": [1, 2, 3, 4]},
    ]
    rejects = [item for item in CocoSource(_write(tmp_path / "a.json", doc)) if isinstance(item, Reject)]
    assert sorted((r.reason.value, r.detail, r.image) for r in rejects) == [
        (
            "box_malformed",
            "bbox/category_id unusable: ValueError(\"bbox '1234' is not [x, y, width, height]\")",
            "1.jpg",
        ),
        ("box_orphan", "image_id 7.0 is not in 'images'", ""),
    ]
    images = {item.key: item for item in CocoSource(str(tmp_path / "a.json")) if isinstance(item, RawImage)}
    assert [(b.class_name, b.class_ref) for b in images["1"].boxes][-1] == (None, "category_id 3")


def test_categories_neither_at_the_start_nor_at_the_end_take_a_whole_read(tmp_path, monkeypatch):
    monkeypatch.setattr(coco, "KEY_CHECK_BYTES", 0)
    monkeypatch.setattr(coco, "TAIL_BYTES", 20)  # the categories lie further from the end than this
    header = read_header(_write(tmp_path / "a.json", _doc(("info", "annotations", "images", "categories"))))
    assert [c["name"] for c in header.categories] == ["cat", "dog"] and header.all_keys


def test_a_tail_full_of_nested_categories_keys_falls_back_to_a_whole_read(tmp_path, monkeypatch):
    monkeypatch.setattr(coco, "KEY_CHECK_BYTES", 0)
    doc = _doc(("info", "images", "categories", "annotations"))
    for ann in doc["annotations"]:
        ann["categories"] = ["not the top level"]  # a tool's own key: each one is a candidate from the end
    header = read_header(_write(tmp_path / "a.json", doc))
    assert [c["name"] for c in header.categories] == ["cat", "dog"]


@pytest.mark.parametrize("frozen", [False, True])
def test_a_parse_leaves_the_garbage_collector_as_it_found_it(tmp_path, frozen):
    """On again afterwards, and objects frozen before (a local worker freezes its modules) still frozen."""
    path = _write(tmp_path / "a.json", _doc(COCO_ORDER))
    gc.collect()
    if frozen:
        gc.freeze()
    try:
        before = gc.get_freeze_count()
        assert (before > 0) == frozen
        items = list(CocoSource(path))
        assert len(items) == 30 and gc.isenabled()
        # neither thawed nor frozen again (a frozen object that another thread frees leaves the count)
        assert 0 < gc.get_freeze_count() <= before if frozen else gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()
