"""MostPopular: the baseline every model must beat. Ranks items by training popularity."""

from __future__ import annotations

import numpy as np

from .._validation import as_csr
from .base import Recommender

__all__ = ["MostPopular"]


class MostPopular(Recommender):
    """Scores item ``i`` by the number of users who interacted with it (or the sum of weights).

    Parameters
    ----------
    weighted : bool
        Sum the interaction values instead of counting users.
    """

    def __init__(self, weighted: bool = False):
        self.weighted = bool(weighted)
        self.item_popularity: np.ndarray | None = None

    def fit(self, interactions, callback=None, progress: bool = True):
        train = as_csr(interactions)
        counts = np.asarray(train.sum(axis=0)).ravel() if self.weighted else np.bincount(
            train.indices, minlength=train.shape[1]
        )
        self.item_popularity = counts.astype(np.float32)
        self._train = train
        if callback is not None:
            callback(0, 0.0, None)
        return self

    def _ranking_vectors(self, users):
        return np.ones((len(users), 1), np.float32), self.item_popularity[:, None]

    def _params(self):
        return {"weighted": self.weighted}

    def _arrays(self):
        return {"item_popularity": self.item_popularity}

    def _restore(self, arrays):
        pop = arrays["item_popularity"]
        if pop.shape != (self._train.shape[1],):
            raise ValueError(f"item_popularity has shape {pop.shape}, expected ({self._train.shape[1]},)")
        self.item_popularity = pop.astype(np.float32)
