"""Argument checks shared by every layer: each raises ValueError/TypeError naming the argument."""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp

__all__ = ["as_csr", "check_ids", "check_k", "check_positive", "check_nonnegative", "check_dense"]


def as_csr(x, name: str = "interactions", allow_empty: bool = False, allow_negative: bool = True) -> sp.csr_matrix:
    """Canonical float32 CSR (sorted indices, duplicates summed) from a sparse matrix or Interactions.

    Raises ValueError for NaN/inf values, an empty matrix (unless ``allow_empty``) or, when
    ``allow_negative`` is False, negative values.
    """
    if hasattr(x, "csr") and not sp.issparse(x):  # recforge.Interactions
        x = x.csr
    if not sp.issparse(x):
        raise TypeError(
            f"{name} must be a scipy.sparse matrix (users x items) or recforge.Interactions, got {type(x).__name__}"
        )
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got ndim={x.ndim}")
    if x.dtype != np.bool_ and (not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating)):
        raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
    csr = sp.csr_matrix(x, dtype=np.float32, copy=False)
    if not csr.has_canonical_format:
        csr = csr.copy()
        csr.sum_duplicates()  # also sorts indices
    if not allow_empty and (csr.shape[0] == 0 or csr.shape[1] == 0 or csr.nnz == 0):
        raise ValueError(f"{name} is empty (shape {csr.shape}, {csr.nnz} stored values)")
    if csr.nnz and not np.isfinite(csr.data).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if not allow_negative and csr.nnz and (csr.data < 0).any():
        raise ValueError(f"{name} contains negative values, which are not meaningful here")
    return csr


def check_k(k, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(k).__name__}")
    if k <= 0:
        raise ValueError(f"{name} must be >= 1, got {k}")
    return int(k)


def check_ids(ids, n: int, name: str) -> np.ndarray:
    """1-D int64 array of ids in [0, n); scalars become length-1 arrays."""
    arr = np.asarray(ids)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be integer indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        bad = arr[(arr < 0) | (arr >= n)][0]
        raise ValueError(f"{name} must be in [0, {n}), got {bad}")
    return arr


def check_positive(value, name: str, integer: bool = False):
    return _check_number(value, name, integer, lambda v: v > 0, "> 0")


def check_nonnegative(value, name: str, integer: bool = False):
    return _check_number(value, name, integer, lambda v: v >= 0, ">= 0")


def _check_number(value, name, integer, ok, text):
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{name} must be {'an int' if integer else 'a number'}, got {type(value).__name__}")
    if not np.isfinite(value) or not ok(value):
        raise ValueError(f"{name} must be finite and {text}, got {value}")
    return int(value) if integer else float(value)


def check_dense(x, name: str, ndim: int = 2, dtype=np.float32) -> np.ndarray:
    """C-contiguous array of ``dtype`` with ``ndim`` dims and finite values."""
    if not hasattr(x, "__array__") and not isinstance(x, (list, tuple)):
        raise TypeError(f"{name} must be an array, got {type(x).__name__}")
    arr = np.asarray(x)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if arr.size and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr
