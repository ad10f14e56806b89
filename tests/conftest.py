"""Shared fixtures: seeded RNG and access to the real data sets in $RECFORGE_DATA."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

# CI runs a fixed set of property-test examples (no flaky reruns, no deadlines on a loaded machine);
# locally hypothesis keeps exploring new examples on every run.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("RECFORGE_DATA", REPO_ROOT.parent / "shared" / "data"))


def data_path(*parts: str) -> Path:
    """Path of a file in the data folder; skips the test (with the path) when it is absent."""
    p = DATA_DIR.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"data set not available: {p} (set RECFORGE_DATA to the folder holding it)")
    return p


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR
