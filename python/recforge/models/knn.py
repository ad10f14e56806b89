"""ItemKNN: item-item nearest neighbours, the classic neighbourhood baseline (Sarwar et al. 2001).

Fit keeps, for every item, its ``neighbors`` most similar items (a sparse items x items matrix
``similarity_``); a user's score for item j is ``sum over the user's items i of r_ui * sim(i, j)``,
``r_ui`` the stored training value. Similarity between two items is computed on their columns of
the training matrix (users as the coordinates):

* ``"cosine"``: the cosine of the raw columns;
* ``"bm25"``: the inner product of BM25-weighted columns (items as documents, users as terms:
  ``rf.transforms.bm25_weight`` of the items x users matrix, with ``K1`` and ``B``), not normalised,
  as implicit's ``BM25Recommender``;
* ``"tfidf"``: the cosine of TF-IDF-weighted columns (``rf.transforms.tfidf_weight`` of the
  square roots of the values, items as documents: a sublinear term frequency, so that a heavy
  count, such as a play count, does not drown the rest). ``idf`` picks the idf formula: by default
  the textbook ``log(N / df_u)`` (``"plain"``; N items, df_u of them in user u's history), or
  scikit-learn's ``log((1 + N) / (1 + df_u)) + 1`` (``"smooth"``, ``rf.transforms``' default and
  ItemKNN's before, see CHANGELOG). "plain" discounts users who hold many items more steeply; on
  validation splits (bench/knn_validation.py) it ranked 2.1% better on MovieLens-100K and 0.2-0.6%
  worse on Last.fm-2K (bench/RESULTS.md, "ItemKNN: NDCG against implicit").

An item is never its own neighbour and only positive similarities are kept. The top-K search runs
in C++ (sparse row products into a per-thread accumulator, then a per-item selection; ``threads``)
and does not depend on the thread count. A new user needs no training: their row is their model
(``recommend_for_rows``, or ``partial_fit_users`` to store it).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .._backend import resolve_threads
from .._validation import check_ids, check_k, check_memory
from ..transforms import _IDF_FORMULAS, _as_float32_weights, _bm25_combine, _bm25_parts, _tfidf_idf
from ._item_item import ItemItemModel
from ._params import Param
from ._training import run_epochs
from .base import COMMON_PARAMS, csr_arrays, restore_csr

__all__ = ["ItemKNN"]


class ItemKNN(ItemItemModel):
    """Item-item nearest neighbours with cosine, BM25 or TF-IDF similarity.

    Parameters
    ----------
    neighbors : int >= 1
        Neighbours kept per item (K).
    similarity : "cosine" | "bm25" | "tfidf"
        How two items' columns are compared (see the module docstring).
    K1 : float >= 0
        BM25 term-frequency saturation (``similarity="bm25"`` only).
    B : float in [0, 1]
        BM25 length normalisation (``similarity="bm25"`` only).
    idf : "plain" | "smooth"
        TF-IDF's idf formula (``similarity="tfidf"`` only; see the module docstring).
    threads : int, 0 = all cores
    device : "auto" | "cpu" | "cuda"

    Attributes (fitted)
    -------------------
    similarity_ : scipy.sparse.csr_matrix (n_items, n_items), float32
        Row i: item i's neighbours and their similarities (ids within a row not sorted).
    """

    _param_spec = {
        "neighbors": Param("int", low=1),
        "similarity": Param("choice", choices=("cosine", "bm25", "tfidf")),
        "K1": Param("float", low=0),
        "B": Param("float", low=0, high=1),
        "idf": Param("choice", choices=_IDF_FORMULAS),
        "threads": COMMON_PARAMS["threads"],
        "device": COMMON_PARAMS["device"],
    }
    _defaults_of_older_files = {"idf": "smooth"}  # files from before `idf` existed used the smooth formula

    similarity_: sp.csr_matrix | None = None

    def __init__(self, neighbors: int = 20, similarity: str = "cosine", K1: float = 1.2, B: float = 0.75,
                 idf: str = "plain", threads: int = 0, device: str = "auto"):  # fmt: skip
        self._store_params(locals())

    def fit(self, interactions, callback=None, progress: bool | None = None):
        """Compute every item's neighbours: one "epoch", reported to ``callback`` and ``history_``.

        ``interactions``: Interactions or scipy.sparse (users x items) with values >= 0 (counts,
        ratings or weights; they are both the similarity's input and the users' histories).
        """
        train = self._start_fit(interactions, allow_negative=False)

        def run_epoch(epoch):
            self._learn_weights(train)
            return None, {}, False

        run_epochs(self, 1, run_epoch, callback=callback, progress=False if progress is None else progress,
                   desc="ItemKNN")  # fmt: skip
        return self._finish_fit(train)

    def _learn_weights(self, train):
        self.similarity_ = self._neighbours(train)

    def _item_weight(self, history, item):
        return self._similarity_forms()["by_target"][item].toarray()[0, history].astype(np.float64)

    def _neighbours(self, train: sp.csr_matrix) -> sp.csr_matrix:
        users = train if self.similarity == "cosine" else self._weighted(train)
        indptr, indices, data = self._ops.knn_item_neighbours(
            users, cosine=self.similarity != "bm25", k=self.neighbors, threads=resolve_threads(self.threads)
        )
        n = train.shape[1]
        return sp.csr_matrix((data, indices, indptr), shape=(n, n))

    def _weighted(self, train: sp.csr_matrix) -> sp.csr_matrix:
        """``train`` (users x items) with the BM25 / TF-IDF weights of its transpose (items as documents,
        users as terms): ``rf.transforms``' formulas, to the bit, computed in this layout so that the
        kernel makes the only transpose (and without ``rf.transforms``' checks and copies)."""
        per_user = np.diff(train.indptr)
        df = per_user.astype(np.float64)  # a user's document frequency: their number of items
        n_items = train.shape[1]
        if self.similarity == "bm25":
            # Item lengths in float64, each item's values in user order: the sum rf.transforms makes.
            length = np.bincount(train.indices, weights=train.data, minlength=n_items)
            idf, saturation = _bm25_parts(n_items, df, length, self.K1, self.B)
            weights = _bm25_combine(train.data, saturation, saturation[train.indices], np.repeat(idf, per_user),
                                    self.K1)  # fmt: skip
        else:  # tfidf of the square roots (a sublinear term frequency)
            weights = np.sqrt(train.data).astype(np.float64)
            weights *= np.repeat(_tfidf_idf(n_items, df, self.idf), per_user)
        return sp.csr_matrix((_as_float32_weights(weights, train.data), train.indices, train.indptr), shape=train.shape)

    # -- ranking --------------------------------------------------------------------------------
    def _similarity_forms(self) -> dict:
        """``similarity_`` as the kernels take it (validated once) and transposed (``score``), kept until
        the model changes."""
        cache = self.__dict__.get("_rank_cache")
        if cache is None:
            s = self.similarity_
            cache = self._rank_cache = {"kernel": self._ops.csr(s, "similarity"), "by_target": s.T.tocsr()}
        return cache

    def recommend(self, users, k: int = 10, exclude_seen: bool = True, items=None, threads: int = 0):
        """Top ``k`` items for each of ``users`` from their training rows (see ``Recommender.recommend``)."""
        self._check_fitted()
        u = check_ids(users, self.n_users, "users")
        return self._rank_rows(self.seen_[u], k, exclude_seen, items, threads)

    def _rank_rows(self, rows, k, exclude_seen, items, threads):
        k = min(check_k(k), self.n_items)  # clipped to the catalogue, as every recommend
        check_memory(12.0 * rows.shape[0] * k, f"k={k} for {rows.shape[0]} users (an ({rows.shape[0]}, {k}) result)")
        subset = None if items is None else check_ids(items, self.n_items, "items")
        kernel = self._similarity_forms()["kernel"]
        return self._ops.knn_recommend(rows, kernel, k, exclude_history=bool(exclude_seen), subset=subset,
                                       threads=resolve_threads(threads))  # fmt: skip

    def _score_pairs(self, users, items):
        by_target = self._similarity_forms()["by_target"]  # row j: the items that have j as a neighbour
        scores = self.seen_[users].multiply(by_target[items]).sum(axis=1)
        return np.asarray(scores, dtype=np.float32).ravel()

    def similar_items(self, items, k: int = 10):
        """The ``k`` nearest neighbours of each of ``items`` (at most ``neighbors``), best first.

        Returns ids (n, k) int64 and similarities (n, k) float32, -1 / -inf where an item has
        fewer than ``k`` neighbours.
        """
        self._check_fitted()
        rows = check_ids(items, self.n_items, "items")
        k = check_k(k)
        s = self.similarity_
        starts, lengths = s.indptr[rows], s.indptr[rows + 1] - s.indptr[rows]
        width = max(k, int(lengths.max(initial=0)))
        ids = np.full((len(rows), width), -1, np.int64)
        sims = np.full((len(rows), width), -np.inf, np.float32)
        owner = np.repeat(np.arange(len(rows)), lengths)
        offset = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        source = np.repeat(starts, lengths) + offset
        ids[owner, offset], sims[owner, offset] = s.indices[source], s.data[source]
        order = np.lexsort((ids, -sims), axis=1)  # best first, equal similarities by lower id
        return np.take_along_axis(ids, order, 1)[:, :k], np.take_along_axis(sims, order, 1)[:, :k]

    # -- persistence ----------------------------------------------------------------------------
    def _array_names(self):
        return ()  # similarity_ is sparse: saved as its three arrays, and it stays on the host

    def _arrays(self):
        return csr_arrays("similarity", self.similarity_)

    def _restore(self, arrays):
        n = self.seen_.shape[1]
        self.similarity_ = restore_csr(arrays, "similarity", n)
        if self.similarity_.shape != (n, n):
            raise ValueError(f"array 'similarity_shape' must be ({n}, {n}), got {self.similarity_.shape}")
