"""Beyond-accuracy metrics of recommendation lists: catalogue coverage, intra-list diversity, novelty,
popularity bias (average recommended popularity, Gini of exposure, long-tail share) and calibration
to the genres of a user's history (Steck 2018).

All take ``recommended_ids``, an (n, w) integer array with ids in [0, n_items) and -1 padding,
and use its first ``k`` columns (``k`` defaults to w). Padding is ignored everywhere. Item
popularity is always the number of users with a stored entry for the item in ``train``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .._validation import as_array, as_csr, check_ids, check_positive
from ._common import ItemCosine, check_item_matrix, check_recommended

__all__ = [
    "average_popularity",
    "coverage",
    "genre_distribution",
    "gini",
    "gini_exposure",
    "intra_list_diversity",
    "kl_miscalibration",
    "long_tail_share",
    "miscalibration",
    "novelty",
]


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
    item_features : (n_items, d) float array, scipy.sparse matrix, ``rf.Features`` or DataFrame
        Item factors (e.g. ``model.item_factors``), content features (e.g. one-hot genres) or
        co-occurrence (``train.csr.T``: items as their users' columns).
    k : int, optional, cut-off (default w)
    batch_size : int, lists per block (memory ~ 8 * batch_size * k * (d + k) bytes)

    Returns
    -------
    float in [0, 2]
    """
    batch_size = check_positive(batch_size, "batch_size", integer=True)
    cosine = item_features if isinstance(item_features, ItemCosine) else ItemCosine(item_features)
    rec, k = check_recommended(recommended_ids, cosine.n_items, k)

    total, n_lists = 0.0, 0
    for start in range(0, rec.shape[0], batch_size):
        ids = rec[start : start + batch_size]
        valid = ids >= 0
        cos = cosine(ids)  # (b, k, k) cosine similarities
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
    return _per_list_mean(rec, info)


def _per_list_mean(rec: np.ndarray, values: np.ndarray) -> float:
    """Mean over lists (with at least one valid id) of the mean of ``values[id]`` over the list's valid ids."""
    valid = rec >= 0
    m = valid.sum(axis=1)
    keep = m > 0
    if not keep.any():
        raise ValueError("recommended_ids holds only padding (-1)")
    per_list = np.where(valid, values[np.where(valid, rec, 0)], 0.0).sum(axis=1)
    return float(np.mean(per_list[keep] / m[keep]))


def average_popularity(recommended_ids, train, k: int | None = None) -> float:
    """Average recommended popularity (ARP, Abdollahpouri et al. 2019): popularity bias of the lists.

    ARP = mean over lists of (1 / m) * sum_{i in list} c_i, with c_i the number of users with a
    stored entry for item i in ``train`` and m the list's valid ids; lists of padding only are
    skipped. Compare it with the catalogue's mean popularity (``train.nnz / n_items``): a larger
    value means the lists lean to popular items.

    Returns
    -------
    float >= 0, in users
    """
    tr = as_csr(train, "train")
    rec, _ = check_recommended(recommended_ids, tr.shape[1], k)
    return _per_list_mean(rec, item_popularity(tr).astype(np.float64))


def gini(values) -> float:
    """Gini coefficient of a non-negative vector: 0 when all entries are equal, (n - 1) / n when one holds all.

    G = sum_{i=1..n} (2 i - n - 1) x_(i) / (n * sum_i x_i), with x_(1) <= ... <= x_(n) sorted ascending.
    """
    x = as_array(values, "values")
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"values must be a non-empty 1-D array, got shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)) or x.dtype == np.bool_:
        raise TypeError(f"values must hold real numbers, got dtype {x.dtype}")
    x = np.sort(x.astype(np.float64))
    if not np.isfinite(x).all() or x[0] < 0:
        raise ValueError("values must be finite and >= 0")
    total = x.sum()
    if total == 0:
        raise ValueError("values are all zero: the Gini coefficient is undefined")
    n = x.size
    return float(((2 * np.arange(1, n + 1) - n - 1) @ x) / (n * total))


def gini_exposure(recommended_ids, n_items: int, k: int | None = None) -> float:
    """Gini coefficient of the items' exposure: how unequally the recommendation slots are spread.

    The exposure of item i is the number of times it appears in ``recommended_ids`` (first ``k``
    columns, padding dropped); every item of the catalogue counts, the never recommended with 0.
    0: every item equally often; (n_items - 1) / n_items: one item fills every slot. See ``gini``.
    """
    n_items = check_positive(n_items, "n_items", integer=True)
    rec, _ = check_recommended(recommended_ids, n_items, k)
    valid = rec[rec >= 0]
    if valid.size == 0:
        raise ValueError("recommended_ids holds only padding (-1)")
    return gini(np.bincount(valid, minlength=n_items))


def long_tail_items(train, head_fraction: float = 0.2) -> np.ndarray:
    """(n_items,) bool: the long tail, every item outside the ``head_fraction`` most popular ones.

    The head is the ceil(head_fraction * n_items) items with the most users in ``train`` (ties
    to the lower item index).
    """
    tr = as_csr(train, "train")
    head_fraction = check_positive(head_fraction, "head_fraction")
    if head_fraction >= 1:
        raise ValueError(f"head_fraction must be in (0, 1), got {head_fraction}")
    n_head = int(np.ceil(head_fraction * tr.shape[1]))
    tail = np.ones(tr.shape[1], dtype=bool)
    tail[np.argsort(-item_popularity(tr), kind="stable")[:n_head]] = False
    return tail


