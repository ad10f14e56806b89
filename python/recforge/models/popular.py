"""MostPopular: the baseline every model must beat. Ranks items by training popularity."""

from __future__ import annotations

import numpy as np

from .._ops import to_host
from ._explain import ScoreParts
from ._params import Param
from ._training import run_epochs
from .base import Recommender

__all__ = ["MostPopular"]


class MostPopular(Recommender):
    """Scores item ``i`` by the number of users who interacted with it (or the sum of weights).

    Parameters
    ----------
    weighted : bool
        Sum the interaction values instead of counting users.
    device : "auto" | "cpu" | "cuda"
    """

    _param_spec = {"device": Param("device"), "weighted": Param("bool")}

    def __init__(self, weighted: bool = False, device: str = "auto"):
        self._store_params(locals())

    item_popularity: np.ndarray | None = None

    def fit(self, interactions, callback=None, progress: bool | None = None):
        """Count (or sum) each item's interactions: one "epoch", reported to ``callback`` and ``history_``."""
        train = self._start_fit(interactions)

        def run_epoch(epoch):
            self.item_popularity = self._ops.xp.asarray(self._popularity_of(train))  # on the fitted device
            return None, {}, False

        run_epochs(self, 1, run_epoch, callback=callback, progress=False if progress is None else progress,
                   desc="MostPopular")  # fmt: skip
        return self._finish_fit(train)

    def _popularity_of(self, m) -> np.ndarray:
        counts = np.asarray(m.sum(axis=0)).ravel() if self.weighted else np.bincount(m.indices, minlength=m.shape[1])
        with np.errstate(over="ignore"):
            popularity = counts.astype(np.float32)
        if not np.isfinite(popularity).all():  # finite but huge weights (3e38) overflow their sum
            raise ValueError("the interactions' weights of an item sum past float32's range; scale them down")
        return popularity

    def partial_fit_users(self, user_ids, interactions_rows):
        """Add or replace users' rows (ids >= n_users add users); the popularity is recounted with them.

        Parameters
        ----------
        user_ids : 1-D int array (n,)
        interactions_rows : scipy.sparse (n, n_items)
            Their complete rows; they replace the rows in ``seen_``.
        """
        self._fold_in("user", user_ids, interactions_rows, lambda ids, m, n_new: None)
        self.item_popularity = self._ops.xp.asarray(self._popularity_of(self.seen_))
        self._invalidate()
        return self

    def _explain_parts(self, u, i):
        """The score is the item's popularity: the base, with no history item contributing."""
        history, values = self._history(u)
        base = float(to_host(self.item_popularity)[i])
        return ScoreParts(history, values, np.zeros(len(history)), base, base, "popularity")

    def _fold_in_arrays(self, side):
        return ("item_popularity",) if side == "item" else ()

    def _after_forget(self, side, touched):
        """Exact: the popularity is recounted over the remaining training matrix."""
        self.item_popularity = self._ops.xp.asarray(self._popularity_of(self.seen_))

    def _queries_for_rows(self, m):
        return np.ones((m.shape[0], 1), np.float32)

    def _ranking_items(self):
        return self.item_popularity[:, None]

    def _ranking_queries(self, users):
        return self._ops.xp.ones((len(users), 1), np.float32)

    def _array_names(self):
        return ("item_popularity",)

    def _restore(self, arrays):
        pop = arrays.get("item_popularity")
        if pop is None or pop.shape != (self.seen_.shape[1],) or not np.isfinite(pop).all():
            raise ValueError(f"item_popularity must be finite with shape ({self.seen_.shape[1]},)")
        self.item_popularity = pop.astype(np.float32)
