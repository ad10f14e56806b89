"""The device-neutral kernel layer (recforge._ops): the seam, the namespace helper, trusting vs validating top-K."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import CUDA_MISSING
from hypothesis import given, settings
from hypothesis import strategies as st

import recforge as rf
from recforge._ops import array_namespace, cpu, cuda, get_ops

PKG = Path(rf.__file__).parent


def test_cpu_and_cuda_ops_have_the_same_names():
    assert set(cuda.__all__) == set(cpu.__all__) - {"name", "xp"}
    for fn in cuda.__all__:
        assert callable(getattr(cpu, fn)) and callable(getattr(cuda, fn))
    assert get_ops("cpu") is cpu and cpu.name == "cpu" and cpu.xp is np


@pytest.mark.skipif(CUDA_MISSING is None, reason="CuPy and a GPU are present")
def test_get_ops_cuda_without_a_gpu_explains_what_is_missing():
    with pytest.raises(RuntimeError, match="device='cuda' needs"):
        get_ops("cuda")


def test_get_ops_rejects_unknown_devices():
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda'"):
        get_ops("auto")


def test_cuda_training_ops_raise_not_implemented_naming_the_function():
    with pytest.raises(NotImplementedError, match="sgd_mf_epoch.*only ALS.*device='cpu'"):
        cuda.sgd_mf_epoch(None, None, None, None, None)


class _FakeGpuArray:
    __cuda_array_interface__ = {}


def test_array_namespace_is_numpy_for_host_arrays():
    assert array_namespace(np.zeros(2), None, [1, 2]) is np
    assert array_namespace() is np


def test_array_namespace_picks_cupy_for_gpu_arrays():
    cupy = pytest.importorskip("cupy")
    assert array_namespace(np.zeros(2), _FakeGpuArray()) is cupy


def test_only_the_cpu_ops_import_the_kernels():
    """Models (and everything else but _ops/cpu.py and _backend.py) never import _core kernels or CuPy."""
    allowed = {PKG / "_ops" / "cpu.py", PKG / "_backend.py", PKG / "__init__.py"}
    for path in PKG.rglob("*.py"):
        if path in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            assert not any(n.split(".")[-1] == "_core" for n in names), f"{path} imports _core"
            if "models" in path.parts:
                assert not any(n.split(".")[0] == "cupy" for n in names), f"{path} imports cupy"


def test_ops_topk_trusts_and_public_topk_validates():
    q = np.ones((2, 3), np.float32)
    items = np.arange(12, dtype=np.float32).reshape(4, 3)
    exclude = sp.csr_matrix(np.array([[0, 0, 0, 1], [0, 0, 0, 0]], np.float32))
    ids, scores = cpu.topk(q, items, 2, exclude=exclude, threads=1)
    np.testing.assert_array_equal(ids, [[2, 1], [3, 2]])
    np.testing.assert_array_equal(ids, rf.topk(q, items, 2, exclude=exclude, threads=1)[0])
    # The public entry canonicalises and checks before it calls the internal one.
    q64 = q.astype(np.float64)
    np.testing.assert_array_equal(rf.topk(q64, items, 2, threads=1)[0], [[3, 2], [3, 2]])
    with pytest.raises(ValueError, match="NaN"):
        rf.topk(np.full((2, 3), np.nan, np.float32), items, 2)


@pytest.mark.parametrize("shape, density", [((30, 20), 0.2), ((4, 6), 0.0)], ids=["filled", "empty"])
def test_kernel_csr_pickles_and_is_validated_again(shape, density):
    """recforge.distributed moves blocks in the kernels' form between processes."""
    import pickle

    m = sp.random(*shape, density=density, format="csr", dtype=np.float32, random_state=0)
    back = pickle.loads(pickle.dumps(cpu.csr(m)))
    assert back.shape == shape and back.nnz == m.nnz and back.sorted and back.unique
    np.testing.assert_array_equal(back.indptr, m.indptr)
    if m.nnz:
        np.testing.assert_array_equal(back.indices, m.indices)
        np.testing.assert_array_equal(back.data, m.data)


@given(st.integers(0, 6), st.integers(0, 7), st.integers(0, 2**32 - 1), st.booleans(), st.booleans())
@settings(max_examples=150, deadline=None)
def test_kernel_csr_traits_and_range_errors_match_numpy(n_rows, n_cols, seed, with_specials, break_range):
    """``_core.Csr``'s validation against a NumPy reading of the same arrays: the sorted / unique /
    finite / nonnegative traits (unsorted rows, repeats, NaN, inf, -0.0 and negatives drawn on
    purpose), and for an out-of-range column id the error naming the first such id and its position."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 5, size=n_rows)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    nnz = int(indptr[-1])
    indices = rng.integers(0, max(n_cols, 1), size=nnz).astype(np.int32)
    data = rng.integers(-1, 4, size=nnz).astype(np.float32)
    if with_specials and nnz:
        data[rng.integers(0, nnz, size=2)] = rng.choice(np.array([np.nan, np.inf, -np.inf, -0.0], np.float32), 2)
    if (break_range or n_cols == 0) and nnz:
        bad_at = rng.integers(0, nnz, size=2)
        indices[bad_at] = rng.choice(np.array([-1, n_cols, n_cols + 5, -(2**31)], np.int32), 2)
    bad = (indices < 0) | (indices >= n_cols)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        with pytest.raises(ValueError, match=rf"m: column index {indices[first]} at position {first} out of range"):
            rf._core.Csr(indptr, indices, data, (n_rows, n_cols), "m")
        return
    m = rf._core.Csr(indptr, indices, data, (n_rows, n_cols), "m")
    rows = [indices[indptr[r] : indptr[r + 1]] for r in range(n_rows)]
    assert m.sorted == all((np.diff(r) >= 0).all() for r in rows)
    assert m.unique == all((np.diff(r) > 0).all() for r in rows)
    assert m.finite == bool(np.isfinite(data).all())
    assert m.nonnegative == bool(np.isfinite(data).all() and (data >= 0).all())
    pattern = rf._core.Csr(indptr, indices, None, (n_rows, n_cols), "m")
    assert pattern.finite == pattern.nonnegative == (nnz == 0)