def long_tail_share(recommended_ids, train, k: int | None = None, head_fraction: float = 0.2) -> float:
    """Average percentage of long-tail items (APLT, Abdollahpouri et al. 2019), as a share in [0, 1].

    Mean over lists (with at least one valid id) of the share of the list's valid ids that are in
    the long tail of ``train`` (``long_tail_items``: all but the ``head_fraction`` most popular items).
    """
    tr = as_csr(train, "train")
    tail = long_tail_items(tr, head_fraction)
    rec, _ = check_recommended(recommended_ids, tr.shape[1], k)
    return _per_list_mean(rec, tail.astype(np.float64))


def genre_distribution(rows, item_genres) -> np.ndarray:
    """(n, G) genre distribution of each row's items (Steck 2018, p(g|u)): rows sum to 1 (0 without genres).

    p(g|u) is proportional to sum_i w_ui * p(g|i), with w_ui the row's stored weights and
    p(g|i) = genres_ig / sum_g genres_ig the item's genres made a distribution (an item without
    genres contributes nothing). ``rows`` is a (n, n_items) scipy.sparse matrix (a user's history)
    and ``item_genres`` a checked (n_items, G) non-negative matrix.
    """
    mass = np.asarray((rows @ _item_genre_distribution(item_genres)), dtype=np.float64)
    return _normalise_rows(mass)


def _item_genre_distribution(item_genres) -> np.ndarray:
    """(n_items, G) dense p(g|i): each item's genre weights scaled to sum 1 (zero rows stay zero)."""
    g = item_genres.toarray() if sp.issparse(item_genres) else np.asarray(item_genres, dtype=np.float64)
    return _normalise_rows(g)


def _normalise_rows(mass: np.ndarray) -> np.ndarray:
    total = mass.sum(axis=-1, keepdims=True)
    return np.divide(mass, total, out=np.zeros_like(mass), where=total > 0)


def kl_miscalibration(p: np.ndarray, q: np.ndarray, alpha: float = 0.01) -> np.ndarray:
    """Steck's (2018) miscalibration C_KL(p, q) = sum_g p(g) log(p(g) / q~(g)), q~ = (1 - alpha) q + alpha p.

    ``p`` (target, e.g. the history's genres) and ``q`` (the list's) are (..., G) distributions;
    terms with p(g) = 0 are 0, and the smoothing by ``alpha`` keeps the value finite (at most
    log(1 / alpha)). Returns the (...) array of values (0 where p is all zero).
    """
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    absent = p == 0  # log(1) = 0 there: 0 * log(...) stays 0 even where q~ is 0
    entropy = np.sum(p * np.log(p + absent), axis=-1)  # sum_g p log p, once per p (broadcast below)
    return entropy - np.sum(p * np.log((1.0 - alpha) * q + alpha * p + absent), axis=-1)


def check_alpha(alpha) -> float:
    alpha = check_positive(alpha, "alpha")
    if alpha >= 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return alpha


def miscalibration(recommended_ids, train, item_genres, k: int | None = None, alpha: float = 0.01,
                   users=None) -> float:  # fmt: skip
    """Mean miscalibration of the lists against the genres of the users' histories (Steck 2018, M_KL).

    For each list: p = ``genre_distribution`` of the user's ``train`` row, q = the genre
    distribution of the list's valid ids (each weighted 1), and C_KL(p, q) (``kl_miscalibration``).
    The mean is over lists whose user has a genre distribution (a history with genres) and that
    hold a valid id. 0 is perfectly calibrated.

    Parameters
    ----------
    recommended_ids : (n, w) int array, -1 padding
    train : scipy.sparse matrix or Interactions (n_users, n_items): the histories
    item_genres : (n_items, G) non-negative array, sparse matrix or DataFrame (``rf.datasets.movielens_genres``;
        a DataFrame is aligned to ``train``'s item ids when ``train`` is an Interactions)
    k : int, optional, cut-off (default w)
    alpha : float in (0, 1), the smoothing of q
    users : 1-D int array, optional: row r of ``recommended_ids`` is for user ``users[r]`` of ``train``
        (default: row r is user r, and ``recommended_ids`` has one row per user)
    """
    tr = as_csr(train, "train")
    genres = check_item_matrix(item_genres, "item_genres", getattr(train, "item_ids", None), nonnegative=True)
    if genres.shape[0] != tr.shape[1]:
        raise ValueError(f"item_genres has {genres.shape[0]} rows but train has {tr.shape[1]} items")
    alpha = check_alpha(alpha)
    rec, _ = check_recommended(recommended_ids, tr.shape[1], k)
    if users is None:
        if rec.shape[0] != tr.shape[0]:
            raise ValueError(f"recommended_ids has {rec.shape[0]} rows but train has {tr.shape[0]}: pass users=")
        history = tr
    else:
        u = check_ids(users, tr.shape[0], "users")
        if u.size != rec.shape[0]:
            raise ValueError(f"users must have one entry per row of recommended_ids ({rec.shape[0]}), got {u.size}")
        history = tr[u]
    p = genre_distribution(history, genres)
    valid = rec >= 0
    item_p = _item_genre_distribution(genres)
    q = _normalise_rows(np.where(valid[..., None], item_p[np.where(valid, rec, 0)], 0.0).sum(axis=1))
    keep = (p.sum(axis=1) > 0) & valid.any(axis=1)
    if not keep.any():
        raise ValueError("no list has both a valid id and a user history with genres")
    return float(kl_miscalibration(p[keep], q[keep], alpha).mean())
