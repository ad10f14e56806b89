"""Batched top-K selection: score queries against items and keep the best k per row.

The work is done by the C++ kernel (csrc/cpu/topk.cpp): blocked SGEMM into an L2-sized buffer and
a threshold-filtered heap per row, multithreaded over blocks of queries, GIL released. ``topk`` is
the public, validating entry: it checks and canonicalises the arguments once, then calls the
internal, trusting ``ops.topk`` of the device (models that keep checked ranking vectors call
``ops.topk`` directly).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._backend import is_device_array, resolve_device, resolve_threads
from ._ops import array_namespace, get_ops
from ._validation import check_dense, check_k, check_memory, check_sparse_structure

__all__ = ["topk"]

# |score| <= f * max|q| * max|i|: below this bound no score (nor partial sum) overflows float32.
_SCORE_LIMIT = float(np.finfo(np.float32).max) / 2


def topk(queries, items, k: int = 10, exclude=None, candidates=None, device: str = "auto", threads: int = 0,
         precision: str = "fp32"):  # fmt: skip
    """Best ``k`` items per query by inner product, exact.

    Parameters
    ----------
    queries : (n, f) float32 array (NumPy, or CuPy for the GPU)
        Other real dtypes and non-contiguous arrays are converted (a copy).
    items : (m, f) float32 array, m >= 1, on the same device as ``queries``
    k : int, 1 <= k <= m
    exclude : scipy.sparse (or, on the GPU, cupyx.scipy.sparse) matrix (n, m), optional
        The stored positions of row ``i`` (whatever their values) are item ids that never appear in
        row ``i`` of the result. Applied inside the kernel from the CSR rows, without a dense mask.
    candidates : int array, optional
        ``(c,)`` item ids that every row is restricted to, or ``(n, c)`` per-row candidate ids with
        -1 as padding. Duplicates count once. Per-row candidates are scored by gather + dot product
        (no full matrix product), so they pay off when ``c`` is much smaller than ``m``.
    device : "auto" | "cpu" | "cuda"
        "auto" follows the data: CuPy inputs run on the GPU, NumPy inputs on the CPU; data is never
        moved silently (queries and items on different devices, or "cpu" with CuPy arrays, is a
        ValueError). "cuda" with NumPy inputs copies them to the GPU tile by tile.
    threads : int, 0 = all cores
        Results do not depend on it. The GPU ignores it.
    precision : "fp32" | "tf32" | "bf16"
        The GPU's scoring GEMM: "fp32" is exact; "tf32" / "bf16" score with tensor cores, keep the
        best ``k + max(k, 32)`` per row and re-score those exactly in fp32 (the final scores are
        exact; an item ranked just outside the survivors by the rounding can be missed). The CPU
        takes "fp32" only.

    Returns
    -------
    ids : (n, k) int64
        Best first; equal scores go to the lower item id. CuPy arrays when run on the GPU.
    scores : (n, k) float32
        Rows with fewer than k valid items (after exclusion and candidates) end in padding:
        id -1 and score -inf.

    Raises
    ------
    ValueError
        Wrong shapes, NaN/inf, k out of range, ids out of range, factors so large that scores
        would overflow float32.
    TypeError
        Non-numeric arrays, non-integer k or candidates, exclude not a scipy.sparse matrix.
    """
    if device == "auto" and is_device_array(queries) != is_device_array(items):
        raise ValueError(
            "queries and items must be on the same device (one is a GPU array, the other is not); move one "
            "explicitly (cupy.asarray / .get()) or pass device='cuda'"
        )
    device = resolve_device(device, queries, items, exclude, candidates)
    ops = get_ops(device)  # "cuda" without CuPy or a GPU: the clear error, before any work
    threads = resolve_threads(threads)
    if precision not in ("fp32", "tf32", "bf16"):
        raise ValueError(f"precision must be 'fp32', 'tf32' or 'bf16', got {precision!r}")
    if precision != "fp32" and device != "cuda":
        raise ValueError(f"precision={precision!r} needs the GPU (device='cuda'); the CPU scores in fp32")
    q = check_dense(queries, "queries")
    it = check_dense(items, "items")
    if q.shape[1] != it.shape[1]:
        raise ValueError(f"queries and items must have the same number of factors, got {q.shape[1]} and {it.shape[1]}")
    n, m = q.shape[0], it.shape[0]
    k = check_k(k)
    if m == 0:
        raise ValueError("items is empty")
    if q.shape[1] == 0:
        raise ValueError("queries and items have 0 factors")
    if k > m:
        raise ValueError(f"k must be <= the number of items ({m}), got {k}")
    check_memory(12.0 * n * k, f"k={k} for {n} queries (an ({n}, {k}) result)")
    if n and q.shape[1] * float(abs(q).max()) * float(abs(it).max()) > _SCORE_LIMIT:
        raise ValueError("queries and items are too large: their inner products would overflow float32")

    ex = None
    if exclude is not None:
        if is_device_array(exclude):  # cupyx.scipy.sparse (only reaches here on the GPU; CuPy checked it)
            ex = exclude.tocsr()
        elif sp.issparse(exclude):
            if exclude.shape != (n, m):  # said first: a broken matrix of another shape never reaches SciPy
                raise ValueError(f"exclude must have shape {(n, m)}, got {exclude.shape}")
            check_sparse_structure(exclude, "exclude")  # before SciPy converts it
            ex = sp.csr_matrix(exclude)
        else:
            raise TypeError(f"exclude must be a scipy.sparse matrix (n x m), got {type(exclude).__name__}")
        if ex.shape != (n, m):
            raise ValueError(f"exclude must have shape {(n, m)}, got {ex.shape}")
        if not ex.has_sorted_indices:  # the kernels merge / binary-search sorted rows
            ex = ex.copy()
            ex.sort_indices()

    subset = per_row = None
    if candidates is not None:
        xp = array_namespace(candidates)
        cand = xp.asarray(candidates)
        if cand.size and not np.issubdtype(cand.dtype, np.integer):
            raise TypeError(f"candidates must be integer item ids, got dtype {cand.dtype}")
        cand = cand.astype(np.int64, copy=False)
        if cand.ndim == 1:
            if cand.size and (int(cand.min()) < 0 or int(cand.max()) >= m):
                raise ValueError(f"candidates must be item ids in [0, {m})")
            subset = cand
        elif cand.ndim == 2 and cand.shape[0] == n:
            if cand.size and (int(cand.min()) < -1 or int(cand.max()) >= m):
                raise ValueError(f"candidates must be item ids in [0, {m}) or -1 padding")
            per_row = xp.ascontiguousarray(cand)
        else:
            raise ValueError(f"candidates must be 1-D (c,) or 2-D ({n}, c), got shape {cand.shape}")

    extra = {"precision": precision} if device == "cuda" else {}
    return ops.topk(q, it, k, exclude=ex, subset=subset, per_row=per_row, threads=threads, **extra)
