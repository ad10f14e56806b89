"""Input checks and the shared hit computation for the evaluation layer.

Everything here is vectorised over users: a (row, item) pair is encoded as the int64 key
``row * n_items + item``. A canonical CSR (rows in order, sorted indices) yields its keys already
sorted, so membership of many (row, item) pairs is a single ``np.searchsorted``.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from .._backend import single_threaded_blas
from .._validation import as_array, as_csr, check_ids, check_k

logger = logging.getLogger(__name__)

__all__ = [
    "ItemCosine",
    "check_item_matrix",
    "check_recommended",
    "csr_keys",
    "first_occurrence",
    "gather_rows",
    "hit_matrix",
    "in_sorted",
    "relevant_rows",
    "unit_rows",
]


def check_recommended(recommended_ids, n_items: int, k=None, name: str = "recommended_ids") -> tuple[np.ndarray, int]:
    """(n, k) int64 view of the first ``k`` columns of ``recommended_ids`` and the checked ``k``.

    ``recommended_ids`` must be a 2-D integer array with ids in [0, n_items) or -1 (padding).
    ``k`` defaults to its width; ``k`` larger than the width is an error (the missing positions
    are unknown, not misses).
    """
    if not hasattr(recommended_ids, "__array__") and not isinstance(recommended_ids, (list, tuple)):
        raise TypeError(f"{name} must be a 2-D integer array (n_users, k), got {type(recommended_ids).__name__}")
    rec = as_array(recommended_ids, name)
    if rec.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_users, k), got shape {rec.shape}")
    if rec.shape[0] == 0 or rec.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {rec.shape})")
    if not np.issubdtype(rec.dtype, np.integer) or rec.dtype == np.bool_:
        raise TypeError(f"{name} must hold integer item ids, got dtype {rec.dtype}")
    width = rec.shape[1]
    k = width if k is None else check_k(k)
    if k > width:
        raise ValueError(f"k must be <= the width of {name} ({width}), got {k}")
    rec = rec[:, :k].astype(np.int64, copy=False)
    lo, hi = rec.min(), rec.max()
    if lo < -1 or hi >= n_items:
        bad = rec[(rec < -1) | (rec >= n_items)][0]
        raise ValueError(f"{name} must hold item ids in [0, {n_items}) or -1 for padding, got {bad}")
    return rec, k


def relevant_rows(test, n_rows: int, users=None, name: str = "test") -> sp.csr_matrix:
    """Binary relevance CSR (n_rows, n_items): the entries of ``test`` with a value > 0.

    ``test`` is an Interactions or scipy.sparse matrix; without ``users`` it must have exactly
    ``n_rows`` rows, with ``users`` its rows ``users`` are taken (``len(users) == n_rows``).
    """
    t = as_csr(test, name, allow_empty=True)
    if users is None:
        if t.shape[0] != n_rows:
            raise ValueError(
                f"{name} has {t.shape[0]} rows but recommended_ids has {n_rows}: pass users= to select the "
                f"rows of {name} that the recommendations are for"
            )
    else:
        u = check_ids(users, t.shape[0], "users")
        if u.size != n_rows:
            raise ValueError(f"users must have one entry per row of recommended_ids ({n_rows}), got {u.size}")
        t = t[u]
    rel = t.copy()
    rel.data = (rel.data > 0).astype(np.float32)
    rel.eliminate_zeros()  # binary relevance: stored values <= 0 are not relevant
    if rel.nnz == 0:
        raise ValueError(f"{name} has no relevant entries (values > 0) in the evaluated rows")
    return rel


def csr_keys(m: sp.csr_matrix) -> np.ndarray:
    """Sorted int64 keys ``row * n_cols + col`` of a canonical CSR's stored entries."""
    rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
    return rows * m.shape[1] + m.indices.astype(np.int64)


