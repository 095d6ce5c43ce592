"""A dataset whose boxes are mostly dropped: the job's time and peak memory with a million rejects.

    python -m bench.rejects_scale --boxes 1000000 [--baseline-commit REV]

Writes a COCO file of ``--images`` small JPEGs whose boxes are nearly all
degenerate (zero width), so each becomes one line of ``rejects.jsonl``, and runs
``boxweight prepare`` on it with the local runner. With ``--baseline-commit``
the same job also runs from that commit (a ``git worktree``), interleaved, for
figures side by side; ``rejects.jsonl`` of both must be byte-identical.

Peak RSS is the largest single process of the job (the launcher or a worker),
from ``getrusage(RUSAGE_CHILDREN)`` of a fresh child per run.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile

from PIL import Image

from bench.checkouts import run_job, with_baseline


def make_dataset(root: str, images: int, boxes: int) -> str:
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    entries, annotations = [], []
    for i in range(images):
        buf = io.BytesIO()
        Image.new("RGB", (64, 48), (i % 256, (i // 256) % 256, 90)).save(buf, format="JPEG", quality=80)
        name = f"images/{i:06d}.jpg"
        with open(os.path.join(root, name), "wb") as f:
            f.write(buf.getvalue())
        entries.append({"id": i, "file_name": name, "width": 64, "height": 48})
    for k in range(boxes):
        good = k % 100 == 0  # 1 box in 100 is kept, so every image has classes and weights
        annotations.append(
            {
                "id": k,
                "image_id": k % images,
                "category_id": 1 + k % 3,
                "bbox": [4, 4, 20 if good else 0, 10],
                "area": 200,
                "iscrowd": 0,
            }
        )
    categories = [{"id": c, "name": f"class{c}"} for c in (1, 2, 3)]
    path = os.path.join(root, "annotations.json")
    with open(path, "w") as f:
        json.dump({"images": entries, "annotations": annotations, "categories": categories}, f)
    return path


def _child(checkout: str, ann: str, out: str) -> None:
    """Run one job from ``checkout`` as a child process; print its wall time and peak RSS."""
    print(json.dumps(run_job(checkout, ["--input", ann, "--output", out, "--overwrite"])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--boxes", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--baseline-commit", default=None, help="also run the job from this commit, interleaved")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    work = tempfile.mkdtemp(prefix="bench-rejects-")
    try:
        ann = make_dataset(os.path.join(work, "data"), args.images, args.boxes)
        print(f"dataset: {args.images} images, {args.boxes} boxes ({os.path.getsize(ann) / 1e6:.0f} MB of JSON)")
        with with_baseline(here, work, args.baseline_commit) as checkouts:
            rows: dict[str, list[dict]] = {name: [] for name in checkouts}
            digests = {}
            for _ in range(args.repeats):
                for name, checkout in checkouts.items():
                    out = os.path.join(work, "out-" + hashlib.sha1(name.encode()).hexdigest()[:8])
                    line = subprocess.run(
                        [sys.executable, "-m", "bench.rejects_scale", "--child", checkout, ann, out],
                        cwd=here,
                        capture_output=True,
                        text=True,
                        check=True,
                    ).stdout
                    rows[name].append(json.loads(line))
                    with open(os.path.join(out, "rejects.jsonl"), "rb") as f:
                        digests[name] = (hashlib.sha256(f.read()).hexdigest(), os.path.getsize(f.name))
                    shutil.rmtree(out)
        for name, runs in rows.items():
            secs = sorted(r["seconds"] for r in runs)
            rss = max(r["peak_mb"] for r in runs)
            print(
                f"{name:<30} {secs[len(secs) // 2]:7.1f} s (median of {len(secs)})  peak RSS {rss:6.0f} MB  rejects.jsonl {digests[name][1] / 1e6:.0f} MB"
            )
        if len(set(d for d, _ in digests.values())) != 1:
            sys.exit("rejects.jsonl differs between the checkouts")
        print("rejects.jsonl: byte-identical" if len(digests) > 1 else "")
    finally:
        shutil.rmtree(work, ignore_errors=True)

if __name__ == "__main__":
    main()
