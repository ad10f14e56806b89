"""Re-ranking for diversity and calibration: re-order a model's top candidates, trading some relevance.

Both re-rankers are greedy: a list is built one item at a time from a user's candidates (a
model's ``recommend`` with a larger ``k``), each step taking the candidate with the best
objective given the items already chosen. ``tradeoff`` in [0, 1] weighs relevance against the
list-level goal the same way in both: 0 keeps the model's order, 1 ignores relevance.

* ``mmr`` (maximal marginal relevance, Carbonell & Goldstein 1998): the objective of candidate i is
  ``(1 - tradeoff) * rel(i) - tradeoff * max_{j chosen} cos(x_i, x_j)`` (the paper's lambda is
  ``1 - tradeoff``), with x the rows of ``item_features``: item factors (``model.item_factors``),
  content features (one-hot genres, ``rf.Features``) or co-occurrence (``train.csr.T``: an item is
  its column of users, so cos is the items' cosine co-occurrence). It raises the intra-list
  diversity (``rf.evaluation.intra_list_diversity`` with the same features) directly.
* ``calibrate`` (Steck 2018): the objective of candidate i is
  ``(1 - tradeoff) * rel(i) - tradeoff * C_KL(p, q(chosen + i))``: the genre distribution q of the
  list should match p, the genre distribution of the user's history (``rf.evaluation.genre_distribution``,
  ``kl_miscalibration``; the paper's lambda is ``tradeoff``). It lowers
  ``rf.evaluation.miscalibration``.

rel(i) is the model's score of candidate i scaled per user to [0, 1] over the user's valid
candidates (min-max; every candidate 1 when all scores are equal), so that ``tradeoff`` means the
same for any model's score scale. Ties (objectives within 1e-12) go to the earlier candidate (the
model's better rank).
Everything is vectorised over blocks of users: a step is a few NumPy operations on (users,
candidates) arrays, ``k`` steps per block.

``Reranked(model, ...)`` wraps a fitted model: its ``recommend`` / ``recommend_external`` ask the
model for ``candidates`` items per user and re-rank them, so ``rf.evaluation.evaluate`` and
``compare`` take it like any model.
"""

from __future__ import annotations

import numpy as np

from ._validation import as_array, as_csr, check_ids, check_k, check_positive, check_result_size
from .evaluation._common import ItemCosine, check_item_matrix, gather_rows
from .evaluation.beyond import (
    _item_genre_distribution,
    _normalise_rows,
    check_alpha,
    genre_distribution,
    kl_miscalibration,
)
from .models.base import _as_id_list

__all__ = ["Reranked", "calibrate", "mmr"]

METHODS = ("mmr", "calibration")
_BLOCK_BYTES = 64 << 20  # working memory of one block of users
_TIE = 1e-12  # objectives this close are equal (relevance is in [0, 1], C_KL at most log(1 / alpha))


def _check_tradeoff(tradeoff) -> float:
    if isinstance(tradeoff, (bool, np.bool_)) or not isinstance(tradeoff, (int, float, np.integer, np.floating)):
        raise TypeError(f"tradeoff must be a number in [0, 1], got {type(tradeoff).__name__}")
    if not 0.0 <= float(tradeoff) <= 1.0:
        raise ValueError(f"tradeoff must be in [0, 1] (0: the model's order, 1: no relevance), got {tradeoff}")
    return float(tradeoff)


