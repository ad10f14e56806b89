"""The device-neutral kernel layer under the models: ``get_ops(device)`` and ``array_namespace``.

Two hops from a model to its kernel: a model calls ``ops.<fn>`` on the module ``get_ops(device)``
returns, and that function calls one binding. ``cpu.py`` is the only Python module that imports the
compiled kernels (``_backend.py`` aside, for BLAS and thread counts); ``cuda.py`` has the same
names and is the seam the GPU kernels (issues 12/13) plug into. Models never import ``_core`` or
CuPy: array glue goes through ``array_namespace`` (NumPy or CuPy, by where the arrays live).
"""

from __future__ import annotations

from types import ModuleType

__all__ = ["als_row_regularization", "array_namespace", "get_ops", "to_host"]


def get_ops(device: str) -> ModuleType:
    """The ops module of ``device`` ("cpu" | "cuda"; resolve "auto" first with ``_backend.resolve_device``).

    Raises
    ------
    RuntimeError
        ``device="cuda"`` without CuPy or a visible GPU (the message says which and how to get it).
    ValueError
        Any other device name.
    """
    if device == "cpu":
        from . import cpu

        return cpu
    if device == "cuda":
        from .._backend import resolve_device

        resolve_device("cuda")  # the one place that explains what is missing
        from . import cuda

        return cuda
    raise ValueError(f"device must be 'cpu' or 'cuda' (resolve 'auto' first), got {device!r}")


def array_namespace(*arrays: object) -> ModuleType:
    """``cupy`` when any of ``arrays`` lives on a GPU (``_backend.is_device_array``), else ``numpy``.

    None entries are ignored, so optional arrays (biases) can be passed as they are.
    """
    from .._backend import is_device_array

    if any(is_device_array(a) for a in arrays if a is not None):
        import cupy  # only reached with GPU arrays, which means CuPy is installed

        return cupy
    import numpy

    return numpy


def to_host(a):
    """``a`` as a NumPy array: a GPU array is copied to the host (``.get()``), anything else is ``numpy.asarray``."""
    if hasattr(a, "__cuda_array_interface__"):
        return a.get()
    import numpy

    return numpy.asarray(a)


def als_row_regularization(counts, n_cols, *, regularization, alpha0, nu, scaling):
    """Each row's implicit ALS regularisation ``lambda_u``, as the C++ kernel's ``row_lambda`` computes it.

    ``counts``: the rows' numbers of stored entries (an int, or a NumPy / CuPy array: the result is
    a float64 of the same kind); ``n_cols``: the other side's size. ``scaling="all_pairs"``:
    ``regularization * (n_u + alpha0 * n_cols) ** nu`` (Rendle et al.); ``"observed"``:
    ``regularization * n_u ** nu`` (nu = 1: ALS-WR, Spark MLlib's implicit ALS).
    """
    if scaling not in ("all_pairs", "observed"):
        raise ValueError(f"scaling must be 'all_pairs' or 'observed', got {scaling!r}")
    base = counts * 1.0 if scaling == "observed" else counts + alpha0 * float(n_cols)
    return regularization * base**nu
