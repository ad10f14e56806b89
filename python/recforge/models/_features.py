"""Side features in the models that take them (HybridMF, MLPScorer): the fit arguments, cold start
from features, and their place in a saved model. One implementation for both models.

A model fitted with ``user_features`` / ``item_features`` (``rf.Features`` or scipy.sparse with one
row per user / item of the interactions) keeps the matrices as ``user_features_`` /
``item_features_`` and their vocabularies (saved with the model, ``feature_encoder``). A model
describes how it turns feature rows into what it ranks with through three hooks:

* ``_check_embeddings()``: raise unless the model has feature embeddings to use;
* ``_recommend_feature_users(m, k, items, threads)``: top ``k`` for users given by feature rows ``m``;
* ``_append_items(m)``: grow its per-item state by the items given by feature rows ``m``;
* ``_feature_tables(side)``: the names of its per-feature arrays (one row per feature column),
  which ``forget_users`` / ``forget_items`` shrink with the feature matrix.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .._validation import as_csr, check_k
from ..data.features import Features
from ._locking import lock_public_methods
from .base import csr_arrays, restore_csr

__all__ = ["FeatureColdStart", "feature_matrix", "is_identity"]

_SIDES = ("user", "item")


def feature_matrix(features, n_rows: int, name: str, *, identity_default: bool = True):
    """(float32 CSR with ``n_rows`` rows, the vocabulary as a spec array or None) of a fit argument.

    ``features`` None: the identity (``identity_default``) or None. ValueError when the rows do not
    match the interactions' id map, there are no feature columns or a value is NaN / infinite.
    """
    if features is None:
        return (sp.identity(n_rows, np.float32, format="csr") if identity_default else None), None
    spec = None
    if isinstance(features, Features):
        features, spec = features.matrix, features.spec_array()
    m = as_csr(features, name, allow_empty=True)
    if m.shape[0] != n_rows:
        raise ValueError(f"{name} must have one row per entity of the interactions ({n_rows}), got shape {m.shape}: "
                         "build it on the interactions' id map")  # fmt: skip
    if m.shape[1] == 0:
        raise ValueError(f"{name} has no feature columns")
    return m, spec


def is_identity(m: sp.csr_matrix) -> bool:
    """Whether the feature matrix ``m`` is the identity (each row its own feature, weight 1)."""
    n = m.shape[0]
    return (m.shape == (n, n) and m.nnz == n and np.array_equal(m.indptr, np.arange(n + 1))
            and np.array_equal(m.indices, np.arange(n)) and bool((m.data == 1).all()))  # fmt: skip


def _unit_rows(m: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(scale) @ m)


class FeatureColdStart:
    """Cold start from side features (mixed into a ``Recommender``; see the module docstring)."""

    user_features_: sp.csr_matrix | None = None
    item_features_: sp.csr_matrix | None = None

    def _set_features(self, user_features, item_features, n_users: int, n_items: int, *, identity_default: bool):
        """Check and keep the fit's feature arguments (with their vocabularies); returns (users', items')."""
        fu, self._user_spec = feature_matrix(user_features, n_users, "user_features", identity_default=identity_default)
        fi, self._item_spec = feature_matrix(item_features, n_items, "item_features", identity_default=identity_default)
        return fu, fi

    def _feature_rows(self, rows, side: str) -> sp.csr_matrix:
        """``rows`` (n, n_{side}_features) as CSR, checked against the fitted features."""
        fitted = getattr(self, f"{side}_features_")
        if fitted is None:
            raise ValueError(f"this {type(self).__name__} was fitted without {side}_features: refit with "
                             f"fit(..., {side}_features=...) to use {side}s unseen at fit time")  # fmt: skip
        m = as_csr(rows, f"{side}_rows", allow_empty=True)
        if m.shape[1] != fitted.shape[1]:
            raise ValueError(f"{side}_rows must have {fitted.shape[1]} columns (the {side} features), "
                             f"got shape {m.shape}")  # fmt: skip
        return m

    def feature_encoder(self, side: str) -> Features:
        """The vocabulary of the ``side`` ("user" | "item") features the model was fitted with, as a
        ``Features`` whose ``transform(df)`` encodes new users / items (also after ``load``)."""
        if side not in _SIDES:
            raise ValueError(f"side must be 'user' or 'item', got {side!r}")
        self._check_fitted()
        spec = getattr(self, f"_{side}_spec", None)
        if spec is None:
            raise ValueError(f"this {type(self).__name__} was not fitted with {side}_features built by rf.Features "
                             "(a scipy matrix carries no vocabulary)")  # fmt: skip
        return Features.from_spec_array(spec, self._id_map(side))

    def recommend_for_features(self, user_rows, k: int = 10, items=None, threads: int = 0):
        """``recommend`` for users given by feature rows (n, n_user_features): users unseen at fit time.

        Nothing is excluded (they have no history); ``items`` restricts the ranking as in ``recommend``.
        """
        self._check_embeddings()
        return self._recommend_feature_users(self._feature_rows(user_rows, "user"), k, items, threads)

    def add_items(self, item_rows) -> np.ndarray:
        """Append items given by feature rows to the catalogue (no interactions); returns their indices."""
        self._check_embeddings()
        m = self._feature_rows(item_rows, "item")
        first = self.n_items
        self._append_items(m)
        self.item_features_ = sp.vstack([self.item_features_, m], format="csr", dtype=np.float32)
        self.seen_ = sp.hstack([self.seen_, sp.csr_matrix((self.n_users, m.shape[0]), dtype=np.float32)],
                               format="csr", dtype=np.float32)  # fmt: skip
        self._invalidate()
        return np.arange(first, first + m.shape[0])

    def similar_items_by_features(self, item_rows, k: int = 10):
        """The content-based fallback: the ``k`` catalogue items nearest to each feature row by cosine.

        Returns ids (n, k) int64 and cosines (n, k) float32, best first (an empty row: -1 / -inf).
        """
        self._check_embeddings()
        k = min(check_k(k), self.n_items)
        m = _unit_rows(self._feature_rows(item_rows, "item"))
        sims = (m @ _unit_rows(self.item_features_).T).toarray().astype(np.float32)
        sims[sims <= 0] = -np.inf
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        top = np.take_along_axis(sims, order, 1)
        return np.where(np.isneginf(top), -1, order).astype(np.int64), top

    # -- forgetting -----------------------------------------------------------------------------------
    def _forget(self, side, ids):
        """Approximate, as BPR: the forgotten rows go, the rest keeps what it learnt from them.

        The rows leave the ``side`` feature matrix (and ``seen_``, the id map, the per-row arrays); a
        feature only they had goes with them: their identity features (``Features(identity=True)``:
        column, per-feature row and ``"id=..."`` name removed), any other has its per-feature row
        zeroed (as ``fit`` leaves a feature nobody has). The features the remaining rows share keep
        what they learnt, from the forgotten rows too.
        """
        self._check_fitted()
        features = getattr(self, f"{side}_features_")
        if features is None or self._features_are_rows(side):
            return super()._forget(side, ids)
        gone = self._to_internal(side, ids, f"{side}s")
        spec = getattr(self, f"_{side}_spec", None)
        vocabulary = None if spec is None else Features.from_spec_array(spec, None)
        offset = None if vocabulary is None else vocabulary.identity_offset
        # Their identity features: the columns of the identity block (the last ones) in their rows.
        columns = features[gone].indices
        own = np.unique(columns[columns >= offset] if offset is not None else columns[:0]).astype(np.int64)
        super()._forget(side, ids)  # rows, ids and per-row arrays (``_fold_in_arrays``: not the feature tables)
        if len(own):
            setattr(self, f"_{side}_spec", vocabulary.without_identity(own).spec_array())
        keep_cols = np.ones(features.shape[1], bool)
        keep_cols[own] = False
        kept = features[np.setdiff1d(np.arange(features.shape[0]), gone)][:, np.flatnonzero(keep_cols)].tocsr()
        used = np.diff(kept.tocsc().indptr) > 0
        setattr(self, f"{side}_features_", kept.astype(np.float32))
        for name in self._feature_tables(side):  # new arrays: a failed forget restores the old ones
            values = getattr(self, name)[keep_cols]  # a copy (boolean index)
            values[~used] = 0.0  # learnt from the forgotten rows only
            setattr(self, name, values)
        return self

    def _features_are_rows(self, side: str) -> bool:
        """Whether each ``side`` row is its own feature, forgotten as a per-row array (HybridMF without features)."""
        return False

    # -- persistence ---------------------------------------------------------------------------------
    def _feature_arrays(self) -> dict[str, np.ndarray]:
        """The feature matrices and vocabularies to save (sides without features are left out)."""
        out = {}
        for side in _SIDES:
            m = getattr(self, f"{side}_features_")
            if m is not None:
                out.update(csr_arrays(f"{side}_features", m))
            spec = getattr(self, f"_{side}_spec", None)
            if spec is not None:
                out[f"{side}_feature_spec"] = spec
        return out

    def _restore_features(self, arrays: dict, n_users: int, n_items: int, *, required: bool) -> None:
        """Set ``user_features_`` / ``item_features_`` and the vocabularies from saved ``arrays``
        (a side whose matrix was not saved is None unless ``required``); ValueError naming a bad array."""
        for side, n in zip(_SIDES, (n_users, n_items)):
            present = required or f"{side}_features_indptr" in arrays
            setattr(self, f"{side}_features_", restore_csr(arrays, f"{side}_features", n) if present else None)
            name = f"{side}_feature_spec"
            if name in arrays:
                try:
                    Features.from_spec_array(arrays[name], None)
                except ValueError as exc:
                    raise ValueError(f"array {name!r}: {exc}") from None
            setattr(self, f"_{side}_spec", arrays.get(name))


lock_public_methods(FeatureColdStart)  # a mixin is no Recommender subclass: its methods are locked here