def _check_candidates(candidate_ids, candidate_scores, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, c) int64 ids (-1 padding, no repeats in a row) and (n, c) float64 scores (-inf at padding)."""
    if not hasattr(candidate_ids, "__array__") and not isinstance(candidate_ids, (list, tuple)):
        raise TypeError(f"candidate_ids must be a 2-D integer array (n, c), got {type(candidate_ids).__name__}")
    ids = as_array(candidate_ids, "candidate_ids")
    if ids.ndim != 2:
        raise ValueError(f"candidate_ids must be 2-D (n, c), got shape {ids.shape}")
    if ids.size and (not np.issubdtype(ids.dtype, np.integer) or ids.dtype == np.bool_):
        raise TypeError(f"candidate_ids must hold integer item indices, got dtype {ids.dtype}")
    ids = ids.astype(np.int64, copy=False)
    if ids.size and (ids.min() < -1 or ids.max() >= n_items):
        bad = ids[(ids < -1) | (ids >= n_items)][0]
        raise ValueError(f"candidate_ids must be item indices in [0, {n_items}) or -1 for padding, got {bad}")
    s = np.sort(ids, axis=1)
    if ((s[:, 1:] == s[:, :-1]) & (s[:, 1:] >= 0)).any():
        raise ValueError("candidate_ids repeats an item within a row; each candidate must appear once")
    if not hasattr(candidate_scores, "__array__") and not isinstance(candidate_scores, (list, tuple)):
        raise TypeError(f"candidate_scores must be a 2-D float array (n, c), got {type(candidate_scores).__name__}")
    scores = as_array(candidate_scores, "candidate_scores")
    if scores.shape != ids.shape:
        raise ValueError(f"candidate_scores must have the shape of candidate_ids {ids.shape}, got {scores.shape}")
    if scores.size and not (np.issubdtype(scores.dtype, np.floating) or np.issubdtype(scores.dtype, np.integer)):
        raise TypeError(f"candidate_scores must hold real numbers, got dtype {scores.dtype}")
    scores = scores.astype(np.float64, copy=False)
    if not np.isfinite(scores[ids >= 0]).all():
        raise ValueError("candidate_scores must be finite for every valid candidate (ids >= 0)")
    return ids, np.where(ids >= 0, scores, -np.inf)


def _relevance(scores: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Scores scaled per row to [0, 1] over the valid candidates (all 1 when they are equal)."""
    lo = np.min(np.where(valid, scores, np.inf), axis=1, keepdims=True)
    hi = np.max(np.where(valid, scores, -np.inf), axis=1, keepdims=True)
    span = hi - lo
    rel = np.divide(scores - lo, span, out=np.ones_like(scores), where=(span > 0) & valid)
    return np.where(valid, rel, 0.0)


def _greedy(rel, valid, k, tradeoff, penalty, pick):
    """The greedy loop shared by both re-rankers: k times, choose per row the candidate maximising
    ``(1 - tradeoff) * rel - tradeoff * penalty()``, then ``pick(rows, chosen positions)``.

    Returns (n, k) positions into the candidates, -1 once a row has no valid candidate left.
    """
    n, c = rel.shape
    available = valid.copy()
    order = np.full((n, k), -1, np.int64)
    rows = np.arange(n)
    for step in range(min(k, c)):
        objective = (1.0 - tradeoff) * rel - tradeoff * penalty() if tradeoff > 0 else rel
        objective = np.where(available, objective, -np.inf)
        # The first candidate within _TIE of the maximum: ties go to the model's better rank, also the
        # ties that rounding would break either way (two genres the history weighs equally).
        best = np.argmax(objective >= objective.max(axis=1, keepdims=True) - _TIE, axis=1)
        has = available[rows, best]
        order[has, step] = best[has]
        available[rows[has], best[has]] = False
        if not has.any():
            break
        pick(rows[has], best[has])
    return order


