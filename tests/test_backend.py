"""Device and thread selection: clear errors, never a silent move to or from the GPU."""

from __future__ import annotations

import numpy as np
import pytest

import recforge as rf
from recforge import _backend
from recforge._backend import resolve_device, resolve_threads


def test_auto_and_cpu_resolve_to_cpu_for_numpy_input():
    x = np.zeros((2, 2), np.float32)
    assert resolve_device("auto", x) == "cpu"
    assert resolve_device("cpu", x) == "cpu"


def test_unknown_device_is_rejected():
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("gpu")


def test_cuda_without_cupy_says_how_to_get_it(monkeypatch):
    monkeypatch.setattr(_backend, "_cupy_problem", lambda: _backend._NEEDS_CUPY)  # as a machine without CuPy
    with pytest.raises(RuntimeError, match=r"device='cuda' needs CuPy: pip install 'recforge\[gpu\]'"):
        resolve_device("cuda")
    with pytest.raises(RuntimeError, match="needs CuPy"):
        rf.topk(np.ones((2, 3), np.float32), np.ones((4, 3), np.float32), k=2, device="cuda")
    assert not rf.cupy_available()


def test_threads_validation():
    assert resolve_threads(1) == 1
    assert resolve_threads(0) >= 1
    with pytest.raises(ValueError, match="threads"):
        resolve_threads(-1)
    with pytest.raises(TypeError, match="threads"):
        resolve_threads(1.5)
    with pytest.raises(TypeError, match="threads"):
        resolve_threads(True)


def test_boolean_interaction_matrices_are_accepted():
    import scipy.sparse as sp

    m = sp.csr_matrix(np.array([[True, False], [False, True]]))
    model = rf.MostPopular().fit(m)
    np.testing.assert_array_equal(model.item_popularity, [1, 1])
