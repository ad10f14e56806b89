"""The one shape every model shares: parameters, fit, recommend, score, save/load, device.

Users and items are dense internal indices (0..n_users-1, 0..n_items-1); ``recforge.Interactions``
maps external ids to them. Conventions (scikit-learn's): ``__init__`` only stores its arguments,
``fit`` validates them from the class's declarative ``_param_spec`` (see ``_params.py``), fitted
state ends in ``_``: ``seen_`` (the training matrix, users x items, used by ``exclude_seen`` and
saved with the model), ``history_`` (one dict per epoch: epoch, seconds, loss, ...), ``device_``.
Kernels are reached through ``self._ops`` (``recforge._ops``), never imported here.

Saved format (``FORMAT_VERSION`` 2): a zip archive written by ``numpy.savez`` holding the model's
arrays, the training matrix (``train_indptr`` / ``train_indices`` / ``train_data`` /
``train_shape``), the id maps (``user_ids_*`` / ``item_ids_*``: ``IdMap.to_arrays``, so string ids
are UTF-8 bytes and offsets) and ``__meta__``, a uint8 array of UTF-8 JSON
``{"format": "recforge-model", "format_version": 2, "class": ..., "params": get_params(),
"arrays": {name: [dtype, shape]}, "id_maps": {"user": kind, "item": kind}[, "dataset": name]}``.
Version 1 (no id maps) still loads, with identity maps. No pickle; written to a temporary file (unnamed until complete
where the system has O_TMPFILE) and renamed, so a crash or a kill never leaves half a file nor a
temporary one; the file's mode honours the umask. ``load`` trusts nothing: it reads only the declared
members (stored, each exactly its declared dtype and shape: nothing larger than the file is ever
allocated), only bool/int/float arrays, only finite values below ``_VALUE_LIMIT``, and refuses a model
whose scores would overflow; any flaw is a ValueError. Files written before the parameter renames load
through the deprecated aliases.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import struct
import warnings
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._backend import resolve_device, resolve_threads
from .._ops import array_namespace, get_ops, to_host
from .._validation import (
    as_csr,
    check_dense,
    check_finite,
    check_ids,
    check_k,
    check_memory,
    check_positive,
    check_result_size,
    check_scores,
)
from ..data.idmap import IdMap
from ..data.interactions import Interactions
from ._explain import Explanation, ScoreParts, build_explanation, similarity_parts
from ._locking import ModelLock, lock_public_methods
from ._params import Param, ParamsMixin

__all__ = [
    "FORMAT_VERSION", "NotFittedError", "Recommender", "FactorModel", "load",
    "CsrRows", "check_fold_in", "check_fold_in_ids", "check_state_arrays", "csr_arrays", "grow_rows",
    "replace_rows", "restore_csr", "seen_rows",
]  # fmt: skip

FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)  # 1: before the id maps were saved
_REGISTRY: dict[str, type[Recommender]] = {}
# |score| <= d * max|q| * max|i|: below this bound no score (nor partial sum) overflows float32.
_SCORE_LIMIT = float(np.finfo(np.float32).max) / 2

# Parameters most models share, declared once.
COMMON_PARAMS = {
    "device": Param("device"),
    "threads": Param("threads"),
    "seed": Param("seed"),
}


class NotFittedError(ValueError):
    """A model was used before ``fit`` (a ValueError, so generic handlers catch it)."""


class Recommender(ParamsMixin):
    """Base class of every model.

    Subclasses declare ``_param_spec``, implement ``fit`` (starting with ``_start_fit`` and ending
    with ``_finish_fit``), the ranking hooks ``_ranking_items`` / ``_ranking_queries`` (or their own
    ``recommend``), and the state hooks ``_array_names`` / ``_restore``; ``_explain_parts``
    (``explain``) and ``_after_forget`` (``forget_users`` / ``forget_items``) where they apply.
    """

    _param_spec = {"device": Param("device")}
    # Parameters added with a default that fits differently from before: a saved file without them was
    # fitted with these values, and `load` gives them back so a refit or forget behaves as before.
    _defaults_of_older_files: dict = {}
    seen_: sp.csr_matrix | None = None  # class default: unfitted

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls
        lock_public_methods(cls)

    def _model_lock(self) -> ModelLock:
        """The model's lock (created on first use; dict.setdefault is atomic, so every thread gets the same one)."""
        lock = self.__dict__.get("_lock")
        return lock if lock is not None else self.__dict__.setdefault("_lock", ModelLock())

    def __getstate__(self):  # copy / pickle: a lock is not copied (the copy makes its own)
        state = dict(self.__dict__)
        state.pop("_lock", None)
        return state

    # -- state ------------------------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return self.seen_ is not None

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit() first")

    @property
    def n_users(self) -> int:
        self._check_fitted()
        return self.seen_.shape[0]

    @property
    def n_items(self) -> int:
        self._check_fitted()
        return self.seen_.shape[1]

    @property
    def _ops(self):
        """The kernel layer of the fitted device (``recforge._ops``): models never import the kernels."""
        return get_ops(self.__dict__.get("device_", "cpu"))

    def _start_fit(self, interactions, *, allow_negative: bool = True) -> sp.csr_matrix:
        """Validate the parameters, resolve the device and return the training matrix (canonical CSR)."""
        self._validate_params()
        device = resolve_device(self.device, interactions)
        get_ops(device)  # "cuda" without CuPy or a GPU: the clear error, before any work
        self.device_ = device
        self._invalidate()
        train = as_csr(interactions, allow_negative=allow_negative)
        self.user_ids_, self.item_ids_ = _id_maps_of(interactions, train.shape)
        self.dataset_ = None  # named by whoever knows it (recforge fit), for item names
        self._check_fit_size(*train.shape, train.nnz)
        return train

    def _check_fit_size(self, n_users: int, n_items: int, nnz: int) -> None:
        """Refuse up front a fit whose state cannot fit in memory (models add their own work bounds).

        Factor models hold about two copies of (n_users + n_items) x factors float32 while fitting.
        """
        factors = getattr(self, "factors", None)
        if factors is not None:
            check_memory(8.0 * (n_users + n_items) * factors,
                         f"factors={factors} for {n_users} users and {n_items} items")  # fmt: skip

    def _kernel_csr(self, interactions, train: sp.csr_matrix, transposed: bool = False):
        """``ops.csr`` of ``train`` (``transposed``: items x users), from ``interactions``' cache when it has one."""
        if isinstance(interactions, Interactions):  # train is its csr: reuse the converted form
            return interactions._kernel_csr(self._ops, transposed)
        return self._ops.csr(train.T.tocsr() if transposed else train)

    def _finish_fit(self, train: sp.csr_matrix):
        """Mark the model fitted on ``train``; returns self (for ``return self._finish_fit(train)``)."""
        self.seen_ = train
        self._invalidate()
        return self

    def _invalidate(self) -> None:
        """Drop cached ranking vectors: the fitted arrays changed (fit epoch, fold-in, load, ``to``)."""
        self.__dict__.pop("_rank_cache", None)
        self.__dict__.pop("_rank_cache_unit", None)
        self.__dict__.pop("_explain_cache", None)

    def fit(self, interactions, callback=None, progress: bool | None = None):
        raise NotImplementedError

    # -- devices ----------------------------------------------------------------------------
    def to(self, device: str):
        """Move the fitted arrays to ``device`` ("cpu" | "cuda" | "auto": where they are) and return self.

        On "cuda" the fitted arrays (factors, biases, popularity) are CuPy arrays and ``recommend``,
        ``similar_*`` and ``score`` run on the GPU; they still take and return NumPy arrays. "cuda"
        needs CuPy and a visible GPU (a RuntimeError says which is missing). The training matrix
        ``seen_`` stays a SciPy matrix on the host.
        """
        self._check_fitted()
        names = [n for n in self._array_names() if getattr(self, n, None) is not None]
        device = resolve_device(device, *(getattr(self, n) for n in names)) if device == "auto" else device
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
        ops = get_ops(device)
        for n in names:
            a = getattr(self, n)
            setattr(self, n, to_host(a) if device == "cpu" else ops.xp.asarray(a))
        self.device_ = device
        self._invalidate()
        return self

    # -- scoring ----------------------------------------------------------------------------
    def _ranking_items(self) -> np.ndarray:
        """(n_items, d) item side of the ranking: ``queries @ items.T`` orders the items."""
        raise NotImplementedError

    def _ranking_queries(self, users: np.ndarray) -> np.ndarray:
        """(n, d) query side of the ranking for ``users`` (checked ids)."""
        raise NotImplementedError

    def _ranking_cache(self) -> tuple[np.ndarray, float]:
        """The item ranking matrix (contiguous float32, checked finite once) and its largest |value|.

        Built on first use after fit / load / fold-in / ``to`` and kept, so ``recommend`` pays only
        for its queries and the kernel.
        """
        cache = self.__dict__.get("_rank_cache")
        if cache is None:
            items = self._ranking_items()
            it = array_namespace(items).ascontiguousarray(items, dtype=np.float32)
            # max/min propagate NaN and reach inf: one finiteness check without a temporary copy.
            it_max = max(float(it.max()), -float(it.min())) if it.size else 0.0
            if not np.isfinite(it_max):
                raise ValueError(f"this {type(self).__name__} has NaN or infinite item vectors")
            cache = self._rank_cache = (it, it_max)
        return cache

    def score(self, users, items) -> np.ndarray:
        """Predicted preference for each (user, item) pair; ``users`` and ``items`` are 1-D, same length."""
        self._check_fitted()
        u = check_ids(users, self.n_users, "users")
        i = check_ids(items, self.n_items, "items")
        if u.shape != i.shape:
            raise ValueError(f"users and items must have the same length, got {u.size} and {i.size}")
        return check_scores(to_host(self._score_pairs(u, i)), self)

    def _on_device(self, ids: np.ndarray):
        """Checked host ids as an index array for the fitted arrays (a CuPy array on the GPU)."""
        return self._ops.xp.asarray(ids)

    def _score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        it, _ = self._ranking_cache()
        xp = array_namespace(it)
        return xp.einsum("ij,ij->i", self._ranking_queries(users), it[self._on_device(items)]).astype(np.float32)

    def recommend(self, users, k: int = 10, exclude_seen: bool = True, items=None, threads: int = 0):
        """Top ``k`` items for each of ``users``.

        Parameters
        ----------
        users : int or 1-D int array of user indices
        k : int >= 1
        exclude_seen : bool
            Leave out the items each user interacted with in the training data (``seen_``).
        items : 1-D int array, optional
            Restrict the ranking to these item indices.
        threads : int, 0 = all cores

        Returns
        -------
        ids : (n, min(k, n_items)) int64, best first; -1 pads rows with fewer eligible items. A ``k``
            past the catalogue is clipped to it (``recommend(u, k=10**6)`` ranks the whole catalogue).
        scores : (n, min(k, n_items)) float32; -inf where ids is -1.

        ``recommend_external`` takes and returns the data set's own ids; ``recommend_for_rows``
        ranks for users given by interaction rows (new users, without changing the model).
        """
        self._check_fitted()
        u = check_ids(users, self.n_users, "users")
        return self._rank(
            self._ranking_queries(u), seen_rows(self.seen_, u) if exclude_seen else None, k, items, threads
        )

    def _rank(self, queries, exclude, k, items, threads):
        """Top ``k`` of ``queries @ items.T`` per row with ``exclude`` (``CsrRows``, canonical CSR or None) left out.

        The item side comes from the checked cache; the queries (a few rows) are checked here; then
        the internal, trusting ``ops.topk`` runs (``recforge.topk`` would re-check everything).
        """
        k = check_k(k)
        threads = resolve_threads(threads)
        it, it_max = self._ranking_cache()
        q = array_namespace(it).ascontiguousarray(queries, dtype=np.float32)
        if q.size and not bool(abs(q).max() < np.inf):  # max propagates NaN: one check, no boolean temporary
            raise ValueError(f"this {type(self).__name__} has NaN or infinite user vectors")
        if q.size and q.shape[1] * float(abs(q).max()) * it_max > _SCORE_LIMIT:
            raise ValueError("the model's vectors are too large: their inner products would overflow float32")
        subset = None if items is None else check_ids(items, self.n_items, "items")
        # k past the catalogue is clipped to it: no (n, 10**6) arrays of padding for a 50-item catalogue.
        k = min(k, self.n_items)
        check_result_size(len(q), k)
        ids, scores = self._ops.topk(q, it, k, exclude=exclude, subset=subset, threads=threads)
        return to_host(ids), to_host(scores)

    def recommend_all(self, k: int = 10, exclude_seen: bool = True, batch_size: int = 4096, threads: int = 0):
        """``recommend`` for every user, in batches of ``batch_size`` users."""
        self._check_fitted()
        k = check_k(k)
        batch_size = check_positive(batch_size, "batch_size", integer=True)
        check_result_size(self.n_users, k)
        parts = [
            self.recommend(np.arange(s, min(s + batch_size, self.n_users)), k, exclude_seen, threads=threads)
            for s in range(0, self.n_users, batch_size)
        ]
        if not parts:  # no users: the shape recommend would give
            width = min(k, self.n_items)
            return np.zeros((0, width), np.int64), np.zeros((0, width), np.float32)
        return np.vstack([p[0] for p in parts]), np.vstack([p[1] for p in parts])

    # -- external ids -------------------------------------------------------------------------
    # ``user_ids_`` / ``item_ids_`` (IdMap): the data set's own ids of the model's users and items,
    # taken from the Interactions it was fitted on (identity maps for a plain matrix).
    user_ids_: IdMap | None = None
    item_ids_: IdMap | None = None
    dataset_: str | None = None  # the registered data set it was fitted on, when known (``recforge fit``)

    def _id_map(self, side: str) -> IdMap:
        """The ``side`` ("user" | "item") id map; the identity map when there is none (a plain matrix)."""
        self._check_fitted()
        n = self.n_users if side == "user" else self.n_items
        m = self.__dict__.get(f"{side}_ids_")
        return IdMap.range(n) if m is None else m

    def _to_internal(self, side: str, ids, name: str, allow_unknown: bool = False) -> np.ndarray:
        """1-D int64 indices of external ``ids``; -1 for unknown ones when ``allow_unknown``, else ValueError."""
        idx = np.atleast_1d(np.asarray(self._id_map(side).to_index(ids), np.int64))
        if not allow_unknown and (idx < 0).any():
            unknown = np.asarray(_as_id_list(ids), dtype=object)[idx < 0]
            shown = ", ".join(repr(x) for x in unknown[:5])
            raise ValueError(f"{name}: {len(unknown)} {side} id(s) unknown to this model, e.g. {shown}")
        return idx

    def recommend_external(self, users, k: int = 10, exclude_seen: bool = True, items=None,
                           fallback: str | None = None, threads: int = 0) -> pd.DataFrame:  # fmt: skip
        """``recommend`` in the data set's own ids: a DataFrame with one row per recommendation.

        Parameters
        ----------
        users : external user id or sequence of them (as in the Interactions the model was fitted on)
        k, exclude_seen, threads : as in ``recommend`` (``k`` is clipped to the catalogue)
        items : sequence of external item ids, optional
            Restrict the ranking to these items.
        fallback : None or "popular"
            Users the model does not know: a ValueError naming them (None), or the most popular
            training items ("popular": the cold-start baseline).

        Returns
        -------
        pandas.DataFrame with columns ``user``, ``rank`` (1 = best), ``item``, ``score``, in the
        order of ``users``; padding (fewer eligible items than ``k``) is left out.

        Examples
        --------
        >>> import pandas as pd, recforge as rf
        >>> df = pd.DataFrame({"user": ["ann", "ann", "bob", "cy"], "item": ["x", "y", "x", "z"]})
        >>> model = rf.MostPopular().fit(rf.Interactions.from_pandas(df))
        >>> model.recommend_external(["bob", "dan"], k=2, fallback="popular")[["user", "rank", "item"]]
          user  rank item
        0  bob     1    y
        1  bob     2    z
        2  dan     1    x
        3  dan     2    y
        """
        self._check_fitted()
        if fallback not in (None, "popular"):
            raise ValueError(f"fallback must be None or 'popular', got {fallback!r}")
        u = self._to_internal("user", users, "users", allow_unknown=fallback is not None)
        subset = None if items is None else self._to_internal("item", items, "items")
        width = min(check_k(k), self.n_items)
        ids = np.full((len(u), width), -1, np.int64)
        scores = np.full((len(u), width), -np.inf, np.float32)
        known = u >= 0
        if known.any():
            ids[known], scores[known] = self.recommend(u[known], k, exclude_seen, items=subset, threads=threads)
        if not known.all():
            ids[~known], scores[~known] = self._popular(width, subset)
        return self._external_frame(_as_id_list(users), ids, scores)

    def _popular(self, k: int, subset=None) -> tuple[np.ndarray, np.ndarray]:
        """(1, k) ids and scores of the items with the most training users (ties: lower index first)."""
        counts = np.bincount(self.seen_.indices, minlength=self.n_items).astype(np.float32)
        candidates = np.arange(self.n_items) if subset is None else np.unique(subset)
        top = candidates[np.argsort(-counts[candidates], kind="stable")[:k]]
        ids = np.full((1, k), -1, np.int64)
        scores = np.full((1, k), -np.inf, np.float32)
        ids[0, : len(top)], scores[0, : len(top)] = top, counts[top]
        return ids, scores

    def _external_frame(self, users: list, ids: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
        """Long DataFrame (user, rank, item, score) of ``recommend``-shaped results, padding dropped."""
        valid = ids >= 0
        rows, ranks = np.nonzero(valid)
        user_col = np.empty(len(users), dtype=object)
        user_col[:] = users
        return pd.DataFrame({
            "user": user_col[rows],
            "rank": ranks + 1,
            "item": self._id_map("item").to_external(ids[valid]),
            "score": scores[valid],
        })  # fmt: skip

    def score_external(self, users, items, **kwargs) -> np.ndarray:
        """``score`` for pairs of external user and item ids (1-D sequences of the same length).

        Unknown ids are a ValueError naming them, except where ``score`` itself takes a fallback
        (``SGDMF.score_external(..., unknown="bias")``).
        """
        self._check_fitted()
        lenient = kwargs.get("unknown") == "bias"
        u = self._to_internal("user", users, "users", allow_unknown=lenient)
        i = self._to_internal("item", items, "items", allow_unknown=lenient)
        return self.score(u, i, **kwargs)

    # -- explanations (``_explain.py``) ----------------------------------------------------------
    def explain(self, user: int, item: int) -> Explanation:
        """Why ``item`` scores what it does for ``user`` (internal indices): the contribution of each
        of the user's history items (``recforge.models.Explanation``; how each model obtains them:
        ``recforge.models._explain``). ``explain_external`` takes the data set's own ids."""
        self._check_fitted()
        u, i = _one_id(user, self.n_users, "user"), _one_id(item, self.n_items, "item")
        parts = self._explain_parts(u, i)
        model_score = float(check_scores(to_host(self._score_pairs(np.array([u]), np.array([i]))), self)[0])
        user_ids, item_ids = self._id_map("user"), self._id_map("item")
        user_id, item_id = user_ids.to_external(np.array([u]))[0], item_ids.to_external(np.array([i]))[0]
        return build_explanation(parts, user_id, item_id, model_score, item_ids)

    def explain_external(self, user, item) -> Explanation:
        """``explain`` for the data set's own user and item ids (unknown ones: a ValueError naming them)."""
        self._check_fitted()
        for ids, name in ((user, "user"), (item, "item")):
            if isinstance(ids, (str, bytes)) or not pd.api.types.is_list_like(ids):
                continue
            raise TypeError(f"{name} must be one external id, got {ids!r}")
        u = self._to_internal("user", user, "user")[0]
        return self.explain(u, self._to_internal("item", item, "item")[0])

    def _history(self, u: int) -> tuple[np.ndarray, np.ndarray]:
        """User ``u``'s history: item indices (int64) and stored values (float64) from ``seen_``."""
        lo, hi = self.seen_.indptr[u], self.seen_.indptr[u + 1]
        return self.seen_.indices[lo:hi].astype(np.int64), self.seen_.data[lo:hi].astype(np.float64)

    def _explain_parts(self, u: int, i: int) -> ScoreParts:
        """The decomposition of ``score(u, i)`` over ``u``'s history (checked indices)."""
        raise TypeError(f"{type(self).__name__} does not explain its scores")

    # -- forgetting (privacy) ---------------------------------------------------------------------
    def forget_users(self, users):
        """Remove users and everything the model stores of them; returns self.

        Parameters
        ----------
        users : external user id or sequence of them (distinct; for a model fitted on a matrix, the
            row indices)

        The users' rows leave ``seen_``, their ids leave ``user_ids_`` (the other users keep their
        external ids; internal indices after a removed one shift down) and their per-user arrays
        lose the row, so a saved model holds nothing of them directly. What the other parameters
        learnt from them depends on the model (its ``_after_forget``): ALS re-solves the item side
        exactly without them, ItemKNN / EASE / MostPopular recompute their item statistics exactly
        (the same as a refit without them), the SGD models (BPR, SGDMF, MLPScorer, HybridMF) keep
        their item side as trained: approximate (bench/RESULTS.md, "Forgetting users", gives the
        measured distance to a refit); HybridMF and MLPScorer with features on that side drop the
        rows' own (identity) features and keep the shared feature embeddings as trained
        (``FeatureColdStart._forget``). ``history_`` (per-epoch losses, not saved) is left as it was.
        """
        return self._forget("user", users)

    def forget_items(self, items):
        """Remove items (external ids) and everything the model stores of them; returns self.

        The mirror of ``forget_users``: the items' columns leave ``seen_``, their ids ``item_ids_``,
        their rows the per-item arrays; the user side is updated as ``forget_users`` updates the items.
        At least one item must remain.
        """
        return self._forget("item", items)

    def _forget(self, side: str, ids):
        self._check_fitted()
        name = f"{side}s"
        idx = self._to_internal(side, ids, name)
        if len(np.unique(idx)) != len(idx):
            raise ValueError(f"{name} must not repeat an id")
        rows = self.seen_ if side == "user" else self.seen_.T.tocsr()
        keep = np.setdiff1d(np.arange(rows.shape[0]), idx)
        if side == "item" and not len(keep):
            raise ValueError("items: forgetting every item leaves nothing to recommend; discard the model instead")
        touched = np.unique(rows[idx].indices).astype(np.int64)  # the other side's rows they touched
        id_map = self._id_map(side).subset(keep)
        for array in self._fold_in_arrays(side):
            if getattr(self, array, None) is not None:
                setattr(self, array, getattr(self, array)[self._on_device(keep)])
        kept = rows[keep]
        kept.sort_indices()
        self.seen_ = sp.csr_matrix(kept if side == "user" else kept.T.tocsr(), dtype=np.float32)
        self.__dict__[f"{side}_ids_"] = id_map
        self._invalidate()
        self._after_forget(side, touched)
        self._invalidate()
        return self

    def _after_forget(self, side: str, touched: np.ndarray) -> None:
        """Hook: update what the model learnt from the forgotten ``side`` rows (already removed from
        ``seen_`` and the per-row arrays); ``touched``: the other side's indices they interacted with."""

    def rows_from_items(self, items, weights=None, unknown: str = "error") -> sp.csr_matrix:
        """Interaction rows over this model's items from external item ids: one row per user.

        Parameters
        ----------
        items : sequence of sequences of external item ids
            ``items[r]`` are the items of row ``r`` (e.g. ``[["Fargo (1996)", "Heat (1995)"]]``
            for one new user, with titles as ids).
        weights : sequence of sequences of numbers, optional
            The value of each item (default 1.0), shaped like ``items``.
        unknown : {"error", "ignore"}
            Items the model does not know: a ValueError naming them, or left out.

        Returns
        -------
        scipy.sparse.csr_matrix (len(items), n_items), float32; a repeated item keeps its last value.
        The input of ``recommend_for_rows`` and ``partial_fit_users``.
        """
        self._check_fitted()
        if unknown not in ("error", "ignore"):
            raise ValueError(f"unknown must be 'error' or 'ignore', got {unknown!r}")
        if isinstance(items, (str, bytes)) or not pd.api.types.is_list_like(items):
            raise TypeError(f"items must be a sequence of sequences of item ids (one per user), got {items!r}")
        items = list(items)
        for r, row in enumerate(items):
            if isinstance(row, (str, bytes)) or not pd.api.types.is_list_like(row):
                raise TypeError(f"items[{r}] must be a sequence of item ids, got {row!r} (pass [[...]] for one user)")
        lengths = [len(row) for row in items]
        flat = [x for row in items for x in row]
        if weights is None:
            values = np.ones(len(flat), np.float32)
        else:
            weights = list(weights)
            if len(weights) != len(items) or any(len(w) != n for w, n in zip(weights, lengths)):
                raise ValueError("weights must have the shape of items (one value per item id)")
            values = np.asarray([x for w in weights for x in w], np.float64)
            if values.size and not np.isfinite(values).all():
                raise ValueError("weights must be finite numbers")
        rows = np.repeat(np.arange(len(items)), lengths)
        cols = self._to_internal("item", flat, "items", allow_unknown=unknown == "ignore") if flat else rows
        keep = cols >= 0
        frame = pd.DataFrame({"r": rows[keep], "c": cols[keep], "v": values[keep]})
        frame = frame.drop_duplicates(["r", "c"], keep="last")
        m = sp.csr_matrix((frame["v"].to_numpy(np.float32), (frame["r"], frame["c"])), shape=(len(items), self.n_items))
        m.sort_indices()
        return m

    def partial_fit_users_external(self, users, interactions_rows, **kwargs):
        """``partial_fit_users`` with external user ids: known users are re-learnt, new ones added.

        Parameters
        ----------
        users : sequence of external user ids (distinct)
            Ids the model does not know get new indices ``n_users, n_users + 1, ...`` in this order,
            and the model's ``user_ids_`` grows with them.
        interactions_rows : scipy.sparse (len(users), n_items), or sequences of external item ids
            Their complete rows (item id lists go through ``rows_from_items``).
        **kwargs : passed to ``partial_fit_users`` (e.g. ``epochs``)
        """
        return self._fold_in_external("user", users, interactions_rows, self.partial_fit_users, **kwargs)

    def _fold_in_external(self, side: str, ids, rows, fold_in, **kwargs):
        self._check_fitted()
        if not hasattr(self, f"partial_fit_{side}s"):
            raise TypeError(f"{type(self).__name__} has no partial_fit_{side}s")
        ext = _as_id_list(ids)
        old = self._id_map(side)
        idx = np.atleast_1d(np.asarray(old.to_index(ext), np.int64))
        new = [x for x, i in zip(ext, idx) if i < 0]
        grown = IdMap(_object_array([*old.values, *new])) if new else old
        idx[idx < 0] = len(old) + np.arange(len(new))  # IdMap rejects repeated new ids above
        if not sp.issparse(rows) and not isinstance(rows, Interactions) and side == "user":
            rows = self.rows_from_items(rows)
        self.__dict__[f"{side}_ids_"] = grown  # _fold_in sees the map already grown to its new size
        return fold_in(idx, rows, **kwargs)  # a failure restores the old map (the model lock's rollback)

    # -- cold start: users given by their interactions ------------------------------------------
    def recommend_for_rows(self, rows, k: int = 10, exclude_seen: bool = True, items=None, threads: int = 0,
                           fallback: str | None = None):  # fmt: skip
        """``recommend`` for users given by interaction rows, e.g. new users: the model is unchanged.

        Parameters
        ----------
        rows : scipy.sparse (n, n_items)
            Each row one user's interactions over the model's items (``rows_from_items`` builds them
            from external item ids).
        k, items, threads : as in ``recommend``
        exclude_seen : bool
            Leave out the items stored in each row.
        fallback : None or "popular"
            "popular": rows without any interaction get the most popular training items (the model
            alone has nothing to go on for them).

        Returns
        -------
        ids (n, min(k, n_items)) int64 and scores float32, as ``recommend``.

        Each model folds the rows in as its ``partial_fit_users`` would (ALS: the exact solve;
        BPR, SGDMF, MLPScorer: SGD epochs with the items fixed; MostPopular: the popularity order).
        """
        self._check_fitted()
        if fallback not in (None, "popular"):
            raise ValueError(f"fallback must be None or 'popular', got {fallback!r}")
        m = self._rows(rows)
        ids, scores = self._recommend_rows(m, k, exclude_seen, items, threads)
        empty = np.diff(m.indptr) == 0
        if fallback is not None and empty.any():
            subset = None if items is None else check_ids(items, self.n_items, "items")
            ids[empty], scores[empty] = self._popular(ids.shape[1], subset)
        return ids, scores

    def _recommend_rows(self, m: sp.csr_matrix, k, exclude_seen, items, threads):
        """``recommend_for_rows`` on the checked rows ``m`` (before any fallback)."""
        return self._rank(self._queries_for_rows(m), m if exclude_seen else None, k, items, threads)

    def _rows_allow_negative(self) -> bool:
        """Whether interaction rows may hold negative values (ratings do, implicit weights do not)."""
        return True

    def _rows(self, rows) -> sp.csr_matrix:
        """Canonical CSR of user rows over the fitted items (``recommend_for_rows``, fold-in)."""
        m = as_csr(rows, "rows", allow_empty=True, allow_negative=self._rows_allow_negative())
        if m.shape[1] != self.n_items:
            raise ValueError(f"rows must have {self.n_items} columns, got shape {m.shape}")
        return m

    def _queries_for_rows(self, m: sp.csr_matrix) -> np.ndarray:
        """(n, d) ranking queries of users given by the rows of ``m`` (``recommend_for_rows``)."""
        raise NotImplementedError

    def _fold_in_arrays(self, side: str) -> tuple[str, ...]:
        """The per-``side`` fitted arrays that grow by a row per new user / item."""
        return ()

    def _fold_in(self, side: str, ids, rows, update, *, allow_negative: bool = True, check=None):
        """The one fold-in path: check ``ids`` and ``rows``, grow the ``side`` arrays and id map, update, replace rows.

        Parameters
        ----------
        side : "user" | "item"
        ids : 1-D int ids of the rows to (re)learn; ids past the current count add rows.
        rows : sparse (len(ids), n_other): their complete interaction rows (items: columns of
            ``seen_`` given as rows).
        update : callable(ids, m, n_new)
            Writes the new rows of the (already grown) ``_fold_in_arrays(side)``; ``m`` is the
            canonical CSR of ``rows``, ``n_new`` the new row count.
        check : callable(m), optional
            Extra validation of ``m`` before anything changes.
        """
        self._check_fitted()
        n_own, n_other = (self.n_users, self.n_items) if side == "user" else (self.n_items, self.n_users)
        ids, m, n_new = check_fold_in(ids, rows, side, n_own, n_other, allow_negative=allow_negative)
        if check is not None:
            check(m)
        grown = [getattr(self, n) for n in self._fold_in_arrays(side) if getattr(self, n) is not None]
        width = sum(a.shape[1] if a.ndim == 2 else 1 for a in grown)
        check_memory(4.0 * max(n_new - n_own, 0) * (width + 1), f"{side}_ids up to {n_new - 1} (grows the model "
                     f"from {n_own} to {n_new} {side}s)")  # fmt: skip
        id_map = _grown_id_map(self.__dict__.get(f"{side}_ids_"), n_own, n_new, side)
        for name in self._fold_in_arrays(side):
            if getattr(self, name) is not None:
                setattr(self, name, grow_rows(getattr(self, name), n_new))
        update(ids, m, n_new)
        # seen_ is users x items: an item's row is a column of it.
        if side == "user":
            self.seen_ = replace_rows(self.seen_, ids, m, n_new)
        else:
            self.seen_ = replace_rows(self.seen_.T.tocsr(), ids, m, n_new).T.tocsr()
        self.__dict__[f"{side}_ids_"] = id_map
        self._invalidate()
        return self

    # -- persistence ------------------------------------------------------------------------
    def _array_names(self) -> tuple[str, ...]:
        """Names of the fitted array attributes (saved, moved by ``to``); None-valued ones are skipped."""
        raise NotImplementedError

    def _arrays(self) -> dict[str, np.ndarray]:
        """Fitted arrays to save, on the host whatever the device (the training matrix is added by ``save``)."""
        return {n: to_host(getattr(self, n)) for n in self._array_names() if getattr(self, n, None) is not None}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        """Set fitted state from ``arrays`` (validated: raise ValueError on any inconsistency)."""
        raise NotImplementedError

    def save(self, path) -> None:
        """Write the fitted model to ``path`` atomically (see the module docstring for the format)."""
        path = _model_path(path)
        if path.is_dir():
            raise ValueError(f"path must name a file, got the directory {path}")
        self._check_fitted()
        arrays = self._arrays()  # host arrays: a model saved from either device writes the same file
        train = self.seen_
        arrays.update(
            train_indptr=train.indptr.astype(np.int64),
            train_indices=train.indices.astype(np.int32),
            train_data=train.data.astype(np.float32),
            train_shape=np.asarray(train.shape, dtype=np.int64),
        )
        id_maps = {}
        for side in ("user", "item"):
            id_maps[side], parts = self._id_map(side).to_arrays()
            arrays.update({f"{side}_ids_{part}": a for part, a in parts.items()})
        meta = {
            "format": "recforge-model",
            "format_version": FORMAT_VERSION,
            "class": type(self).__name__,
            "params": _jsonable(self.get_params(deep=False)),
            "arrays": {k: [str(v.dtype), list(v.shape)] for k, v in arrays.items()},
            "id_maps": id_maps,
        }
        if self.dataset_ is not None:
            meta["dataset"] = str(self.dataset_)
        arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        _write_atomically(path, lambda f: np.savez(f, **arrays))


def _link_open_file(fd: int, dst: Path) -> None:
    """Give the unnamed (O_TMPFILE) file open as ``fd`` the name ``dst``: linkat(2) of /proc/self/fd/<fd>
    following the link (os.link alone calls link(2), which would link the /proc entry itself)."""
    proc = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.link(str(fd), dst, src_dir_fd=proc, follow_symlinks=True)
    finally:
        os.close(proc)


lock_public_methods(Recommender)  # subclasses are wrapped by __init_subclass__


def _jsonable(value):
    """``value`` with tuples as lists and NumPy scalars as Python numbers (JSON has neither)."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _id_maps_of(interactions, shape: tuple[int, int]) -> tuple[IdMap, IdMap]:
    """The user and item id maps of what a model is fitted on: an Interactions' own, else identity maps."""
    if isinstance(interactions, Interactions):
        return interactions.user_ids, interactions.item_ids
    return IdMap.range(shape[0]), IdMap.range(shape[1])


def _is_identity(m: IdMap) -> bool:
    """Whether external id ``j`` is index ``j`` for every ``j`` (so new indices can take new ids alike)."""
    index = m.index
    if isinstance(index, pd.RangeIndex):
        return index.start == 0 and index.step == 1
    return index.dtype.kind in "iu" and bool((index.to_numpy() == np.arange(len(index))).all())


def _grown_id_map(m: IdMap | None, n_own: int, n_new: int, side: str) -> IdMap | None:
    """The ``side`` id map for ``n_new`` rows: unchanged, pre-grown by ``partial_fit_*_external``, or
    the identity map extended; a ValueError (before anything changes) when new rows would have no id."""
    if m is None or len(m) == n_new:
        return m
    if len(m) == n_own and _is_identity(m):
        return IdMap.range(n_new)
    raise ValueError(
        f"{side} indices >= {n_own} would add {side}s without external ids to this model's {side}_ids_; "
        f"add them with partial_fit_{side}s_external(ids, rows), which grows the id map"
    )


def _one_id(value, n: int, name: str) -> int:
    """One internal index in [0, n) (TypeError / ValueError naming ``name`` otherwise)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be one integer index, got {value!r} (explain_external takes external ids)")
    return int(check_ids(value, n, name)[0])


def _as_id_list(ids) -> list:
    """External ids as a list (a scalar id becomes a one-element list), read as ``IdMap.to_index`` reads them."""
    if isinstance(ids, (str, bytes)) or not pd.api.types.is_list_like(ids):
        return [ids]
    return list(np.asarray(ids, dtype=object)) if isinstance(ids, np.ndarray) else list(ids)


def _object_array(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _model_path(path) -> Path:
    """``path`` as a Path; TypeError unless it is a str/PathLike, ValueError when it is empty."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    if os.fspath(path) in ("", b""):
        raise ValueError("path must name a file, got ''")
    return Path(os.fsdecode(path))


# A save killed mid-write leaves no file behind on Linux (an unnamed O_TMPFILE, linked under a
# temporary name only once complete); elsewhere, and between the link and the rename, a leftover
# carries this suffix (``<name>.<random>.recforge-save.tmp``) and can be deleted.
TEMP_SUFFIX = ".recforge-save.tmp"


def _write_atomically(path: Path, write) -> None:
    """Call ``write(binary file)`` on a temporary file in ``path``'s folder, then rename it to ``path``.

    The file is created with mode 0666 minus the umask (as ``open`` does); a failure (or a kill)
    leaves ``path`` as it was and no temporary file.
    """
    folder = path.parent
    temp = folder / f"{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
    try:  # unnamed until complete: nothing to orphan
        fd = os.open(folder, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o666)
        unnamed = True
    except (AttributeError, IsADirectoryError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        fd = os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o666)
        unnamed = False
    named = not unnamed
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if unnamed:
                _link_open_file(fd, temp)
                named = True
        os.replace(temp, path)
    except BaseException:
        if named:
            temp.unlink(missing_ok=True)
        raise


class _ModelFileError(ValueError):
    """A model file refused with its final message (not rewrapped by ``load``)."""


# What reading a damaged archive can raise (zipfile and the .npy header parser are not strict about
# their exceptions); ``load`` turns each into "not a valid recforge model file" (a ValueError).
_DAMAGE = (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError, MemoryError, RecursionError,
           NotImplementedError, RuntimeError, EOFError, OSError, UnicodeDecodeError, zipfile.BadZipFile,
           struct.error)  # fmt: skip
_META_LIMIT = 1 << 20  # bytes of metadata JSON: a real file has a few hundred
_DTYPE_KINDS = "biuf"  # bool, ints, floats: a model file holds nothing else
# No fitted value comes near this; beyond it the product of two overflows float32 (scores of NaN).
_VALUE_LIMIT = 1e18


def load(path) -> Recommender:
    """Read a model written by ``Recommender.save``; raise ValueError if the file is not a valid one.

    Reads only the members the metadata declares, each checked against its declared dtype and shape
    before any of it is read, so nothing larger than the file itself is allocated. Never unpickles.
    """
    path = _model_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    with open(path, "rb") as f:  # a permission error is the caller's, not a damaged file
        try:
            meta, arrays = _read_model_file(f, os.fstat(f.fileno()).st_size)
        except _ModelFileError as exc:
            raise _ModelFileError(f"{path}: {exc}") from None
        except _DAMAGE as exc:
            raise ValueError(f"{path} is not a valid recforge model file (corrupt or truncated): {exc}") from None
    cls = _REGISTRY[meta["class"]]
    try:
        with warnings.catch_warnings():  # files from before the renames: the reader can do nothing about it
            warnings.simplefilter("ignore", DeprecationWarning)
            # JSON has no tuples: sequence parameters (layers, clip, ...) come back as lists.
            params = {k: tuple(v) if isinstance(v, list) else v for k, v in meta.get("params", {}).items()}
            model = cls(**{**cls._defaults_of_older_files, **params})
        model._validate_params()
        shape = tuple(int(s) for s in arrays.pop("train_shape"))
        seen = sp.csr_matrix(
            (arrays.pop("train_data"), arrays.pop("train_indices"), arrays.pop("train_indptr")), shape=shape
        )
        seen.check_format(full_check=True)
        model.device_ = "cpu"
        model.seen_ = seen
        model.history_ = []  # not saved: the training log belongs to the session that fitted
        for side, n in (("user", shape[0]), ("item", shape[1])):  # version 1: identity maps
            prefix = f"{side}_ids_"
            parts = {name[len(prefix) :]: arrays.pop(name) for name in list(arrays) if name.startswith(prefix)}
            setattr(model, f"{side}_ids_", IdMap.from_arrays(meta.get("id_maps", {}).get(side, "range"), parts, n))
        model.dataset_ = meta.get("dataset")
        model._restore(arrays)
        model._invalidate()
    except _DAMAGE as exc:
        raise ValueError(f"{path}: inconsistent model file ({exc})") from None
    return model


def _read_model_file(f, file_size: int) -> tuple[dict, dict[str, np.ndarray]]:
    """The metadata and arrays of the model archive open in ``f`` (``file_size`` bytes), all checked."""
    with zipfile.ZipFile(f) as z:
        members = {}
        for info in z.infolist():
            if info.filename in members:
                raise ValueError(f"the archive holds {info.filename!r} twice")
            if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
                raise ValueError(f"member {info.filename!r} is compressed; save writes them stored")
            if info.header_offset + info.compress_size > file_size:
                raise ValueError(f"member {info.filename!r} extends past the end of the file")
            members[info.filename] = info
        if "__meta__.npy" not in members:
            raise _ModelFileError("not a recforge model file (no __meta__ entry)")
        raw = _read_member(z, members.pop("__meta__.npy"), "__meta__", "uint8", None, _META_LIMIT)
        meta = _check_meta(json.loads(raw.tobytes().decode()))
        declared = meta["arrays"]
        unknown = sorted(set(members) - {f"{name}.npy" for name in declared})
        if unknown:
            raise _ModelFileError(f"the archive holds members its metadata does not declare: {unknown[:5]}")
        arrays = {}
        for name, (dtype, shape) in declared.items():
            info = members.get(f"{name}.npy")
            if info is None:
                raise _ModelFileError(f"inconsistent model file (array {name!r} is declared but missing)")
            arrays[name] = _read_member(z, info, name, dtype, shape, info.file_size)
    return meta, arrays


def _check_meta(meta) -> dict:
    """``meta`` if it is the metadata of a model this recforge reads (format, version, class, arrays)."""
    if not isinstance(meta, dict) or meta.get("format") != "recforge-model":
        raise _ModelFileError("not a recforge model file")
    if meta.get("format_version") not in _READABLE_VERSIONS:
        raise _ModelFileError(
            f"has format version {meta.get('format_version')!r}, this recforge reads versions {_READABLE_VERSIONS}"
        )
    id_maps = meta.get("id_maps", {})
    if not isinstance(id_maps, dict) or not all(isinstance(id_maps.get(s, ""), str) for s in ("user", "item")):
        raise _ModelFileError("corrupt metadata (id_maps is not a mapping of user/item to a kind)")
    if not isinstance(meta.get("dataset", ""), str):
        raise _ModelFileError("corrupt metadata (dataset is not a name)")
    if not isinstance(meta.get("class"), str) or meta["class"] not in _REGISTRY:
        raise _ModelFileError(f"holds an unknown model class {meta.get('class')!r}")
    if not isinstance(meta.get("params", {}), dict):
        raise _ModelFileError("corrupt metadata (params is not a mapping)")
    declared = meta.get("arrays")
    if not isinstance(declared, dict):
        raise _ModelFileError("corrupt metadata (no array list)")
    for name, spec in declared.items():
        if not (name.isidentifier() and isinstance(spec, list) and len(spec) == 2 and isinstance(spec[0], str)
                and isinstance(spec[1], list) and len(spec[1]) <= 8
                and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in spec[1])):  # fmt: skip
            raise _ModelFileError(f"corrupt metadata (array {name!r}: {spec!r} is not [dtype, shape])")
    missing = {"train_indptr", "train_indices", "train_data", "train_shape"} - declared.keys()
    if missing:
        raise _ModelFileError(f"inconsistent model file (no {sorted(missing)} arrays)")
    return meta