def _finish(ids: np.ndarray, scores: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    safe = np.maximum(order, 0)
    out_ids = np.where(order >= 0, np.take_along_axis(ids, safe, axis=1), -1)
    out_scores = np.where(order >= 0, np.take_along_axis(scores, safe, axis=1), -np.inf).astype(np.float32)
    return out_ids, out_scores


def mmr(candidate_ids, candidate_scores, item_features, k: int = 10, tradeoff: float = 0.5, *, item_ids=None):
    """Maximal marginal relevance re-ranking of each row's candidates (see the module docstring).

    Parameters
    ----------
    candidate_ids : (n, c) int item indices, best first (a model's ``recommend(users, k=c)``); -1 padding
    candidate_scores : (n, c) float, the model's scores of the candidates (-inf or anything at padding)
    item_features : (n_items, d) array, scipy.sparse matrix, ``rf.Features`` or DataFrame
        The item representation whose cosine similarity is penalised: ``model.item_factors``, one-hot
        genres, or ``train.csr.T`` for co-occurrence.
    k : int >= 1, length of the re-ranked lists (rows with fewer valid candidates are padded)
    tradeoff : float in [0, 1]; 0: the model's order, 1: each item as unlike the chosen ones as possible
    item_ids : IdMap, optional
        Aligns a DataFrame ``item_features`` indexed by external item ids (``model.item_ids_``).

    Returns
    -------
    ids : (n, k) int64, in the re-ranked order; -1 padding
    scores : (n, k) float32, the model's scores of ``ids`` (not monotone after re-ranking); -inf at padding
    """
    sim = item_features if isinstance(item_features, ItemCosine) else ItemCosine(item_features, item_ids)
    ids, scores = _check_candidates(candidate_ids, candidate_scores, sim.n_items)
    k, tradeoff = check_k(k), _check_tradeoff(tradeoff)
    check_result_size(ids.shape[0], k)
    order = np.full((ids.shape[0], k), -1, np.int64)
    step = sim.block_users(ids.shape[1], _BLOCK_BYTES)
    for start in range(0, ids.shape[0], step):
        block = slice(start, start + step)
        order[block] = _mmr_block(ids[block], scores[block], sim, k, tradeoff)
    return _finish(ids, scores, order)


def _mmr_block(ids, scores, sim, k, tradeoff):
    valid = ids >= 0
    rel = _relevance(scores, valid)
    max_sim = np.zeros(ids.shape)  # before the first pick nothing is chosen: no penalty
    # Only the chosen items' rows of the (c, c) similarity are needed: k rows, not c.
    rows_unit = gather_rows(sim.unit, np.where(valid, ids, 0)) if sim.unit is not None and tradeoff > 0 else None

    def pick(rows, positions):
        x = rows_unit if rows_unit is None or rows.size == len(ids) else rows_unit[rows]  # no copy while all pick
        max_sim[rows] = np.maximum(max_sim[rows], sim.with_items(ids[rows, positions], ids[rows], x))

    return _greedy(rel, valid, k, tradeoff, lambda: max_sim, pick if tradeoff > 0 else lambda r, p: None)


def calibrate(candidate_ids, candidate_scores, history, item_genres, k: int = 10, tradeoff: float = 0.5,
              alpha: float = 0.01, *, item_ids=None):  # fmt: skip
    """Calibrated re-ranking (Steck 2018): lists whose genre mix matches each user's history.

    Parameters
    ----------
    candidate_ids : (n, c) int item indices, best first; -1 padding
    candidate_scores : (n, c) float, the model's scores of the candidates
    history : (n, n_items) scipy.sparse matrix or Interactions, row r: the items (and weights) of the
        user of candidate row r (``model.seen_[users]``); its genre distribution is the target p
    item_genres : (n_items, G) non-negative array, sparse matrix, ``rf.Features`` or DataFrame
        (``rf.datasets.movielens_genres``); each item's row is made a distribution over genres
    k : int >= 1
    tradeoff : float in [0, 1]; 0: the model's order, 1: the list closest to the history's genres
    alpha : float in (0, 1), Steck's smoothing of the list's distribution (q~ = (1 - alpha) q + alpha p)
    item_ids : IdMap, optional, aligns a DataFrame ``item_genres`` indexed by external item ids

    Returns
    -------
    ids, scores : as ``mmr``

    A user whose history has no genres (p = 0) has nothing to calibrate to: the model's order.
    """
    genres = check_item_matrix(item_genres, "item_genres", item_ids, nonnegative=True)
    n_items = genres.shape[0]
    ids, scores = _check_candidates(candidate_ids, candidate_scores, n_items)
    hist = as_csr(history, "history", allow_empty=True)
    if hist.shape != (ids.shape[0], n_items):
        raise ValueError(
            f"history must have shape (n, n_items) = ({ids.shape[0]}, {n_items}): one row per candidate row, "
            f"got {hist.shape}"
        )
    k, tradeoff, alpha = check_k(k), _check_tradeoff(tradeoff), check_alpha(alpha)
    check_result_size(ids.shape[0], k)
    item_p = _item_genre_distribution(genres)
    target = genre_distribution(hist, genres)
    order = np.full((ids.shape[0], k), -1, np.int64)
    step = max(1, _BLOCK_BYTES // (8 * max(ids.shape[1], 1) * 3 * item_p.shape[1]))
    for start in range(0, ids.shape[0], step):
        block = slice(start, start + step)
        order[block] = _calibrate_block(ids[block], scores[block], target[block], item_p, k, tradeoff, alpha)
    return _finish(ids, scores, order)


def _calibrate_block(ids, scores, target, item_p, k, tradeoff, alpha):
    valid = ids >= 0
    rel = _relevance(scores, valid)
    cand_p = item_p[np.where(valid, ids, 0)]  # (b, c, G) p(g|i) of each candidate
    mass = np.zeros(target.shape)  # (b, G) sum of p(g|i) over the chosen items

    def penalty():  # C_KL(p, q(chosen + i)) for every candidate i
        return kl_miscalibration(target[:, None, :], _normalise_rows(mass[:, None, :] + cand_p), alpha)

    def pick(rows, positions):
        mass[rows] += cand_p[rows, positions]

    return _greedy(rel, valid, k, tradeoff, penalty, pick)


class Reranked:
    """A fitted model whose recommendations are re-ranked for diversity (``"mmr"``) or calibration.

    ``recommend(users, k)`` asks ``model.recommend(users, k=candidates)`` and re-ranks those
    candidates to ``k`` items with ``mmr`` or ``calibrate`` (the user's history is the model's
    ``seen_`` row). It has what ``rf.evaluation.evaluate`` / ``compare`` need (``recommend``,
    ``n_users``, ``n_items``), so a re-ranker is evaluated like a model.

    Parameters
    ----------
    model : a fitted recforge model (``recommend``, ``seen_``; ``item_ids_`` for external ids)
    method : "mmr" | "calibration"
    item_features : item representation for ``mmr`` (factors, features, ``train.csr.T``) or the genres
        for ``"calibration"``; a DataFrame indexed by external item ids is aligned to ``model.item_ids_``
    tradeoff : float in [0, 1], see the module docstring
    candidates : int >= 1, the model's items per user that are re-ranked (at least ``k`` is used)
    alpha : float in (0, 1), calibration's smoothing

    Examples
    --------
    >>> import recforge as rf
    >>> df = rf.datasets.synthetic(n_users=100, n_items=80, nnz=2000, seed=0)
    >>> train, test = rf.split.random_holdout(rf.Interactions.from_pandas(df), test_fraction=0.2, seed=0)
    >>> als = rf.ALS(factors=8, epochs=3).fit(train, progress=False)
    >>> diverse = rf.rerank.Reranked(als, "mmr", item_features=als.item_factors, tradeoff=0.3, candidates=50)
    >>> ids, scores = diverse.recommend([0, 1], k=10)
    >>> metrics = rf.evaluation.evaluate(diverse, train, test, k=10, item_features=als.item_factors)
    """

    def __init__(self, model, method: str = "mmr", *, item_features, tradeoff: float = 0.5, candidates: int = 100,
                 alpha: float = 0.01):  # fmt: skip
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if not callable(getattr(model, "recommend", None)) or not hasattr(model, "seen_"):
            raise TypeError(f"model must be a fitted recforge model (recommend, seen_), got {type(model).__name__}")
        if getattr(model, "is_fitted", True) is False:
            raise ValueError(f"model ({type(model).__name__}) is not fitted")
        self.model, self.method = model, method
        self.tradeoff = _check_tradeoff(tradeoff)
        self.candidates = check_positive(candidates, "candidates", integer=True)
        self.alpha = check_alpha(alpha)
        item_ids = getattr(model, "item_ids_", None)
        if method == "mmr":
            self._similarity = ItemCosine(item_features, item_ids)
            n = self._similarity.n_items
        else:
            self._genres = check_item_matrix(item_features, "item_features", item_ids, nonnegative=True)
            n = self._genres.shape[0]
        if n != model.n_items:
            raise ValueError(f"item_features has {n} rows but the model has {model.n_items} items")

    @property
    def n_users(self) -> int:
        return self.model.n_users

    @property
    def user_ids_(self):
        return getattr(self.model, "user_ids_", None)

    @property
    def item_ids_(self):
        return getattr(self.model, "item_ids_", None)

    @property
    def n_items(self) -> int:
        return self.model.n_items

    def recommend(self, users, k: int = 10, exclude_seen: bool = True, items=None, threads: int = 0):
        """The model's top ``max(candidates, k)`` items per user, re-ranked to ``k`` (ids, model scores).

        Parameters and returns as the model's ``recommend``; ``k`` is clipped to the catalogue.
        """
        u = check_ids(users, self.n_users, "users")
        k = min(check_k(k), self.n_items)
        cand, scores = self.model.recommend(
            u, k=max(self.candidates, k), exclude_seen=exclude_seen, items=items, threads=threads
        )
        if self.method == "mmr":
            return mmr(cand, scores, self._similarity, k, self.tradeoff)
        return calibrate(cand, scores, self.model.seen_[u], self._genres, k, self.tradeoff, self.alpha)

    def recommend_external(self, users, k: int = 10, exclude_seen: bool = True, items=None, threads: int = 0):
        """``recommend`` in the data set's own ids: a DataFrame (user, rank, item, score) as the model's
        ``recommend_external`` (users the model does not know are a ValueError)."""
        u = self.model._to_internal("user", users, "users")
        subset = None if items is None else self.model._to_internal("item", items, "items")
        ids, scores = self.recommend(u, k, exclude_seen, items=subset, threads=threads)
        return self.model._external_frame(_as_id_list(users), ids, scores)
