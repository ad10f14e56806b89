"""Batched top-K selection: score queries against items and keep the best k per row.

TEMPORARY numpy implementation holding the public contract while the C++ kernel is written
(issue 2); the contract below is what the kernel must keep.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._backend import resolve_device, resolve_threads
from ._validation import check_dense, check_k

__all__ = ["topk"]


def topk(queries, items, k: int = 10, exclude=None, candidates=None, device: str = "auto", threads: int = 0):
    """Best ``k`` items per query by inner product.

    Parameters
    ----------
    queries : (n, f) float32 array
    items : (m, f) float32 array
    k : int, 1 <= k <= m
    exclude : scipy.sparse CSR (n, m), optional
        Row ``i`` lists item ids that never appear in row ``i`` of the result.
    candidates : int array, optional
        (c,) item ids that every row is restricted to, or (n, c) per-row candidate ids (-1 pads).
    device : "auto" | "cpu" | "cuda"
    threads : int, 0 = all cores

    Returns
    -------
    ids : (n, k) int64, best first; ties go to the lower item id.
    scores : (n, k) float32
        Rows with fewer than k valid items are padded with id -1 and score -inf.
    """
    device = resolve_device(device, queries, items)
    resolve_threads(threads)
    q = check_dense(queries, "queries")
    it = check_dense(items, "items")
    if q.shape[1] != it.shape[1]:
        raise ValueError(f"queries and items must have the same number of factors, got {q.shape[1]} and {it.shape[1]}")
    n, m = q.shape[0], it.shape[0]
    k = check_k(k)
    if m == 0:
        raise ValueError("items is empty")
    if k > m:
        raise ValueError(f"k must be <= the number of items ({m}), got {k}")
    scores = q @ it.T
    if exclude is not None:
        if not sp.issparse(exclude):
            raise TypeError(f"exclude must be a scipy.sparse CSR matrix, got {type(exclude).__name__}")
        if exclude.shape != (n, m):
            raise ValueError(f"exclude must have shape {(n, m)}, got {exclude.shape}")
        ex = sp.csr_matrix(exclude)
        rows = np.repeat(np.arange(n), np.diff(ex.indptr))
        scores[rows, ex.indices] = -np.inf
    if candidates is not None:
        cand = np.asarray(candidates)
        if not np.issubdtype(cand.dtype, np.integer):
            raise TypeError(f"candidates must be integer item ids, got dtype {cand.dtype}")
        mask = np.ones_like(scores, dtype=bool)
        if cand.ndim == 1:
            if cand.size and (cand.min() < 0 or cand.max() >= m):
                raise ValueError(f"candidates must be item ids in [0, {m})")
            mask[:, cand] = False
        elif cand.ndim == 2 and cand.shape[0] == n:
            if cand.size and (cand.min() < -1 or cand.max() >= m):
                raise ValueError(f"candidates must be item ids in [0, {m}) or -1 padding")
            r, c = np.nonzero(cand >= 0)
            mask[r, cand[r, c]] = False
        else:
            raise ValueError(f"candidates must be 1-D (c,) or 2-D ({n}, c), got shape {cand.shape}")
        scores[mask] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(scores, order, axis=1).astype(np.float32)
    ids = order.astype(np.int64)
    ids[~np.isfinite(top)] = -1
    return ids, top
