"""MLPScorer: the NCF family (He et al., "Neural Collaborative Filtering", WWW 2017) with C++ kernels.

Three models share one implementation (``mode``):

* ``"gmf"``: generalised matrix factorisation, ``logit = w . (p_u * q_i) + b``;
* ``"mlp"``: ``[p_u, q_i]`` through ReLU layers ``layers``, then ``logit = w . h + b``;
* ``"neumf"``: both branches with their own embeddings, fused by one output layer.

Each user/item embedding row is ``[GMF part (factors) | MLP part (factors)]`` (only the
part the mode uses). The MLP input is the concatenation ``[m_u, m_i]`` of width
``2 * factors``, followed by the hidden ReLU layers ``layers`` (e.g. 128 -> 64 -> 32 -> 16 for
the defaults), so ``layers`` lists hidden widths only.

Training minimises binary cross-entropy on each positive and ``negatives`` items sampled uniformly
from the items the user has not interacted with (fresh every epoch, seeded), plus
``regularization * (|e_u|^2 + |e_i|^2)`` per sample, with Adam over every parameter (``"adam"``: the update of
``torch.optim.Adam`` and of the NCF reference code, which steps every embedding row each batch),
lazy Adam (``"lazy_adam"``: only the batch's embedding rows step, as ``torch.optim.SparseAdam``;
standard Adam on the dense layers) or plain SGD. See
``csrc/include/recforge/mlp.hpp`` for the exact update rules and the determinism contract.

``score`` returns logits (``sigmoid(score)`` is the predicted probability of an interaction).

Side features (feature towers, LightFM's representation): ``fit(..., user_features=rf.Features(...),
item_features=...)`` makes a user's (item's) GMF and MLP embeddings the feature-weighted sum of
per-feature embeddings (``user_feature_embedding`` / ``item_feature_embedding``, trained in the C++
kernel); ``identity=True`` features add each entity's own embedding where it has history. The
embedding of a feature only entities without training interactions have (e.g. a cold item's
identity feature) is zero after ``fit``, so such an entity is its other features' part only. The
materialised ``user_embedding`` / ``item_embedding`` then rank cold items in the catalogue from
their features, and ``recommend_for_features`` / ``add_items`` / ``similar_items_by_features``
serve users and items unseen at fit time (the same API as ``HybridMF``; ``models/_features.py``).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import scipy.sparse as sp

from .._backend import resolve_threads
from .._ops import get_ops
from .._validation import check_ids, check_k, check_memory, check_result_size, check_scores
from ._features import FeatureColdStart
from ._mlp_explain import NcfWeights, integrated_gradient_parts
from ._params import EPOCHS, NEGATIVES, Param, check_epochs
from ._training import TrainingDiverged, run_epochs
from .base import _SCORE_LIMIT, COMMON_PARAMS, NotFittedError, Recommender, _abs_max, check_state_arrays, seen_rows

__all__ = ["MLPScorer", "sample_epoch"]

log = logging.getLogger(__name__)

_MODES = ("gmf", "mlp", "neumf")
_FLOAT32_MAX = float(np.finfo(np.float32).max)  # what the kernels take for lr and l2
# optimizer="adam" costs (n_users + n_items) row updates per batch; above this many rows per sample
# that sweep costs several times the batch's own forward/backward (measured: 37k rows at batch 256
# trained 4x slower than lazy_adam), so fit() says so.
_DENSE_ADAM_ROWS_PER_SAMPLE = 64
# Scores one batch of users x the whole catalogue at a time: at most this many scores (16 MB, and
# 5x that with the selection's uint64 sort keys).
_SCORE_BUDGET = 1 << 22


class MLPScorer(FeatureColdStart, Recommender):
    """NCF scorer (GMF / MLP / NeuMF) trained with sampled negatives.

    Parameters
    ----------
    factors : int >= 1
        Width of each branch's user and item embeddings. Was ``embedding_dim`` (deprecated). The
        default, 64, is the other factor models' (ALS, BPR), so ``fit(init_from=rf.ALS().fit(...))``
        works with every argument at its default.
    layers : tuple of int >= 1
        Hidden ReLU widths of the MLP branch (ignored by ``mode="gmf"``).
    mode : "gmf" | "mlp" | "neumf"
    negatives : int >= 1
        Sampled negatives per positive per epoch.
    epochs : int >= 1
    batch_size : int >= 1
    lr : float > 0
    optimizer : "adam" | "lazy_adam" | "sgd"
        ``"adam"`` steps every embedding row each batch (torch.optim.Adam semantics; per-step cost
        grows with n_users + n_items); ``"lazy_adam"`` steps only the rows in the batch
        (torch.optim.SparseAdam semantics; cost independent of the catalogue, the choice for large
        catalogues).
    regularization : float >= 0
        L2 penalty on the embedding rows each sample touches. Was ``l2`` (deprecated).
    device : "auto" | "cpu" | "cuda"
    threads : int, 0 = all cores
        Training splits each mini-batch over threads; results are identical for any thread count.
    seed : int
        Seeds the initialisation and the negative sampling.

    Attributes
    ----------
    user_embedding, item_embedding : (n_users, e), (n_items, e) float32, e = ``arch.emb_width``
        Each user's / item's embedding (with features: their feature-weighted sums).
    user_feature_embedding, item_feature_embedding : (n_features, e) float32 or None
        The per-feature embeddings when fitted with ``user_features`` / ``item_features``.
    user_features_, item_features_ : scipy.sparse CSR or None, the fitted feature matrices
    dense : (n_dense,) float32, every dense parameter (views: ``weights``, ``biases``, ...)
    arch : the architecture (offsets of the dense parameters), built by ``fit`` / ``load``
    seen_, history_ : as every model
    """

    _param_spec = {
        **COMMON_PARAMS,
        "factors": Param("int", low=1),
        "layers": Param("int_tuple", low=1),
        "mode": Param("choice", choices=_MODES),
        "negatives": NEGATIVES,
        "epochs": EPOCHS,
        "batch_size": Param("int", low=1),
        "lr": Param("float", low=0, low_open=True),
        "optimizer": Param("choice", choices=("adam", "lazy_adam", "sgd")),
        "regularization": Param("float", low=0, high=_FLOAT32_MAX, note="the kernel's l2 is a float32"),
    }
    _aliases = {"embedding_dim": "factors", "l2": "regularization"}

    def __init__(
        self,
        factors: int = 64,
        layers=(64, 32, 16),
        mode: str = "neumf",
        negatives: int = 4,
        epochs: int = 20,
        batch_size: int = 256,
        lr: float = 1e-3,
        optimizer: str = "adam",
        regularization: float = 0.0,
        device: str = "auto",
        threads: int = 0,
        seed: int = 42,
        **deprecated,
    ):
        self._store_params(locals())

    user_embedding: np.ndarray | None = None
    item_embedding: np.ndarray | None = None
    user_feature_embedding: np.ndarray | None = None
    item_feature_embedding: np.ndarray | None = None
    dense: np.ndarray | None = None

    def _validate_params(self) -> None:
        super()._validate_params()
        if self.mode != "gmf" and not len(self.layers):
            raise ValueError(f"mode={self.mode!r} needs at least one hidden layer, got layers={self.layers!r}")

    def _check_fit_size(self, n_users, n_items, nnz):
        super()._check_fit_size(n_users, n_items, nnz)
        # Each epoch draws every positive plus `negatives` negatives each: int64 user, int64 item,
        # float32 label per sample, built at once.
        check_memory(20.0 * nnz * (1 + self.negatives), f"negatives={self.negatives} for {nnz} positives (the "
                     f"{nnz * (1 + self.negatives):.3g} samples of one epoch)")  # fmt: skip

    def _build_arch(self) -> None:
        """The architecture from the (validated) parameters: offsets of the dense parameters."""
        f, mode = self.factors, self.mode
        self.arch = self._ops.mlp_arch(mode, f if mode != "mlp" else 0, f if mode != "gmf" else 0,
                                       list(self.layers) if mode != "gmf" else [])  # fmt: skip

    def __getstate__(self):  # copy / pickle: the kernel's architecture object is rebuilt, not pickled
        state = super().__getstate__()
        state.pop("arch", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self.is_fitted:
            self._build_arch()

    @property
    def loss_history(self) -> list[float]:
        """Deprecated: the per-epoch losses; use ``history_`` (``[h["loss"] for h in history_]``)."""
        warnings.warn("MLPScorer.loss_history is deprecated, use history_", DeprecationWarning, stacklevel=2)
        return [h["loss"] for h in getattr(self, "history_", [])]

    # -- parameter views ----------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.__dict__.get("dense") is None:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit() first")

    @property
    def _n_layers(self) -> int:
        return 0 if self.mode == "gmf" else len(self.layers)

    @property
    def weights(self) -> list[np.ndarray]:
        """Hidden-layer weights, each (in, out) float32 (views into ``dense``)."""
        self._check_params()
        return [
            self.dense[self.arch.w_offset(l) : self.arch.b_offset(l)].reshape(self.arch.layer_in(l), self.layers[l])
            for l in range(self._n_layers)
        ]

    @property
    def biases(self) -> list[np.ndarray]:
        """Hidden-layer biases, each (out,) float32 (views into ``dense``)."""
        self._check_params()
        return [
            self.dense[self.arch.b_offset(l) : self.arch.b_offset(l) + self.layers[l]] for l in range(self._n_layers)
        ]

    @property
    def output_weights(self) -> np.ndarray:
        """(out_in,) float32 view: GMF part first (``factors``), then the last hidden layer."""
        self._check_params()
        return self.dense[self.arch.out_w_offset : self.arch.out_b_offset]

    @property
    def output_bias(self) -> np.ndarray:
        """(1,) float32 view of the output bias."""
        self._check_params()
        return self.dense[self.arch.out_b_offset : self.arch.out_b_offset + 1]

    @property
    def _gmf_dim(self) -> int:
        return 0 if self.mode == "mlp" else self.factors

    # -- training -----------------------------------------------------------------------------
    def _init_params(self, n_users: int, n_items: int) -> None:
        """N(0, 0.01) embeddings, Xavier-uniform hidden weights, LeCun-uniform output weights, zero
        biases: the initialisation of the NCF reference implementations. ``n_users`` / ``n_items``:
        rows of the embedding tables (features, when fitted with them)."""
        rng = np.random.default_rng(self.seed)
        e = self.arch.emb_width
        self.user_embedding = rng.normal(0.0, 0.01, (n_users, e)).astype(np.float32)
        self.item_embedding = rng.normal(0.0, 0.01, (n_items, e)).astype(np.float32)
        self.dense = np.zeros(self.arch.n_dense, np.float32)
        for w in self.weights:
            bound = np.sqrt(6.0 / (w.shape[0] + w.shape[1]))
            w[...] = rng.uniform(-bound, bound, w.shape)
        bound = np.sqrt(3.0 / self.arch.out_in)
        self.output_weights[...] = rng.uniform(-bound, bound, self.arch.out_in)

    def _adam_moments(self) -> list[np.ndarray]:
        """Zero Adam moments (m, v) of the user and item embeddings and the dense vector, in the kernel's order."""
        return [np.zeros_like(a) for a in (self.user_embedding, self.item_embedding, self.dense) for _ in range(2)]

    def _warm_start(self, model) -> None:
        if self.mode == "mlp":
            raise ValueError("init_from warm-starts the GMF embeddings; mode='mlp' has none")
        uf, itf = getattr(model, "user_factors", None), getattr(model, "item_factors", None)
        if uf is None or itf is None:
            raise ValueError(
                "init_from must be a fitted factorisation model with user_factors/item_factors, "
                f"got {type(model).__name__}"
            )
        uf, itf = np.asarray(uf), np.asarray(itf)
        f = self.factors
        want_u, want_i = (self.user_embedding.shape[0], f), (self.item_embedding.shape[0], f)
        if uf.shape != want_u or itf.shape != want_i:
            raise ValueError(
                f"init_from factors must have shapes {want_u} (users) and {want_i} (items) to match these "
                f"interactions and factors={f}, got {uf.shape} and {itf.shape}"
            )
        if not (np.isfinite(uf).all() and np.isfinite(itf).all()):
            raise ValueError("init_from factors contain NaN or infinite values")
        self.user_embedding[:, :f] = uf
        self.item_embedding[:, :f] = itf
        # Unit GMF output weights: the GMF branch starts as the factor model's dot product.
        self.output_weights[:f] = 1.0

    def fit(self, interactions, callback=None, progress: bool | None = None, init_from=None, *, user_features=None,
            item_features=None):  # fmt: skip
        """Train on the positives of ``interactions``.

        Parameters
        ----------
        interactions : scipy.sparse (n_users, n_items) or recforge.Interactions
            Every stored entry is a positive (values are ignored, as for the evaluation layer).
        callback : callable(epoch, seconds_this_epoch, loss), optional
            Called after every epoch with its mean training loss.
        progress : bool, optional
            Show a tqdm progress bar (None: ``recforge.get_config()["progress"]``).
        init_from : fitted factor model (ALS, BPR, ...), optional
            Warm-start the GMF embeddings from its ``user_factors`` / ``item_factors``, which must be
            (n_users, factors) and (n_items, factors). Not with features.
        user_features, item_features : rf.Features or scipy.sparse, optional
            One row per user / item of the interactions (their id maps), finite values (as
            ``HybridMF.fit``): each entity's embeddings become the feature-weighted sum of per-feature
            embeddings (see the module docstring). None: an embedding per entity (plain NCF).
        """
        train = self._start_fit(interactions)
        n_users, n_items = train.shape
        fu, fi = self._set_features(user_features, item_features, n_users, n_items, identity_default=False)
        if init_from is not None and (fu is not None or fi is not None):
            raise ValueError("init_from warm-starts per-user and per-item embeddings; with user_features or "
                             "item_features the embeddings are per feature: pass one or the other")  # fmt: skip
        threads = resolve_threads(self.threads)
        self._build_arch()
        # The dense parameters and, with Adam, their two moments.
        check_memory(12.0 * self.arch.n_dense, f"layers={tuple(self.layers)} (the dense parameters)")
        table_users = n_users if fu is None else fu.shape[1]
        table_items = n_items if fi is None else fi.shape[1]
        self._init_params(table_users, table_items)
        if self.optimizer == "adam" and table_users + table_items > _DENSE_ADAM_ROWS_PER_SAMPLE * self.batch_size:
            log.warning(
                "MLPScorer: optimizer='adam' steps all %d embedding rows every batch of %d samples, which "
                "dominates the training time at this size; optimizer='lazy_adam' steps only the batch's rows",
                table_users + table_items,
                self.batch_size,
            )
        if init_from is not None:
            self._warm_start(init_from)
        features = {"user_features": None if fu is None else self._ops.csr(fu, "user_features"),
                    "item_features": None if fi is None else self._ops.csr(fi, "item_features")}  # fmt: skip
        # sgd keeps no state; Adam keeps first and second moments of every parameter
        moments = self._adam_moments() if self.optimizer != "sgd" else [np.zeros(0, np.float32)] * 6
        step = 0
        self.seen_ = None  # fitted only once the epochs succeed
        kernel_train = self._kernel_csr(interactions, train)  # converted once, not per epoch

        def run_epoch(epoch):
            nonlocal step
            users, items, labels = sample_epoch(kernel_train, self.negatives, self.seed, epoch, threads)
            loss, step = self._ops.mlp_train_epoch(
                self.arch,
                self.user_embedding,
                self.item_embedding,
                self.dense,
                moments,
                step,
                users,
                items,
                labels,
                optimizer=self.optimizer,
                lr=self.lr,
                beta1=0.9,
                beta2=0.999,
                eps=1e-8,
                l2=self.regularization,
                batch_size=self.batch_size,
                threads=threads,
                **features,
            )
            if not np.isfinite(loss):
                raise TrainingDiverged(
                    f"training diverged at epoch {epoch} (loss {loss}); lower lr (now {self.lr:g}) or "
                    f"regularization (now {self.regularization:g})"
                )
            return loss, {}, False

        run_epochs(self, self.epochs, run_epoch, callback=callback, progress=progress, desc=f"MLPScorer({self.mode})")
        self.user_feature_embedding = self._feature_tower("user", fu, train)
        self.item_feature_embedding = self._feature_tower("item", fi, train.T.tocsr())
        self.user_features_, self.item_features_ = fu, fi
        return self._finish_fit(train)

    def _feature_tower(self, side: str, features, history: sp.csr_matrix):
        """After training with ``features`` on ``side``: its per-feature table (returned, with the
        features of no entity with ``history`` rows zeroed: they learnt nothing, or only from being
        drawn as negatives) and the entities' embeddings ``features @ table``; None without features."""
        if features is None:
            return None
        table = getattr(self, f"{side}_embedding")
        learnt = np.zeros(table.shape[0], bool)
        learnt[features[np.diff(history.indptr) > 0].indices] = True
        table[~learnt] = 0.0
        setattr(self, f"{side}_embedding", self._represent(features, table))
        return table

    @staticmethod
    def _represent(rows: sp.csr_matrix, table: np.ndarray) -> np.ndarray:
        """Embeddings (n, e) float32 of the entities given by feature ``rows``: weighted sums of ``table`` rows."""
        return np.ascontiguousarray(rows @ table, np.float32)

    # -- inference ----------------------------------------------------------------------------
    def _score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self._ops.mlp_score_pairs(
            self.arch,
            self.user_embedding,
            self.item_embedding,
            self.dense,
            users,
            items,
            threads=resolve_threads(self.threads),
        )

    def _ranking_items(self):
        raise TypeError("MLPScorer does not rank by inner products; use recommend / score / rerank")

    def recommend(self, users, k: int = 10, exclude_seen: bool = True, items=None, threads: int | None = None):
        """Top ``k`` items for each of ``users`` by the model's logits over the whole catalogue.

        Parameters
        ----------
        users : int or 1-D int array of user indices
        k : int >= 1
        exclude_seen : bool
            Leave out the items each user interacted with in the training data.
        items : 1-D int array, optional
            Restrict the ranking to these item indices.
        threads : int, optional
            Defaults to the model's ``threads``.

        Returns
        -------
        ids : (n, k) int64, best first; ties go to the lower item id; -1 pads rows with fewer than k
            eligible items.
        scores : (n, k) float32 logits; -inf where ids is -1.
        """
        self._check_fitted()
        u = check_ids(users, self.n_users, "users")
        return self._recommend_with(self.user_embedding, u, self.seen_ if exclude_seen else None, k, items, threads)

    def _recommend_with(self, user_embedding, users, exclude, k, items, threads):
        """Top ``k`` for rows ``users`` of ``user_embedding``, leaving out their rows of ``exclude`` (CSR or None)."""
        k = min(check_k(k), self.n_items)  # clipped to the catalogue
        nt = resolve_threads(self.threads if threads is None else threads)
        check_result_size(len(users), k)
        allowed = None
        if items is not None:
            allowed = np.zeros(self.n_items, bool)
            allowed[check_ids(items, self.n_items, "items")] = True
        ids = np.full((len(users), k), -1, np.int64)
        scores = np.full((len(users), k), -np.inf, np.float32)
        step = max(1, _SCORE_BUDGET // self.n_items)
        for s in range(0, len(users), step):
            batch = users[s : s + step]
            block = check_scores(
                self._ops.mlp_score_all(self.arch, user_embedding, self.item_embedding, self.dense, batch, threads=nt),
                self,
            )
            if exclude is not None:
                seen = seen_rows(exclude, batch)
                block[np.repeat(np.arange(len(batch)), np.diff(seen.indptr)), seen.indices] = -np.inf
            if allowed is not None:
                block[:, ~allowed] = -np.inf
            ids[s : s + len(batch)], scores[s : s + len(batch)] = _select_topk(block, k)
        return ids, scores

    # -- folding in -----------------------------------------------------------------------------
    def _recommend_rows(self, m, k, exclude_seen, items, threads):
        # The rows' embeddings are learnt as partial_fit_users learns them (items and layers frozen).
        embedding = self._learn_users(m)
        return self._recommend_with(embedding, np.arange(m.shape[0]), m if exclude_seen else None, k, items, threads)

    def partial_fit_users(self, user_ids, interactions_rows, epochs: int | None = None, progress: bool = False):
        """Fold in new or changed users without a full refit.

        Their embeddings restart from the initial distribution and are trained on their positives
        and sampled negatives only, with the item embeddings and the layers fixed.

        Parameters
        ----------
        user_ids : 1-D int array (n,)
            Users to (re)learn; ids >= n_users add users (any gap gets empty rows, zero embeddings).
        interactions_rows : scipy.sparse (n, n_items)
            Their complete rows; they replace the rows in ``seen_``.
        epochs : int, optional
            Passes over their samples (default: the model's ``epochs``).
        """

        def update(ids, m, n_new):
            self.user_embedding[ids] = self._learn_users(m, epochs, progress)
            if self.user_features_ is not None and n_new > self.user_features_.shape[0]:
                # A folded-in user is its learnt embedding: no feature row describes it.
                grown = (n_new - self.user_features_.shape[0], self.user_features_.shape[1])
                self.user_features_ = sp.vstack([self.user_features_, sp.csr_matrix(grown, dtype=np.float32)],
                                                format="csr", dtype=np.float32)  # fmt: skip

        return self._fold_in("user", user_ids, interactions_rows, update)

    def _fold_in_arrays(self, side):
        return (f"{side}_embedding",)

    def _feature_tables(self, side):
        return (f"{side}_feature_embedding",)

    # -- cold start (FeatureColdStart's hooks) ---------------------------------------------------
    def _check_embeddings(self) -> None:
        self._check_fitted()

    def _recommend_feature_users(self, m, k, items, threads):
        embedding = self._represent(m, self.user_feature_embedding)
        return self._recommend_with(embedding, np.arange(m.shape[0]), None, k, items, threads)

    def _append_items(self, m) -> None:
        self.item_embedding = np.vstack([self.item_embedding, self._represent(m, self.item_feature_embedding)])

    def _explain_parts(self, u, i):
        """Exact integrated gradients from the mean user, decomposed over the history (``_mlp_explain``)."""
        history, values = self._history(u)
        return integrated_gradient_parts(NcfWeights.of(self), self.user_embedding, u, self.item_embedding, i,
                                         history, values)  # fmt: skip

    def _learn_users(self, m, epochs: int | None = None, progress: bool | None = False) -> np.ndarray:
        """(n, e) embeddings of the users given by the rows of ``m``, learnt with everything else frozen.

        The kernel trains users, items and layers together, so it runs one batch at a time on copies
        of the item embeddings and layers, which are restored after every batch (the touched rows
        and their Adam moments): only the new users' embeddings learn.
        """
        epochs = self.epochs if epochs is None else check_epochs(epochs)
        rng = np.random.default_rng([self.seed, self.n_users, m.shape[0]])
        users = rng.normal(0.0, 0.01, (m.shape[0], self.arch.emb_width)).astype(np.float32)
        if m.nnz == 0:
            return users
        items, dense = self.item_embedding.copy(), self.dense.copy()
        moments = ([np.zeros_like(a) for a in (users, items, dense) for _ in range(2)] if self.optimizer != "sgd"
                   else [np.zeros(0, np.float32)] * 6)  # fmt: skip
        rows = self._ops.csr(m)
        threads = resolve_threads(self.threads)
        step = 0

        def run_epoch(epoch):
            nonlocal step
            u, i, labels = sample_epoch(rows, self.negatives, self.seed, epoch, threads)
            total = 0.0
            for s in range(0, len(u), self.batch_size):
                b = slice(s, s + self.batch_size)
                loss, step = self._ops.mlp_train_epoch(
                    self.arch, users, items, dense, moments, step, u[b], i[b], labels[b], optimizer=self.optimizer,
                    lr=self.lr, beta1=0.9, beta2=0.999, eps=1e-8, l2=self.regularization, batch_size=self.batch_size,
                    threads=threads,
                )  # fmt: skip
                total += loss * len(u[b])
                touched = np.unique(i[b])
                items[touched] = self.item_embedding[touched]
                dense[:] = self.dense
                if self.optimizer != "sgd":
                    for moment in moments[2:4]:
                        moment[touched] = 0.0
                    for moment in moments[4:]:
                        moment[:] = 0.0
            return total / max(len(u), 1), {}, False

        run_epochs(self, epochs, run_epoch, progress=progress, desc="MLPScorer fold-in", record=False)
        return users

    def rerank(self, users, candidate_ids, k: int = 10, threads: int | None = None):
        """Re-order another model's candidates by this model's scores (retrieve-then-rank).

        Parameters
        ----------
        users : (n,) int user indices
        candidate_ids : (n, c) int item indices; -1 marks padding
        k : int >= 1
            Length of the re-ranked lists (rows with fewer valid candidates are padded with -1).

        Returns
        -------
        ids : (n, k) int64, best first (ties to the lower item id); -1 padding.
        scores : (n, k) float32 logits; -inf where ids is -1.
        """
        self._check_fitted()
        u = check_ids(users, self.n_users, "users")
        k = check_k(k)
        cand = np.asarray(candidate_ids)
        if cand.ndim != 2 or cand.shape[0] != len(u):
            raise ValueError(f"candidate_ids must be 2-D ({len(u)}, c), got shape {cand.shape}")
        if cand.size and not np.issubdtype(cand.dtype, np.integer):
            raise TypeError(f"candidate_ids must be integer item indices, got dtype {cand.dtype}")
        cand = cand.astype(np.int64, copy=False)
        check_result_size(len(u), k)
        if cand.size and (cand.min() < -1 or cand.max() >= self.n_items):
            raise ValueError(f"candidate_ids must be item indices in [0, {self.n_items}) or -1 padding")
        valid = cand >= 0
        block = np.full(cand.shape, -np.inf, np.float32)
        rows, cols = np.nonzero(valid)
        nt = resolve_threads(self.threads if threads is None else threads)
        block[rows, cols] = check_scores(
            self._ops.mlp_score_pairs(
                self.arch, self.user_embedding, self.item_embedding, self.dense, u[rows], cand[rows, cols], threads=nt
            ),
            self,
        )
        order, top = _select_topk(block, k, tie_ids=np.where(valid, cand, np.iinfo(np.int64).max))
        ids = np.where(order >= 0, np.take_along_axis(cand, np.maximum(order, 0), axis=1), -1)
        return ids, top

    # -- persistence ----------------------------------------------------------------------------
    def _array_names(self):
        return ("user_embedding", "item_embedding", "dense", "user_feature_embedding", "item_feature_embedding")

    def _arrays(self):
        return {**super()._arrays(), **self._feature_arrays()}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self._build_arch()
        n_users, n_items = self.seen_.shape
        e = self.arch.emb_width
        want = {"user_embedding": (n_users, e), "item_embedding": (n_items, e), "dense": (self.arch.n_dense,)}
        for name, shape in want.items():
            a = arrays.get(name)
            if a is None:
                raise ValueError(f"missing array {name!r}")
            if a.shape != shape or a.dtype != np.float32:
                raise ValueError(f"{name} must be float32 with shape {shape}, got {a.dtype} {a.shape}")
            if not np.isfinite(a).all():
                raise ValueError(f"{name} contains NaN or infinite values")
        self.user_embedding = np.ascontiguousarray(arrays["user_embedding"])
        self.item_embedding = np.ascontiguousarray(arrays["item_embedding"])
        self.dense = np.ascontiguousarray(arrays["dense"])
        self._restore_features(arrays, n_users, n_items, required=False)
        for side in ("user", "item"):
            features, name = getattr(self, f"{side}_features_"), f"{side}_feature_embedding"
            if features is None:
                setattr(self, name, None)
                continue
            check_state_arrays(arrays, {name: (features.shape[1], e)})
            setattr(self, name, np.ascontiguousarray(arrays[name], np.float32))
        if self._score_bound() > _SCORE_LIMIT:
            raise ValueError("the saved weights are too large: their scores would overflow float32")

    def _score_bound(self) -> float:
        """An upper bound of every |logit| and of the partial sums leading to it (interval arithmetic
        in float64 over the layers: ReLU never grows a bound)."""
        e = max(_abs_max(self.user_embedding), _abs_max(self.item_embedding))
        w_out = np.abs(self.output_weights.astype(np.float64))
        n_gmf = self.factors if self.mode != "mlp" else 0
        bound = w_out[:n_gmf].sum() * e * e + abs(float(self.output_bias[0]))
        h = e  # bound of the MLP branch's activations, layer by layer
        for w, b in zip(self.weights, self.biases):
            h = np.abs(w.astype(np.float64)).sum(axis=0).max() * h + _abs_max(b)
        return float(bound + w_out[n_gmf:].sum() * h)


def sample_epoch(train: sp.csr_matrix, negatives: int, seed: int, epoch: int, threads: int = 0):
    """Training samples of one epoch, as ``MLPScorer.fit`` draws them.

    Every positive of ``train`` (canonical CSR, or its ``ops.csr`` form) as ``(u, i, 1)`` plus
    ``negatives`` items per positive drawn uniformly from the items ``u`` has not interacted with, as
    ``(u, j, 0)``; shuffled.
    Deterministic for ``(seed, epoch)`` whatever ``threads``.

    Returns
    -------
    users, items : (n,) int64
    labels : (n,) float32
    """
    stream = int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0])
    return get_ops("cpu").mlp_sample_epoch(train, negatives=negatives, stream=stream, threads=resolve_threads(threads))


