"""HybridMF: a LightFM-style factor model whose users and items are sums of their features' embeddings.

``user_factors = user_features @ user_embeddings`` and ``item_factors = item_features @
item_embeddings`` (``item_bias`` likewise), trained with BPR, WARP or logistic loss by Hogwild
Adagrad in C++ (``recforge/hybrid.hpp``). Without feature matrices every entity is its own feature
(identity), which is plain matrix factorisation; with ``rf.Features`` (genres, tags, demographics;
``identity=True`` adds the per-entity features that learn from history) it recommends for users
and items unseen in training from their features alone:

* cold items already in the catalogue (rows of ``item_features`` without interactions) are ranked
  from their features out of the box;
* ``recommend_for_features(user_rows)``: users unseen at fit time;
* ``item_factors_for(item_rows)`` / ``add_items(item_rows)``: items unseen at fit time;
* ``similar_items_by_features(item_rows)``: the content-based fallback for a brand-new item, its
  nearest catalogue items by cosine of feature vectors.

Where negatives come from decides how items without history rank (``negatives``): by default
(``"mixed"``) every item can be drawn, those with a training interaction 12 times as often, so an
item nobody has chosen yet is pushed down a little but still ranked by its features;
``"interacted"`` never draws them (the best full-catalogue ranking of new items, but items nobody
ever liked stay mid-table for a new user); ``"all"`` draws every item alike (LightFM's choice: items
without history sink below the rest). The defaults were chosen on validation splits
(bench/hybrid_validation.py, bench/RESULTS.md). The embedding of a feature no training entity has
and that was never drawn (e.g. the identity feature of a cold item under ``"interacted"``) is zero
after ``fit``, so such an item is its feature-based part only.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .._backend import resolve_threads
from .._validation import as_csr, check_k
from ..data.features import Features
from ._params import EPOCHS, Param
from ._training import run_epochs
from .base import COMMON_PARAMS, FactorModel, check_state_arrays, csr_arrays, restore_csr

__all__ = ["HybridMF"]

# negatives="mixed": how many times as often an item with a training interaction is drawn as one
# without. Chosen on validation splits (bench/hybrid_validation.py) as the weight whose worst ratio
# to LightFM over the cold-start metrics was highest: lower weights lose new-item ranking on
# ml-latest-small, higher ones user cold start AUC on ML-100K.
MIXED_WEIGHT = 12


class HybridMF(FactorModel):
    """Feature-embedding factor model (LightFM's model) with BPR, WARP or logistic loss.

    Parameters
    ----------
    factors : int >= 1
    loss : "warp" | "bpr" | "logistic"
    lr : float > 0
        Adagrad learning rate.
    regularization : float >= 0
        L2 weight on the embeddings each step touches.
    epochs : int >= 1
        Passes of nnz(interactions) sampled positives.
    max_sampled : int >= 1
        WARP: negatives drawn per positive before giving up.
    negatives : "mixed" | "interacted" | "all"
        Where negatives are drawn: every item, those with a training interaction ``MIXED_WEIGHT``
        (12) times as often as those without ("mixed", the default, chosen on validation splits:
        level with LightFM on user cold start, above it on item cold start); only items with a training interaction (a
        cold item is never pushed down for lack of history: the best full-catalogue ranking of new
        items, but a new user sees never-liked items mid-table); or every item alike (LightFM's
        choice: cold items sink below the warm ones). WARP's rank estimate counts the draws' pool
        with its multiplicity. bench/RESULTS.md, "Cold start".
    threads, seed, device : as every model (several threads: Hogwild, only threads=1 repeats exactly)

    Fitted attributes: ``user_embeddings`` (n_user_features, factors), ``item_embeddings``,
    ``item_feature_bias``, the feature matrices ``user_features_`` / ``item_features_`` and, from
    them, ``user_factors`` / ``item_factors`` / ``item_bias`` (what ``recommend`` ranks by).
    """

    _param_spec = {
        "factors": Param("int", low=1),
        "loss": Param("choice", choices=("warp", "bpr", "logistic")),
        "lr": Param("float", low=0, low_open=True),
        "regularization": Param("float", low=0),
        "epochs": EPOCHS,
        "max_sampled": Param("int", low=1),
        "negatives": Param("choice", choices=("mixed", "interacted", "all")),
        **COMMON_PARAMS,
    }

    user_embeddings: np.ndarray | None = None
    item_embeddings: np.ndarray | None = None
    item_feature_bias: np.ndarray | None = None
    user_features_: sp.csr_matrix | None = None
    item_features_: sp.csr_matrix | None = None

    def __init__(self, factors: int = 32, loss: str = "warp", lr: float = 0.05, regularization: float = 0.0,
                 epochs: int = 20, max_sampled: int = 10, negatives: str = "mixed", threads: int = 0,
                 seed: int = 42, device: str = "auto"):  # fmt: skip
        self._store_params(locals())

    def _bias_names(self):
        return ("item_bias",)

    def fit(self, interactions, callback=None, progress: bool | None = None, *, user_features=None,
            item_features=None):  # fmt: skip
        """Train on ``interactions`` (users x items; entries > 0 are positives).

        ``user_features`` / ``item_features``: ``rf.Features`` or scipy.sparse with one row per
        user / item (rows matching the interactions' id maps), finite values; None: identity.
        """
        train = self._start_fit(interactions, allow_negative=False)
        n_users, n_items = train.shape
        fu, self._user_spec = _feature_matrix(user_features, n_users, "user_features")
        fi, self._item_spec = _feature_matrix(item_features, n_items, "item_features")
        rng = np.random.default_rng(self.seed)
        f = self.factors
        # LightFM's start: uniform in [-0.5, 0.5) / factors.
        user_emb = ((rng.random((fu.shape[1], f), dtype=np.float32) - 0.5) / f).astype(np.float32)
        item_emb = ((rng.random((fi.shape[1], f), dtype=np.float32) - 0.5) / f).astype(np.float32)
        bias = np.zeros(fi.shape[1], np.float32)
        g2 = [np.zeros_like(user_emb), np.zeros_like(item_emb), np.zeros_like(bias)]
        ops, threads = self._ops, resolve_threads(self.threads)
        positives = sp.csr_matrix((np.ones(train.nnz, np.float32), train.indices, train.indptr), shape=train.shape)
        kernel = {"positives": ops.csr(positives, "interactions"), "user_features": ops.csr(fu, "user_features"),
                  "item_features": ops.csr(fi, "item_features"),
                  "negatives": self._negative_pool(train)}  # fmt: skip

        def run_epoch(epoch):
            stats = ops.hybrid_epoch(**kernel, user_emb=user_emb, item_emb=item_emb, item_bias=bias, g2=g2, lr=self.lr,
                                     regularization=self.regularization, loss=self.loss, max_sampled=self.max_sampled,
                                     threads=threads, seed=self.seed, epoch=epoch)  # fmt: skip
            return stats["loss"], {"samples": stats["samples"]}, False

        run_epochs(self, self.epochs, run_epoch, callback=callback, progress=progress, desc="HybridMF")
        # A feature no training entity has was never updated: it carries nothing learnt.
        user_emb[~g2[0].any(axis=1)] = 0.0
        untouched = ~g2[1].any(axis=1)
        item_emb[untouched] = 0.0
        bias[untouched] = 0.0
        self.user_embeddings, self.item_embeddings, self.item_feature_bias = user_emb, item_emb, bias
        self.user_features_, self.item_features_ = fu, fi
        self._compute_factors()
        return self._finish_fit(train)

    # -- forgetting ----------------------------------------------------------------------------------
    def _forget(self, side, ids):
        """Approximate, as BPR: the forgotten rows go, the rest keeps what it learnt from them.

        Without ``{side}_features`` each row is its own feature: its embedding goes with it. With
        them, the rows leave the feature matrix; a feature only they had (their identity feature,
        ``Features(identity=True)``: column, embedding and ``"id=..."`` name removed; any other:
        embedding zeroed, as ``fit`` leaves a feature nobody has) goes with them; the features the
        remaining rows share keep their embeddings, which learnt from the forgotten rows too.
        """
        self._check_fitted()
        features = getattr(self, f"{side}_features_")
        if features is None or _is_identity(features):
            return super()._forget(side, ids)
        gone = self._to_internal(side, ids, f"{side}s")
        spec = getattr(self, f"_{side}_spec", None)
        vocabulary = None if spec is None else Features.from_spec_array(spec, None)
        offset = None if vocabulary is None else vocabulary.identity_offset
        # Their identity features: the columns of the identity block (the last ones) in their rows.
        columns = features[gone].indices
        own = np.unique(columns[columns >= offset] if offset is not None else columns[:0]).astype(np.int64)
        super()._forget(side, ids)  # rows, ids and factors (``_fold_in_arrays``: not the feature embeddings)
        if len(own):
            setattr(self, f"_{side}_spec", vocabulary.without_identity(own).spec_array())
        self._forget_feature_rows(side, features, gone, own)
        return self

    def _fold_in_arrays(self, side):
        # The per-row arrays forget_* removes: with identity features a row's embedding is its own.
        features = getattr(self, f"{side}_features_", None)
        if features is not None and not _is_identity(features):
            return super()._fold_in_arrays(side)
        own = ("item_embeddings", "item_feature_bias") if side == "item" else ("user_embeddings",)
        return (*super()._fold_in_arrays(side), *own)

    def _after_forget(self, side, touched):
        features = getattr(self, f"{side}_features_")
        if features is not None and _is_identity(features):
            n = len(getattr(self, f"{side}_factors"))
            setattr(self, f"{side}_features_", sp.identity(n, np.float32, format="csr"))

    def _forget_feature_rows(self, side: str, features: sp.csr_matrix, gone: np.ndarray, own: np.ndarray) -> None:
        """Remove rows ``gone`` from the ``side`` feature matrix, their identity feature columns ``own``, and
        zero the embeddings of features no remaining row has (new arrays: a failed forget restores the old)."""
        keep_cols = np.ones(features.shape[1], bool)
        keep_cols[own] = False
        kept = features[np.setdiff1d(np.arange(features.shape[0]), gone)][:, np.flatnonzero(keep_cols)].tocsr()
        used = np.diff(kept.tocsc().indptr) > 0
        setattr(self, f"{side}_features_", kept.astype(np.float32))
        for name in ("item_embeddings", "item_feature_bias") if side == "item" else ("user_embeddings",):
            values = getattr(self, name)[keep_cols]  # a copy (boolean index)
            values[~used] = 0.0  # learnt from the forgotten rows only
            setattr(self, name, values)

    def _negative_pool(self, train: sp.csr_matrix) -> np.ndarray:
        """The item ids negatives are drawn from uniformly (an id listed w times is w times as likely)."""
        every = np.arange(train.shape[1], dtype=np.int32)
        if self.negatives == "all":
            return every
        interacted = np.flatnonzero(np.diff(train.tocsc().indptr)).astype(np.int32)
        if self.negatives == "interacted":
            return interacted
        return np.concatenate([every, np.tile(interacted, MIXED_WEIGHT - 1)])

    def _compute_factors(self) -> None:
        self.user_factors = np.ascontiguousarray(self.user_features_ @ self.user_embeddings, np.float32)
        self.item_factors, self.item_bias = self._item_side(self.item_features_)

    def _item_side(self, m: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        return (np.ascontiguousarray(m @ self.item_embeddings, np.float32),
                np.asarray(m @ self.item_feature_bias, np.float32).ravel())  # fmt: skip

    # -- cold start ---------------------------------------------------------------------------
    def _feature_rows(self, rows, side: str) -> sp.csr_matrix:
        width = getattr(self, f"{side}_features_").shape[1]
        m = as_csr(rows, f"{side}_rows", allow_empty=True)
        if m.shape[1] != width:
            raise ValueError(f"{side}_rows must have {width} columns (the {side} features), got shape {m.shape}")
        return m

    def item_factors_for(self, item_rows) -> tuple[np.ndarray, np.ndarray]:
        """(factors (n, f), biases (n,)) float32 of items given by feature rows (n, n_item_features)."""
        self._check_embeddings()
        return self._item_side(self._feature_rows(item_rows, "item"))

    def recommend_for_features(self, user_rows, k: int = 10, items=None, threads: int = 0):
        """``recommend`` for users given by feature rows (n, n_user_features): users unseen at fit time.

        Nothing is excluded (they have no history); ``items`` restricts the ranking as in ``recommend``.
        """
        self._check_embeddings()
        q = self._feature_rows(user_rows, "user") @ self.user_embeddings
        return self._rank(self._queries_for(np.asarray(q, np.float32)), None, k, items, threads)

    def add_items(self, item_rows) -> np.ndarray:
        """Append items given by feature rows to the catalogue (no interactions); returns their indices."""
        self._check_embeddings()
        m = self._feature_rows(item_rows, "item")
        factors, bias = self._item_side(m)
        first = self.n_items
        self.item_features_ = sp.vstack([self.item_features_, m], format="csr", dtype=np.float32)
        self.item_factors = np.vstack([self.item_factors, factors])
        self.item_bias = np.concatenate([self.item_bias, bias])
        self.seen_ = sp.hstack([self.seen_, sp.csr_matrix((self.n_users, len(bias)), dtype=np.float32)],
                               format="csr", dtype=np.float32)  # fmt: skip
        self._invalidate()
        return np.arange(first, first + len(bias))

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

    def _check_embeddings(self) -> None:
        self._check_fitted()
        if self.item_embeddings is None:
            raise ValueError("this HybridMF was built from factors: it has no feature embeddings")

    # -- persistence --------------------------------------------------------------------------------
    def _array_names(self):
        return (*super()._array_names(), "user_embeddings", "item_embeddings", "item_feature_bias")

    def _arrays(self):
        out = super()._arrays()
        if self.user_features_ is not None:
            out.update(csr_arrays("user_features", self.user_features_))
            out.update(csr_arrays("item_features", self.item_features_))
        for side in ("user", "item"):
            spec = getattr(self, f"_{side}_spec", None)
            if spec is not None:
                out[f"{side}_feature_spec"] = spec
        return out

    def _restore(self, arrays):
        super()._restore(arrays)
        self.user_embeddings = self.item_embeddings = self.item_feature_bias = None
        if "user_embeddings" not in arrays and "user_features_indptr" not in arrays:
            return  # built from factors
        n_users, n_items = self.seen_.shape
        fu = restore_csr(arrays, "user_features", n_users)
        fi = restore_csr(arrays, "item_features", n_items)
        f = self.user_factors.shape[1]
        check_state_arrays(arrays, {"user_embeddings": (fu.shape[1], f), "item_embeddings": (fi.shape[1], f),
                                    "item_feature_bias": (fi.shape[1],)})  # fmt: skip
        for side in ("user", "item"):
            name = f"{side}_feature_spec"
            if name in arrays:
                try:
                    Features.from_spec_array(arrays[name], None)
                except ValueError as exc:
                    raise ValueError(f"array {name!r}: {exc}") from None
            setattr(self, f"_{side}_spec", arrays.get(name))
        self.user_features_, self.item_features_ = fu, fi
        self.user_embeddings = arrays["user_embeddings"].astype(np.float32)
        self.item_embeddings = arrays["item_embeddings"].astype(np.float32)
        self.item_feature_bias = arrays["item_feature_bias"].astype(np.float32)


def _feature_matrix(features, n_rows: int, name: str):
    """(float32 CSR with ``n_rows`` rows, the vocabulary as a spec array or None) of a fit argument."""
    if features is None:
        return sp.identity(n_rows, np.float32, format="csr"), None
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


def _is_identity(m: sp.csr_matrix) -> bool:
    """Whether the feature matrix ``m`` is the identity (each row its own feature, weight 1)."""
    n = m.shape[0]
    return (m.shape == (n, n) and m.nnz == n and np.array_equal(m.indptr, np.arange(n + 1))
            and np.array_equal(m.indices, np.arange(n)) and bool((m.data == 1).all()))  # fmt: skip


def _unit_rows(m: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(scale) @ m)
