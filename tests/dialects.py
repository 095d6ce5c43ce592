"""Small generated datasets in the dialects real exports use; the dialect tests build them with these.

``python -m tests.dialects OUT`` writes every one of them under ``OUT/`` to
look at. Each function writes one dataset and returns what a correct reader
must find, so the tests compare against values computed here, by hand.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

from PIL import Image

W, H = 64, 48


def jpeg(color: tuple[int, int, int] = (10, 200, 30), exif_thumbnail: bool = False) -> bytes:
    img = Image.new("RGB", (W, H), color)
    out = io.BytesIO()
    kwargs = {}
    if exif_thumbnail:  # an EXIF block that holds a whole JPEG, end marker included, as cameras write
        thumb = io.BytesIO()
        Image.new("RGB", (8, 8), (1, 2, 3)).save(thumb, format="JPEG")
        exif = Image.Exif()
        exif[0x010E] = "camera"
        kwargs["exif"] = exif.tobytes() + thumb.getvalue()
    img.save(out, format="JPEG", quality=90, **kwargs)
    return out.getvalue()


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (W, H), (5, 6, 7)).save(out, format="PNG")
    return out.getvalue()


def yolo_segmentation(root: Path) -> dict[str, list[tuple[str, float, float, float, float]]]:
    """Ultralytics/Roboflow ``-seg`` export: polygon lines, one class id written as ``1.0``.

    Returns the expected boxes per image stem: (class, xmin, ymin, xmax, ymax), normalized.
    """
    (root / "train" / "images").mkdir(parents=True)
    (root / "train" / "labels").mkdir(parents=True)
    (root / "data.yaml").write_text("train: ../train/images\nval: ../train/images\nnc: 2\nnames: ['fish', 'shark']\n")
    lines = {
        "a": ["0 0.1 0.2 0.4 0.2 0.3 0.6", "1.0 0.5 0.5 0.9 0.5 0.9 0.8 0.5 0.8"],
        "b": ["1 0.5 0.5 0.2 0.2"],  # a plain box beside polygons
    }
    for stem, text in lines.items():
        (root / "train" / "images" / f"{stem}.jpg").write_bytes(jpeg())
        (root / "train" / "labels" / f"{stem}.txt").write_text("\n".join(text) + "\n")
    return {
        "a": [("fish", 0.1, 0.2, 0.4, 0.6), ("shark", 0.5, 0.5, 0.9, 0.8)],
        "b": [("shark", 0.4, 0.4, 0.6, 0.6)],
    }


def csv_tutorial_folder(root: Path) -> dict[str, str]:
    """The raccoon tutorial's ``data/``: train and test CSVs plus the full CSV that repeats them.

    Returns image -> the split it must land in.
    """
    header = "filename,width,height,class,xmin,ymin,xmax,ymax\n"
    (root / "images").mkdir(parents=True)
    splits = {"raccoon-1.jpg": "train", "raccoon-2.jpg": "train", "raccoon-3.jpg": "test"}
    rows = {name: f"{name},{W},{H},raccoon,2,3,30,40\n" for name in splits}
    for name in splits:
        (root / "images" / name).write_bytes(jpeg())
    (root / "train_labels.csv").write_text(header + rows["raccoon-1.jpg"] + rows["raccoon-2.jpg"])
    (root / "test_labels.csv").write_text(header + rows["raccoon-3.jpg"])
    (root / "raccoon_labels.csv").write_text(header + "".join(rows.values()))
    return splits


def voc_annotations_images(root: Path) -> None:
    """``annotations/`` + ``images/`` siblings (Kaggle layouts), one XML whose image sits in ``extra/``,
    one ``<filename>`` written as a Windows path."""
    (root / "annotations").mkdir(parents=True)
    (root / "images").mkdir()
    (root / "extra").mkdir()
    for stem, filename in (("a", "a.jpg"), ("b", "C:\\Users\\me\\Pictures\\b.jpg"), ("c", "c.png")):
        (root / "annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{filename}</filename><object><name>cell</name>"
            "<bndbox><xmin>2</xmin><ymin>2</ymin><xmax>20</xmax><ymax>20</ymax></bndbox></object></annotation>"
        )
    (root / "images" / "a.jpg").write_bytes(jpeg())
    (root / "images" / "b.jpg").write_bytes(jpeg())
    (root / "extra" / "c.png").write_bytes(png())  # not where VOC layouts keep images


def coco_absolute_paths(root: Path) -> None:
    """A Colab export: ``file_name`` is where the images were on the exporting machine."""
    (root / "imgs").mkdir(parents=True)
    (root / "imgs" / "x.jpg").write_bytes(jpeg())
    (root / "imgs" / "y.jpg").write_bytes(jpeg())
    doc = {
        "images": [{"id": 1, "file_name": "/content/drive/MyDrive/data/x.jpg"}, {"id": 2, "file_name": "C:\\data\\y.jpg"}],
        "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [1, 1, 10, 10]} for i in (1, 2)],
        "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
    }
    (root / "export.json").write_text(json.dumps(doc))


MSCOCO_LABEL_MAP = """item {
  name: "/m/01g317"
  id: 1
  display_name: "person"
}
item { name: "car" id: 3 }
item { name: "toothbrush" id: 90 }
"""


def labelimg_yolo(root: Path) -> None:
    """labelImg's YOLO output: ``classes.txt`` among the label files."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "images" / "p.jpg").write_bytes(jpeg())
    (root / "labels" / "p.txt").write_text("1 0.5 0.5 0.25 0.25\n")
    (root / "labels" / "classes.txt").write_text("dog\ncat\n")


def labelme_folder(root: Path) -> dict[str, list[tuple[str, float, float, float, float]]]:
    """LabelMe 5 files: rectangle, polygon, circle, a point; one image only embedded (``imageData``).

    Returns the expected boxes (class, corners in pixels) per image.
    """
    import base64

    (root / "train").mkdir(parents=True)
    (root / "train" / "one.jpg").write_bytes(jpeg())
    shapes = [
        {"label": "cat", "points": [[30, 20], [5, 4]], "shape_type": "rectangle"},  # corners in either order
        {"label": "dog", "points": [[10, 10], [40, 12], [25, 30]], "shape_type": "polygon"},
        {"label": "cat", "points": [[20, 20], [23, 24]], "shape_type": "circle"},  # radius 5
        {"label": "dog", "points": [[3, 3]], "shape_type": "point"},
    ]
    doc = {"version": "5.2.1", "flags": {}, "shapes": shapes, "imagePath": "..\\train\\one.jpg", "imageData": None, "imageHeight": H, "imageWidth": W}
    (root / "train" / "one.json").write_text(json.dumps(doc))
    embedded = {"version": "5.2.1", "shapes": [shapes[0]], "imagePath": "gone.jpg", "imageData": base64.b64encode(jpeg()).decode(), "imageHeight": H, "imageWidth": W}
    (root / "train" / "two.json").write_text(json.dumps(embedded))
    return {
        "one.jpg": [("cat", 5, 4, 30, 20), ("dog", 10, 10, 40, 30), ("cat", 15, 15, 25, 25)],
        "gone.jpg": [("cat", 5, 4, 30, 20)],
    }


