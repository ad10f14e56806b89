"""Backend plumbing: the compiled core, its BLAS, thread counts and device selection.

Everything that touches ``recforge._core`` directly at import time lives here, so the rest of the
package imports plain Python names.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import threading
import warnings

from . import _core

__all__ = [
    "THREAD_LIMIT", "blas_threads", "cupy_available", "resolve_device", "resolve_threads", "single_threaded_blas",
    "with_cuda",
]  # fmt: skip


def _load_cuda():
    """``recforge._cuda`` when it was built and loads, else None (a broken build warns once)."""
    name = f"{__package__}._cuda"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:  # built without CUDA (RECFORGE_CUDA=OFF, or AUTO without nvcc)
            return None
        raise
    except ImportError as exc:
        warnings.warn(
            f"recforge._cuda is present but does not load ({exc}); using the CPU", RuntimeWarning, stacklevel=2
        )
        return None


_cuda = _load_cuda()
with_cuda: bool = _cuda is not None
"""True when the GPU module ``recforge._cuda`` imports (not whether a GPU is present: see cupy_available)."""


def _install_scipy_blas() -> None:
    """Give the C++ core SciPy's bundled OpenBLAS (Fortran ABI, 32-bit ints)."""
    from scipy.linalg import cython_blas, cython_lapack

    blas = cython_blas.__pyx_capi__
    lapack = cython_lapack.__pyx_capi__
    _core.set_blas(blas["sgemm"], blas["ssyrk"], lapack["spotrf"], lapack["spotrs"])


_install_scipy_blas()


THREAD_LIMIT: int = _core.thread_limit()
"""The largest ``threads`` any entry accepts: 256, or the number of cores when larger."""


def resolve_threads(threads: int) -> int:
    """Validate ``threads`` and return the count the kernels will use (0 = all cores).

    The one rule for every ``threads=`` (models, ``recforge.topk``, loaded model files): an int in
    ``[0, THREAD_LIMIT]``; anything else is a TypeError / ValueError here, before OpenMP sees it
    (the C++ kernels refuse the same range).
    """
    if isinstance(threads, bool) or not hasattr(threads, "__index__"):
        raise TypeError(f"threads must be an int (0 = all cores), got {type(threads).__name__}")
    threads = int(threads.__index__())
    if not 0 <= threads <= THREAD_LIMIT:
        raise ValueError(f"threads must be in [0, {THREAD_LIMIT}] (0 = all cores), got {threads}")
    return _core.max_threads(threads)


@functools.cache
def _blas_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


_blas_lock = threading.Lock()
_blas_users = 0  # calls inside single_threaded_blas, over all Python threads
_blas_limiter = None  # threadpoolctl's limiter of the outermost call: it restores the original limits


@contextlib.contextmanager
def single_threaded_blas():
    """Context manager: BLAS runs on the calling thread only.

    Our kernels call BLAS from inside their own OpenMP threads; a multithreaded BLAS underneath
    would oversubscribe the cores. The BLAS thread count is process-wide, so overlapping calls
    (from several Python threads) share one limit: the first to enter sets it, the last to leave
    restores the original (each restoring its own would leave BLAS single-threaded for good).
    """
    global _blas_users, _blas_limiter
    with _blas_lock:
        if _blas_users == 0:
            _blas_limiter = _blas_controller().limit(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None


def blas_threads(threads: int):
    """Context manager: BLAS/LAPACK calls made from Python (SciPy, NumPy) use ``threads`` threads.

    For one long solve (EASE); unlike ``single_threaded_blas`` it does not share its limit with
    overlapping calls from other Python threads.
    """
    return _blas_controller().limit(limits=threads, user_api="blas")


@functools.cache
def cupy_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        import cupy
    except ImportError:
        return False
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception as exc:  # installed but unusable (driver, no device)
        warnings.warn(f"CuPy is installed but unusable ({exc}); using the CPU", RuntimeWarning, stacklevel=2)
        return False


def resolve_device(device: str, *arrays: object) -> str:
    """Return "cpu" or "cuda" for ``device`` ("auto" | "cpu" | "cuda") and the given arrays."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    on_gpu = any(hasattr(a, "__cuda_array_interface__") for a in arrays)
    if device == "auto":
        return "cuda" if on_gpu else "cpu"
    if device == "cuda":
        if not with_cuda:
            raise RuntimeError(
                "device='cuda' needs recforge built with its CUDA kernels (the recforge._cuda module), and this "
                "build has none: install the CUDA toolkit so nvcc is on PATH, reinstall with "
                "`pip install . -Ccmake.define.RECFORGE_CUDA=ON` (or RECFORGE_CUDA=ON in the environment), "
                "and `pip install recforge[gpu]`"
            )
        if not cupy_available():
            raise RuntimeError("device='cuda' needs CuPy and a visible CUDA device (pip install recforge[gpu])")
    elif on_gpu:
        raise ValueError("device='cpu' was given GPU (CuPy) arrays; move them with .get() first")
    return device
