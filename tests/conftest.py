"""Shared fixtures: seeded RNG and access to the real data sets in $RECFORGE_DATA."""

from __future__ import annotations

import json
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


def rewrite_model_file(path, edit) -> None:
    """Rewrite a saved model file: ``edit(arrays, meta)`` changes its arrays and metadata in place."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop("__meta__").tobytes().decode())
    edit(arrays, meta)
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(scope="module")
def two_tastes():
    """(interactions, user Features, item Features, user groups, item groups) for the feature models'
    tests: 60 users x 40 items in two tastes, users and items carry their group as a feature (plus
    identity); items 30.. are cold (no interactions)."""
    return two_taste_world()


def two_taste_world(*, identity: bool = True, cold_users: int = 0):
    """``two_tastes``, with or without the identity features, the last ``cold_users`` users cold too."""
    import pandas as pd
    import scipy.sparse as sp

    import recforge as rf

    rng = np.random.default_rng(0)
    user_group, item_group = rng.integers(0, 2, 60), rng.integers(0, 2, 40)
    likes = (user_group[:, None] == item_group[None, :]) & (rng.random((60, 40)) < 0.5)
    likes[:, 30:] = False
    likes[60 - cold_users :] = False
    x = sp.csr_matrix(likes.astype(np.float32))
    users = pd.DataFrame({"user": np.arange(60), "group": user_group.astype(str)})
    items = pd.DataFrame({"item": np.arange(40), "group": item_group.astype(str)})
    fu = rf.Features.from_pandas(users, "user", categorical=["group"], identity=identity)
    fi = rf.Features.from_pandas(items, "item", categorical=["group"], identity=identity)
    return x, fu, fi, user_group, item_group


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR


# -- devices ---------------------------------------------------------------------------------------
def _cuda_missing() -> str | None:
    """Why ``device="cuda"`` cannot run here (the library's own message), or None when it can."""
    from recforge._ops import get_ops

    try:
        get_ops("cuda")
    except RuntimeError as exc:
        return str(exc).split(": ")[0]  # what is missing; the rest says how to install it
    return None


CUDA_MISSING = _cuda_missing()
requires_cuda = pytest.mark.skipif(CUDA_MISSING is not None, reason=f"no usable CUDA: {CUDA_MISSING}")
# Every device a device-parametrised test runs on; "cuda" carries the `cuda` marker (-m "not cuda").
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, requires_cuda])]


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    return request.param


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A `cuda` test that reaches a GPU kernel not written yet (NotImplementedError) is reported as
    xfail with the library's message, so the GPU job stays green until the kernel lands and then
    runs the test for real."""
    outcome = yield
    report = outcome.get_result()
    if (call.when == "call" and call.excinfo is not None and item.get_closest_marker("cuda")
            and call.excinfo.errisinstance(NotImplementedError)):  # fmt: skip
        report.outcome = "skipped"
        report.wasxfail = f"GPU kernel missing: {call.excinfo.value}"


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    """The CUDA kernel sources compiled as C++ (tests/cuda_emu), once per session; skips without g++."""
    from cuda_emu.emulator import build

    emu = build(tmp_path_factory.mktemp("cuda_emu"))
    if emu is None:
        pytest.skip("g++ not found: the CUDA kernels' CPU emulation needs a C++20 compiler")
    return emu
