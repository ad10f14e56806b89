"""Top-k ranking metrics and AUC, vectorised over users.

Common definitions (every function below follows them):

* ``recommended_ids`` is an (n, w) integer array, best first; ``-1`` is padding and never a hit.
  Only its first ``k`` columns are used (``k`` defaults to ``w``; ``k > w`` is a ValueError).
* ``test`` is a users x items sparse matrix (or ``recforge.Interactions``) with binary relevance:
  item ``i`` is relevant to user ``u`` when ``test[u, i] > 0``; T_u is that set. Row ``r`` of
  ``recommended_ids`` is scored against row ``r`` of ``test``, or against row ``users[r]`` when
  ``users`` is given.
* hit h_u(j) = 1 when the item at 1-based rank j is in T_u and does not already appear at an
  earlier rank of the same list (a repeated item counts once).
* The returned value is the mean over the users with |T_u| > 0; users without test items are
  skipped, never counted as zero. ``per_user=True`` returns the (n,) float64 per-user values
  instead, NaN for skipped users (for paired significance tests).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .._validation import as_array, as_csr, check_ids, check_positive
from ._common import check_recommended, csr_keys, hit_matrix, in_sorted, relevant_rows

__all__ = [
    "RANKING_METRICS",
    "auc",
    "hit_rate_at_k",
    "map_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "precision_at_k",
    "recall_at_k",
]

RANKING_METRICS = ("precision", "recall", "ndcg", "map", "hit_rate", "mrr")


def _discounts(k: int) -> np.ndarray:
    """1 / log2(rank + 1) for ranks 1..k."""
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def per_user_metrics(hits: np.ndarray, n_relevant: np.ndarray, names) -> dict[str, np.ndarray]:
    """Per-user values of the metrics ``names`` from a hit matrix (n, k) and |T_u| (n,).

    Rows with ``n_relevant == 0`` get NaN.
    """
    n, k = hits.shape
    h = hits.astype(np.float64)
    n_hits = h.sum(axis=1)
    n_rel = n_relevant.astype(np.float64)
    has = n_relevant > 0
    safe_rel = np.where(has, n_rel, 1.0)
    ideal_len = np.minimum(k, np.where(has, n_relevant, 1))  # min(k, |T_u|), >= 1
    out = {}
    for name in names:
        if name == "precision":
            v = n_hits / k
        elif name == "recall":
            v = n_hits / safe_rel
        elif name == "ndcg":
            disc = _discounts(k)
            v = (h @ disc) / np.cumsum(disc)[ideal_len - 1]
        elif name == "map":
            prec_at_r = np.cumsum(h, axis=1) / np.arange(1, k + 1)
            v = (h * prec_at_r).sum(axis=1) / ideal_len
        elif name == "hit_rate":
            v = (n_hits > 0).astype(np.float64)
        elif name == "mrr":
            first = np.argmax(hits, axis=1)
            v = np.where(n_hits > 0, 1.0 / (first + 1), 0.0)
        else:
            raise ValueError(f"unknown ranking metric {name!r}; expected one of {RANKING_METRICS}")
        out[name] = np.where(has, v, np.nan)
    return out


def _ranking_metric(name, recommended_ids, test, k, users, per_user):
    t = as_csr(test, "test", allow_empty=True)
    rec, k = check_recommended(recommended_ids, t.shape[1], k)
    rel = relevant_rows(t, rec.shape[0], users)
    values = per_user_metrics(hit_matrix(rec, rel), np.diff(rel.indptr), [name])[name]
    return values if per_user else float(np.nanmean(values))


_DEFINITIONS_DOC = """
    T_u = {i : test[u, i] > 0} (binary relevance). h_u(j) = 1 when the id at 1-based rank j is in
    T_u, is not -1 padding and does not appear at an earlier rank of the same list (a repeated id
    counts once), else 0. The result averages over users with |T_u| > 0; users without test items
    are skipped, never counted as 0.
"""

_SIGNATURE_DOC = """
    Parameters
    ----------
    recommended_ids : (n, w) int array
        Recommended item ids per user, best first; -1 is padding (never a hit).
    test : scipy.sparse matrix or Interactions, (n_users, n_items)
        Held-out interactions; an entry > 0 is relevant.
    k : int, optional
        Cut-off, 1 <= k <= w; defaults to w.
    users : 1-D int array (n,), optional
        Row of ``test`` for each row of ``recommended_ids``; without it, ``test`` has n rows.
    per_user : bool
        Return the (n,) float64 per-user values (NaN for users with no test items) instead of the mean.

    Returns
    -------
    float (mean over users with at least one test item), or (n,) float64 array when ``per_user``.
"""


def precision_at_k(recommended_ids, test, k: int | None = None, *, users=None, per_user: bool = False):
    """Precision@k: hits / k.

    precision_u = (sum_{j<=k} h_u(j)) / k, also when fewer than k ids are valid (padding counts as
    a miss).
    """
    return _ranking_metric("precision", recommended_ids, test, k, users, per_user)


def recall_at_k(recommended_ids, test, k: int | None = None, *, users=None, per_user: bool = False):
    """Recall@k: hits / |T_u|.

    recall_u = (sum_{j<=k} h_u(j)) / |T_u| (not divided by min(k, |T_u|): a user with more test
    items than k cannot reach 1).
    """
    return _ranking_metric("recall", recommended_ids, test, k, users, per_user)


def ndcg_at_k(recommended_ids, test, k: int | None = None, *, users=None, per_user: bool = False):
    """NDCG@k with binary gains.

    DCG_u = sum_{j<=k} h_u(j) / log2(j + 1) (j is the 1-based rank);
    IDCG_u = sum_{j <= min(k, |T_u|)} 1 / log2(j + 1); ndcg_u = DCG_u / IDCG_u.
    """
    return _ranking_metric("ndcg", recommended_ids, test, k, users, per_user)


def map_at_k(recommended_ids, test, k: int | None = None, *, users=None, per_user: bool = False):
    """MAP@k (mean average precision).

    AP_u = (1 / min(k, |T_u|)) * sum_{j<=k} h_u(j) * precision_u@j, where precision_u@j =
    (sum_{r<=j} h_u(r)) / j. MAP@k is the mean of AP_u.
    """
    return _ranking_metric("map", recommended_ids, test, k, users, per_user)


def hit_rate_at_k(recommended_ids, test, k: int | None = None, *, users=None, per_user: bool = False):
    """Hit rate@k: 1 when at least one of the first k ids is relevant, else 0."""
    return _ranking_metric("hit_rate", recommended_ids, test, k, users, per_user)


def mrr_at_k(recommended_ids, test, k: int | None = None, *, users=None, per_user: bool = False):
    """MRR@k: 1 / (rank of the first hit) when there is a hit within the first k ids, else 0."""
    return _ranking_metric("mrr", recommended_ids, test, k, users, per_user)


for _f in (precision_at_k, recall_at_k, ndcg_at_k, map_at_k, hit_rate_at_k, mrr_at_k):
    _f.__doc__ += _DEFINITIONS_DOC + _SIGNATURE_DOC
del _f


def _score_block(scores, rows: np.ndarray, n_items: int, offset: int) -> np.ndarray:
    """Dense (len(rows), n_items) float64 scores for a block of users: from an array or a model."""
    if hasattr(scores, "score") and callable(scores.score):
        users = np.repeat(rows, n_items)
        items = np.tile(np.arange(n_items, dtype=np.int64), rows.size)
        block = np.asarray(scores.score(users, items), dtype=np.float64)
        if block.shape != (rows.size * n_items,):
            raise ValueError(f"model.score returned shape {block.shape}, expected ({rows.size * n_items},)")
        block = block.reshape(rows.size, n_items)
    else:
        block = np.array(scores[offset : offset + rows.size], dtype=np.float64)  # a copy: -inf is written in
    if not np.isfinite(block).all():
        raise ValueError("scores contains NaN or infinite values")
    return block


def auc(scores, test, train=None, *, users=None, per_user: bool = False, batch_size: int | None = None):
    """Per-user ROC AUC of the test items against the items the user has not interacted with.

    For user u, let C_u be the items not in ``train[u]`` (every stored train entry is excluded,
    whatever its value), P_u = {i in C_u : test[u, i] > 0} the positives and N_u = C_u \\ P_u the
    negatives (this includes stored test entries <= 0). Then

        AUC_u = (1 / (|P_u| |N_u|)) * sum_{p in P_u} sum_{q in N_u} ( [s_p > s_q] + 0.5 [s_p = s_q] ),

    the probability that a random positive outscores a random negative, ties counting one half.
    It is computed exactly from mid-ranks (Mann-Whitney U): with R_p the average rank of s_p
    among the scores of C_u (ascending, ties averaged),
    AUC_u = (sum_{p in P_u} R_p - |P_u| (|P_u| + 1) / 2) / (|P_u| |N_u|).
    The result is the mean of AUC_u over users with |P_u| > 0 and |N_u| > 0 (others are skipped).

    Parameters
    ----------
    scores : (n, n_items) float array, or a fitted model with ``score(users, items)``
        Predicted preference of every item for each evaluated user. A model is asked for every
        (user, item) pair, ``batch_size`` users at a time.
    test : scipy.sparse matrix or Interactions, (n_users, n_items)
        Held-out interactions; an entry > 0 is a positive.
    train : scipy.sparse matrix or Interactions, (n_users, n_items), optional
        Training interactions, left out of the ranking. Without it, every item is ranked.
    users : 1-D int array (n,), optional
        Rows of ``test``/``train`` to evaluate (and the model's user ids). Without it: all rows of
        ``test``, so an array ``scores`` must then have ``test.shape[0]`` rows.
    per_user : bool
        Return the (n,) float64 values, NaN for skipped users, instead of the mean.
    batch_size : int, optional
        Users per block; default 2**20 // n_items (about 2**20 scores, 8 MiB of float64, per block;
        a model's score() may use more per pair).

    Returns
    -------
    float, or (n,) float64 array when ``per_user``.
    """
    t = as_csr(test, "test", allow_empty=True)
    n_users, n_items = t.shape
    rows = np.arange(n_users, dtype=np.int64) if users is None else check_ids(users, n_users, "users")
    n = rows.size
    if train is None:
        tr = sp.csr_matrix((n, n_items), dtype=np.float32)
    else:
        tr = as_csr(train, "train", allow_empty=True)
        if tr.shape != t.shape:
            raise ValueError(f"train and test must have the same shape, got {tr.shape} and {t.shape}")
        tr = tr[rows]
    is_model = hasattr(scores, "score") and callable(scores.score)
    if not is_model:
        if not hasattr(scores, "__array__") and not isinstance(scores, (list, tuple)):
            raise TypeError(
                f"scores must be an (n, n_items) array or a model with score(), got {type(scores).__name__}"
            )
        scores = as_array(scores, "scores")
        if not (np.issubdtype(scores.dtype, np.floating) or np.issubdtype(scores.dtype, np.integer)):
            raise TypeError(f"scores must hold real numbers, got dtype {scores.dtype}")
        if scores.shape != (n, n_items):
            raise ValueError(f"scores must have shape {(n, n_items)} (one row per evaluated user), got {scores.shape}")
    rel = relevant_rows(t, n, None if users is None else rows)
    # positives that are also train items are not candidates: drop them
    rel_keys = csr_keys(rel)
    pos_keys = rel_keys[~in_sorted(rel_keys, csr_keys(tr))]
    pos_rows, pos_items = np.divmod(pos_keys, n_items)
    n_pos = np.bincount(pos_rows, minlength=n)
    n_train = np.diff(tr.indptr)
    n_neg = n_items - n_train - n_pos

    batch_size = max(1, (1 << 20) // n_items) if batch_size is None else check_positive(batch_size, "batch_size", True)
    rank_sum = np.zeros(n, dtype=np.float64)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        block = _score_block(scores, rows[start:stop] if is_model else np.arange(start, stop), n_items, start)
        sub = tr[start:stop]
        # train items get -inf: they tie at the bottom with ranks 1..n_train, so every candidate's
        # rank among all items is its rank among the candidates plus n_train
        block[np.repeat(np.arange(stop - start), np.diff(sub.indptr)), sub.indices] = -np.inf
        import scipy.stats  # here, not at import: scipy.stats alone costs ~0.5 s of `import recforge`

        ranks = scipy.stats.rankdata(block, method="average", axis=1)
        sel = (pos_rows >= start) & (pos_rows < stop)
        r = pos_rows[sel]
        rank_sum += np.bincount(r, weights=ranks[r - start, pos_items[sel]], minlength=n)
    ok = (n_pos > 0) & (n_neg > 0)
    P, N = n_pos.astype(np.float64), n_neg.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = (rank_sum - P * n_train - P * (P + 1) / 2) / (P * N)
    values = np.where(ok, values, np.nan)
    if not ok.any():
        raise ValueError("no evaluated user has both a test item and an item outside train and test")
    return values if per_user else float(np.nanmean(values))
