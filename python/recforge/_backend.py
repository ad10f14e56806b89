"""Backend plumbing: the compiled core, its BLAS, thread counts and device selection.

Everything that touches ``recforge._core`` directly at import time lives here, so the rest of the
package imports plain Python names.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import warnings

from . import _core

__all__ = [
    "THREAD_LIMIT", "blas_threads", "cupy_available", "gpu_available", "is_device_array", "resolve_device",
    "resolve_threads", "single_threaded_blas",
]  # fmt: skip


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
            _take_blas_control()
            _blas_limiter = _blas_controller().limit(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                _take_blas_control()
                _blas_limiter.restore_original_limits()
                _blas_limiter = None


def _take_blas_control() -> None:
    """Let the calling thread change OpenBLAS's (pthreads) thread count.

    threadpoolctl (>= 3.6) lets only the first thread that changed it change it again and silently
    ignores every other thread, so a kernel called from a second Python thread (a reader, a
    streaming updater) ran with a multithreaded BLAS inside its own threads: a 64 x 64 Gram matrix
    took 100+ ms instead of 0.1 ms on a busy machine. Our counter above already serialises the
    changes, so the thread making one takes control for it.
    """
    from threadpoolctl import OpenBLASController

    clear = getattr(OpenBLASController, "clear_controlling_thread", None)  # absent before 3.6: no ownership
    if clear is not None:
        clear(force=True)


def blas_threads(threads: int):
    """Context manager: BLAS/LAPACK calls made from Python (SciPy, NumPy) use ``threads`` threads.

    For one long solve (EASE); unlike ``single_threaded_blas`` it does not share its limit with
    overlapping calls from other Python threads.
    """
    return _blas_controller().limit(limits=threads, user_api="blas")


# What device="cuda" needs, in the order it is checked; each message says how to get it.
_NEEDS_CUPY = "device='cuda' needs CuPy: pip install 'recforge[gpu]' (installs cupy-cuda13x; no CUDA toolkit needed)"
_NEEDS_DEVICE = "device='cuda' needs a visible CUDA device: CuPy is installed but sees none ({reason})"


@functools.cache
def _cupy_problem() -> str | None:
    """Why CuPy cannot run kernels here (the message of ``resolve_device("cuda")``), or None when it can."""
    try:
        import cupy
    except ImportError:
        return _NEEDS_CUPY
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # installed but unusable: no driver, a driver too old for its CUDA, ...
        return _NEEDS_DEVICE.format(reason=f"{type(exc).__name__}: {exc}")
    return None if count > 0 else _NEEDS_DEVICE.format(reason="0 devices")


def cupy_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device (whether recforge's kernels load: ``gpu_available``)."""
    return _cupy_problem() is None


@functools.cache
def gpu_available() -> bool:
    """True when ``device="cuda"`` works: CuPy sees a GPU *and* recforge's CUDA kernels compile and load there.

    The first call compiles the kernels (NVRTC, through CuPy; cached on disk by CuPy afterwards).
    A failure is logged as a warning with the compiler's message; ``device="cuda"`` then raises it.
    """
    if not cupy_available():
        return False
    from ._ops import kernels

    try:
        kernels.load_all()
    except RuntimeError as exc:
        warnings.warn(str(exc), RuntimeWarning, stacklevel=2)
        return False
    return True


def is_device_array(a: object) -> bool:
    """True for data on a GPU: an array with ``__cuda_array_interface__`` or a sparse matrix whose ``.data`` has one."""
    if hasattr(a, "__cuda_array_interface__"):
        return True
    if a is None or type(a).__module__.startswith("numpy") or isinstance(a, (list, tuple, str, bytes)):
        return False  # a NumPy array's .data is a memoryview, which some dtypes (datetime) cannot even build
    try:
        data = getattr(a, "data", None)
    except (ValueError, TypeError):
        return False
    return hasattr(data, "__cuda_array_interface__")


def resolve_device(device: str, *arrays: object) -> str:
    """Return "cpu" or "cuda" for ``device`` ("auto" | "cpu" | "cuda") and the given arrays.

    "auto" follows the data: "cuda" when any of ``arrays`` lives on a GPU (CuPy arrays, CuPy sparse
    matrices), else "cpu". Data is never moved silently: "cpu" with GPU arrays is a ValueError.
    "cuda" without CuPy or a visible GPU is a RuntimeError that says what to install.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    on_gpu = any(is_device_array(a) for a in arrays)
    if device == "auto":
        return "cuda" if on_gpu else "cpu"
    if device == "cuda":
        problem = _cupy_problem()
        if problem is not None:
            raise RuntimeError(problem)
    elif on_gpu:
        raise ValueError("device='cpu' was given GPU (CuPy) arrays; move them to the host with .get() first")
    return device
