"""The layers: every package in the contract that `make test` checks (lint-imports), and the light imports."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest

from tests.conftest import ROOT


def test_every_package_is_a_layer_of_the_contract():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packaged = {p.rstrip("*") for p in config["tool"]["setuptools"]["packages"]["find"]["include"]}
    (contract,) = config["tool"]["importlinter"]["contracts"]
    assert set(contract["layers"]) == packaged == set(config["tool"]["importlinter"]["root_packages"])
    assert contract["layers"][-1] == "schemas" and contract["layers"][0] == "boxweight"


def test_the_contract_holds():
    lint = ROOT / ".venv" / "bin" / "lint-imports"
    if not lint.exists():
        pytest.skip("lint-imports is not installed in .venv (make test installs it)")
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:]
    assert "1 kept, 0 broken" in done.stdout


def test_the_weighting_schemes_and_a_local_output_import_neither_beam_nor_tensorflow():
    code = (
        "import sys, weighting.schemes, storage.job_output, validation; "
        "print(sorted(m for m in ('apache_beam', 'tensorflow', 'keras') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
