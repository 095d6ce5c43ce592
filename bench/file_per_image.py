"""Datasets with one annotation file per image (YOLO txt, Pascal VOC XML): the job against an earlier commit.

    .venv/bin/python -m bench.file_per_image --baseline-commit REV [--images 50000] [--unique 10000] [--repeats 2]

Converts ``bench.prepare_job``'s generated COCO dataset (640x480 JPEGs; with
``--unique``, hard links beyond that many) into a YOLO and a VOC tree beside
it, cached in ``build/``: the same images and boxes, one label or XML file
per image. Then runs ``boxweight prepare --pixel-check header`` on each, from
this checkout and from ``--baseline-commit`` (a ``git worktree``),
interleaved, each run a fresh child process, and prints the median seconds
and the largest process's peak RSS side by side. The shards and
``rejects.jsonl`` of the two checkouts must be byte-identical; the run fails
otherwise. Without ``--baseline-commit`` only this checkout runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile

from bench.checkouts import interleaved, print_rows, run_job, with_baseline
from bench.prepare_job import make_dataset


def _load(ann_path: str) -> tuple[dict, list[dict], dict[int, list[dict]]]:
    with open(ann_path) as f:
        doc = json.load(f)
    boxes: dict[int, list[dict]] = {}
    for a in doc["annotations"]:
        boxes.setdefault(a["image_id"], []).append(a)
    return {c["id"]: c["name"] for c in doc["categories"]}, doc["images"], boxes


def _link(src: str, dst: str) -> None:
    if not os.path.exists(dst):
        os.link(src, dst)


def make_yolo(ann_path: str, root: str) -> str:
    """``root/images``, ``root/labels`` and ``data.yaml`` with the COCO dataset's images and boxes."""
    if os.path.exists(os.path.join(root, "data.yaml")):
        return root
    names, images, boxes = _load(ann_path)
    ids = sorted(names)
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    os.makedirs(os.path.join(root, "labels"), exist_ok=True)
    for im in images:
        stem = os.path.splitext(os.path.basename(im["file_name"]))[0]
        _link(os.path.join(os.path.dirname(ann_path), im["file_name"]), os.path.join(root, "images", stem + ".jpg"))
        w, h = im["width"], im["height"]
        lines = [
            f"{ids.index(a['category_id'])} {(x + bw / 2) / w:.6f} {(y + bh / 2) / h:.6f} {bw / w:.6f} {bh / h:.6f}"
            for a in boxes.get(im["id"], [])
            for x, y, bw, bh in [a["bbox"]]
        ]
        with open(os.path.join(root, "labels", stem + ".txt"), "w") as f:
            f.write("".join(line + "\n" for line in lines))
    with open(os.path.join(root, "data.yaml.tmp"), "w") as f:
        f.write("names: [" + ", ".join(names[i] for i in ids) + "]\n")
    os.replace(os.path.join(root, "data.yaml.tmp"), os.path.join(root, "data.yaml"))
    return root


def make_voc(ann_path: str, root: str) -> str:
    """``root/Annotations`` (one XML per image) and ``root/JPEGImages`` with the COCO dataset's images and boxes."""
    done = os.path.join(root, ".complete")
    if os.path.exists(done):
        return root
    names, images, boxes = _load(ann_path)
    os.makedirs(os.path.join(root, "Annotations"), exist_ok=True)
    os.makedirs(os.path.join(root, "JPEGImages"), exist_ok=True)
    for im in images:
        stem = os.path.splitext(os.path.basename(im["file_name"]))[0]
        _link(os.path.join(os.path.dirname(ann_path), im["file_name"]), os.path.join(root, "JPEGImages", stem + ".jpg"))
        objects = "".join(
            f"<object><name>{names[a['category_id']]}</name><difficult>0</difficult><bndbox>"
            f"<xmin>{x}</xmin><ymin>{y}</ymin><xmax>{x + bw}</xmax><ymax>{y + bh}</ymax></bndbox></object>"
            for a in boxes.get(im["id"], [])
            for x, y, bw, bh in [a["bbox"]]
        )
        with open(os.path.join(root, "Annotations", stem + ".xml"), "w") as f:
            f.write(
                f"<annotation><filename>{stem}.jpg</filename><size><width>{im['width']}</width>"
                f"<height>{im['height']}</height><depth>3</depth></size>{objects}</annotation>"
            )
    open(done, "w").close()
    return root


def _child(checkout: str, data: str, out: str) -> None:
    """One job from ``checkout`` in a child process; prints its wall time and the largest process's peak RSS."""
    argv = ["--input", data, "--output", out, "--num-shards=20", "--val-fraction=0", "--pixel-check=header"]
    print(json.dumps(run_job(checkout, argv)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument(
        "--unique", type=int, default=10_000, help="generate only this many images; the rest are hard links"
    )
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds; medians are reported")
    parser.add_argument("--baseline-commit", default=None, help="also run the job from this commit, interleaved")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    coco = make_dataset(
        os.path.join(here, "build", f"bench-coco-{args.images}-unique{args.unique}"), args.images, 6, args.unique
    )
    datasets = {
        "yolo": make_yolo(coco, os.path.join(here, "build", f"bench-yolo-{args.images}-unique{args.unique}")),
        "voc": make_voc(coco, os.path.join(here, "build", f"bench-voc-{args.images}-unique{args.unique}")),
    }
    work = tempfile.mkdtemp(prefix="bench-file-per-image-")
    try:
        with with_baseline(here, work, args.baseline_commit) as checkouts:
            rows = interleaved("bench.file_per_image", checkouts, datasets, args.repeats, work, here)
        print(
            f"{args.images} images ({args.unique} distinct files), --pixel-check header, median of {args.repeats} interleaved runs"
        )
        print_rows(rows, "format")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