def _read_member(z: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, dtype: str, shape, limit: int) -> np.ndarray:
    """The .npy member ``info`` as an array, refused unless it has ``dtype`` (and ``shape``, when not None),
    holds exactly that many bytes, at most ``limit``, and (floats) only finite values below ``_VALUE_LIMIT``."""
    want = np.dtype(dtype)
    if want.kind not in _DTYPE_KINDS or want.names is not None or want.subdtype is not None:
        raise _ModelFileError(f"inconsistent model file (array {name!r} has the unsupported dtype {dtype!r})")
    with z.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version not in ((1, 0), (2, 0)):
            raise _ModelFileError(f"array {name!r} has the .npy version {version}; save writes 1.0")
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        try:
            got_shape, fortran_order, got_dtype = read_header(member, max_header_size=10_000)
        except Exception as exc:  # numpy's header parser raises tokenize/syntax errors too
            raise _ModelFileError(f"array {name!r} has a damaged .npy header ({type(exc).__name__})") from None
        if got_dtype != want or str(got_dtype) != dtype or (shape is not None and list(got_shape) != shape):
            raise _ModelFileError(
                f"inconsistent model file (array {name!r} is {got_dtype} {got_shape}: it does not match its "
                f"declared dtype/shape {dtype} {tuple(shape or ())})"
            )
        nbytes = math.prod(got_shape) * want.itemsize
        if nbytes > limit or member.tell() + nbytes != info.file_size:
            raise _ModelFileError(f"inconsistent model file (array {name!r}: {nbytes} bytes declared, "
                                  f"{info.file_size - member.tell()} stored)")  # fmt: skip
        data = bytearray(nbytes)
        if member.readinto(data) != nbytes or member.read(1):  # the last read checks the CRC
            raise _ModelFileError(f"array {name!r} is truncated")
    flat = np.frombuffer(data, dtype=want)
    a = flat.reshape(got_shape[::-1]).T if fortran_order else flat.reshape(got_shape)
    if want.kind == "f" and a.size:
        if not np.isfinite(a).all():
            raise _ModelFileError(f"inconsistent model file (array {name!r} contains NaN or infinite values)")
        if float(np.abs(a).max()) > _VALUE_LIMIT:
            raise _ModelFileError(f"inconsistent model file (array {name!r} holds values beyond {_VALUE_LIMIT:g})")
    return a


