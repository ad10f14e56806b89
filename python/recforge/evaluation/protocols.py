"""Evaluation protocols: full-catalogue ranking (the default, the honest one) and the sampled
NCF protocol (1 positive + n negatives), plus the helpers that define the sampled protocol's inputs.

A model is duck-typed: the full protocol calls ``model.recommend(users, k=k, exclude_seen=True)``
(``threads=`` too when its ``recommend`` accepts it); the sampled protocol and AUC call
``model.score(users, items)`` on 1-D arrays of pairs. Users and items are dense indices.
"""

from __future__ import annotations

import inspect
import logging
import warnings

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from .._config import show_progress
from .._validation import as_csr, check_ids, check_k, check_positive, remember_checked
from ._common import check_item_matrix, csr_keys, hit_matrix, in_sorted, relevant_rows
from .beyond import (
    average_popularity,
    coverage,
    gini_exposure,
    intra_list_diversity,
    long_tail_share,
    miscalibration,
    novelty,
)
from .ranking import RANKING_METRICS, auc, per_user_metrics
from .rating import RATING_METRICS, mae, rmse

__all__ = ["evaluate", "sample_negatives", "test_pairs"]

logger = logging.getLogger(__name__)

# beyond accuracy: popularity = average recommended popularity, gini = Gini of exposure, long_tail = share
BEYOND_METRICS = ("coverage", "novelty", "popularity", "gini", "long_tail")
FEATURE_METRICS = {"diversity": "item_features", "miscalibration": "item_genres"}  # metric -> the input it needs
FULL_METRICS = RANKING_METRICS + ("auc",) + BEYOND_METRICS
FULL_DEFAULT = RANKING_METRICS + BEYOND_METRICS
SAMPLED_METRICS = ("hit_rate", "ndcg", "mrr")
SAMPLED_DEFAULT = ("hit_rate", "ndcg")
TIE_RULES = ("pessimistic", "optimistic", "expected")


def test_pairs(test, users=None) -> tuple[np.ndarray, np.ndarray]:
    """The (user, item) test pairs of the sampled protocol, in their canonical order.

    The pairs are the entries of ``test`` with a value > 0, ordered by user, then item (the order
    of a canonical CSR's stored entries). Rows of a ``negatives`` array are in this order.

    Parameters
    ----------
    test : scipy.sparse matrix or Interactions (n_users, n_items)
    users : 1-D int array, optional
        Keep only the pairs of these users (the order stays by user, then item).

    Returns
    -------
    users, items : (n_pairs,) int64 arrays
    """
    t = as_csr(test, "test")
    rel = relevant_rows(t, t.shape[0])
    u, i = np.divmod(csr_keys(rel), t.shape[1])
    if users is not None:
        keep = np.isin(u, check_ids(users, t.shape[0], "users"))
        u, i = u[keep], i[keep]
        if u.size == 0:
            raise ValueError("none of users has a test item (value > 0)")
    return u, i


def sample_negatives(train, test, n_negatives: int = 100, seed: int = 0, users=None) -> np.ndarray:
    """Sample ``n_negatives`` distinct items per test pair that its user has not interacted with.

    "Interacted with" means a stored entry in ``train`` or ``test`` (any value). Each row is a
    uniformly random set of ``n_negatives`` such items (no repeats), listed in ascending item order;
    the result is deterministic for a given ``seed``.

    Parameters
    ----------
    train, test : scipy.sparse matrix or Interactions (n_users, n_items), same shape
    n_negatives : int >= 1
    seed : int
    users : 1-D int array, optional, as in ``test_pairs``

    Returns
    -------
    (n_pairs, n_negatives) int64 item ids, row p for pair p of ``test_pairs(test, users)``.
    """
    tr, t = _train_test(train, test)
    n_neg = check_positive(n_negatives, "n_negatives", integer=True)
    pair_users, _ = test_pairs(t, users)
    return _sample_unseen(tr, t, pair_users, n_neg, np.random.default_rng(seed))


