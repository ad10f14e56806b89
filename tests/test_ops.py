"""The device-neutral kernel layer (recforge._ops): the seam, the namespace helper, trusting vs validating top-K."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import CUDA_MISSING

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