def _abs_max(a) -> float:
    """max |a| as a Python float (0 for None or an empty array)."""
    return 0.0 if a is None or not a.size else float(abs(a).max())  # abs(): NumPy or CuPy arrays


def check_state_arrays(arrays: dict, expected: dict) -> None:
    """Raise ValueError unless each ``expected`` name is in ``arrays`` with its shape and finite values."""
    for name, shape in expected.items():
        a = arrays.get(name)
        if a is None:
            raise ValueError(f"missing array {name!r}")
        if a.shape != shape:
            raise ValueError(f"array {name!r} has shape {a.shape}, expected {shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"array {name!r} contains NaN or infinite values")


def csr_arrays(prefix: str, m: sp.csr_matrix) -> dict[str, np.ndarray]:
    """What a model saves for the sparse matrix ``m``: ``{prefix}_indptr``, ``_indices``, ``_data``, ``_shape``."""
    return {f"{prefix}_indptr": m.indptr.astype(np.int64), f"{prefix}_indices": m.indices.astype(np.int32),
            f"{prefix}_data": m.data.astype(np.float32), f"{prefix}_shape": np.asarray(m.shape, np.int64)}  # fmt: skip


def restore_csr(arrays: dict, prefix: str, n_rows: int) -> sp.csr_matrix:
    """The float32 CSR saved by ``csr_arrays(prefix, ...)`` with ``n_rows`` rows; ValueError naming the bad array."""
    names = [f"{prefix}_{part}" for part in ("indptr", "indices", "data", "shape")]
    for name in names:
        if name not in arrays:
            raise ValueError(f"missing array {name!r}")
    indptr, indices, data, shape = (arrays[name] for name in names)
    if shape.shape != (2,) or shape[0] != n_rows or shape[1] < 0:
        raise ValueError(f"array {names[3]!r} must be ({n_rows}, n_columns), got {shape.tolist()}")
    n_cols = int(shape[1])
    if indptr.shape != (n_rows + 1,) or indptr[0] != 0 or (np.diff(indptr) < 0).any():
        raise ValueError(f"array {names[0]!r} must be ({n_rows + 1},), start at 0 and never decrease")
    if indices.shape != (int(indptr[-1]),) or (indices.size and not (0 <= indices.min() and indices.max() < n_cols)):
        raise ValueError(f"array {names[1]!r} must hold {indptr[-1]} column ids in [0, {n_cols})")
    if data.shape != indices.shape or not np.isfinite(data).all():
        raise ValueError(f"array {names[2]!r} must hold {indices.size} finite values")
    return sp.csr_matrix((data.astype(np.float32), indices, indptr), shape=(n_rows, n_cols))


class CsrRows(NamedTuple):
    """Rows of a canonical CSR as the top-k exclusion takes them: int64 ``indptr`` (n + 1,) and column ``indices``."""

    indptr: np.ndarray
    indices: np.ndarray
    shape: tuple[int, int]

    @property
    def nnz(self) -> int:
        return len(self.indices)


def seen_rows(m: sp.csr_matrix, rows: np.ndarray) -> CsrRows:
    """Rows ``rows`` (checked int64 ids) of the canonical CSR ``m``, gathered in O(len(rows) + their nnz).

    Replaces ``m[rows]``, whose SciPy construction and checks cost more than the gather itself on
    every ``recommend`` call.
    """
    starts = m.indptr[rows].astype(np.int64)
    lengths = m.indptr[rows + 1] - starts
    indptr = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(lengths, out=indptr[1:])
    # Entry j of the result is entry j - indptr[r] + starts[r] of m, r its row in the result.
    take = np.arange(indptr[-1], dtype=np.int64) + np.repeat(starts - indptr[:-1], lengths)
    # The column ids keep the matrix's dtype: ops.topk narrows them to the kernel's int32 once, checked.
    return CsrRows(indptr, m.indices[take], (len(rows), m.shape[1]))


# -- folding rows in (partial_fit_*): shared by the factor models ------------------------------
def check_fold_in_ids(ids, name: str) -> np.ndarray:
    """Distinct non-negative int64 ids (1-D); ids past the model's current count add rows."""
    arr = np.asarray(ids)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must be a 1-D array of integer ids, got shape {arr.shape} dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} must be >= 0, got {arr.min()}")
    if len(np.unique(arr)) != len(arr):
        raise ValueError(f"{name} must not repeat an id")
    return arr


