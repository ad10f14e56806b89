"""A pytest plugin that runs the `cuda` tests without a GPU: ``python -m pytest -p cuda_emu.fake_gpu -m cuda``.

It installs a stand-in ``cupy`` (NumPy arrays of a subclass that carries ``__cuda_array_interface__``
and ``.get()``, so recforge treats them as device arrays) and a ``cupyx.scipy.sparse`` (SciPy
matrices whose ``.data`` is such an array), and routes recforge's GPU top-K through the kernels
compiled as C++ (emulator.py) with NumPy's matrix product for cuBLAS. So the GPU tests and the
contract suite's ``cuda`` case run end to end on the CPU: their logic, the models' device glue and
the orchestration are exercised before a GPU session spends device time on them. Not a GPU
verification: CuPy's own API, NVRTC, cuBLAS and real device memory are stood in for.
"""

from __future__ import annotations

import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import scipy.sparse as sp


class ndarray(np.ndarray):  # noqa: N801 (CuPy's name)
    """A "device" array: recforge sees ``__cuda_array_interface__``; ``.get()`` copies it to the host."""

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (0, False), "version": 3}

    def get(self):
        return np.array(self.view(np.ndarray))


def _device(x):
    """NumPy results as device arrays (0-d results stay 0-d arrays, as CuPy's do)."""
    if isinstance(x, np.ndarray):
        return x.view(ndarray)
    if isinstance(x, np.generic):
        return np.asarray(x).view(ndarray)
    if isinstance(x, tuple):
        return tuple(_device(v) for v in x)
    if isinstance(x, list):
        return [_device(v) for v in x]
    return x


def _host(x):
    return x.view(np.ndarray) if isinstance(x, ndarray) else x


def asarray(a, dtype=None, order=None):
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == dtype else a.astype(dtype)
    return np.array(a, dtype=dtype, order=order).view(ndarray)  # host -> device: a copy


def _wrap(fn):
    def wrapped(*args, **kwargs):
        return _device(fn(*args, **kwargs))

    wrapped.__name__ = fn.__name__
    return wrapped


class _Pool:
    def free_bytes(self):
        return 0

    def free_all_blocks(self):
        pass


def _module() -> types.ModuleType:
    cupy = types.ModuleType("cupy")
    cupy.ndarray = ndarray
    cupy.asarray = asarray
    cupy.__version__ = "fake"
    for name in ("ascontiguousarray", "empty", "zeros", "ones", "full", "unique", "sort", "where", "maximum", "hstack",
                 "concatenate", "einsum", "isfinite", "isneginf", "take_along_axis", "argsort", "argpartition",
                 "arange", "abs", "all", "any", "diff", "matmul", "argmax", "array", "broadcast_to"):  # fmt: skip
        setattr(cupy, name, _wrap(getattr(np, name)))
    for name in ("float32", "float64", "int32", "int64", "uint64", "bool_", "inf", "nan"):
        setattr(cupy, name, getattr(np, name))
    cupy.linalg = types.SimpleNamespace(norm=_wrap(np.linalg.norm))
    runtime = types.SimpleNamespace(getDeviceCount=lambda: 1, memGetInfo=lambda: (8 << 30, 16 << 30))
    device = types.SimpleNamespace(synchronize=lambda: None, attributes={"MaxSharedMemoryPerBlockOptin": 48 << 10})
    cupy.cuda = types.SimpleNamespace(runtime=runtime, Device=lambda *a: device)
    pool = _Pool()
    cupy.get_default_memory_pool = lambda: pool
    return cupy


def _sparse_module() -> types.ModuleType:
    sparse = types.ModuleType("cupyx.scipy.sparse")

    def csr_matrix(m):
        out = sp.csr_matrix(m, copy=True)
        out.data = out.data.view(ndarray)
        return out

    sparse.csr_matrix = csr_matrix
    return sparse


def _install() -> None:
    """Runs at import (``-p`` loads the plugin before conftest.py decides whether CUDA is usable)."""
    sys.modules["cupy"] = _module()
    cupyx = types.ModuleType("cupyx")
    cupyx.empty_pinned = np.empty  # "pinned host memory": plain host memory
    cupyx.scipy = types.ModuleType("cupyx.scipy")
    cupyx.scipy.sparse = _sparse_module()
    sys.modules.update({"cupyx": cupyx, "cupyx.scipy": cupyx.scipy, "cupyx.scipy.sparse": cupyx.scipy.sparse})

    from recforge import _backend
    from recforge._ops import cuda, kernels

    from .emulator import build, numpy_gemm

    emulator = build(Path(tempfile.mkdtemp(prefix="rf-fake-gpu-")))
    if emulator is None:
        raise RuntimeError("the fake GPU needs g++ (C++20) to compile the kernels")
    _backend._cupy_problem.cache_clear()
    _backend.gpu_available.cache_clear()
    kernels.load_all = lambda: None  # compiled above, as C++
    cuda._launch = emulator.launch
    cuda._gemm = lambda q, it, out, precision: numpy_gemm(_host(q), _host(it), _host(out), precision)
    cuda._memory_budget = lambda: 64 << 20
    cuda.BLOCK, cuda.MAX_GRID = 64, 4  # kernels work for any multiple of 32; few threads: fast emulation


_install()
