"""The shared part of the item-item models (ItemKNN, EASE): a user is their interaction row.

Such a model learns only item-item weights; a user's scores are their row times those weights. So
a new or changed user needs no training: ``recommend_for_rows`` ranks for rows given directly, and
``partial_fit_users`` stores rows in ``seen_`` (the fitted weights stay as they are).
"""

from __future__ import annotations

from ._explain import ScoreParts
from .base import Recommender

__all__ = ["ItemItemModel"]


class ItemItemModel(Recommender):
    """Base of the models whose user is their row of ``seen_``; subclasses implement ``_rank_rows``."""

    def _rank_rows(self, rows, k, exclude_seen, items, threads):
        """``recommend`` for the canonical CSR ``rows`` (n, n_items): (ids, scores)."""
        raise NotImplementedError

    def _learn_weights(self, train) -> None:
        """Set the item-item weights from the training matrix ``train`` (``fit``'s one step)."""
        raise NotImplementedError

    def _item_weight(self, history, item):
        """(len(history),) weights ``w_ji`` with ``score(u, item) = sum_j r_uj w_ji``."""
        raise NotImplementedError

    def _explain_parts(self, u, i):
        """Exact: the score is ``sum_j r_uj w_ji`` over the history, each term one contribution."""
        history, values = self._history(u)
        contributions = values * self._item_weight(history, i)
        return ScoreParts(history, values, contributions, 0.0, float(contributions.sum()), "exact")

    def _after_forget(self, side, touched):
        """Exact: the weights are recomputed from the remaining training matrix (what a refit computes).

        All of them: a touched item's similarities all change (its column norm / weighting does), and
        any item may hold touched items among its top neighbours, so no smaller set is safe. The cost
        is a fit's (ML-100K: ItemKNN 0.03 s, EASE 0.4 s; bench/RESULTS.md, "Forgetting users").
        """
        super()._after_forget(side, touched)
        self._learn_weights(self.seen_)

    def _rows_allow_negative(self) -> bool:
        return False

    def _recommend_rows(self, m, k, exclude_seen, items, threads):
        # recommend_for_rows (the shared one: checks, fallback) ranks a row directly: no training.
        return self._rank_rows(m, k, exclude_seen, items, threads)

    def partial_fit_users(self, user_ids, interactions_rows):
        """Store new or changed users' rows: such a user is their history, nothing is trained.

        Parameters
        ----------
        user_ids : 1-D int array (n,)
            Users to set; ids >= n_users add users (any gap gets empty rows).
        interactions_rows : scipy.sparse (n, n_items), values >= 0
            Their complete interaction rows; they replace the rows in ``seen_``.
        """
        return self._fold_in("user", user_ids, interactions_rows, lambda ids, m, n_new: None, allow_negative=False)
