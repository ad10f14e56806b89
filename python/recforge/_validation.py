"""Argument checks shared by every layer: each raises ValueError/TypeError naming the argument."""

from __future__ import annotations

import numbers
import weakref

import numpy as np
import scipy.sparse as sp

from ._ops import array_namespace

__all__ = ["as_csr", "check_ids", "check_k", "check_positive", "check_nonnegative", "check_dense"]


def as_csr(x, name: str = "interactions", allow_empty: bool = False, allow_negative: bool = True) -> sp.csr_matrix:
    """Canonical float32 CSR (sorted indices, duplicates summed) from a sparse matrix or Interactions.

    Raises ValueError for NaN/inf values, an empty matrix (unless ``allow_empty``) or, when
    ``allow_negative`` is False, negative values.

    Each matrix is checked once: the canonical matrix returned (an Interactions' ``csr``, a model's
    ``seen_``, or ``x`` itself when it already is a float32 ``csr_matrix``) is remembered, and
    passing it again costs O(1). recforge therefore treats a matrix it has checked as immutable:
    edit a copy, not its ``data`` in place.
    """
    if hasattr(x, "csr") and not sp.issparse(x):  # recforge.Interactions
        x = x.csr
    has_negative = _checked_has_negative(x)
    if has_negative is None:
        x, has_negative = _check_csr(x, name)
    if not allow_empty and (x.shape[0] == 0 or x.shape[1] == 0 or x.nnz == 0):
        raise ValueError(f"{name} is empty (shape {x.shape}, {x.nnz} stored values)")
    if not allow_negative and has_negative:
        raise ValueError(f"{name} contains negative values, which are not meaningful here")
    return x


# id(matrix) -> (weak reference, whether it holds negative values), for the matrices as_csr returned.
_checked: dict[int, tuple[weakref.ref, bool]] = {}


def _checked_has_negative(x) -> bool | None:
    """Whether the already-checked matrix ``x`` holds negative values; None when ``x`` is unchecked."""
    entry = _checked.get(id(x))
    return entry[1] if entry is not None and entry[0]() is x else None


def _check_csr(x, name: str) -> tuple[sp.csr_matrix, bool]:
    """The full check (type, dtype, canonical form, finite values) of an unseen matrix; remembers the result."""
    if not sp.issparse(x):
        raise TypeError(
            f"{name} must be a scipy.sparse matrix (users x items) or recforge.Interactions, got {type(x).__name__}"
        )
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got ndim={x.ndim}")
    if x.dtype != np.bool_ and (not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating)):
        raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
    # A float32 csr_matrix is kept as it is (no new wrapper), so that it is recognised next time.
    csr = x if type(x) is sp.csr_matrix and x.dtype == np.float32 else sp.csr_matrix(x, dtype=np.float32, copy=False)
    if not csr.has_canonical_format:
        csr = csr.copy()
        csr.sum_duplicates()  # also sorts indices
    # min/max propagate NaN and reach +-inf: finiteness and sign in two passes, no temporary array.
    lo, hi = (float(csr.data.min()), float(csr.data.max())) if csr.nnz else (0.0, 0.0)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"{name} contains NaN or infinite values")
    key = id(csr)
    _checked[key] = (weakref.ref(csr, lambda _, key=key: _checked.pop(key, None)), lo < 0)
    return csr, lo < 0


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
    """C-contiguous array of ``dtype`` with ``ndim`` dims and finite values (a CuPy array stays on its GPU)."""
    if not (hasattr(x, "__array__") or hasattr(x, "__cuda_array_interface__") or isinstance(x, (list, tuple))):
        raise TypeError(f"{name} must be an array, got {type(x).__name__}")
    xp = array_namespace(x)
    arr = xp.asarray(x)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    arr = xp.ascontiguousarray(arr, dtype=dtype)
    if arr.size and not bool(xp.isfinite(arr).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr
