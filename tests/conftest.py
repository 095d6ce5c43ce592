from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def shared(name: str) -> Path:
    path = SHARED / name
    if not path.exists():
        pytest.fail(f"shared dataset {path} is missing; tests expect ../shared/datasets beside the repo")
    return path


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from boxweight.demo_data import generate

    out = tmp_path_factory.mktemp("demo")
    generate(str(out), num_images=240, image_size=96, seed=7)
    return out


def read_dataset(path, **kw):
    """(records, rejects, accounting) of a dataset through ``validation.read``; the accounting must balance."""
    import validation
    from schemas.annotations import ImageRecord, Reject

    acc = validation.Accounting()
    items = list(validation.read(str(path), accounting=acc, **kw))
    assert acc.balanced()
    return [r for r in items if isinstance(r, ImageRecord)], [r for r in items if isinstance(r, Reject)], acc


# Test data shared by several test modules (generated, no committed files).


def jpeg_bytes(size=(64, 48), color=(10, 200, 30), exif_orientation=None) -> bytes:
    """A small JPEG with a light marker in its top-left corner (to see a rotation or a flip), optionally EXIF-rotated."""
    img = Image.new("RGB", size, color)
    img.paste((250, 250, 250), (0, 0, size[0] // 4, size[1] // 4))  # a marker in the top-left corner
    buf = io.BytesIO()
    kwargs = {}
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kwargs["exif"] = exif.tobytes()
    img.save(buf, format="JPEG", quality=95, **kwargs)
    return buf.getvalue()


def png_bytes(size=(64, 48)) -> bytes:
    """A small one-colour PNG."""
    buf = io.BytesIO()
    Image.new("RGB", size, (1, 2, 3)).save(buf, format="PNG")
    return buf.getvalue()


def voc_xml(filename="a.jpg", name="thing", extra=""):
    """One VOC annotation of one difficult box; ``extra`` is appended inside it."""
    return f"""<annotation><filename>{filename}</filename><size><width>0</width><height>0</height></size>
    <object><name>{name}</name><difficult>1</difficult><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>20</xmax><ymax>30</ymax></bndbox></object>{extra}</annotation>"""


#: The classes of :func:`bccd_like`.
BCCD_CLASSES = ("Platelets", "RBC", "WBC")


def voc_xml_boxes(name: str, boxes: list[tuple[str, int, int, int, int]]) -> str:
    """One VOC annotation of an image ``name``.jpg of 64x48 with ``boxes`` (class, x0, y0, x1, y1)."""
    objects = "".join(
        f"<object><name>{c}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for c, x0, y0, x1, y1 in boxes
    )
    return f"<annotation><filename>{name}.jpg</filename><size><width>64</width><height>48</height></size>{objects}</annotation>"


def bccd_like(root: Path, n: int = 12, image_sets: dict[str, list[int]] | None = None) -> list[str]:
    """``Annotations/``, ``JPEGImages/`` and optional ``ImageSets/Main/<name>.txt`` lists, as BCCD ships."""
    ids = [f"BloodImage_{i:05d}" for i in range(n)]
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    for i, image_id in enumerate(ids):
        (root / "JPEGImages" / f"{image_id}.jpg").write_bytes(jpeg_bytes())
        boxes = [(BCCD_CLASSES[(i + k) % 3], 2 + k, 2, 20 + k, 20) for k in range(1 + i % 3)]
        (root / "Annotations" / f"{image_id}.xml").write_text(voc_xml_boxes(image_id, boxes))
    if image_sets is not None:
        main = root / "ImageSets" / "Main"
        main.mkdir(parents=True)
        for name, members in image_sets.items():
            (main / f"{name}.txt").write_text("".join(f"{ids[i]}\n" for i in members))
        (main / "RBC_train.txt").write_text("".join(f"{ids[i]}  1\n" for i in image_sets.get("train", [])))  # a per-class list
    return ids
