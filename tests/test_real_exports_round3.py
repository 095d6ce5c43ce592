"""Real exports, round 3: LabelMe objects as LabelMe means them, the val carve said out loud, training that
refuses before it trains. Each case run as a user types it (a subprocess, exit code and lines checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests import dialects

BOXWEIGHT = str(Path(sys.executable).with_name("boxweight"))
IN_PROCESS = ["--runner=DirectRunner", "--direct_running_mode=in_memory"]


def _run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BOXWEIGHT, *args], capture_output=True, text=True, timeout=timeout)


def _stats(out: Path) -> dict:
    return json.loads((out / "stats.json").read_text())


# 1-3. LabelMe: group_id, __ignore__, mask
def test_labelme_pieces_ignore_regions_and_masks_through_the_job(tmp_path):
    dialects.labelme_objects(tmp_path / "lm")
    done = _run("prepare", "--input", str(tmp_path / "lm"), "--output", str(tmp_path / "o"), "--val-fraction=0", *IN_PROCESS)
    assert done.returncode == 0, done.stderr
    label_map = (tmp_path / "o" / "label_map.pbtxt").read_text()
    assert "__ignore__" not in label_map and "name: 'sofa'" in label_map  # was: __ignore__ with id 1 and a weight
    totals = _stats(tmp_path / "o")["totals"]
    assert (totals["boxes_in"], totals["boxes_written"], totals["boxes_dropped_by_reason"]) == (5, 4, {"shape_ignored": 1})
    assert totals["repairs"] == {"pieces_merged": 1, "polygon_to_box": 2}  # was: 3 sofa boxes, the mask dropped
    assert totals["classes"]["sofa"]["boxes_written"] == 2


# 4. train checks its data arguments before the first step
def test_train_with_a_val_split_that_is_not_there_refuses_before_training(tmp_path, demo_dir):
    out = tmp_path / "o"
    done = _run("prepare", "--input", str(demo_dir / "annotations.json"), "--output", str(out), "--val-fraction=0", *IN_PROCESS)
    assert done.returncode == 0, done.stderr
    trained = _run("train", "--train", str(out), "--val", str(out), "--out", str(tmp_path / "run"), "--epochs", "50")
    assert trained.returncode == 2
    assert trained.stderr.strip().splitlines()[-1] == f"boxweight train: error: {out}: no split 'val' here; splits: train"
    assert "epoch" not in trained.stdout and not (tmp_path / "run").exists()  # was: every epoch trained, then exit 2


def test_train_refuses_an_image_size_the_detector_cannot_take_before_loading_anything(tmp_path, demo_dir):
    trained = _run("train", "--train", str(tmp_path), "--out", str(tmp_path / "run"), "--image-size", "100")
    assert trained.returncode == 2
    assert trained.stderr.strip().splitlines()[-1] == (
        "boxweight train: error: argument --image-size: 100 must be a multiple of 8 (the detector's backbone halves it three times)"
    )