def check_fold_in(ids, rows, side: str, n_own: int, n_other: int, *, allow_negative: bool = True):
    """Checked ``(ids, m, n_new)`` of a fold-in: ``ids`` as ``check_fold_in_ids``, ``m`` the canonical CSR
    of ``rows`` (one row of ``n_other`` columns per id), ``n_new`` the row count once ``ids`` are added."""
    ids = check_fold_in_ids(ids, f"{side}_ids")
    m = as_csr(rows, "interactions_rows", allow_empty=True, allow_negative=allow_negative)
    if m.shape[1] != n_other:
        raise ValueError(f"interactions_rows must have {n_other} columns, got shape {m.shape}")
    if m.shape[0] != len(ids):
        raise ValueError(f"interactions_rows must have one row per id ({len(ids)}), got shape {m.shape}")
    return ids, m, max(n_own, int(ids.max()) + 1 if len(ids) else 0)


def grow_rows(a: np.ndarray, n: int) -> np.ndarray:
    """``a`` with zero rows appended up to ``n`` rows (a copy either way: callers write into it), on ``a``'s device."""
    out = array_namespace(a).zeros((n,) + a.shape[1:], a.dtype)
    out[: len(a)] = a
    return out


def replace_rows(m: sp.csr_matrix, ids: np.ndarray, rows: sp.csr_matrix, n_rows: int) -> sp.csr_matrix:
    """``m`` grown to ``n_rows`` rows (empty ones appended) with rows ``ids`` replaced by ``rows``."""
    grown = sp.vstack([m, sp.csr_matrix((n_rows - m.shape[0], m.shape[1]), dtype=np.float32)], format="csr")
    source = np.arange(n_rows)  # output row i is row source[i] of [grown; rows]
    source[ids] = n_rows + np.arange(len(ids))
    out = sp.vstack([grown, rows], format="csr")[source]
    return sp.csr_matrix(out, dtype=np.float32)