def _train_test(train, test) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    tr = as_csr(train, "train")
    t = as_csr(test, "test")
    if tr.shape != t.shape:
        raise ValueError(f"train and test must have the same shape (n_users, n_items), got {tr.shape} and {t.shape}")
    return tr, t


def _sample_unseen(train, test, pair_users, n_neg, rng, max_rounds: int = 64, chunk: int = 1 << 22) -> np.ndarray:
    n_users, n_items = train.shape

    def pattern(m):  # stored entries as ones: a stored 0 still counts as an interaction
        return sp.csr_matrix((np.ones(m.nnz, np.float32), m.indices, m.indptr), shape=m.shape)

    seen = (pattern(train) + pattern(test)).tocsr()  # union of the stored entries
    seen.sum_duplicates()
    n_seen = np.diff(seen.indptr)
    n_unseen = n_items - n_seen[pair_users]
    short = n_unseen < n_neg
    if short.any():
        u = pair_users[short][0]
        raise ValueError(
            f"n_negatives={n_neg} but user {u} has only {n_items - n_seen[u]} items outside train and test"
        )
    # Sample in "unseen rank" space: j in [0, n_unseen_u) stands for the j-th item user u has not
    # seen. Distinct j give distinct items, so rows are made distinct there, then mapped once.
    # With the user's seen items s_0 < s_1 < ..., g_t = s_t - t counts the unseen items before s_t,
    # and the j-th unseen item is j + #{t : g_t <= j}: one searchsorted on the keys
    # u * (n_items + 1) + g_t, which are globally sorted (by user, then g).
    t_in_row = np.arange(seen.nnz) - np.repeat(seen.indptr[:-1], n_seen)
    gap_keys = np.repeat(np.arange(n_users, dtype=np.int64), n_seen) * (n_items + 1) + (seen.indices - t_in_row)

    out = np.empty((pair_users.size, n_neg), dtype=np.int64)
    rows_per_chunk = max(1, chunk // n_neg)  # bounds the memory of the draws
    for start in range(0, pair_users.size, rows_per_chunk):
        sl = slice(start, start + rows_per_chunk)
        j = _distinct_draws(n_unseen[sl], n_neg, rng, max_rounds)
        # rows are sorted and pair users ascending, so the needles are sorted too (fast searchsorted)
        base = pair_users[sl].astype(np.int64)[:, None] * (n_items + 1)
        before = np.searchsorted(gap_keys, base + j, side="right") - seen.indptr[pair_users[sl]][:, None]
        out[sl] = j + before
    return out


def _distinct_draws(high: np.ndarray, n: int, rng, max_rounds: int) -> np.ndarray:
    """(len(high), n) int64, row r: n distinct integers uniform in [0, high[r]), sorted ascending.

    Rows with room (high >= 2n) draw with replacement and redraw repeats, a few rounds at most;
    the set is uniform over n-subsets because the procedure treats every value alike. Crowded
    rows (and any row that still repeats after ``max_rounds``) take an exact permutation draw,
    one row at a time: such a row costs O(high) anyway.
    """
    out = rng.integers(0, high[:, None], size=(high.size, n), dtype=np.int64)
    out.sort(axis=1)
    crowded = high < 2 * n
    dirty = np.flatnonzero(~crowded)
    for _ in range(max_rounds):
        sub = out[dirty]
        rep = np.zeros(sub.shape, dtype=bool)
        rep[:, 1:] = sub[:, 1:] == sub[:, :-1]
        has = rep.any(axis=1)
        dirty, sub, rep = dirty[has], sub[has], rep[has]
        if dirty.size == 0:
            break
        r, c = np.nonzero(rep)
        sub[r, c] = rng.integers(0, high[dirty][r], dtype=np.int64)
        sub.sort(axis=1)
        out[dirty] = sub
    for r in np.concatenate([np.flatnonzero(crowded), dirty]):
        out[r] = np.sort(rng.choice(high[r], n, replace=False))
    return out


_UNCUT = ("auc",)  # metrics without a cut-off


def _check_metrics(metrics, allowed, default, pinned: dict | None = None) -> tuple[str, ...]:
    """The plain metric names; names with a cut-off ("ndcg@10") go into ``pinned`` {cut-off: names}."""
    if metrics is None:
        return default
    if isinstance(metrics, str):
        metrics = (metrics,)
    names, bad = [], []
    for m in tuple(metrics):
        base, at, cut = m.partition("@") if isinstance(m, str) else (m, "", "")
        if base not in allowed or (at and (not cut.isdigit() or int(cut) < 1 or base in _UNCUT or pinned is None)):
            bad.append(m)
        elif at:
            pinned.setdefault(int(cut), []).append(base)
        else:
            names.append(base)
    if bad or not (names or pinned):
        raise ValueError(f"metrics must be names from {allowed}, optionally with a cut-off (ndcg@10), got {bad or []}")
    return tuple(names)


def _recommend_kwargs(model, threads: int) -> dict:
    try:
        params = inspect.signature(model.recommend).parameters
    except (TypeError, ValueError):
        return {}
    return {"threads": threads} if "threads" in params else {}


def _check_model_shape(model, n_users: int, n_items: int) -> None:
    for attr, n, what in (("n_items", n_items, "items"), ("n_users", n_users, "users")):
        m = getattr(model, attr, None)
        if isinstance(m, (int, np.integer)) and (m != n if attr == "n_items" else m < n):
            raise ValueError(f"model has {m} {what} but train/test have {n}")


def evaluate(
    model,
    train,
    test,
    k: int = 10,
    protocol: str = "full",
    metrics=None,
    n_negatives: int = 100,
    negatives=None,
    seed: int = 0,
    batch_size: int = 1024,
    users=None,
    threads: int = 0,
    ties: str = "pessimistic",
    progress: bool | None = None,
    relevance_threshold: float | None = None,
    item_features=None,
    item_genres=None,
) -> dict:
    """Evaluate a fitted model on held-out interactions.

    Rating models (``model.predicts_ratings`` true: SGDMF, explicit ALS) are scored by their rating
    error on every stored test entry: ``"rmse"`` and ``"mae"`` (the default metrics for them).
    Ranking them needs ``relevance_threshold``: which test ratings count as relevant is a choice
    (4 and up on a 1-5 scale is common), never a silent "every rating".

    ``protocol="full"`` (default): every evaluated user (a user with at least one test entry > 0,
    restricted to ``users`` when given) gets ``model.recommend(users, k, exclude_seen=True)``, a
    ranking of the whole catalogue minus the model's training items, in batches of ``batch_size``
    users. Ties between equal scores are broken by the model (recforge models: lower item id
    first). Metrics (see ``recforge.evaluation``): precision, recall, ndcg, map, hit_rate, mrr,
    coverage (over the evaluated users' lists), novelty (item popularity from ``train``), the
    popularity bias of the lists (popularity: ``average_popularity``; gini: ``gini_exposure``;
    long_tail: ``long_tail_share``), with ``item_features`` diversity (``intra_list_diversity``),
    with ``item_genres`` miscalibration (``miscalibration``, the users' ``train`` rows as history)
    and, on request, auc (per-user AUC of test items against all items outside train and test;
    asks ``model.score`` for every item, so it is not in the default set).

    ``protocol="sampled"`` (the NCF compatibility protocol, He et al. 2017; labelled
    ``"sampled(1+n)"`` in the result): each test pair (u, i) (an entry > 0 of ``test``, ordered by
    user then item as ``test_pairs`` returns them) is ranked against n negative items, scored with
    ``model.score`` in batches of ``batch_size`` pairs. The negatives are ``negatives`` when given,
    else ``n_negatives`` items per pair sampled by ``sample_negatives(train, test, n_negatives,
    seed)``. The positive's rank among the 1 + n items is

        rank = 1 + #{negatives scoring higher} + #{negatives scoring equal}   (ties="pessimistic")
        rank = 1 + #{negatives scoring higher}                                 (ties="optimistic")

    and ties="expected" averages each metric over a uniformly random order of the tied items
    (exact, not sampled). Pessimistic is the default: a model that scores many items equally
    (MostPopular on unseen items, an untrained model) gets no credit for ties; it is also what
    the NCF reference code does (a stable sort with the positive listed last). A negative equal to
    its pair's positive item is ignored (published NCF-format files contain some); negatives are
    otherwise used as given, even when they are training items of the user. Per pair:
    hit_rate@k = [rank <= k], ndcg@k = [rank <= k] / log2(rank + 1), mrr@k = [rank <= k] / rank;
    the result is the mean over test pairs (one pair per user in the NCF files).

    Parameters
    ----------
    model : fitted model with ``recommend`` (full) or ``score`` (sampled, auc)
    train : scipy.sparse matrix or Interactions (n_users, n_items)
        The training interactions (for novelty, auc and the negatives' exclusion). The full protocol
        excludes the items in the model's own training data (``exclude_seen=True``).
    test : scipy.sparse matrix or Interactions (n_users, n_items), same shape as ``train``
    k : int >= 1 or sequence of them, the cut-off(s): ``k=[5, 10]`` reports every metric at both
        (one ranking pass per cut-off)
    protocol : "full" | "sampled"
    metrics : sequence of str, optional
        Full: any of precision, recall, ndcg, map, hit_rate, mrr, auc, coverage, novelty, popularity,
        gini, long_tail, diversity, miscalibration (default: all but auc, diversity when
        ``item_features`` is given, miscalibration when ``item_genres`` is). Sampled: any of hit_rate,
        ndcg, mrr (default: hit_rate, ndcg). A name may carry its own cut-off: ``"ndcg@20"`` is ndcg
        at 20 only (whatever ``k``).
    n_negatives : int >= 1, negatives per test pair when ``negatives`` is not given
    negatives : (n_pairs, n_neg) int array, optional
        Fixed negative item ids (e.g. the ``.test.negative`` file of ``rf.datasets.load_ncf_format``),
        row p for pair p of ``test_pairs(test)`` (all pairs, before ``users`` selects some).
    seed : int, for the sampled negatives
    batch_size : int >= 1, users (full) or test pairs (sampled) per model call
    users : 1-D int array, optional, evaluate only these users (each once, in index order)
    threads : int, passed to ``model.recommend`` when it accepts it (0 = all cores)
    ties : "pessimistic" | "optimistic" | "expected", the sampled protocol's tie rule
    progress : bool, optional, show a tqdm bar over the batches (when there is more than one); None: the
        package-wide setting (``recforge.set_config(progress=...)``)
    relevance_threshold : float, optional
        A test entry is relevant for the ranking metrics when its value is >= this (default: > 0,
        every stored positive value). Required to rank a rating model.
    item_features : (n_items, d) array, sparse matrix, ``rf.Features`` or DataFrame, optional
        The item representation of the ``diversity`` metric (intra-list cosine distance): item factors,
        one-hot genres, ``train.csr.T`` (co-occurrence). A DataFrame indexed by external item ids is
        aligned to ``train``'s item ids (``train`` an Interactions).
    item_genres : (n_items, G) non-negative array, sparse matrix or DataFrame, optional
        The genres of the ``miscalibration`` metric (``rf.datasets.movielens_genres``).

    Returns
    -------
    dict
        ``"<metric>@<k>"`` -> float for each metric ("auc" has no @k), ``"n_users"`` -> int (users
        evaluated), ``"protocol"`` -> "full" or "sampled(1+n)", and for the sampled protocol
        ``"n_pairs"`` -> int and ``"ties"`` -> the tie rule. Rating metrics add ``"rmse"``, ``"mae"``
        and ``"n_ratings"`` (test entries scored).
    """
    batch_size = check_positive(batch_size, "batch_size", integer=True)
    tr, t = _train_test(train, test)
    _check_model_shape(model, *t.shape)
    rating_names, metrics = _split_rating_metrics(model, metrics, relevance_threshold)
    out = {}
    if rating_names:
        out.update(_evaluate_ratings(model, t, rating_names, users, batch_size))
    if metrics != ():
        if relevance_threshold is not None:
            t = _relevant_by_threshold(t, relevance_threshold)
        features = _feature_inputs(train, t.shape[1], protocol, metrics, item_features=item_features,
                                   item_genres=item_genres)  # fmt: skip
        out.update(_evaluate_ranking(model, tr, t, k, protocol, metrics, n_negatives, negatives, seed, batch_size,
                                     users, threads, ties, progress, features))  # fmt: skip
    counts = ("n_users", "n_pairs", "ties", "n_ratings")  # after the metrics, whatever the number of cut-offs
    return {
        **{key: v for key, v in out.items() if key not in counts},
        **{key: out[key] for key in counts if key in out},
    }


def _feature_inputs(train, n_items: int, protocol, metrics, **given) -> dict:
    """{metric: its checked item matrix} for the feature metrics (diversity, miscalibration) given an input.

    An input without the full protocol, or a feature metric requested without its input, is a ValueError.
    """
    requested = set() if metrics is None else {str(m).partition("@")[0] for m in (
        (metrics,) if isinstance(metrics, str) else metrics)}  # fmt: skip
    out = {}
    for metric, arg in FEATURE_METRICS.items():
        if given[arg] is None:
            if metric in requested:
                raise ValueError(f"metric {metric!r} needs {arg}= (see evaluate's docstring)")
            continue
        if protocol != "full":
            raise ValueError(f"{arg} is for the full protocol's {metric} metric, not protocol={protocol!r}")
        if metrics is None or metric in requested:
            out[metric] = check_item_matrix(given[arg], arg, getattr(train, "item_ids", None),
                                            nonnegative=metric == "miscalibration")  # fmt: skip
            if out[metric].shape[0] != n_items:
                raise ValueError(f"{arg} has {out[metric].shape[0]} rows but train/test have {n_items} items")
    return out


def _split_rating_metrics(model, metrics, threshold) -> tuple[tuple[str, ...], tuple[str, ...] | None]:
    """(rating metric names, ranking metric names: None for the protocol's default, () for none)."""
    predicts_ratings = bool(getattr(model, "predicts_ratings", False))
    if metrics is None:
        rating = RATING_METRICS if predicts_ratings else ()
        ranking = None if (threshold is not None or not predicts_ratings) else ()
    else:
        names = (metrics,) if isinstance(metrics, str) else tuple(metrics)
        rating = tuple(m for m in names if m in RATING_METRICS)
        ranking = tuple(m for m in names if m not in RATING_METRICS)
        if not names:
            raise ValueError(f"metrics must be names from {FULL_METRICS + RATING_METRICS}, got []")
        if rating and not predicts_ratings:
            raise ValueError(
                f"{type(model).__name__} does not predict ratings (predicts_ratings is not true): "
                f"{', '.join(rating)} need a rating model (SGDMF, ALS(feedback='explicit'))"
            )
    if ranking != () and predicts_ratings and threshold is None:
        raise ValueError(
            f"{type(model).__name__} predicts ratings: ranking metrics need relevance_threshold= (test ratings "
            ">= it are relevant, e.g. 4 on a 1-5 scale); without it only rmse and mae are computed"
        )
    return rating, ranking


def _relevant_by_threshold(t: sp.csr_matrix, threshold) -> sp.csr_matrix:
    """Binary test matrix: the entries with a value >= ``threshold``."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)):
        raise TypeError(f"relevance_threshold must be a number, got {type(threshold).__name__}")
    if not np.isfinite(threshold):
        raise ValueError(f"relevance_threshold must be finite, got {threshold}")
    rel = t.copy()
    rel.data = (rel.data >= threshold).astype(np.float32)
    rel.eliminate_zeros()  # keeps the canonical form
    if rel.nnz == 0:
        raise ValueError(f"no test entry has a value >= relevance_threshold={threshold}")
    remember_checked(rel, has_negative=False)  # derived from the checked test: no second full check
    return rel


def _evaluate_ratings(model, t: sp.csr_matrix, names, users, batch_size: int) -> dict:
    """RMSE / MAE of ``model.score`` on every stored entry of ``t`` (of ``users`` when given)."""
    coo = t.tocoo()
    u, i, truth = coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data
    if users is not None:
        keep = np.isin(u, check_ids(users, t.shape[0], "users"))
        u, i, truth = u[keep], i[keep], truth[keep]
    if u.size == 0:
        raise ValueError("test has no ratings to score" + (" for users" if users is not None else ""))
    step = max(batch_size, 1 << 16)  # pairs are cheap: large batches
    pred = np.concatenate([np.asarray(model.score(u[s : s + step], i[s : s + step])) for s in range(0, u.size, step)])
    metric = {"rmse": rmse, "mae": mae}
    out = {name: metric[name](truth, pred) for name in names}
    out.update(n_ratings=int(u.size), n_users=int(np.unique(u).size))
    return out


def _evaluate_ranking(model, tr, t, k, protocol, metrics, n_negatives, negatives, seed, batch_size, users, threads,
                      ties, progress, features=None) -> dict:  # fmt: skip
    if protocol not in ("full", "sampled"):
        raise ValueError(f"protocol must be 'full' or 'sampled', got {protocol!r}")
    if protocol == "sampled" and ties not in TIE_RULES:
        raise ValueError(f"ties must be one of {TIE_RULES}, got {ties!r}")
    if protocol == "full":
        allowed, default = FULL_METRICS + tuple(FEATURE_METRICS), FULL_DEFAULT + tuple(features or ())
    else:
        allowed, default = SAMPLED_METRICS, SAMPLED_DEFAULT
    out: dict = {}
    for cutoff, names in _cutoffs(k, metrics, allowed, default).items():  # one ranking pass per cut-off
        if protocol == "full":
            out.update(_evaluate_full(model, tr, t, cutoff, names, batch_size, users, threads, progress, features))
        else:
            out.update(_evaluate_sampled(
                model, tr, t, cutoff, names, n_negatives, negatives, seed, batch_size, users, ties, progress
            ))  # fmt: skip
    return out


def _cutoffs(k, metrics, allowed, default) -> dict[int, tuple[str, ...]]:
    """{cut-off: metric names} from ``k`` (an int or a sequence of them) and ``metrics``.

    A name is plain ("ndcg": at every ``k``) or carries its cut-off ("ndcg@20": at 20 only, added to
    the cut-offs). Metrics without a cut-off (auc) are computed once, with the first cut-off.
    """
    ks = [check_k(x) for x in k] if isinstance(k, (list, tuple, np.ndarray)) else [check_k(k)]
    if not ks:
        raise ValueError("k must be an int or a non-empty sequence of ints")
    plain, pinned = [], {}
    for name in _check_metrics(metrics, allowed, default, pinned):
        plain.append(name)
    out: dict[int, list[str]] = {x: list(plain) for x in sorted(set(ks))}
    for cutoff, names in sorted(pinned.items()):
        out.setdefault(cutoff, [])
        out[cutoff] += [n for n in names if n not in out[cutoff]]
    first = next(iter(out))
    return {x: tuple(n for n in names if n not in _UNCUT or x == first) for x, names in out.items() if names}


def _batches(n: int, batch_size: int, progress: bool, desc: str):
    starts = range(0, n, batch_size)
    return tqdm(starts, desc=desc, unit="batch", disable=not show_progress(progress) or len(starts) < 2)


def ranked_users(model, tr, t, k, batch_size, users, threads, progress) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix]:
    """The full protocol's ranking pass: (evaluated users, their (n, k) top-k, their relevance rows).

    The evaluated users are those with a relevant test entry (restricted to ``users`` when given).
    """
    rel_all = relevant_rows(t, t.shape[0])
    has_test = np.diff(rel_all.indptr) > 0
    if users is not None:
        mask = np.zeros(t.shape[0], dtype=bool)
        mask[check_ids(users, t.shape[0], "users")] = True
        has_test &= mask
    eval_users = np.flatnonzero(has_test)
    if eval_users.size == 0:
        raise ValueError("none of users has a test item (value > 0)")
    overlap = in_sorted(csr_keys(rel_all), csr_keys(tr)).sum()
    if overlap:
        warnings.warn(
            f"{overlap} test entries are also in train; with train items excluded they can never be hit",
            stacklevel=4,
        )
    logger.info("full-protocol evaluation of %d users at k=%d", eval_users.size, k)
    rec = recommend_for_evaluation(model, eval_users, k, t.shape[1], batch_size, threads, progress)
    return eval_users, rec, rel_all[eval_users]


def _evaluate_full(model, tr, t, k, names, batch_size, users, threads, progress, features=None) -> dict:
    eval_users, rec, rel = ranked_users(model, tr, t, k, batch_size, users, threads, progress)
    out: dict = {"protocol": "full"}
    ranking = [n for n in names if n in RANKING_METRICS]
    values = per_user_metrics(hit_matrix(rec, rel), np.diff(rel.indptr), ranking)
    for name in names:
        if name in values:
            out[f"{name}@{k}"] = float(values[name].mean())
        elif name == "coverage":
            out[f"coverage@{k}"] = coverage(rec, t.shape[1])
        elif name in ("novelty", "popularity", "long_tail", "diversity", "miscalibration"):
            out[f"{name}@{k}"] = _list_metric(name, rec, tr, eval_users, features)
        elif name == "gini":
            out[f"gini@{k}"] = gini_exposure(rec, t.shape[1]) if (rec >= 0).any() else float("nan")
        elif name == "auc":
            out["auc"] = auc(model, t, tr, users=eval_users)
    out["n_users"] = int(eval_users.size)
    return out


def recommend_for_evaluation(model, eval_users, k, n_items, batch_size, threads, progress) -> np.ndarray:
    """(n, k) int64 top-k of ``model`` for ``eval_users`` (training items excluded), checked."""
    kwargs = _recommend_kwargs(model, threads)
    parts = []
    for start in _batches(eval_users.size, batch_size, progress, "evaluate"):
        batch = eval_users[start : start + batch_size]
        ids, _ = model.recommend(batch, k=k, exclude_seen=True, **kwargs)
        ids = np.asarray(ids)
        if ids.ndim == 2 and ids.shape[1] == min(k, n_items) < k:  # k clipped to the catalogue: pad it back
            ids = np.hstack([ids, np.full((len(ids), k - ids.shape[1]), -1, ids.dtype)])
        if ids.shape != (batch.size, k) or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(
                f"model.recommend returned ids of shape {ids.shape} and dtype {ids.dtype}, "
                f"expected ({batch.size}, {k}) integers"
            )
        parts.append(ids.astype(np.int64, copy=False))
    rec = np.vstack(parts)
    if rec.min() < -1 or rec.max() >= n_items:
        raise ValueError(f"model.recommend returned item ids outside [0, {n_items}) and -1")
    return rec


def _list_metric(name, rec, tr, eval_users, features) -> float:
    """A beyond-accuracy metric averaged over lists; lists that are all padding (a user who has every
    item in train) are skipped, not an error here."""
    valid_rows = (rec >= 0).any(axis=1)
    if not valid_rows.any():
        return float("nan")
    rec = rec[valid_rows]
    if name == "novelty":
        return novelty(rec, tr)
    if name == "popularity":
        return average_popularity(rec, tr)
    if name == "long_tail":
        return long_tail_share(rec, tr)
    if name == "diversity":
        return intra_list_diversity(rec, features["diversity"]) if rec.shape[1] >= 2 else float("nan")
    return miscalibration(rec, tr, features["miscalibration"], users=eval_users[valid_rows])


def _check_negatives(negatives, n_pairs: int, n_items: int) -> np.ndarray:
    if not hasattr(negatives, "__array__") and not isinstance(negatives, (list, tuple)):
        raise TypeError(f"negatives must be an (n_pairs, n_neg) integer array, got {type(negatives).__name__}")
    neg = np.asarray(negatives)
    if neg.ndim != 2 or neg.shape[0] != n_pairs or neg.shape[1] == 0:
        raise ValueError(
            f"negatives must have shape ({n_pairs}, n_neg): one row per test pair (entries > 0 of test, "
            f"by user then item), got {neg.shape}"
        )
    if not np.issubdtype(neg.dtype, np.integer) or neg.dtype == np.bool_:
        raise TypeError(f"negatives must hold integer item ids, got dtype {neg.dtype}")
    neg = neg.astype(np.int64, copy=False)
    if neg.min() < 0 or neg.max() >= n_items:
        bad = neg[(neg < 0) | (neg >= n_items)][0]
        raise ValueError(f"negatives must be item ids in [0, {n_items}), got {bad}")
    return neg


def _evaluate_sampled(model, tr, t, k, names, n_negatives, negatives, seed, batch_size, users, ties, progress) -> dict:
    all_u, all_i = test_pairs(t)
    if users is None:
        keep = np.ones(all_u.size, dtype=bool)
    else:
        keep = np.isin(all_u, check_ids(users, t.shape[0], "users"))
        if not keep.any():
            raise ValueError("none of users has a test item (value > 0)")
    pu, pi = all_u[keep], all_i[keep]
    if negatives is not None:
        neg = _check_negatives(negatives, all_u.size, t.shape[1])[keep]
    else:
        neg = _sample_unseen(
            tr, t, pu, check_positive(n_negatives, "n_negatives", integer=True), np.random.default_rng(seed)
        )
    n_neg = neg.shape[1]
    if k > n_neg + 1:
        raise ValueError(f"k must be <= 1 + the number of negatives ({n_neg + 1}), got {k}")
    logger.info("sampled-protocol evaluation: %d test pairs, 1 positive + %d negatives, k=%d", pu.size, n_neg, k)

    # A negative equal to its own positive is not a competitor: it is ignored. Published negative
    # files contain such rows (DeepCF lastfm: 86 of 1741), and the NCF reference code drops them too
    # (it keys scores by item id).
    competes = neg != pi[:, None]
    if not competes.all():
        logger.info("%d negatives equal their pair's positive item and are ignored", int((~competes).sum()))
    greater = np.empty(pu.size, dtype=np.int64)
    equal = np.empty(pu.size, dtype=np.int64)
    # a model's score can be expensive (an MLP): ask for batch_size pairs' 1 + n_neg items at a time
    for start in _batches(pu.size, batch_size, progress, "evaluate (sampled)"):
        sl = slice(start, start + batch_size)
        items = np.hstack([pi[sl, None], neg[sl]])
        s = np.asarray(model.score(np.repeat(pu[sl], n_neg + 1), items.ravel()), dtype=np.float64)
        if s.shape != (items.size,):
            raise ValueError(f"model.score returned shape {s.shape}, expected ({items.size},)")
        if not np.isfinite(s).all():
            raise ValueError("model.score returned NaN or infinite scores")
        s = s.reshape(items.shape)
        greater[sl] = ((s[:, 1:] > s[:, :1]) & competes[sl]).sum(axis=1)
        equal[sl] = ((s[:, 1:] == s[:, :1]) & competes[sl]).sum(axis=1)

    # per-rank gains for ranks 1 .. n_neg + 1 (0 beyond k), and their prefix sums for "expected"
    ranks = np.arange(1, n_neg + 2, dtype=np.float64)
    within = ranks <= k
    gains = {"hit_rate": within * 1.0, "ndcg": within / np.log2(ranks + 1), "mrr": within / ranks}
    out: dict = {"protocol": f"sampled(1+{n_neg})"}
    for name in names:
        g = gains[name]
        if ties == "pessimistic":
            v = g[greater + equal]
        elif ties == "optimistic":
            v = g[greater]
        else:  # uniform over ranks greater+1 .. greater+equal+1
            cum = np.concatenate([[0.0], np.cumsum(g)])
            v = (cum[greater + equal + 1] - cum[greater]) / (equal + 1)
        out[f"{name}@{k}"] = float(v.mean())
    out.update(n_users=int(np.unique(pu).size), n_pairs=int(pu.size), ties=ties)
    return out
