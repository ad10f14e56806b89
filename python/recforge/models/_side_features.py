"""Cold start from side features, shared by the factor models that take ``user_features`` / ``item_features``.

A model fitted with feature matrices (``rf.Features`` or scipy.sparse, one row per user / item)
keeps them as ``user_features_`` / ``item_features_`` (None: fitted without) and their vocabulary,
and answers for users and items unseen at fit time from their feature rows alone:

* ``recommend_for_features(user_rows)``: users unseen at fit time;
* ``item_factors_for(item_rows)`` / ``add_items(item_rows)``: items unseen at fit time;
* ``similar_items_by_features(item_rows)``: the content-based fallback for a brand-new item, its
  nearest catalogue items by cosine of feature vectors.

A model supplies how feature rows become vectors: ``_user_vectors_from_features(m)`` (n, f) and
``_item_side(m)`` (factors (n, f), biases (n,) or None).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .._ops import array_namespace
from .._validation import as_csr, check_k
from ..data.features import Features
from ._locking import lock_public_methods
from .base import csr_arrays, restore_csr

__all__ = ["FeatureColdStart", "feature_matrix"]


def feature_matrix(features, n_rows: int, name: str):
    """(float32 CSR with ``n_rows`` rows or None, the vocabulary as a spec array or None) of a fit argument."""
    if features is None:
        return None, None
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


class FeatureColdStart:
    """Mixin of the cold-start API (see the module docstring); the host is a fitted ``FactorModel``."""

    user_features_: sp.csr_matrix | None = None
    item_features_: sp.csr_matrix | None = None

    # -- hooks ------------------------------------------------------------------------------------
    def _user_vectors_from_features(self, m: sp.csr_matrix) -> np.ndarray:
        raise NotImplementedError

    def _item_side(self, m: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError

    def _check_side_info(self) -> None:
        """Raise unless the fitted model can answer from features (``_check_fitted`` and more)."""
        self._check_fitted()

    # -- the API -----------------------------------------------------------------------------------
    def _set_features(self, user_features, item_features, n_users: int, n_items: int):
        """Validate the fit arguments; returns the matrices (None where absent) and keeps the vocabularies."""
        fu, self._user_spec = feature_matrix(user_features, n_users, "user_features")
        fi, self._item_spec = feature_matrix(item_features, n_items, "item_features")
        return fu, fi

    def _feature_rows(self, rows, side: str) -> sp.csr_matrix:
        fitted = getattr(self, f"{side}_features_")
        if fitted is None:
            raise ValueError(f"this {type(self).__name__} was fitted without {side}_features: it has no {side} "
                             f"features to read {side}_rows with")  # fmt: skip
        width = fitted.shape[1]
        m = as_csr(rows, f"{side}_rows", allow_empty=True)
        if m.shape[1] != width:
            raise ValueError(f"{side}_rows must have {width} columns (the {side} features), got shape {m.shape}")
        return m

    def item_factors_for(self, item_rows) -> tuple[np.ndarray, np.ndarray | None]:
        """(factors (n, f), biases (n,) or None where items carry none) float32 of items given by feature rows
        (n, n_item_features)."""
        self._check_side_info()
        return self._item_side(self._feature_rows(item_rows, "item"))

    def recommend_for_features(self, user_rows, k: int = 10, items=None, threads: int = 0):
        """``recommend`` for users given by feature rows (n, n_user_features): users unseen at fit time.

        Nothing is excluded (they have no history); ``items`` restricts the ranking as in ``recommend``.
        """
        self._check_side_info()
        q = self._user_vectors_from_features(self._feature_rows(user_rows, "user"))  # on the factors' device
        return self._rank(self._queries_for(q), None, k, items, threads)

    def add_items(self, item_rows) -> np.ndarray:
        """Append items given by feature rows to the catalogue (no interactions); returns their indices."""
        self._check_side_info()
        m = self._feature_rows(item_rows, "item")
        factors, bias = self._item_side(m)
        first, xp = self.n_items, array_namespace(self.item_factors)  # the factors' device
        self.item_features_ = sp.vstack([self.item_features_, m], format="csr", dtype=np.float32)
        self.item_factors = xp.vstack([self.item_factors, factors])
        if bias is not None:
            self.item_bias = xp.concatenate([self.item_bias, bias])
        self.seen_ = sp.hstack([self.seen_, sp.csr_matrix((self.n_users, len(factors)), dtype=np.float32)],
                               format="csr", dtype=np.float32)  # fmt: skip
        self._invalidate()
        return np.arange(first, first + len(factors))

    def similar_items_by_features(self, item_rows, k: int = 10):
        """The content-based fallback: the ``k`` catalogue items nearest to each feature row by cosine.

        Returns ids (n, k) int64 and cosines (n, k) float32, best first (an empty row: -1 / -inf).
        """
        self._check_side_info()
        k = min(check_k(k), self.n_items)
        m = unit_rows(self._feature_rows(item_rows, "item"))
        sims = (m @ unit_rows(self.item_features_).T).toarray().astype(np.float32)
        sims[sims <= 0] = -np.inf
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        top = np.take_along_axis(sims, order, 1)
        return np.where(np.isneginf(top), -1, order).astype(np.int64), top

    # -- persistence -------------------------------------------------------------------------------
    def _feature_arrays(self) -> dict[str, np.ndarray]:
        """The feature matrices and vocabularies to save (only the sides that have them)."""
        out = {}
        for side in ("user", "item"):
            m = getattr(self, f"{side}_features_")
            if m is not None:
                out.update(csr_arrays(f"{side}_features", m))
            spec = getattr(self, f"_{side}_spec", None)
            if spec is not None:
                out[f"{side}_feature_spec"] = spec
        return out

    def _restore_features(self, arrays: dict[str, np.ndarray]) -> None:
        """Set ``user_features_`` / ``item_features_`` and the vocabularies from saved ``arrays`` (ValueError
        naming a malformed one); a side saved without features gets None."""
        n_rows = dict(zip(("user", "item"), self.seen_.shape))
        for side in ("user", "item"):
            saved = f"{side}_features_indptr" in arrays
            setattr(self, f"{side}_features_", restore_csr(arrays, f"{side}_features", n_rows[side]) if saved else None)
            name = f"{side}_feature_spec"
            if name in arrays:
                try:
                    Features.from_spec_array(arrays[name], None)
                except ValueError as exc:
                    raise ValueError(f"array {name!r}: {exc}") from None
            setattr(self, f"_{side}_spec", arrays.get(name))


lock_public_methods(FeatureColdStart)  # readers and add_items (a mutator) hold the model's lock


def unit_rows(m: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(scale) @ m)
