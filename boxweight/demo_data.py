"""The embedded demo dataset: simple shapes on noisy backgrounds, in COCO JSON.

Deterministic by seed (same seed, byte-identical files). Class frequencies
follow a Zipf law with exponent 2 over six classes, so the rarest class has
1/sum(1/k^2, k=1..6) / 36 = 1.86% of the boxes; counts are exact (rounded
shares of the total, then shuffled), not sampled, so the share holds at any
size. About 5% of the images have no box (negatives).
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "ring", "star")
ZIPF_EXPONENT = 2.0
COLOURS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("red", (215, 35, 35)), ("green", (35, 190, 60)), ("blue", (45, 75, 225)), ("yellow", (235, 215, 30)), ("magenta", (210, 40, 200)),
)
"""The many-class set's colours: each class is a colour and a shape, on a grey background."""


def class_names(num_classes: int = len(CLASSES)) -> tuple[str, ...]:
    """The six shapes, or for more classes colour-shape pairs (``red-circle``, ...), at most 30."""
    if num_classes <= len(CLASSES):
        return CLASSES[:num_classes]
    if num_classes > len(CLASSES) * len(COLOURS):
        raise ValueError(f"at most {len(CLASSES) * len(COLOURS)} classes, got {num_classes}")
    return tuple(f"{colour}-{shape}" for colour, _ in COLOURS for shape in CLASSES)[:num_classes]


def class_counts(total_boxes: int, num_classes: int = len(CLASSES), exponent: float = ZIPF_EXPONENT) -> list[int]:
    """Exact Zipf counts summing to ``total_boxes`` (largest remainder rounding)."""
    shares = [1.0 / (k**exponent) for k in range(1, num_classes + 1)]
    norm = sum(shares)
    raw = [total_boxes * s / norm for s in shares]
    counts = [math.floor(r) for r in raw]
    for i in sorted(range(num_classes), key=lambda i: counts[i] - raw[i])[: total_boxes - sum(counts)]:
        counts[i] += 1
    return counts


def _draw_shape(draw: ImageDraw.ImageDraw, name: str, box: Sequence[int], color: tuple[int, int, int]) -> None:
    x0, y0, x1, y1 = box
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    if name == "circle":
        draw.ellipse(box, fill=color)
    elif name == "square":
        draw.rectangle(box, fill=color)
    elif name == "triangle":
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=color)
    elif name == "cross":
        t = max(2, (x1 - x0) // 4)
        draw.rectangle((cx - t, y0, cx + t, y1), fill=color)
        draw.rectangle((x0, cy - t, x1, cy + t), fill=color)
    elif name == "ring":
        draw.ellipse(box, outline=color, width=max(2, (x1 - x0) // 6))
    elif name == "star":
        pts = []
        for i in range(10):
            rad = r if i % 2 == 0 else r * 0.45
            a = math.pi / 2 + i * math.pi / 5
            pts.append((cx + rad * math.cos(a), cy - rad * math.sin(a)))
        draw.polygon(pts, fill=color)
    else:  # pragma: no cover - CLASSES is closed
        raise ValueError(name)


def _iou(a: Sequence[int], b: Sequence[int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def generate(out_dir: str, num_images: int = 2000, image_size: int = 128, seed: int = 0, num_classes: int = len(CLASSES),
             exponent: float = ZIPF_EXPONENT) -> dict[str, int]:
    """Write ``out_dir/images/*.jpg`` and ``out_dir/annotations.json``.

    Args:
        out_dir: created if missing; existing files are overwritten.
        num_images: images to draw.
        image_size: side of the square images, pixels.
        seed: the only source of randomness.
        num_classes: 6 (the shapes, drawn in a colour far from the background),
            fewer, or up to 30 colour-shape classes (``class_names``) on grey
            backgrounds, a many-class long tail.
        exponent: of the Zipf law over the classes.

    Returns:
        class name -> boxes written.
    """
    rng = np.random.default_rng(seed)
    per_image = rng.choice([0, 1, 2, 3, 4], size=num_images, p=[0.05, 0.3, 0.3, 0.2, 0.15])
    names = class_names(num_classes)
    coloured = num_classes > len(CLASSES)
    labels = [c for c, n in zip(names, class_counts(int(per_image.sum()), num_classes, exponent)) for _ in range(n)]
    rng.shuffle(labels)
    os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    cursor = 0
    for image_id in range(num_images):
        base = rng.integers(40, 200, size=3)
        if coloured:  # grey, so that the colour names the class
            base = np.full(3, base[0])
        noise = rng.normal(0, 18, size=(image_size, image_size, 3))
        pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
        img = Image.fromarray(pixels, "RGB")
        draw = ImageDraw.Draw(img)
        placed: list[list[int]] = []
        for _ in range(int(per_image[image_id])):
            name = labels[cursor]
            cursor += 1
            for _attempt in range(20):
                side = int(rng.integers(image_size // 8, image_size // 3))
                x0 = int(rng.integers(0, image_size - side))
                y0 = int(rng.integers(0, image_size - side))
                box = [x0, y0, x0 + side, y0 + side]
                if all(_iou(box, other) < 0.2 for other in placed):
                    break
            placed.append(box)
            jitter = rng.integers(-30, 30, size=3)
            if coloured:
                colour, shape = name.split("-")
                color = tuple(int(v) for v in np.clip(np.array(dict(COLOURS)[colour]) + jitter // 2, 0, 255))
            else:
                color, shape = tuple(int(v) for v in (255 - base + jitter) % 256), name
            _draw_shape(draw, shape, box, color)  # type: ignore[arg-type]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": names.index(name) + 1,
                    "bbox": [box[0], box[1], side, side],
                    "area": side * side,
                    "iscrowd": 0,
                }
            )
        file_name = f"images/{image_id:06d}.jpg"
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        with open(os.path.join(out_dir, file_name), "wb") as f:
            f.write(buf.getvalue())
        images.append({"id": image_id, "file_name": file_name, "width": image_size, "height": image_size})
    doc = {
        "info": {"description": f"boxweight demo dataset, seed {seed}", "version": "1"},
        "categories": [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(names)],
        "images": images,
        "annotations": annotations,
    }
    with open(os.path.join(out_dir, "annotations.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, sort_keys=True, separators=(",", ":"))
    counts: dict[str, int] = {}
    for ann in annotations:
        name = names[ann["category_id"] - 1]
        counts[name] = counts.get(name, 0) + 1
    return counts