class FactorModel(Recommender):
    """A model that ranks by inner products of user and item vectors (ALS, BPR, SGDMF, ...).

    Fitted attributes: ``user_factors`` (n_users, f) and ``item_factors`` (n_items, f), float32;
    optionally ``item_bias`` (n_items,), ``user_bias`` (n_users,) and ``global_bias`` for ``score``.
    Ranking uses ``[u, 1] . [i, b_i]``: user terms do not change a user's ranking.
    """

    user_factors: np.ndarray | None = None
    item_factors: np.ndarray | None = None
    item_bias: np.ndarray | None = None
    user_bias: np.ndarray | None = None
    global_bias: float = 0.0

    def _bias_names(self) -> tuple[str, ...]:
        """The bias arrays this configuration fits, among "user_bias", "item_bias", "global_bias"."""
        return ()

    def _array_names(self):
        return ("user_factors", "item_factors", "user_bias", "item_bias")

    def _arrays(self):
        out = super()._arrays()
        out["global_bias"] = np.asarray([self.global_bias], np.float64)
        return out

    def _restore(self, arrays):
        n_users, n_items = self.seen_.shape
        f = arrays["user_factors"].shape[1] if "user_factors" in arrays else getattr(self, "factors", 0)
        shapes = {"user_factors": (n_users, f), "item_factors": (n_items, f),
                  "user_bias": (n_users,), "item_bias": (n_items,), "global_bias": (1,)}  # fmt: skip
        # The configuration's biases must be there; others are kept when present (from_factors).
        names = {"user_factors", "item_factors", *self._bias_names()} | (shapes.keys() & arrays.keys())
        check_state_arrays(arrays, {name: shapes[name] for name in names})
        if f != getattr(self, "factors", f):
            raise ValueError(f"factors is {self.factors} but the saved factors have {f} columns")
        self.user_factors = arrays["user_factors"].astype(np.float32)
        self.item_factors = arrays["item_factors"].astype(np.float32)
        self.user_bias = arrays["user_bias"].astype(np.float32) if "user_bias" in names else None
        self.item_bias = arrays["item_bias"].astype(np.float32) if "item_bias" in names else None
        self.global_bias = float(arrays["global_bias"][0]) if "global_bias" in names else 0.0
        if self._score_bound() > _SCORE_LIMIT:
            raise ValueError("the saved factors are too large: their scores would overflow float32")

    def _score_bound(self) -> float:
        """An upper bound of every |score| and ranking inner product (float64: no overflow here)."""
        u, i = _abs_max(self.user_factors), _abs_max(self.item_factors)
        ub, ib = _abs_max(self.user_bias), _abs_max(self.item_bias)
        f = self.item_factors.shape[1]
        ranking = (f + 1) * max(u, 1.0) * max(i, ib)  # [u, 1] . [i, b_i]
        return max(ranking, f * u * i + ub + ib + abs(self.global_bias))

    @classmethod
    def from_factors(cls, user_factors, item_factors, *, seen=None, user_bias=None, item_bias=None,
                     global_bias: float = 0.0, **params):  # fmt: skip
        """A fitted model from given factors (no training), e.g. trained elsewhere or edited.

        Parameters
        ----------
        user_factors : (n_users, f) array
        item_factors : (n_items, f) array
            Converted to C-contiguous float32; must be finite.
        seen : scipy.sparse (n_users, n_items) or recforge.Interactions, optional
            The training matrix (``seen_``: what ``exclude_seen`` leaves out); default empty. An
            Interactions also gives the id maps (``user_ids_``, ``item_ids_``).
        user_bias, item_bias : (n_users,), (n_items,) arrays, optional
            Biases the configuration fits (e.g. explicit ALS, SGDMF with ``biases=True``) default to 0.
        global_bias : float
        **params
            Constructor parameters; ``factors`` defaults to f.
        """
        # Checked on the host, then placed on the device the factors came from (or the one asked for).
        uf = check_dense(to_host(user_factors), "user_factors")
        itf = check_dense(to_host(item_factors), "item_factors")
        if uf.shape[1] != itf.shape[1]:
            raise ValueError(f"user_factors and item_factors must have the same width, got {uf.shape[1]} and "
                             f"{itf.shape[1]}")  # fmt: skip
        if "factors" in cls._param_names():
            params.setdefault("factors", uf.shape[1])
        model = cls(**params)
        model._validate_params()
        if getattr(model, "factors", uf.shape[1]) != uf.shape[1]:
            raise ValueError(f"factors={model.factors} does not match the factors' width {uf.shape[1]}")
        device = resolve_device(model.device, user_factors, item_factors, user_bias, item_bias)
        get_ops(device)  # "cuda" without CuPy or a GPU: the clear error, before any work
        model.device_ = "cpu"
        n_users, n_items = len(uf), len(itf)
        if seen is None:
            seen = sp.csr_matrix((n_users, n_items), dtype=np.float32)
        maps = _id_maps_of(seen, (n_users, n_items))  # an Interactions' own id maps
        seen = as_csr(seen, "seen", allow_empty=True)
        if seen.shape != (n_users, n_items):
            raise ValueError(f"seen must have shape ({n_users}, {n_items}) (users x items), got {seen.shape}")
        model.user_ids_, model.item_ids_ = maps
        for name, b, n in (("user_bias", user_bias, n_users), ("item_bias", item_bias, n_items)):
            if b is None and name in model._bias_names():
                b = np.zeros(n, np.float32)
            if b is not None:
                b = check_dense(to_host(b), name, ndim=1)
                if b.shape != (n,):
                    raise ValueError(f"{name} must have shape ({n},), got {b.shape}")
            setattr(model, name, b)
        global_bias = check_finite(global_bias, "global_bias")
        model.user_factors, model.item_factors, model.global_bias = uf, itf, float(global_bias)
        model.history_ = []
        return model._finish_fit(seen).to(device)

    def _ranking_items(self):
        if self.item_bias is None:
            return self.item_factors
        return array_namespace(self.item_factors).hstack([self.item_factors, self.item_bias[:, None]])

    def _ranking_queries(self, users):
        return self._queries_for(self.user_factors[self._on_device(users)])

    def _queries_for(self, q: np.ndarray) -> np.ndarray:
        """Ranking queries for user factor rows ``q`` (n, f): ``[q, 1]`` when items carry a bias."""
        xp = array_namespace(q)
        if self.item_bias is not None:  # [u, 1] . [i, b_i] = u.i + b_i
            q = xp.hstack([q, xp.ones((len(q), 1), np.float32)])
        return xp.ascontiguousarray(q, dtype=np.float32)

    def _score_pairs(self, users, items):
        xp = array_namespace(self.user_factors)
        users, items = self._on_device(users), self._on_device(items)
        s = xp.einsum("ij,ij->i", self.user_factors[users], self.item_factors[items])
        if self.item_bias is not None:
            s = s + self.item_bias[items]
        if self.user_bias is not None:
            s = s + self.user_bias[users]
        return (s + self.global_bias).astype(np.float32)

    def _fold_in_arrays(self, side: str) -> tuple[str, ...]:
        return (f"{side}_factors", f"{side}_bias")

    def _explain_parts(self, u, i):
        """SGD-trained factors: the user-item term ``x_u . y_i`` shared by item-factor similarity."""
        history, values = self._history(u)
        x, y = to_host(self.user_factors[u]), to_host(self.item_factors)
        base = self.global_bias + sum(float(to_host(b)[j]) for b, j in ((self.user_bias, u), (self.item_bias, i))
                                      if b is not None)  # fmt: skip
        return similarity_parts(history, values, y, i, float(np.dot(x.astype(np.float64), y[i])), base)

    def _queries_for_rows(self, m: sp.csr_matrix) -> np.ndarray:
        return self._queries_for(self._user_vectors_for_rows(m))

    def _user_vectors_for_rows(self, m: sp.csr_matrix) -> np.ndarray:
        """(n, f) user factors learnt from the rows of ``m`` against the fixed items (the model unchanged)."""
        raise TypeError(f"{type(self).__name__} does not fold users in from interaction rows")

    # -- similarity -----------------------------------------------------------------------------
    def similar_items(self, items, k: int = 10, threads: int = 0):
        """Top ``k`` items by cosine similarity of item factors (the item itself excluded)."""
        self._check_fitted()
        return self._similar("item_factors", check_ids(items, self.n_items, "items"), k, threads)

    def similar_users(self, users, k: int = 10, threads: int = 0):
        """Top ``k`` users by cosine similarity of user factors (the user itself excluded)."""
        self._check_fitted()
        return self._similar("user_factors", check_ids(users, self.n_users, "users"), k, threads)

    def _similar(self, side: str, rows, k, threads):
        """Top ``k`` rows of ``side`` by cosine; ``k`` is clipped to the rows there are, like ``recommend``."""
        threads = resolve_threads(threads)
        unit = self._unit_rows(side)
        k = min(check_k(k), len(unit))
        check_result_size(len(rows), k)
        self_ex = CsrRows(np.arange(len(rows) + 1, dtype=np.int64), rows, (len(rows), len(unit)))
        ids, scores = self._ops.topk(unit[self._on_device(rows)], unit, k, exclude=self_ex, threads=threads)
        return to_host(ids), to_host(scores)

    def _unit_rows(self, side: str) -> np.ndarray:
        """``side``'s factors scaled to unit length (zero rows stay zero), cached like the ranking vectors."""
        cache = self.__dict__.setdefault("_rank_cache_unit", {})
        if side not in cache:
            f = getattr(self, side)
            xp = array_namespace(f)
            norms = xp.linalg.norm(f, axis=1)
            unit = xp.ascontiguousarray(f / xp.where(norms > 0, norms, 1)[:, None], dtype=np.float32)
            if not bool(xp.isfinite(unit).all()):
                raise ValueError(f"this {type(self).__name__} has NaN or infinite {side}")
            cache[side] = unit
        return cache[side]