def labelme_objects(root: Path) -> dict[str, list[tuple[str, float, float, float, float]]]:
    """LabelMe as its own examples use it (``examples/instance_segmentation``): an object drawn in pieces
    (same label and ``group_id``), a shape of another label with the same ``group_id`` (another object),
    an ungrouped shape, an ``__ignore__`` region and a ``mask`` shape (LabelMe 5.3+: its two points are the
    rectangle its bitmap fills). Returns the expected boxes (class, corners in pixels) per image.
    """
    import base64

    root.mkdir(parents=True)
    (root / "objects.jpg").write_bytes(jpeg())
    shapes = [
        {"label": "sofa", "points": [[10, 10], [20, 12], [15, 20]], "group_id": 0, "shape_type": "polygon"},
        {"label": "sofa", "points": [[30, 5], [40, 25]], "group_id": 0, "shape_type": "rectangle"},
        {"label": "person", "points": [[2, 2], [8, 40]], "group_id": 0, "shape_type": "rectangle"},
        {"label": "sofa", "points": [[12, 30], [17, 45]], "group_id": 0, "shape_type": "rectangle"},  # a sliver of the first sofa
        {"label": "sofa", "points": [[45, 5], [60, 20]], "group_id": None, "shape_type": "rectangle"},
        {"label": "__ignore__", "points": [[0, 0], [5, 5]], "group_id": None, "shape_type": "rectangle"},
        {"label": "person", "points": [[50, 30], [62, 46]], "group_id": None, "shape_type": "mask",
         "mask": base64.b64encode(png()).decode()},
    ]
    doc = {"version": "5.5.0", "flags": {}, "shapes": shapes, "imagePath": "objects.jpg", "imageData": None, "imageHeight": H, "imageWidth": W}
    (root / "objects.json").write_text(json.dumps(doc))
    return {"objects.jpg": [("sofa", 10, 5, 40, 45), ("person", 2, 2, 8, 40), ("sofa", 45, 5, 60, 20), ("person", 50, 30, 62, 46)]}


CVAT_XML = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta><task><name>t</name><labels>
    <label><name>car</name><attributes></attributes></label>
    <label><name>person</name><attributes></attributes></label>
  </labels></task></meta>
  <image id="0" name="f0.jpg" width="64" height="48" subset="Train">
    <box label="car" occluded="1" xtl="1.5" ytl="2" xbr="20" ybr="30" z_order="0"><attribute name="color">red</attribute></box>
    <polygon label="person" occluded="0" points="10,5;30,8.5;12,40" z_order="0"></polygon>
    <tag label="car"></tag>
  </image>
  <image id="1" name="f1.jpg" width="64" height="48" subset="Validation">
    <ellipse label="person" cx="30" cy="20" rx="5" ry="4"></ellipse>
    <polyline label="car" points="1,1;5,5"></polyline>
    <mask label="car" rle="3, 4" left="2" top="3" width="10" height="6"></mask>
  </image>
</annotations>
"""


def cvat_export(root: Path) -> dict[str, tuple[str, list[tuple[str, float, float, float, float]]]]:
    """CVAT for images 1.1: ``annotations.xml`` and ``images/``. Returns image -> (split, boxes in pixels)."""
    (root / "images").mkdir(parents=True)
    for name in ("f0.jpg", "f1.jpg"):
        (root / "images" / name).write_bytes(jpeg())
    (root / "annotations.xml").write_text(CVAT_XML)
    return {
        "f0.jpg": ("train", [("car", 1.5, 2, 20, 30), ("person", 10, 5, 30, 40)]),
        "f1.jpg": ("val", [("person", 25, 16, 35, 24), ("car", 2, 3, 12, 9)]),
    }


def main(out: str) -> None:
    root = Path(out)
    for name, make in (
        ("yolo-seg", yolo_segmentation),
        ("csv-tutorial", csv_tutorial_folder),
        ("voc-annotations-images", voc_annotations_images),
        ("coco-absolute", coco_absolute_paths),
        ("labelimg-yolo", labelimg_yolo),
        ("labelme", labelme_folder),
        ("labelme-objects", labelme_objects),
        ("cvat", cvat_export),
    ):
        make(root / name)
    (root / "mscoco_label_map.pbtxt").write_text(MSCOCO_LABEL_MAP)
    print(f"wrote the dialect datasets under {root}")


if __name__ == "__main__":
    main(sys.argv[1])
