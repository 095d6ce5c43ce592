"""The built wheel works outside the checkout: every package the commands import is in it.

A quick form of ``make wheel-check`` (which installs the wheel with the lock into a
clean venv): the wheel is built from this tree, unpacked into a folder of its own
with ``pip install --target``, and its ``boxweight`` script is run from another
folder with only that folder on the path, so a module or data file left out of
the wheel fails here instead of on a user's machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    built = subprocess.run([*pip, "wheel", "--no-deps", "--wheel-dir", str(work / "dist"), str(ROOT)],
                           capture_output=True, text=True, timeout=300)
    if built.returncode and "No matching distribution found" in built.stderr:
        pytest.skip(f"cannot build the wheel without the registries (setuptools): {built.stderr.strip()[-200:]}")
    assert built.returncode == 0, built.stderr
    (wheel,) = (work / "dist").glob("boxweight-*.whl")
    target = work / "site"
    done = subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return target


def _run(target: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # -I would also drop PYTHONPATH; -P keeps the checkout (the script's folder or cwd) off sys.path
    env = {**os.environ, "PYTHONPATH": str(target), "PYTHONSAFEPATH": "1"}
    return subprocess.run([sys.executable, str(target / "bin" / "boxweight"), *args],
                          capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


def test_the_wheel_imports_its_own_copy_and_runs_demo_data_prepare_and_report(installed_wheel, tmp_path):
    where = subprocess.run(
        [sys.executable, "-c", "import boxweight, schemas, readers, weighting, beam_jobs as m; print(m.__file__)"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(installed_wheel), "PYTHONSAFEPATH": "1"},
    )
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(installed_wheel), where.stdout  # not the checkout

    made = _run(installed_wheel, tmp_path, "demo-data", "--out", "data", "--images", "40", "--size", "64")
    assert made.returncode == 0, made.stderr
    prepared = _run(installed_wheel, tmp_path, "prepare", "--input", "data/annotations.json", "--output", "out")
    assert prepared.returncode == 0, prepared.stderr
    assert "outputs in out" in prepared.stdout
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert (stats["totals"]["images_in"], stats["totals"]["images_written"]) == (40, 40)
    shown = _run(installed_wheel, tmp_path, "report", "out")
    assert shown.returncode == 0, shown.stderr
    assert "circle" in shown.stdout
