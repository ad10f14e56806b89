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
(``"mixed"``) every item can be drawn, those with a training interaction 16 times as often, so an
item nobody has chosen yet is pushed down a little but still ranked by its features;
``"interacted"`` never draws them (the best full-catalogue ranking of new items, but items nobody
ever liked stay mid-table for a new user); ``"all"`` draws every item alike (LightFM's choice: items
without history sink below the rest). The defaults were chosen on validation splits
(bench/hybrid_validation.py, bench/RESULTS.md). A positive is drawn by drawing a user with
probability proportional to the square root of their number of interactions, then one of theirs
(``positive_sampling=0.5``), so a heavy user counts more than a light one but does not outweigh
the typical user in what the shared features learn; ``"interactions"`` (LightFM's choice) draws
uniformly over all interactions, ``"users"`` every user alike.
The embedding of a feature no training entity has and that was never drawn (e.g. the identity
feature of a cold item under ``"interacted"``) is zero after ``fit``, so such an item is its
feature-based part only.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .._backend import resolve_threads
from ._features import FeatureColdStart, is_identity
from ._params import EPOCHS, Param
from ._training import run_epochs
from .base import COMMON_PARAMS, FactorModel, check_state_arrays

__all__ = ["HybridMF"]

# negatives="mixed": how many times as often an item with a training interaction is drawn as one
# without. Chosen on validation splits (bench/hybrid_validation.py) as the weight whose worst gain
# over LightFM across the cold-start metrics was highest, together with positive_sampling=0.5
# (12, 16, 20 compared; 12 had been best with positives drawn per interaction): lower weights lose
# new-item ranking, higher ones new-user AUC.
MIXED_WEIGHT = 16

# positive_sampling's names: the power of a user's number of interactions their positives are drawn
# in proportion to.
POSITIVE_SAMPLING_POWERS = {"interactions": 1.0, "users": 0.0}


class HybridMF(FeatureColdStart, FactorModel):
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
        (16) times as often as those without ("mixed", the default, chosen on validation splits
        with positive_sampling=0.5: above LightFM on user and item cold start); only items with a
        training interaction (a cold item is never pushed down for lack of history: the best
        full-catalogue ranking of new items, but a new user sees never-liked items mid-table); or
        every item alike (LightFM's choice: cold items sink below the warm ones). WARP's rank
        estimate counts the draws' pool with its multiplicity. bench/RESULTS.md, "Cold start".
    positive_sampling : "interactions" | "users" | float in [0, 1]
        How an epoch's nnz(interactions) positives are drawn: a user with probability proportional
        to (their number of interactions) ** p, then one of their positives uniformly. "interactions"
        is p = 1 (uniformly over all positives, LightFM's choice: a user counts by their history);
        "users" is p = 0 (every user with history alike, as in per-user AUC / NDCG); a number in
        between weighs a heavy user more than a light one, but less than their history. Default
        0.5, chosen on validation splits as the power whose worst gain over LightFM across the
        cold-start metrics was highest ("interactions" is below LightFM by new-user AUC, "users"
        gains less on new-item NDCG@20); on the test splits new-user AUC 1.005x LightFM, every
        cold-start AUC and NDCG@20 at or above it. Drawing per user costs ~4% more CPU than
        "interactions": bench/RESULTS.md, "HybridMF positive sampling: a power of the history length".
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
        "positive_sampling": Param("float", low=0, high=1, choices=tuple(POSITIVE_SAMPLING_POWERS)),
        **COMMON_PARAMS,
    }

    # Files from before positive_sampling existed were fitted per interaction.
    _defaults_of_older_files = {"positive_sampling": "interactions"}

    user_embeddings: np.ndarray | None = None
    item_embeddings: np.ndarray | None = None
    item_feature_bias: np.ndarray | None = None

    def __init__(self, factors: int = 32, loss: str = "warp", lr: float = 0.05, regularization: float = 0.0,
                 epochs: int = 20, max_sampled: int = 10, negatives: str = "mixed",
                 positive_sampling: str | float = 0.5, threads: int = 0, seed: int = 42,
                 device: str = "auto"):  # fmt: skip
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
        fu, fi = self._set_features(user_features, item_features, n_users, n_items, identity_default=True)
        rng = np.random.default_rng(self.seed)
        f = self.factors
        # Each feature's embedding and its Adagrad accumulators side by side in one row of 2 x factors
        # floats (the kernel takes the two halves as views): a step's rows come from one stretch of
        # memory. LightFM's start: uniform in [-0.5, 0.5) / factors.
        user_state = np.zeros((fu.shape[1], 2 * f), np.float32)
        item_state = np.zeros((fi.shape[1], 2 * f), np.float32)
        user_state[:, :f] = (rng.random((fu.shape[1], f), dtype=np.float32) - 0.5) / f
        item_state[:, :f] = (rng.random((fi.shape[1], f), dtype=np.float32) - 0.5) / f
        user_emb, item_emb = user_state[:, :f], item_state[:, :f]
        bias = np.zeros(fi.shape[1], np.float32)
        g2 = [user_state[:, f:], item_state[:, f:], np.zeros_like(bias)]
        ops, threads = self._ops, resolve_threads(self.threads)
        positives = sp.csr_matrix((np.ones(train.nnz, np.float32), train.indices, train.indptr), shape=train.shape)
        kernel = {"positives": ops.csr(positives, "interactions"), "user_features": ops.csr(fu, "user_features"),
                  "item_features": ops.csr(fi, "item_features"),
                  "negatives": self._negative_pool(train)}  # fmt: skip

        def run_epoch(epoch):
            stats = ops.hybrid_epoch(**kernel, user_emb=user_emb, item_emb=item_emb, item_bias=bias, g2=g2, lr=self.lr,
                                     regularization=self.regularization, loss=self.loss, max_sampled=self.max_sampled,
                                     threads=threads, seed=self.seed, epoch=epoch,
                                     user_power=self._user_power())  # fmt: skip
            return stats["loss"], {"samples": stats["samples"]}, False

        run_epochs(self, self.epochs, run_epoch, callback=callback, progress=progress, desc="HybridMF")
        user_emb, item_emb = np.ascontiguousarray(user_emb), np.ascontiguousarray(item_emb)
        # A feature no training entity has was never updated: it carries nothing learnt.
        user_emb[~g2[0].any(axis=1)] = 0.0
        untouched = ~g2[1].any(axis=1)
        item_emb[untouched] = 0.0
        bias[untouched] = 0.0
        self.user_embeddings, self.item_embeddings, self.item_feature_bias = user_emb, item_emb, bias
        self.user_features_, self.item_features_ = fu, fi
        self._compute_factors()
        return self._finish_fit(train)

    # -- forgetting (FeatureColdStart._forget) -------------------------------------------------------
    def _features_are_rows(self, side):
        # Fitted without {side}_features: each row is its own feature, its embedding goes with it.
        return is_identity(getattr(self, f"{side}_features_"))

    def _feature_tables(self, side):
        return ("item_embeddings", "item_feature_bias") if side == "item" else ("user_embeddings",)

    def _fold_in_arrays(self, side):
        # The per-row arrays forget_* removes: with identity features a row's embedding is its own.
        features = getattr(self, f"{side}_features_", None)
        own = self._feature_tables(side) if features is not None and is_identity(features) else ()
        return (*super()._fold_in_arrays(side), *own)

    def _after_forget(self, side, touched):
        features = getattr(self, f"{side}_features_")
        if features is not None and is_identity(features):
            n = len(getattr(self, f"{side}_factors"))
            setattr(self, f"{side}_features_", sp.identity(n, np.float32, format="csr"))

    def _user_power(self) -> float:
        """``positive_sampling`` as the power of a user's history length their draws are proportional to."""
        return float(POSITIVE_SAMPLING_POWERS.get(self.positive_sampling, self.positive_sampling))

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

    # -- cold start (FeatureColdStart's hooks) ------------------------------------------------
    def item_factors_for(self, item_rows) -> tuple[np.ndarray, np.ndarray]:
        """(factors (n, f), biases (n,)) float32 of items given by feature rows (n, n_item_features)."""
        self._check_embeddings()
        return self._item_side(self._feature_rows(item_rows, "item"))

    def _recommend_feature_users(self, m, k, items, threads):
        q = np.asarray(m @ self.user_embeddings, np.float32)
        return self._rank(self._queries_for(q), None, k, items, threads)

    def _append_items(self, m) -> None:
        factors, bias = self._item_side(m)
        self.item_factors = np.vstack([self.item_factors, factors])
        self.item_bias = np.concatenate([self.item_bias, bias])

    def _check_embeddings(self) -> None:
        self._check_fitted()
        if self.item_embeddings is None:
            raise ValueError("this HybridMF was built from factors: it has no feature embeddings")

    # -- persistence --------------------------------------------------------------------------------
    def _array_names(self):
        return (*super()._array_names(), "user_embeddings", "item_embeddings", "item_feature_bias")

    def _arrays(self):
        return {**super()._arrays(), **self._feature_arrays()}

    def _restore(self, arrays):
        super()._restore(arrays)
        self.user_embeddings = self.item_embeddings = self.item_feature_bias = None
        if "user_embeddings" not in arrays and "user_features_indptr" not in arrays:
            return  # built from factors
        n_users, n_items = self.seen_.shape
        self._restore_features(arrays, n_users, n_items, required=True)
        fu, fi = self.user_features_, self.item_features_
        f = self.user_factors.shape[1]
        check_state_arrays(arrays, {"user_embeddings": (fu.shape[1], f), "item_embeddings": (fi.shape[1], f),
                                    "item_feature_bias": (fi.shape[1],)})  # fmt: skip
        self.user_embeddings = arrays["user_embeddings"].astype(np.float32)
        self.item_embeddings = arrays["item_embeddings"].astype(np.float32)
        self.item_feature_bias = arrays["item_feature_bias"].astype(np.float32)
