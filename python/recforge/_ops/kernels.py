"""The CUDA kernels: C++ sources shipped with the package, compiled at first use by CuPy (NVRTC).

Why sources and not a compiled extension (README "GPU"): ``pip install recforge`` plus
``pip install "recforge[gpu]"`` must give working GPU paths on a machine with a driver and a GPU
but no CUDA toolkit and no rebuild. CuPy's wheel carries NVRTC; it compiles each source for the
GPU it runs on (any architecture, today's and future ones) and caches the binary on disk
(``~/.cupy/kernel_cache``, or ``$CUPY_CACHE_DIR``), so only the very first call pays the
compilation (a second or so). The sources live in ``csrc/cuda/`` of the repository and are
installed as ``recforge/_kernels/*.cu``; CI compiles every one of them with nvcc for sm_80 and
sm_90 (``tools/check_cuda_kernels.py``), so a kernel that does not compile fails CI.

The sources are self-contained (no ``#include``): NVRTC has no host headers, and CuPy's cache key
is the source text and the options alone. Their kernels are ``extern "C"`` (no name mangling).
This module imports CuPy only inside ``module``/``load_all``: importing recforge never needs it.
"""

from __future__ import annotations

import functools
from importlib import resources

__all__ = ["COMPILE_OPTIONS", "SOURCES", "function", "load_all", "module", "source"]

# Every shipped source and the kernels it defines (the CI check compiles each source and verifies
# that each of these names is defined in it).
SOURCES: dict[str, tuple[str, ...]] = {
    "als.cu": ("rf_als_row_dots", "rf_als_spmm", "rf_als_normal_equations", "rf_cholesky_solve"),
    "topk.cu": ("rf_mask_excluded", "rf_score_candidates", "rf_select_small", "rf_select_radix", "rf_decode_keys"),
}
# Exact IEEE float arithmetic (no fast math): the GPU's top-K must rank like the CPU's.
COMPILE_OPTIONS: tuple[str, ...] = ("-std=c++17",)


def source(name: str) -> str:
    """The text of the shipped kernel source ``name`` (a key of ``SOURCES``)."""
    if name not in SOURCES:
        raise ValueError(f"unknown kernel source {name!r}; recforge ships {sorted(SOURCES)}")
    path = resources.files("recforge").joinpath("_kernels").joinpath(name)
    try:
        return path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        raise RuntimeError(
            f"recforge's CUDA kernel source {name} is missing from the installation (expected in "
            f"recforge/_kernels/): reinstall recforge (pip install --force-reinstall recforge)"
        ) from None


@functools.cache
def module(name: str):
    """The ``cupy.RawModule`` of source ``name``; CuPy compiles it (once per device, cached on disk) at first use."""
    import cupy

    return cupy.RawModule(code=source(name), options=COMPILE_OPTIONS, jitify=False)


def function(source_name: str, kernel: str):
    """Kernel ``kernel`` of source ``source_name`` as a ``cupy.RawKernel`` (compiles the source on first use).

    Raises RuntimeError with NVRTC's log when the source does not compile for this GPU.
    """
    try:
        return module(source_name).get_function(kernel)
    except Exception as exc:  # cupy.cuda.compiler.CompileException, or a driver that cannot load the result
        raise RuntimeError(
            f"recforge's CUDA kernel {kernel} ({source_name}) did not compile or load on this GPU: {exc}. "
            "Check that the NVIDIA driver supports the CUDA version of the installed CuPy (pip install "
            "'recforge[gpu]' installs cupy-cuda13x, which needs a CUDA 13 driver), or use device='cpu'"
        ) from exc


def load_all() -> None:
    """Compile and load every kernel of every source on the current device (raises RuntimeError on failure)."""
    for name, kernels in SOURCES.items():
        for kernel in kernels:
            function(name, kernel)
