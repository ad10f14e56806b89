"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data"): a closed-form item-item model.

One dense item x item solve: ``P = (XᵀX + λI)⁻¹`` and ``B = I - P / diag(P)`` (column j divided by
``P_jj``), which is the least-squares ``X ≈ X B`` with ``diag(B) = 0``. A user's scores are their
row times ``B``; there are no user parameters, so a new user is their row (``recommend_for_rows``,
``partial_fit_users``). Often the strongest full-ranking baseline on dense-ish data.

Memory: the solve works on a dense n_items x n_items matrix of ``dtype`` in place, and the fitted
weights are a dense float32 n_items x n_items matrix; ``fit`` refuses (ValueError naming the bytes,
``check_memory``) when those do not fit in this machine's memory, instead of failing half-way.
"""

from __future__ import annotations

import numpy as np

from .._backend import resolve_threads
from .._ops import to_host
from .._validation import check_memory
from ._item_item import ItemItemModel
from ._params import Param
from ._training import run_epochs
from .base import COMMON_PARAMS, check_state_arrays

__all__ = ["EASE"]


class EASE(ItemItemModel):
    """Closed-form item-item weights with a zero diagonal (Steck 2019).

    Parameters
    ----------
    regularization : float > 0
        λ, added to the diagonal of XᵀX (Steck uses a few hundred on MovieLens/Netflix-sized data;
        it grows with the number of users).
    dtype : "float64" | "float32"
        Precision of the solve (the fitted weights are float32 either way); float32 halves the
        memory and time of the solve.
    threads : int, 0 = all cores
        BLAS/LAPACK threads for the solve.
    device : "auto" | "cpu" | "cuda"

    Attributes (fitted)
    -------------------
    item_weights : (n_items, n_items) float32
        ``Bᵀ``: row j holds the weight of each item i of a history in item j's score, so
        ``score(u, j) = sum_i x_ui * item_weights[j, i]``; zero diagonal.
    """

    _param_spec = {
        "regularization": Param("float", low=0, low_open=True),
        "dtype": Param("choice", choices=("float64", "float32")),
        "threads": COMMON_PARAMS["threads"],
        "device": COMMON_PARAMS["device"],
    }

    item_weights: np.ndarray | None = None

    def __init__(self, regularization: float = 500.0, dtype: str = "float64", threads: int = 0, device: str = "auto"):
        self._store_params(locals())

    def fit(self, interactions, callback=None, progress: bool | None = None):
        """Solve for the item-item weights: one "epoch", reported to ``callback`` and ``history_``.

        ``interactions``: Interactions or scipy.sparse (users x items), values >= 0; Steck fits
        binary (0/1) data.
        Raises ValueError (naming the bytes needed) when the dense item x item matrices would not
        fit in this machine's memory.
        """
        train = self._start_fit(interactions, allow_negative=False)
        self._check_memory(train.shape[1])

        def run_epoch(epoch):
            self._learn_weights(train)
            return None, {}, False

        run_epochs(self, 1, run_epoch, callback=callback, progress=False if progress is None else progress,
                   desc="EASE")  # fmt: skip
        return self._finish_fit(train)

    def _learn_weights(self, train):
        self.item_weights = self._ops.ease_weights(train, regularization=float(self.regularization),
                                                   dtype=self.dtype, threads=resolve_threads(self.threads))  # fmt: skip

    def _item_weight(self, history, item):
        return to_host(self.item_weights[item])[history].astype(np.float64)

    def _check_memory(self, n_items: int) -> None:
        # The solve's matrix (dtype, worked in place) plus the float32 weights.
        needed = n_items * n_items * (np.dtype(self.dtype).itemsize + 4)
        check_memory(needed, f"EASE on {n_items:,} items ({needed:,} bytes of dense item x item matrices; "
                             "dtype='float32', fewer items or ItemKNN need less)")  # fmt: skip

    # -- ranking ------------------------------------------------------------------------------------
    def _ranking_items(self):
        return self.item_weights

    def _ranking_queries(self, users):
        return self.seen_[users].toarray()

    def _rank_rows(self, rows, k, exclude_seen, items, threads):
        return self._rank(rows.toarray(), rows if exclude_seen else None, k, items, threads)

    # -- persistence ----------------------------------------------------------------------------
    def _array_names(self):
        return ("item_weights",)

    def _restore(self, arrays):
        n = self.seen_.shape[1]
        check_state_arrays(arrays, {"item_weights": (n, n)})
        self.item_weights = np.ascontiguousarray(arrays["item_weights"], np.float32)