def in_sorted(keys: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """Boolean mask: which of ``keys`` occur in the sorted array ``sorted_keys``."""
    if sorted_keys.size == 0:
        return np.zeros(keys.shape, dtype=bool)
    pos = np.searchsorted(sorted_keys, keys)
    return sorted_keys[np.minimum(pos, sorted_keys.size - 1)] == keys


def first_occurrence(ids: np.ndarray) -> np.ndarray:
    """(n, k) bool: True where ``ids[r, j]`` does not appear earlier in row ``r``."""
    order = np.argsort(ids, axis=1, kind="stable")  # stable: the earliest position leads each run
    s = np.take_along_axis(ids, order, axis=1)
    first_sorted = np.ones(ids.shape, dtype=bool)
    first_sorted[:, 1:] = s[:, 1:] != s[:, :-1]
    first = np.empty(ids.shape, dtype=bool)
    np.put_along_axis(first, order, first_sorted, axis=1)
    return first


def hit_matrix(rec: np.ndarray, rel: sp.csr_matrix) -> np.ndarray:
    """(n, k) bool: ``rec[r, j]`` is relevant for row ``r``, is not padding, and is its first occurrence.

    A repeated item counts once (at its first position), so no metric can exceed its maximum.
    """
    n_items = rel.shape[1]
    keys = np.arange(rec.shape[0], dtype=np.int64)[:, None] * n_items + rec
    hits = (rec >= 0) & in_sorted(keys, csr_keys(rel))
    return hits & first_occurrence(rec)


def check_item_matrix(item_features, name: str = "item_features", item_ids=None, nonnegative: bool = False):
    """(n_items, d) float64 ndarray or canonical CSR of per-item features, checked.

    Takes a NumPy array, a scipy.sparse matrix, a ``recforge.Features`` (its ``matrix``) or a pandas
    DataFrame. A DataFrame indexed by external item ids is aligned to ``item_ids`` (a model's or an
    Interactions' ``IdMap``) when given: item ids it lacks get a row of zeros (logged), its rows
    for other ids are dropped; without ``item_ids`` its rows are taken in order. ``nonnegative``:
    negative values are refused (genre weights).
    """
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        pd = None
    if pd is not None and isinstance(item_features, pd.DataFrame):
        if item_ids is not None:
            aligned = item_features.reindex(item_ids.index)
            missing = int(aligned.isna().all(axis=1).sum())
            if missing:
                logger.info("%s: %d of %d items have no row; they get zeros", name, missing, len(item_ids))
            item_features = aligned.fillna(0)
        item_features = item_features.to_numpy()
    elif hasattr(item_features, "matrix") and hasattr(item_features, "ids"):  # recforge.Features
        item_features = item_features.matrix
    if sp.issparse(item_features):
        feats = as_csr(item_features, name, allow_empty=True, allow_negative=not nonnegative).astype(np.float64)
    elif hasattr(item_features, "__array__") or isinstance(item_features, (list, tuple)):
        feats = as_array(item_features, name)
        if feats.ndim != 2:
            raise ValueError(f"{name} must be 2-D (n_items, d), got shape {feats.shape}")
        if not (np.issubdtype(feats.dtype, np.floating) or np.issubdtype(feats.dtype, np.integer)):
            raise TypeError(f"{name} must hold real numbers, got dtype {feats.dtype}")
        feats = feats.astype(np.float64, copy=False)
        if not np.isfinite(feats).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        if nonnegative and feats.size and feats.min() < 0:
            raise ValueError(f"{name} contains negative values; expected non-negative weights (e.g. 0/1 genres)")
    else:
        raise TypeError(
            f"{name} must be an (n_items, d) array, sparse matrix, DataFrame or rf.Features, "
            f"got {type(item_features).__name__}"
        )
    if feats.shape[0] == 0 or feats.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {feats.shape})")
    return feats


# Sparse features wider than this (co-occurrence: one column per user) are compared through their
# precomputed item-item product instead of dense per-block gathers of their rows; up to
# FULL_PRODUCT_MAX_ITEMS items that product is kept dense (128 MB of float64 at most) and gathered
# directly, measured 3-6x faster than gathering its sparse rows (ML-100K co-occurrence).
DENSE_GATHER_MAX_DIM = 256
FULL_PRODUCT_MAX_ITEMS = 4096


class ItemCosine:
    """Cosine similarities among the items of each row of an id array, (b, c, c), from item features.

    Dense or narrow features: the unit rows of a block's items are gathered and multiplied (b c^2 d
    flops). Wide sparse features (co-occurrence): the item-item product of the unit rows is computed
    once (sparse; dense when the catalogue is small) and a block's entries of it are gathered. A zero
    feature vector has cosine 0 with every vector. Used by ``intra_list_diversity`` and ``rf.rerank.mmr``.
    """

    def __init__(self, item_features, item_ids=None):
        feats = check_item_matrix(item_features, "item_features", item_ids)
        self.n_items = feats.shape[0]
        unit = unit_rows(feats)
        self.product = self.unit = None
        if sp.issparse(unit) and unit.shape[1] > DENSE_GATHER_MAX_DIM:
            self.product = sp.csr_matrix(unit @ unit.T)
            if self.n_items <= FULL_PRODUCT_MAX_ITEMS:
                self.product = self.product.toarray()
        else:
            self.unit = unit.toarray() if sp.issparse(unit) else unit

    def block_users(self, c: int, budget_bytes: int) -> int:
        """Rows per block so that a block's arrays of ``c`` ids stay within ``budget_bytes``."""
        width = self.n_items if self.product is not None else self.unit.shape[1]
        return max(1, budget_bytes // (8 * max(c, 1) * (width + c)))

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        """(b, c, c) cosines of ``ids`` (b, c); entries of -1 padding are compared as item 0 (mask them)."""
        safe = np.where(ids >= 0, ids, 0)
        if self.unit is not None:
            x = gather_rows(self.unit, safe)
            # Many small products: a threaded BLAS only adds synchronisation (measured 10x slower with 2
            # threads on a loaded machine, (940, 100, 64)); one thread is ~5x a plain einsum.
            with single_threaded_blas():
                return np.matmul(x, np.swapaxes(x, 1, 2))
        if isinstance(self.product, np.ndarray):
            return np.take(self.product, safe[:, :, None] * self.n_items + safe[:, None, :])
        b, c = safe.shape
        rows = self.product[safe.ravel()].toarray().reshape(b, c, -1)
        return np.take_along_axis(rows, np.broadcast_to(safe[:, None, :], (b, c, c)), axis=2)

    def with_items(self, items: np.ndarray, ids: np.ndarray, rows_unit=None) -> np.ndarray:
        """(b, c) cosine of ``items[r]`` with each of ``ids[r]`` (padding compared as item 0): one row of
        the (b, c, c) block, for a greedy re-ranker that needs only its chosen items' rows.

        ``rows_unit``: the (b, c, d) unit rows of ``ids`` when already gathered (dense features).
        """
        safe = np.where(ids >= 0, ids, 0)
        if self.unit is not None:
            x = gather_rows(self.unit, safe) if rows_unit is None else rows_unit
            with single_threaded_blas():
                return np.matmul(x, self.unit[items][:, :, None])[:, :, 0]
        if isinstance(self.product, np.ndarray):
            return np.take(self.product, items[:, None] * self.n_items + safe)
        return np.take_along_axis(self.product[items].toarray(), safe, axis=1)


def unit_rows(feats) -> np.ndarray | sp.csr_matrix:
    """``feats`` with every non-zero row scaled to unit L2 norm (zero rows stay zero): cosine = dot product."""
    sq = (
        np.asarray(feats.multiply(feats).sum(axis=1)).ravel()
        if sp.issparse(feats)
        else np.einsum("ij,ij->i", feats, feats)
    )
    inv = np.where(sq > 0, 1.0 / np.sqrt(np.where(sq > 0, sq, 1.0)), 0.0)
    return sp.csr_matrix(feats.multiply(inv[:, None])) if sp.issparse(feats) else feats * inv[:, None]


def gather_rows(feats, ids: np.ndarray) -> np.ndarray:
    """Dense ``feats[ids]`` of shape ``ids.shape + (d,)``; ``ids`` must be valid (no -1)."""
    x = feats[ids.ravel()]
    return (x.toarray() if sp.issparse(x) else x).reshape(*ids.shape, -1)
