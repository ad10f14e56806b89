"""Argument checks shared by every layer: each raises ValueError/TypeError naming the argument."""

from __future__ import annotations

import math
import numbers
import os
import weakref

import numpy as np
import scipy.sparse as sp

from ._ops import array_namespace

__all__ = [
    "as_array",
    "as_csr",
    "check_dense",
    "check_finite",
    "check_ids",
    "check_k",
    "check_memory",
    "check_nonnegative",
    "check_positive",
    "check_result_size",
    "check_scores",
    "check_sparse_structure",
]


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
    """The full check (type, dtype, structure, canonical form, finite values) of an unseen matrix; remembers it."""
    if not sp.issparse(x):
        raise TypeError(
            f"{name} must be a scipy.sparse matrix (users x items) or recforge.Interactions, got {type(x).__name__}"
        )
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got ndim={x.ndim}")
    if x.dtype != np.bool_ and (not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating)):
        raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
    check_sparse_structure(x, name)
    # A float32 csr_matrix is kept as it is (no new wrapper), so that it is recognised next time.
    csr = x if type(x) is sp.csr_matrix and x.dtype == np.float32 else sp.csr_matrix(x, dtype=np.float32, copy=False)
    if not csr.has_canonical_format:
        csr = csr.copy()
        csr.sum_duplicates()  # also sorts indices
    # min/max propagate NaN and reach +-inf: finiteness and sign in two passes, no temporary array.
    lo, hi = (float(csr.data.min()), float(csr.data.max())) if csr.nnz else (0.0, 0.0)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"{name} contains NaN or infinite values")
    remember_checked(csr, lo < 0)
    return csr, lo < 0


def remember_checked(csr: sp.csr_matrix, has_negative: bool) -> None:
    """Record a canonical, finite float32 CSR as checked, so that ``as_csr`` accepts it in O(1).

    For ``_check_csr`` and for matrices derived from checked ones by operations that keep them
    canonical and finite (e.g. the evaluation's thresholded test matrix).
    """
    key = id(csr)
    _checked[key] = (weakref.ref(csr, lambda _, key=key: _checked.pop(key, None)), bool(has_negative))


def check_sparse_structure(x, name: str) -> None:
    """Refuse a sparse matrix whose index arrays are inconsistent, before SciPy converts it.

    SciPy trusts the index arrays of a matrix built from arrays (or edited in place): its C++
    conversions (transpose, tocsr, sum_duplicates) then read and write out of bounds. Checked here
    in O(nnz + rows), once per matrix (``as_csr`` remembers it): CSR/CSC/BSR pointers start at 0,
    never decrease and end within the index array, indices (and COO coordinates) are in range, and
    the index and value arrays have consistent lengths. Other formats hold Python containers that
    SciPy checks itself.
    """
    n_rows, n_cols = x.shape
    if x.format in ("csr", "csc", "bsr"):
        major, minor = (n_rows, n_cols) if x.format != "csc" else (n_cols, n_rows)
        what = {"csr": ("row", "column"), "csc": ("column", "row"), "bsr": ("block row", "block column")}[x.format]
        if x.format == "bsr":
            r, c = x.blocksize
            major, minor = n_rows // max(r, 1), n_cols // max(c, 1)
        indptr, indices = np.asarray(x.indptr), np.asarray(x.indices)
        for arr, label in ((indptr, "indptr"), (indices, "indices")):
            if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
                raise ValueError(f"{name}.{label} must be a 1-D integer array, got {arr.dtype} shape {arr.shape}")
        if indptr.size != major + 1:
            raise ValueError(f"{name}.indptr must have {major + 1} entries ({what[0]}s + 1), got {indptr.size}")
        nnz = int(indptr[-1])
        if indptr[0] != 0:
            raise ValueError(f"{name}.indptr must start at 0, got {indptr[0]}")
        steps = np.diff(indptr)
        if steps.size and steps.min() < 0:
            bad = int(np.argmax(steps < 0))
            raise ValueError(f"{name}.indptr must be non-decreasing, but it decreases at {what[0]} {bad}")
        data_len = len(x.data) if x.format != "bsr" else x.data.shape[0]
        if indices.size != data_len:
            raise ValueError(f"{name}: indices and data must have one length, got {indices.size} and {data_len}")
        if nnz > indices.size:
            raise ValueError(f"{name}: indptr ends at {nnz} but indices and data have {indices.size} entries")
        _check_range(indices[:nnz], minor, f"{name}: {what[1]} index")
    elif x.format == "coo":
        row, col = (np.asarray(a) for a in x.coords) if hasattr(x, "coords") else (np.asarray(x.row), np.asarray(x.col))
        if not (row.ndim == col.ndim == 1 and row.size == col.size == np.asarray(x.data).size):
            raise ValueError(f"{name}: row, col and data must be 1-D of one length, got {row.shape}, {col.shape} and "
                             f"{np.asarray(x.data).shape}")  # fmt: skip
        _check_range(row, n_rows, f"{name}: row index")
        _check_range(col, n_cols, f"{name}: column index")


