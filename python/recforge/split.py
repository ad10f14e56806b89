"""``rf.split``: train/test splits of an Interactions.

Every split returns Interactions that share the input's id maps and shape, so the train and
test CSRs line up row for row and column for column; the parts are disjoint and their union is
the input. All work is vectorised over the stored values (one sort at most).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from ._validation import check_nonnegative, check_positive
from .data.interactions import Interactions

__all__ = [
    "kfold",
    "random_holdout",
    "leave_last_out",
    "temporal",
    "strong_generalization",
    "StrongGeneralizationSplit",
]


def _check_inter(inter) -> Interactions:
    if not isinstance(inter, Interactions):
        raise TypeError(f"inter must be a recforge.Interactions, got {type(inter).__name__}")
    return inter


def _check_seed(seed) -> int:
    """An int in [0, 2^63), the models' seed range (NumPy's own message would name no argument)."""
    seed = check_nonnegative(seed, "seed", integer=True)
    if seed >= 2**63:
        raise ValueError(f"seed must be an int in [0, 2^63), got {seed}")
    return seed


def _check_fraction(value, name, low_open=True, high_open=True) -> float:
    value = check_nonnegative(value, name)
    if (low_open and value <= 0) or (high_open and value >= 1) or value > 1:
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        raise ValueError(f"{name} must be in {lo}0, 1{hi}, got {value}")
    return value


def _per_user_holdout(
    inter: Interactions,
    rows: np.ndarray,
    fraction: float,
    rng: np.random.Generator,
    users: np.ndarray | None = None,
    min_test: int = 0,
) -> np.ndarray:
    """Boolean mask (nnz,) of test entries: a random ``fraction`` of each selected user's entries.

    User ``u`` with ``n_u`` entries gets ``floor(fraction * n_u + U)`` test entries, ``U ~
    uniform[0, 1)`` (stochastic rounding: unbiased, so the overall fraction is met even when
    users are small), clipped to ``[min_test, n_u - 1]``: users keep at least one training
    entry, and users with a single entry stay entirely in training.
    """
    n_users = inter.n_users
    counts = np.diff(inter.csr.indptr).astype(np.int64)
    n_test = np.floor(fraction * counts + rng.random(n_users)).astype(np.int64)
    n_test = np.clip(n_test, min_test, np.maximum(counts - 1, 0))
    if users is not None:
        selected = np.zeros(n_users, dtype=bool)
        selected[users] = True
        n_test[~selected] = 0
    # Rank entries within their row by a random key: rows are sorted already, so sorting
    # row + key (key in [0, 1)) orders by row, then randomly within the row.
    order = np.argsort(rows + rng.random(len(rows)))
    rank = np.empty(len(rows), dtype=np.int64)
    rank[order] = np.arange(len(rows)) - inter.csr.indptr[rows[order]]
    return rank < n_test[rows]


def random_holdout(
    inter: Interactions, test_fraction: float = 0.2, seed: int = 42
) -> tuple[Interactions, Interactions]:
    """Per-user random holdout.

    Each user with ``n_u >= 2`` interactions puts ``floor(test_fraction * n_u + U)`` of them
    (``U ~ uniform[0, 1)`` drawn per user, so the expected count is exactly
    ``test_fraction * n_u``), at most ``n_u - 1``, chosen uniformly at random, into the test
    set; every such user keeps at least one training interaction. Users with a single
    interaction stay in training.

    Returns
    -------
    (train, test) : Interactions, same id maps and shape as ``inter``
    """
    inter = _check_inter(inter)
    test_fraction = _check_fraction(test_fraction, "test_fraction")
    rng = np.random.default_rng(_check_seed(seed))
    test = _per_user_holdout(inter, inter.user_of_entry(), test_fraction, rng)
    return inter._subset(~test), inter._subset(test)


def leave_last_out(inter: Interactions, n: int = 1) -> tuple[Interactions, Interactions]:
    """Each user's ``n`` latest interactions go to the test set.

    Entries are ordered by timestamp and, among equal timestamps, by item index (the higher
    item index counts as later), so the split is deterministic. A user with ``n_u``
    interactions puts ``min(n, n_u - 1)`` of them into the test set: users keep at least one
    training interaction, and users with one interaction stay in training.

    Raises ValueError when ``inter`` has no timestamps.
    """
    inter = _check_inter(inter)
    n = check_positive(n, "n", integer=True)
    if inter.timestamps is None:
        raise ValueError("inter has no timestamps: leave_last_out needs them (build it with time_col=...)")
    counts = np.diff(inter.csr.indptr).astype(np.int64)
    # No user gives more than its count - 1: a larger n (any size, 2**64 - 1 included) means the same.
    n = min(n, int(counts.max(initial=1)) - 1)
    n_test = np.minimum(n, np.maximum(counts - 1, 0))
    rows = inter.user_of_entry()
    # One int64 per entry ordering (timestamp, item) within its row; items are distinct in a row,
    # so the order is total. Then the row maxima are peeled off n times (n is small): O(n * nnz)
    # with no sort over all entries.
    ts = inter.timestamps
    if np.issubdtype(ts.dtype, np.datetime64):
        ts = ts.astype("datetime64[ns]").view(np.int64)
    n_items = max(inter.n_items, 1)
    if np.issubdtype(ts.dtype, np.integer) and ts.size and (int(ts.max()) - int(ts.min()) + 1) < (2**62) // n_items:
        t_rank = ts.astype(np.int64) - ts.min()
    else:  # floats or a huge range: dense ranks keep the same order
        t_rank = np.unique(ts, return_inverse=True)[1].astype(np.int64).ravel()
    value = t_rank * n_items + inter.csr.indices
    test = np.zeros(inter.nnz, dtype=bool)
    starts = inter.csr.indptr[:-1][counts > 0]
    for k in range(n):
        need = n_test > k
        if not need.any():
            break
        top = np.full(inter.n_users, -1, dtype=np.int64)
        top[counts > 0] = np.maximum.reduceat(np.where(test, -1, value), starts)
        test |= (value == top[rows]) & need[rows]
    return inter._subset(~test), inter._subset(test)


def temporal(inter: Interactions, cutoff=None, test_fraction: float | None = None) -> tuple[Interactions, Interactions]:
    """Global time split: ``timestamp < cutoff`` is training, ``timestamp >= cutoff`` is test.

    Give either ``cutoff`` (same units as the timestamps; a ``pandas.Timestamp`` or string for
    datetime64 timestamps) or ``test_fraction``, which sets ``cutoff`` to the
    ``1 - test_fraction`` quantile of the timestamps (ties at the cutoff all go to the test set,
    so the test fraction can be a bit larger).
    """
    inter = _check_inter(inter)
    if inter.timestamps is None:
        raise ValueError("inter has no timestamps: temporal needs them (build it with time_col=...)")
    if (cutoff is None) == (test_fraction is None):
        raise ValueError("give exactly one of cutoff and test_fraction")
    ts = inter.timestamps
    if test_fraction is not None:
        test_fraction = _check_fraction(test_fraction, "test_fraction")
        if ts.size == 0:
            raise ValueError("inter is empty")
        cutoff = np.sort(ts)[min(len(ts) - 1, int(np.floor((1.0 - test_fraction) * len(ts))))]
    elif np.issubdtype(ts.dtype, np.datetime64):
        cutoff = pd.Timestamp(cutoff)
        if pd.isna(cutoff):  # NaT compares False with everything: every row would be training
            raise ValueError("cutoff must be a time, got NaT")
        cutoff = cutoff.to_datetime64()
    elif not isinstance(cutoff, (int, float, np.number)) or isinstance(cutoff, (bool, np.bool_)):
        raise TypeError(f"cutoff must be a number like the timestamps (dtype {ts.dtype}), got {type(cutoff).__name__}")
    elif not np.isfinite(cutoff):  # NaN compares False with everything, inf puts every row on one side
        raise ValueError(f"cutoff must be a finite number, got {cutoff}")
    test = ts >= cutoff
    return inter._subset(~test), inter._subset(test)


class StrongGeneralizationSplit(NamedTuple):
    """Result of :func:`strong_generalization` (all three share the input's id maps and shape)."""

    train: Interactions  #: every interaction of the users not held out
    fold_in: Interactions  #: held-out users' interactions a model may see (to fold them in)
    test: Interactions  #: held-out users' interactions to predict
    test_users: np.ndarray  #: int64 indices of the held-out users, sorted


def strong_generalization(
    inter: Interactions, test_users_fraction: float = 0.2, fold_in_fraction: float = 0.8, seed: int = 42
) -> StrongGeneralizationSplit:
    """Split users, not interactions: held-out users are unseen at training time.

    ``round(test_users_fraction * n_eligible)`` users are drawn uniformly at random among the
    users with at least two interactions. Their interactions are split per user at random
    into a fold-in part (a ``fold_in_fraction`` share, stochastic rounding as in
    :func:`random_holdout`) and a test part, each non-empty. Everyone else is in ``train``.
    """
    inter = _check_inter(inter)
    test_users_fraction = _check_fraction(test_users_fraction, "test_users_fraction")
    fold_in_fraction = _check_fraction(fold_in_fraction, "fold_in_fraction")
    rng = np.random.default_rng(_check_seed(seed))
    counts = np.diff(inter.csr.indptr)
    eligible = np.flatnonzero(counts >= 2)
    n_test_users = int(round(test_users_fraction * len(eligible)))
    if n_test_users == 0:
        raise ValueError(
            f"test_users_fraction={test_users_fraction} of {len(eligible)} eligible users "
            "(>= 2 interactions) holds out no user"
        )
    users = np.sort(rng.choice(eligible, size=n_test_users, replace=False))
    rows = inter.user_of_entry()
    held = np.zeros(inter.n_users, dtype=bool)
    held[users] = True
    test = _per_user_holdout(inter, rows, 1.0 - fold_in_fraction, rng, users=users, min_test=1)
    in_held = held[rows]
    return StrongGeneralizationSplit(
        train=inter._subset(~in_held),
        fold_in=inter._subset(in_held & ~test),
        test=inter._subset(test),
        test_users=users.astype(np.int64),
    )


def kfold(inter: Interactions, n_folds: int = 5, seed: int = 42):
    """Per-user k-fold: yields ``n_folds`` (train, test) pairs; every interaction is in exactly one test.

    Each user's interactions are shuffled and dealt to the folds in turn, starting at a random
    fold per user, so every fold holds about ``1 / n_folds`` of each user's interactions (a user
    with fewer interactions than folds is in some folds' test sets only, at most once each).
    A user whose only interaction is in a fold's test part has no training data in that fold.

    Returns
    -------
    iterator of (train, test) : Interactions, same id maps and shape as ``inter`` (the arguments are
        checked at the call; each pair is built when the iteration reaches it)
    """
    inter = _check_inter(inter)
    n_folds = check_positive(n_folds, "n_folds", integer=True)
    if not 2 <= n_folds <= 2**31 - 1:  # the int hyperparameters' bound
        raise ValueError(f"n_folds must be >= 2 and <= 2147483647, got {n_folds}")
    rng = np.random.default_rng(_check_seed(seed))
    rows = inter.user_of_entry()
    order = np.argsort(rows + rng.random(len(rows)))  # by row, then randomly within the row
    rank = np.empty(len(rows), dtype=np.int64)
    rank[order] = np.arange(len(rows)) - inter.csr.indptr[rows[order]]
    fold = (rank + rng.integers(0, n_folds, inter.n_users)[rows]) % n_folds
    return ((inter._subset(fold != f), inter._subset(fold == f)) for f in range(n_folds))
