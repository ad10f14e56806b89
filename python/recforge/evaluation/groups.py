"""Per-group accuracy: who is served worse? The full protocol's ranking metrics, averaged per user group.

>>> import numpy as np, recforge as rf
>>> df = rf.datasets.synthetic(n_users=200, n_items=100, nnz=4000, seed=0)
>>> train, test = rf.split.random_holdout(rf.Interactions.from_pandas(df), test_fraction=0.2, seed=0)
>>> model = rf.MostPopular().fit(train)
>>> groups = np.where(np.arange(train.n_users) % 2 == 0, "even", "odd")  # e.g. users' gender or age band
>>> table = rf.evaluation.evaluate_groups(model, train, test, groups, k=10)
>>> list(table.index)
['even', 'odd', 'all']
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._validation import check_k, check_positive
from ._common import hit_matrix
from .protocols import _relevant_by_threshold, _split_rating_metrics, _train_test, ranked_users
from .ranking import RANKING_METRICS, per_user_metrics

__all__ = ["evaluate_groups", "user_groups"]

DEFAULT_METRICS = ("ndcg", "recall", "precision", "hit_rate")
ALL = "all"


def user_groups(groups, n_users: int, user_ids=None) -> pd.Series:
    """Group label of every user index, as a Series of length ``n_users`` (NaN: no group).

    ``groups`` is a sequence with one label per user index, or a pandas Series indexed by external
    user id, aligned through ``user_ids`` (the ``IdMap`` of the interactions or the model; users it
    lacks get no group, its labels of unknown users are dropped).
    """
    if isinstance(groups, pd.Series) and user_ids is not None:
        if groups.index.has_duplicates:
            raise ValueError("groups has a repeated user id in its index; give one label per user")
        return groups.reindex(user_ids.index).reset_index(drop=True)
    if isinstance(groups, (pd.Series, pd.Index, np.ndarray, list, tuple)):
        labels = pd.Series(np.asarray(groups, dtype=object) if not isinstance(groups, pd.Series) else groups.to_numpy())
        if labels.size != n_users:
            raise ValueError(
                f"groups must have one label per user ({n_users}), got {labels.size}; or pass a pandas Series "
                "indexed by external user id with an Interactions (or a model with user_ids_)"
            )
        return labels
    raise TypeError(f"groups must be a sequence of labels or a pandas Series, got {type(groups).__name__}")


def evaluate_groups(
    model,
    train,
    test,
    groups,
    k: int = 10,
    metrics=None,
    users=None,
    batch_size: int = 1024,
    threads: int = 0,
    progress: bool | None = None,
    relevance_threshold: float | None = None,
) -> pd.DataFrame:
    """The full protocol's ranking metrics per group of users (e.g. by gender or age band).

    Exactly ``evaluate(protocol="full")``'s ranking metrics (same users, same top-k, training items
    excluded), averaged over the evaluated users of each group instead of all of them. Users
    without a group label (NaN / None) count in ``"all"`` only.

    Parameters
    ----------
    model, train, test, k, users, batch_size, threads, progress, relevance_threshold : as ``evaluate``
        (``k`` a single cut-off)
    groups : one label per user index (array-like of length n_users), or a pandas Series indexed by
        external user id (``rf.datasets.movielens_users()["gender"]``; ``pd.cut`` makes age bands),
        aligned to ``train``'s user ids when ``train`` is an Interactions, else to ``model.user_ids_``
    metrics : ranking metric names (precision, recall, ndcg, map, hit_rate, mrr); default ndcg,
        recall, precision, hit_rate

    Returns
    -------
    pandas.DataFrame indexed by group (sorted), then ``"all"``: column ``n_users`` (evaluated users of
    the group), ``"<metric>@<k>"`` for each metric and ``"<metric>@<k> vs all"`` (the group's value
    minus all users': negative means the group is served worse).
    """
    batch_size = check_positive(batch_size, "batch_size", integer=True)
    k = check_k(k)
    names = DEFAULT_METRICS if metrics is None else ((metrics,) if isinstance(metrics, str) else tuple(metrics))
    bad = [m for m in names if m not in RANKING_METRICS]
    if bad or not names:
        raise ValueError(f"metrics must be ranking metric names from {RANKING_METRICS}, got {bad or list(names)}")
    tr, t = _train_test(train, test)
    _split_rating_metrics(model, names, relevance_threshold)  # a rating model needs the threshold
    if relevance_threshold is not None:
        t = _relevant_by_threshold(t, relevance_threshold)
    user_ids = getattr(train, "user_ids", None) or getattr(model, "user_ids_", None)
    labels = user_groups(groups, t.shape[0], user_ids)
    eval_users, rec, rel = ranked_users(model, tr, t, k, batch_size, users, threads, progress)
    values = pd.DataFrame(per_user_metrics(hit_matrix(rec, rel), np.diff(rel.indptr), names))
    values.columns = [f"{m}@{k}" for m in names]
    by_group = values.groupby(labels.iloc[eval_users].to_numpy(), sort=True, dropna=True)
    table = by_group.mean()
    table.insert(0, "n_users", by_group.size())
    overall = values.mean().to_frame(ALL).T
    overall.insert(0, "n_users", len(values))
    for col in values.columns:
        table[f"{col} vs all"] = table[col] - overall[col].iloc[0]
        overall[f"{col} vs all"] = 0.0
    table.index = table.index.astype(object)
    return pd.concat([table, overall])
