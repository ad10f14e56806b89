"""``rf.model_selection``: cross-validation and hyperparameter search, never touching a test split.

With ``inter`` an Interactions and ``train`` its training part::

    rf.model_selection.cross_validate(rf.BPR(), inter, folds=5)                    # per-user k-fold
    rf.model_selection.cross_validate(rf.BPR(), inter, folds=3, scheme="holdout")  # repeated holdout
    search = rf.model_selection.grid_search(rf.ALS(), {"factors": [32, 64], "alpha": [1, 4]}, train)
    search.best_params, search.best_score, search.best_model  # best_model: refit on all of train

Searches score every candidate on a validation split carved from the data they are given
(``validation_fraction`` of each user's interactions, ``rf.split.random_holdout``), so the caller's
test split stays unseen until the chosen model is evaluated on it once. Models are copied with
their parameters (``get_params``), never fitted in place.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import split as _split
from ._validation import check_positive
from .data.interactions import Interactions
from .evaluation.protocols import evaluate
from .evaluation.rating import RATING_METRICS

__all__ = ["SearchResult", "clone", "cross_validate", "grid_search", "random_search"]

logger = logging.getLogger(__name__)

SCHEMES = ("kfold", "holdout")


def clone(model):
    """An unfitted copy of ``model`` with the same parameters (``sklearn.base.clone`` without scikit-learn)."""
    if not hasattr(model, "get_params"):
        raise TypeError(f"model must have get_params (a recforge model), got {type(model).__name__}")
    return type(model)(**model.get_params(deep=False))


def _interactions(data, name: str) -> Interactions:
    if isinstance(data, Interactions):
        return data
    try:
        return Interactions.from_scipy(data)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a recforge.Interactions or a scipy.sparse matrix: {exc}") from None


def _scores(model, train, test, k, metrics, relevance_threshold, threads) -> dict:
    """evaluate()'s numeric results (metrics and counts)."""
    out = evaluate(model, train, test, k=k, metrics=metrics, relevance_threshold=relevance_threshold,
                   threads=threads, progress=False)  # fmt: skip
    return {key: v for key, v in out.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def cross_validate(
    model,
    data,
    folds: int = 5,
    *,
    scheme: str = "kfold",
    test_fraction: float = 0.2,
    seed: int = 42,
    k: int = 10,
    metrics=None,
    relevance_threshold: float | None = None,
    threads: int = 0,
) -> pd.DataFrame:
    """Fit a copy of ``model`` on each training part and evaluate it on the held-out part.

    Parameters
    ----------
    model : a recforge model (fitted or not: a fresh copy is fitted per fold)
    data : recforge.Interactions or scipy.sparse (n_users, n_items)
    folds : int >= 2 (kfold) or >= 1 (holdout)
    scheme : {"kfold", "holdout"}
        "kfold": ``rf.split.kfold(data, folds, seed)``, every interaction held out once.
        "holdout": ``folds`` independent ``rf.split.random_holdout(data, test_fraction, seed + f)``.
    test_fraction : float, holdout only
    seed : int
    k, metrics, relevance_threshold, threads : as in ``rf.evaluation.evaluate`` (rating models get
        rmse / mae by default)

    Returns
    -------
    pandas.DataFrame, one row per fold: ``fold``, ``fit_s`` and the evaluate() figures (``ndcg@10``,
    ``rmse``, ``n_users``, ...). ``df.mean(numeric_only=True)`` summarises; ``df.attrs`` records the
    scheme and seed.
    """
    inter = _interactions(data, "data")
    if scheme == "kfold":
        parts = _split.kfold(inter, n_folds=folds, seed=seed)
    elif scheme == "holdout":
        folds = check_positive(folds, "folds", integer=True)
        parts = (_split.random_holdout(inter, test_fraction=test_fraction, seed=seed + f) for f in range(folds))
    else:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    rows = []
    for f, (train, test) in enumerate(parts):
        fitted, fit_s = _fit(clone(model), train)
        rows.append({"fold": f, "fit_s": fit_s, **_scores(fitted, train, test, k, metrics, relevance_threshold,
                                                          threads)})  # fmt: skip
        logger.info("cross_validate fold %d: %s", f, rows[-1])
    out = pd.DataFrame(rows)
    out.attrs.update(scheme=scheme, seed=seed, folds=len(rows))
    return out


def _fit(model, train) -> tuple[object, float]:
    t0 = time.perf_counter()
    model.fit(train, progress=False)
    return model, time.perf_counter() - t0


@dataclass
class SearchResult:
    """What ``grid_search`` / ``random_search`` found.

    Attributes
    ----------
    best_params : dict, the winning candidate's parameters (only those searched)
    best_score : float, its validation score
    metric : str, the score's name ("ndcg@10", "rmse", ...); ``higher_is_better`` says which way
    results : pandas.DataFrame, one row per candidate: its parameters, ``score``, ``fit_s``, ``rank``
    best_model : the model refit on all the data with ``best_params`` (None with ``refit=False``)
    """

    best_params: dict
    best_score: float
    metric: str
    higher_is_better: bool
    results: pd.DataFrame = field(repr=False)
    best_model: object = field(default=None, repr=False)


def grid_search(
    model,
    param_grid: dict,
    train,
    *,
    metric: str | None = None,
    validation_fraction: float = 0.2,
    seed: int = 42,
    k: int = 10,
    relevance_threshold: float | None = None,
    refit: bool = True,
    threads: int = 0,
) -> SearchResult:
    """Every combination of ``param_grid`` (name -> list of values), scored on a validation split.

    The validation split is ``rf.split.random_holdout(train, validation_fraction, seed)``: each
    candidate is fitted on its training part and scored on the rest; the test split the caller
    keeps is never used. ``metric``: an ``evaluate`` key, default ``"ndcg@<k>"`` (``"rmse"`` for
    rating models); rmse and mae are minimised, the rest maximised. With ``refit`` the best
    parameters are fitted again on all of ``train`` (``best_model``).
    """
    if not isinstance(param_grid, dict) or not param_grid:
        raise ValueError("param_grid must be a non-empty dict: parameter name -> list of values")
    for name, values in param_grid.items():
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__") or not len(list(values)):
            raise ValueError(f"param_grid[{name!r}] must be a non-empty list of values, got {values!r}")
    names = list(param_grid)
    candidates = [dict(zip(names, combo)) for combo in itertools.product(*(list(param_grid[n]) for n in names))]
    return _search(model, candidates, train, metric, validation_fraction, seed, k, relevance_threshold, refit, threads)


def random_search(
    model,
    param_distributions: dict,
    train,
    n_iter: int = 10,
    *,
    metric: str | None = None,
    validation_fraction: float = 0.2,
    seed: int = 42,
    k: int = 10,
    relevance_threshold: float | None = None,
    refit: bool = True,
    threads: int = 0,
) -> SearchResult:
    """``n_iter`` candidates drawn from ``param_distributions``, scored as in ``grid_search``.

    Each value of ``param_distributions`` is a list (drawn uniformly), an object with
    ``rvs(random_state=...)`` (a ``scipy.stats`` distribution) or a callable ``f(rng)`` taking a
    ``numpy.random.Generator``; draws are seeded by ``seed``.
    """
    if not isinstance(param_distributions, dict) or not param_distributions:
        raise ValueError("param_distributions must be a non-empty dict: parameter name -> distribution")
    n_iter = check_positive(n_iter, "n_iter", integer=True)
    rng = np.random.default_rng(seed)

    def draw(name, dist):
        if hasattr(dist, "rvs"):
            return _plain(dist.rvs(random_state=rng))
        if callable(dist):
            return _plain(dist(rng))
        if isinstance(dist, (str, bytes)) or not hasattr(dist, "__len__") or len(dist) == 0:
            raise ValueError(f"param_distributions[{name!r}] must be a non-empty list, a distribution with rvs, "
                             f"or a callable(rng); got {dist!r}")  # fmt: skip
        return _plain(list(dist)[rng.integers(len(dist))])

    candidates = [{name: draw(name, dist) for name, dist in param_distributions.items()} for _ in range(n_iter)]
    return _search(model, candidates, train, metric, validation_fraction, seed, k, relevance_threshold, refit, threads)


def _plain(value):
    """NumPy scalars as Python numbers (the models' parameter checks and JSON want them)."""
    return value.item() if isinstance(value, np.generic) else value


def _search(model, candidates, train, metric, validation_fraction, seed, k, relevance_threshold, refit, threads):
    inter = _interactions(train, "train")
    valid = set(clone(model).get_params(deep=False))
    for params in candidates:
        unknown = [p for p in params if p not in valid]
        if unknown:
            raise ValueError(f"{type(model).__name__} has no parameter {unknown[0]!r}; valid: {sorted(valid)}")
    if metric is None:
        metric = "rmse" if getattr(clone(model), "predicts_ratings", False) else f"ndcg@{k}"
    base = metric.split("@")[0]
    higher = base not in RATING_METRICS
    inner, validation = _split.random_holdout(inter, test_fraction=validation_fraction, seed=seed)
    rows = []
    for params in candidates:
        candidate = clone(model).set_params(**params)
        fitted, fit_s = _fit(candidate, inner)
        scores = _scores(fitted, inner, validation, k, [base], relevance_threshold, threads)
        if metric not in scores:
            raise ValueError(f"metric {metric!r} is not among the evaluation's results {sorted(scores)}")
        rows.append({**params, "score": scores[metric], "fit_s": fit_s})
        logger.info("search: %s -> %s %.5f", params, metric, scores[metric])
    results = pd.DataFrame(rows)
    results["rank"] = results["score"].rank(ascending=not higher, method="min").astype(int)
    best = int(np.argmax(results["score"]) if higher else np.argmin(results["score"]))
    best_params = candidates[best]
    best_model = _fit(clone(model).set_params(**best_params), inter)[0] if refit else None
    return SearchResult(best_params, float(results["score"][best]), metric, higher, results, best_model)
