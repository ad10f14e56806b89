"""The shared part of the item-item models (ItemKNN, EASE): a user is their interaction row.

Such a model learns only item-item weights; a user's scores are their row times those weights. So
a new or changed user needs no training: ``recommend_for_rows`` ranks for rows given directly, and
``partial_fit_users`` stores rows in ``seen_`` (the fitted weights stay as they are).
"""

from __future__ import annotations

from .._validation import as_csr
from .base import Recommender, check_fold_in, replace_rows

__all__ = ["ItemItemModel"]


class ItemItemModel(Recommender):
    """Base of the models whose user is their row of ``seen_``; subclasses implement ``_rank_rows``."""

    def _rank_rows(self, rows, k, exclude_seen, items, threads):
        """``recommend`` for the canonical CSR ``rows`` (n, n_items): (ids, scores)."""
        raise NotImplementedError

    def recommend_for_rows(self, rows, k: int = 10, exclude_seen: bool = True, items=None, threads: int = 0):
        """``recommend`` for users given by interaction rows (new users: no refit, the model unchanged).

        Parameters
        ----------
        rows : scipy.sparse (n, n_items), values >= 0
        k, items, threads : as in ``recommend``
        exclude_seen : bool
            Leave out the items stored in each row.
        """
        self._check_fitted()
        m = as_csr(rows, "rows", allow_empty=True, allow_negative=False)
        if m.shape[1] != self.n_items:
            raise ValueError(f"rows must have {self.n_items} columns (the items), got shape {m.shape}")
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
        self._check_fitted()
        ids, m, n_new = check_fold_in(user_ids, interactions_rows, "user", self.n_users, self.n_items,
                                      allow_negative=False)  # fmt: skip
        self.seen_ = replace_rows(self.seen_, ids, m, n_new)
        self._invalidate()
        return self
