from __future__ import annotations

import os
from pathlib import Path

import pytest

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
    """(records, rejects, accounting) of a dataset through ``readers.read``; the accounting must balance."""
    import readers
    from schemas.annotations import ImageRecord, Reject

    acc = readers.Accounting()
    items = list(readers.read(str(path), accounting=acc, **kw))
    assert acc.balanced()
    return [r for r in items if isinstance(r, ImageRecord)], [r for r in items if isinstance(r, Reject)], acc