def _check_range(ids: np.ndarray, n: int, what: str) -> None:
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{what}es must be integers, got dtype {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() >= n):
        pos = int(np.argmax((ids < 0) | (ids >= n)))
        raise ValueError(f"{what} {ids[pos]} at position {pos} is out of range [0, {n})")


def _physical_memory() -> int:
    """Bytes of RAM of this machine (1 TiB when the platform does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 1 << 40


def check_memory(nbytes: float, what: str) -> None:
    """Refuse up front a request for more memory than the machine has.

    ``what`` says what asked for it ("k=10**9 for 100 users"); the error gives the size, so the
    caller sees the cause at once instead of a MemoryError (or minutes of swapping) later.
    """
    limit = _physical_memory()
    if nbytes > limit:
        raise ValueError(f"{what} needs {_gib(nbytes)} of memory, more than this machine has ({_gib(limit)})")


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.3g} GiB"


_INT64_MAX = 2**63 - 1


def check_k(k, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(k).__name__}")
    if k <= 0:
        raise ValueError(f"{name} must be >= 1, got {k}")
    if k > _INT64_MAX:  # NumPy cannot even make an empty (0, k) array
        raise ValueError(f"{name} must be <= 2^63 - 1, got {k}")
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
    # Range first, in the ids' own dtype: a uint64 id past 2^63 would wrap to a negative int64.
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        bad = arr[(arr < 0) | (arr >= n)][0]
        raise ValueError(f"{name} must be in [0, {n}), got {bad}")
    return arr.astype(np.int64, copy=False)


def check_positive(value, name: str, integer: bool = False):
    return _check_number(value, name, integer, lambda v: v > 0, "> 0")


def check_nonnegative(value, name: str, integer: bool = False):
    return _check_number(value, name, integer, lambda v: v >= 0, ">= 0")


def _check_number(value, name, integer, ok, text):
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, kind):
        raise TypeError(f"{name} must be {'an int' if integer else 'a number'}, got {type(value).__name__}")
    if not integer:
        try:
            value = float(value)  # Fraction, Decimal-like Reals, numpy scalars; huge ints overflow
        except OverflowError:
            value = math.inf
    if (not integer and not math.isfinite(value)) or not ok(value):
        raise ValueError(f"{name} must be finite and {text}, got {value}")
    return int(value) if integer else value


def as_array(x, name: str) -> np.ndarray:
    """``np.asarray(x)``, with a ragged nested list refused naming ``name`` (not NumPy's message)."""
    try:
        return np.asarray(x)
    except ValueError:
        raise ValueError(f"{name} must be a rectangular array (rows of one length)") from None


def check_dense(x, name: str, ndim: int = 2, dtype=np.float32) -> np.ndarray:
    """C-contiguous array of ``dtype`` with ``ndim`` dims and finite values (a CuPy array stays on its GPU)."""
    if not (hasattr(x, "__array__") or hasattr(x, "__cuda_array_interface__") or isinstance(x, (list, tuple))):
        raise TypeError(f"{name} must be an array, got {type(x).__name__}")
    xp = array_namespace(x)
    arr = as_array(x, name) if xp is np else xp.asarray(x)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    arr = xp.ascontiguousarray(arr, dtype=dtype)
    if arr.size and not bool(xp.isfinite(arr).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def check_finite(value, name: str) -> float:
    """``value`` as a float if it is a finite real number; TypeError / ValueError naming ``name``."""
    return _check_number(value, name, False, lambda v: True, "a number")


def check_scores(scores: np.ndarray, model) -> np.ndarray:
    """``scores`` if they are all finite; else a ValueError (huge but finite parameters overflow float32)."""
    if scores.size and not np.isfinite(scores).all():
        raise ValueError(f"this {type(model).__name__}'s parameters are too large: its scores overflow float32 "
                         "(NaN or inf)")  # fmt: skip
    return scores


def check_result_size(n: int, k: int) -> None:
    """Refuse up front an (n, k) result (int64 ids + float32 scores) larger than the machine's memory."""
    check_memory(12.0 * n * k, f"k={k} for {n} rows (an ({n}, {k}) result)")
