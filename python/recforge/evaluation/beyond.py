"""Beyond-accuracy metrics of recommendation lists: catalogue coverage, intra-list diversity, novelty.

All take ``recommended_ids``, an (n, w) integer array with ids in [0, n_items) and -1 padding,
and use its first ``k`` columns (``k`` defaults to w). Padding is ignored everywhere.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .._validation import as_csr, check_positive
from ._common import check_recommended

__all__ = ["coverage", "intra_list_diversity", "novelty"]


def coverage(recommended_ids, n_items: int, k: int | None = None) -> float:
    """Catalogue coverage: |distinct items recommended to anyone| / n_items.

    Parameters
    ----------
    recommended_ids : (n, w) int array, -1 padding
    n_items : int >= 1, the catalogue size
    k : int, optional, cut-off (default w)

    Returns
    -------
    float in [0, 1]
    """
    n_items = check_positive(n_items, "n_items", integer=True)
    rec, _ = check_recommended(recommended_ids, n_items, k)
    return float(np.unique(rec[rec >= 0]).size / n_items)


def intra_list_diversity(recommended_ids, item_features, k: int | None = None, batch_size: int = 4096) -> float:
    """Mean pairwise cosine distance within each list, averaged over lists.

    For a list with valid ids i_1..i_m (padding dropped, m >= 2):
    ILD = (2 / (m (m - 1))) * sum_{a < b} (1 - cos(x_{i_a}, x_{i_b})), with x_i row i of
    ``item_features`` and cos(x, y) = x.y / (|x| |y|); a zero feature vector has cosine 0 with
    every vector (distance 1). A repeated id contributes its pairs like any other position (distance
    0 with itself). The result is the mean of ILD over lists with m >= 2; lists with fewer valid ids
    are skipped.

    Parameters
    ----------
    recommended_ids : (n, w) int array, -1 padding
    item_features : (n_items, d) float array or scipy.sparse matrix
        Item factors (e.g. ``model.item_factors``) or content features (e.g. one-hot genres).
    k : int, optional, cut-off (default w)
    batch_size : int, lists per block (memory ~ 8 * batch_size * k * (d + k) bytes)

    Returns
    -------
    float in [0, 2]
    """
    batch_size = check_positive(batch_size, "batch_size", integer=True)
    if sp.issparse(item_features):
        feats = as_csr(item_features, "item_features", allow_empty=True)
        sq = np.asarray(feats.multiply(feats).sum(axis=1), dtype=np.float64).ravel()
    elif hasattr(item_features, "__array__"):
        feats = np.asarray(item_features)
        if feats.ndim != 2:
            raise ValueError(f"item_features must be 2-D (n_items, d), got shape {feats.shape}")
        if not (np.issubdtype(feats.dtype, np.floating) or np.issubdtype(feats.dtype, np.integer)):
            raise TypeError(f"item_features must hold real numbers, got dtype {feats.dtype}")
        feats = feats.astype(np.float64, copy=False)
        if not np.isfinite(feats).all():
            raise ValueError("item_features contains NaN or infinite values")
        sq = np.einsum("ij,ij->i", feats, feats)
    else:
        raise TypeError(
            f"item_features must be an (n_items, d) array or sparse matrix, got {type(item_features).__name__}"
        )
    n_items = feats.shape[0]
    if n_items == 0 or feats.shape[1] == 0:
        raise ValueError(f"item_features is empty (shape {feats.shape})")
    rec, k = check_recommended(recommended_ids, n_items, k)
    inv_norm = np.where(sq > 0, 1.0 / np.sqrt(np.where(sq > 0, sq, 1.0)), 0.0)

    total, n_lists = 0.0, 0
    for start in range(0, rec.shape[0], batch_size):
        ids = rec[start : start + batch_size]
        valid = ids >= 0
        safe = np.where(valid, ids, 0)
        x = feats[safe.ravel()]
        x = (x.toarray() if sp.issparse(x) else x).reshape(*ids.shape, -1) * inv_norm[safe][..., None]
        cos = np.einsum("bjd,bld->bjl", x, x)  # (b, k, k) cosine similarities
        pair = valid[:, :, None] & valid[:, None, :] & ~np.eye(k, dtype=bool)  # ordered pairs a != b
        m = valid.sum(axis=1)
        n_pairs = m * (m - 1)  # ordered pairs: each unordered pair is counted twice, as in the sum
        dist = np.where(pair, 1.0 - cos, 0.0).sum(axis=(1, 2))
        keep = m >= 2
        total += float((dist[keep] / n_pairs[keep]).sum())
        n_lists += int(keep.sum())
    if n_lists == 0:
        raise ValueError("recommended_ids has no list with at least two valid ids")
    return total / n_lists


def item_popularity(train) -> np.ndarray:
    """(n_items,) int64: number of users with a stored entry for each item in ``train``."""
    return np.bincount(train.indices, minlength=train.shape[1]).astype(np.int64)


def novelty(recommended_ids, train, k: int | None = None) -> float:
    """Mean self-information of the recommended items, -log2 p(i).

    p(i) = max(c_i, 1) / n_users, where c_i is the number of users with a stored entry for item i
    in ``train`` and n_users = train.shape[0]; an item nobody saw is counted as seen by one user,
    so its self-information is the largest finite value, log2(n_users). A list's novelty is the
    mean of -log2 p(i) over its valid ids (padding dropped); the result is the mean over lists
    with at least one valid id.

    Parameters
    ----------
    recommended_ids : (n, w) int array, -1 padding
    train : scipy.sparse matrix or Interactions (n_users, n_items)
    k : int, optional, cut-off (default w)

    Returns
    -------
    float >= 0, in bits
    """
    tr = as_csr(train, "train")
    rec, _ = check_recommended(recommended_ids, tr.shape[1], k)
    info = np.log2(tr.shape[0]) - np.log2(np.maximum(item_popularity(tr), 1))
    valid = rec >= 0
    m = valid.sum(axis=1)
    keep = m > 0
    if not keep.any():
        raise ValueError("recommended_ids holds only padding (-1)")
    per_list = np.where(valid, info[np.where(valid, rec, 0)], 0.0).sum(axis=1)
    return float(np.mean(per_list[keep] / m[keep]))
