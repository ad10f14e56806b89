"""Device semantics that hold without a GPU: "auto" follows the data and never moves it, clear errors
when CuPy or a GPU is missing, host copies for saving. GPU arrays are stood in for by objects that
expose ``__cuda_array_interface__`` (as CuPy arrays do) and ``.get()``; the GPU runs themselves are
in test_gpu_topk.py (`cuda` marker)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import recforge as rf
from recforge import _backend
from recforge._backend import is_device_array, resolve_device
from recforge._ops import kernels, to_host


class FakeGpuArray:
    """What recforge looks at in a CuPy array: ``__cuda_array_interface__`` and ``.get()``."""

    __cuda_array_interface__ = {"shape": (), "typestr": "<f4", "data": (0, False), "version": 3}

    def __init__(self, host: np.ndarray):
        self.host = host
        self.shape, self.dtype = host.shape, host.dtype

    def get(self) -> np.ndarray:
        return self.host.copy()


class FakeGpuSparse:
    """A CuPy sparse matrix: the device array is its ``.data``."""

    def __init__(self, m: sp.csr_matrix):
        self.data = FakeGpuArray(m.data)
        self.shape = m.shape


@pytest.fixture
def no_cupy(monkeypatch):
    monkeypatch.setattr(_backend, "_cupy_problem", lambda: _backend._NEEDS_CUPY)


def test_auto_follows_the_data():
    host = np.zeros((2, 2), np.float32)
    gpu = FakeGpuArray(host)
    assert resolve_device("auto", host) == "cpu"
    assert resolve_device("auto", host, gpu) == "cuda"
    assert resolve_device("auto", FakeGpuSparse(sp.csr_matrix(host))) == "cuda"  # looks inside .data
    assert resolve_device("auto", sp.csr_matrix(host), None) == "cpu"
    assert is_device_array(gpu) and not is_device_array(host) and not is_device_array(sp.csr_matrix(host))


def test_cpu_never_takes_gpu_data():
    gpu = FakeGpuArray(np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match=r"device='cpu' was given GPU \(CuPy\) arrays"):
        resolve_device("cpu", gpu)
    with pytest.raises(ValueError, match="GPU"):
        resolve_device("cpu", FakeGpuSparse(sp.csr_matrix((2, 2), dtype=np.float32)))
    q, it = np.ones((2, 3), np.float32), np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match="GPU"):
        rf.topk(q, it, k=2, device="cpu", candidates=FakeGpuArray(np.array([0, 1])))


def test_topk_refuses_mixed_devices_instead_of_moving_data():
    q, it = np.ones((2, 3), np.float32), np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match="same device"):
        rf.topk(FakeGpuArray(q), it, k=2)
    with pytest.raises(ValueError, match="same device"):
        rf.topk(q, FakeGpuArray(it), k=2)


def test_cuda_without_cupy_names_the_fix(no_cupy):
    q, it = np.ones((2, 3), np.float32), np.ones((4, 3), np.float32)
    for call in (lambda: resolve_device("cuda"), lambda: rf.topk(q, it, k=2, device="cuda"),
                 lambda: rf.topk(FakeGpuArray(q), FakeGpuArray(it), k=2)):  # fmt: skip
        with pytest.raises(RuntimeError, match=r"needs CuPy: pip install 'recforge\[gpu\]'"):
            call()
    assert not rf.cupy_available()
    rf.gpu_available.cache_clear()
    try:
        assert not rf.gpu_available()  # does not try to compile anything
    finally:
        rf.gpu_available.cache_clear()
    with pytest.raises(RuntimeError, match="needs CuPy"):
        rf.MostPopular(device="cuda").fit(sp.csr_matrix(np.eye(3, dtype=np.float32)))
    with pytest.raises(RuntimeError, match="needs CuPy"):
        rf.MostPopular().fit(sp.csr_matrix(np.eye(3, dtype=np.float32))).to("cuda")


def test_cuda_with_cupy_but_no_gpu_says_so(monkeypatch):
    message = _backend._NEEDS_DEVICE.format(reason="0 devices")
    monkeypatch.setattr(_backend, "_cupy_problem", lambda: message)
    with pytest.raises(
        RuntimeError, match=r"needs a visible CUDA device: CuPy is installed but sees none \(0 devices\)"
    ):
        resolve_device("cuda")


def test_precision_is_checked_and_gpu_only():
    q, it = np.ones((2, 3), np.float32), np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match="precision must be"):
        rf.topk(q, it, k=2, precision="fp16")
    with pytest.raises(ValueError, match="needs the GPU"):
        rf.topk(q, it, k=2, precision="tf32")


def test_to_host_copies_gpu_arrays():
    host = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = to_host(FakeGpuArray(host))
    assert isinstance(out, np.ndarray) and out is not host
    np.testing.assert_array_equal(out, host)
    assert to_host(host) is host


def _members(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("cls", [rf.ALS, rf.MostPopular])
def test_save_from_gpu_arrays_writes_the_same_file(cls, tmp_path):
    data = sp.random(30, 20, density=0.3, format="csr", dtype=np.float32, random_state=0)
    params = {"factors": 4, "epochs": 1, "threads": 1} if cls is rf.ALS else {}
    model = cls(**params).fit(data, progress=False)
    model.save(tmp_path / "host.rf")
    for name in model._array_names():  # as after .to("cuda"): the same arrays, on a (stand-in) GPU
        if getattr(model, name) is not None:
            setattr(model, name, FakeGpuArray(getattr(model, name)))
    model.save(tmp_path / "gpu.rf")
    host, gpu = _members(tmp_path / "host.rf"), _members(tmp_path / "gpu.rf")
    assert host.keys() == gpu.keys()
    for name in host:
        np.testing.assert_array_equal(gpu[name], host[name], err_msg=name)
        assert gpu[name].dtype == host[name].dtype
    assert rf.load(tmp_path / "gpu.rf").device_ == "cpu"


def test_from_factors_never_moves_gpu_factors_to_the_cpu_silently():
    uf = FakeGpuArray(np.ones((3, 2), np.float32))
    itf = FakeGpuArray(np.ones((4, 2), np.float32))
    with pytest.raises(ValueError, match="GPU"):
        rf.ALS.from_factors(uf, itf, device="cpu")


def test_from_factors_with_gpu_factors_needs_cupy(no_cupy):
    uf = FakeGpuArray(np.ones((3, 2), np.float32))
    itf = FakeGpuArray(np.ones((4, 2), np.float32))
    with pytest.raises(RuntimeError, match="needs CuPy"):
        rf.ALS.from_factors(uf, itf)  # "auto" follows the factors to the GPU


def test_to_auto_keeps_host_arrays_on_the_cpu():
    model = rf.MostPopular().fit(sp.csr_matrix(np.eye(3, dtype=np.float32)))
    assert model.to("auto").device_ == "cpu" and isinstance(model.item_popularity, np.ndarray)


def test_kernel_sources_are_installed_with_the_package():
    repo = Path(__file__).resolve().parents[1] / "csrc" / "cuda"
    for name in kernels.SOURCES:
        text = kernels.source(name)
        assert not re.search(r"^\s*#\s*include", text, re.M)  # NVRTC has no host headers
        assert text == (repo / name).read_text(encoding="utf-8"), f"installed {name} differs from csrc/cuda/"
    with pytest.raises(ValueError, match="unknown kernel source"):
        kernels.source("nope.cu")
