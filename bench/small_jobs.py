"""What a new user's first job costs: wall time from command start to exit and the largest process's peak RSS.

    .venv/bin/python -m bench.small_jobs [--baseline-commit REV] [--repeats 5]

Three small datasets made from the demo generator (cached in ``build/bench-small``):
one image (COCO), a 12-image CVAT for images 1.1 export and a 3-image LabelMe
folder. Each job runs ``python -m beam_jobs.prepare`` (what ``boxweight prepare``
runs) with the default ``--pixel-check decode``, from this checkout and, with
``--baseline-commit``, from a ``git worktree`` of that commit, interleaved, each in
a fresh child process so the peak is that job's alone. Medians of the rounds;
the one-image job's time is the fixed cost. Shards and ``rejects.jsonl`` must
be byte-identical between the checkouts (the run fails otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
from xml.sax.saxutils import quoteattr

from bench.checkouts import interleaved, print_rows, run_job, with_baseline


def _demo(root: str, images: int) -> dict:
    from boxweight.demo_data import generate

    generate(root, num_images=images, image_size=128, seed=5)
    with open(os.path.join(root, "annotations.json")) as f:
        return json.load(f)  # type: ignore[no-any-return]


def make_datasets(root: str) -> dict[str, str]:
    """{name: --input path}: one image (COCO), 12 images (CVAT XML), 3 images (LabelMe), made once."""
    found = {
        "1 image, COCO": os.path.join(root, "one", "annotations.json"),
        "12 images, CVAT": os.path.join(root, "cvat"),
        "3 images, LabelMe": os.path.join(root, "labelme"),
    }
    if all(os.path.exists(p) for p in found.values()):
        return found
    shutil.rmtree(root, ignore_errors=True)
    _demo(os.path.join(root, "one"), 1)
    doc = _demo(os.path.join(root, "cvat-source"), 12)
    names = {c["id"]: c["name"] for c in doc["categories"]}
    lines = ['<?xml version="1.0" encoding="utf-8"?>', "<annotations>", "  <version>1.1</version>"]
    os.makedirs(os.path.join(root, "cvat", "images"))
    for image in doc["images"]:
        shutil.copy(
            os.path.join(root, "cvat-source", image["file_name"]), os.path.join(root, "cvat", image["file_name"])
        )
        lines.append(
            f'  <image id="{image["id"]}" name={quoteattr(os.path.basename(image["file_name"]))} width="{image["width"]}" height="{image["height"]}">'
        )
        for a in (a for a in doc["annotations"] if a["image_id"] == image["id"]):
            x, y, w, h = a["bbox"]
            lines.append(
                f'    <box label={quoteattr(names[a["category_id"]])} occluded="0" xtl="{x}" ytl="{y}" xbr="{x + w}" ybr="{y + h}"></box>'
            )
        lines.append("  </image>")
    lines.append("</annotations>")
    with open(os.path.join(root, "cvat", "annotations.xml"), "w") as f:
        f.write("\n".join(lines) + "\n")
    os.makedirs(os.path.join(root, "labelme"))
    for image in doc["images"][:3]:
        base = os.path.basename(image["file_name"])
        shutil.copy(os.path.join(root, "cvat-source", image["file_name"]), os.path.join(root, "labelme", base))
        shapes = [
            {
                "label": names[a["category_id"]],
                "points": [[a["bbox"][0], a["bbox"][1]], [a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]],
                "shape_type": "rectangle",
                "group_id": None,
                "flags": {},
            }
            for a in doc["annotations"]
            if a["image_id"] == image["id"]
        ]
        page = {
            "version": "5.4.1",
            "flags": {},
            "shapes": shapes,
            "imagePath": base,
            "imageData": None,
            "imageHeight": image["height"],
            "imageWidth": image["width"],
        }
        with open(os.path.join(root, "labelme", base.rsplit(".", 1)[0] + ".json"), "w") as f:
            json.dump(page, f)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds; medians are reported")
    parser.add_argument("--baseline-commit", default=None, help="also run the jobs from this commit, interleaved")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        checkout, source, out = args.child
        print(json.dumps(run_job(checkout, ["--input", source, "--output", out, "--overwrite"])))
        return
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    datasets = make_datasets(os.path.join(here, "build", "bench-small"))
    work = tempfile.mkdtemp(prefix="bench-small-jobs-")
    try:
        with with_baseline(here, work, args.baseline_commit) as checkouts:
            rows = interleaved("bench.small_jobs", checkouts, datasets, args.repeats, work, here)
        print(
            f"`boxweight prepare` (--pixel-check decode), command start to exit, median of {args.repeats} interleaved runs, {os.cpu_count()} cores"
        )
        print_rows(rows, "dataset", digits=2, peak=statistics.median)
        one = [statistics.median(r["seconds"] for r in rows[("1 image, COCO", name)]) for name in checkouts]
        print(
            "fixed cost (1 image, command start to exit): "
            + ", ".join(f"{name} {s:.2f} s" for name, s in zip(checkouts, one))
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