def _select_topk(scores: np.ndarray, k: int, tie_ids: np.ndarray | None = None):
    """Column positions and values of the ``k`` largest finite entries per row, best first.

    Ties go to the lower id (``tie_ids``, default the column index), at the cut too: each entry's
    sort key packs its score's order (high 32 bits) and its id, reversed (low 32 bits), into one
    uint64, so the partition itself is exact and an equal score can never let a higher id in.
    Rows with fewer than ``k`` finite entries are padded with position -1 and -inf.
    """
    n, m = scores.shape
    kk = min(k, m)
    ids = np.arange(m, dtype=np.int64) if tie_ids is None else tie_ids  # (m,) broadcasts over the rows
    # float32 -> uint32 in the same order (negative floats flipped whole, non-negative get the sign
    # bit); + 0 turns -0.0 into +0.0, which compare equal.
    bits = (np.asarray(scores, np.float32) + np.float32(0)).view(np.uint32)
    keys = np.where(bits >> 31, ~bits, bits | np.uint32(1 << 31)).astype(np.uint64)
    del bits
    keys <<= np.uint64(32)
    keys |= np.uint64(0xFFFFFFFF) - np.clip(ids, 0, 0xFFFFFFFF).astype(np.uint64)  # lower id: larger key
    np.invert(keys, out=keys)  # ascending keys = best first
    part = np.argpartition(keys, kk - 1, axis=1)[:, :kk] if kk < m else np.broadcast_to(np.arange(m), (n, m))
    order = np.argsort(np.take_along_axis(keys, part, axis=1), axis=1) if n else np.zeros((0, kk), np.int64)
    pos = np.take_along_axis(part, order, axis=1).astype(np.int64)
    vals = np.take_along_axis(scores, pos, axis=1).astype(np.float32)
    pos[~np.isfinite(vals)] = -1
    if kk < k:
        pos = np.hstack([pos, np.full((n, k - kk), -1, np.int64)])
        vals = np.hstack([vals, np.full((n, k - kk), -np.inf, np.float32)])
    return pos, vals
