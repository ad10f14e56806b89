"""The one shape every model shares: fit, recommend, score, save/load.

Users and items are dense internal indices (0..n_users-1, 0..n_items-1); ``recforge.Interactions``
maps external ids to them. A model keeps a reference to its training matrix so that
``exclude_seen`` works, and stores it in its saved file.

Saved format (``FORMAT_VERSION``): a zip archive written by ``numpy.savez`` holding the model's
arrays plus ``__meta__``, a uint8 array of UTF-8 JSON ``{"format": "recforge-model",
"format_version": 1, "class": ..., "params": {...}, "arrays": {name: [dtype, shape]}}``. No pickle;
written to a temporary file and renamed, so a crash never leaves half a file; validated on load.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .._ops import get_ops
from .._validation import as_csr, check_ids, check_k
from ..topk import topk

__all__ = [
    "FORMAT_VERSION", "NotFittedError", "Recommender", "FactorModel", "load",
    "check_fold_in_ids", "check_state_arrays", "grow_rows", "replace_rows",
]

FORMAT_VERSION = 1
_REGISTRY: dict[str, type[Recommender]] = {}


class NotFittedError(ValueError):
    """A model was used before ``fit`` (a ValueError, so generic handlers catch it)."""


class Recommender:
    """Base class. Subclasses implement ``fit``, ``_scores_for(users, items)`` or ``_query_vectors``,
    and the state hooks ``_params`` / ``_arrays`` / ``_restore``."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    # -- state ------------------------------------------------------------------------------
    _train: sp.csr_matrix | None = None

    @property
    def _ops(self):
        """The kernel layer this model calls (``recforge._ops``): models never import the kernels."""
        return get_ops("cpu")

    @property
    def is_fitted(self) -> bool:
        return self._train is not None

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit() first")

    @property
    def n_users(self) -> int:
        self._check_fitted()
        return self._train.shape[0]

    @property
    def n_items(self) -> int:
        self._check_fitted()
        return self._train.shape[1]

    def fit(self, interactions, callback=None, progress: bool = True):
        raise NotImplementedError

    # -- scoring ----------------------------------------------------------------------------
    def _ranking_vectors(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(queries (n, d), items (n_items, d)) whose inner products rank items for ``users``."""
        raise NotImplementedError

    def score(self, users, items) -> np.ndarray:
        """Predicted preference for each (user, item) pair; ``users`` and ``items`` are 1-D, same length."""
        self._check_fitted()
        u = check_ids(users, self.n_users, "users")
        i = check_ids(items, self.n_items, "items")
        if u.shape != i.shape:
            raise ValueError(f"users and items must have the same length, got {u.size} and {i.size}")
        return self._score_pairs(u, i)

    def _score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        q, it = self._ranking_vectors(users)
        return np.einsum("ij,ij->i", q, it[items]).astype(np.float32)

    def recommend(self, users, k: int = 10, exclude_seen: bool = True, items=None, threads: int = 0):
        """Top ``k`` items for each of ``users``.

        Parameters
        ----------
        users : int or 1-D int array of user indices
        k : int >= 1
        exclude_seen : bool
            Leave out the items each user interacted with in the training data.
        items : 1-D int array, optional
            Restrict the ranking to these item indices.

        Returns
        -------
        ids : (n, k) int64, best first; -1 pads rows with fewer than k eligible items.
        scores : (n, k) float32; -inf where ids is -1.
        """
        self._check_fitted()
        u = check_ids(users, self.n_users, "users")
        q, it = self._ranking_vectors(u)
        return self._rank(q, it, self._train[u] if exclude_seen else None, k, items, threads)

    def _rank(self, q, it, exclude, k, items, threads):
        """Top ``k`` of ``q @ it.T`` per row, ``exclude`` (csr or None) left out; see ``recommend``."""
        k = check_k(k)
        k_eff = min(k, self.n_items)
        cand = None if items is None else check_ids(items, self.n_items, "items")
        ids, scores = topk(q, it, k_eff, exclude=exclude, candidates=cand, threads=threads)
        if k_eff < k:  # more asked than the catalogue has: pad as topk does
            pad = k - k_eff
            ids = np.hstack([ids, np.full((len(q), pad), -1, dtype=np.int64)])
            scores = np.hstack([scores, np.full((len(q), pad), -np.inf, dtype=np.float32)])
        return ids, scores

    def recommend_all(self, k: int = 10, exclude_seen: bool = True, batch_size: int = 4096, threads: int = 0):
        """``recommend`` for every user, in batches of ``batch_size`` users."""
        self._check_fitted()
        k = check_k(k)
        parts = [
            self.recommend(np.arange(s, min(s + batch_size, self.n_users)), k, exclude_seen, threads=threads)
            for s in range(0, self.n_users, batch_size)
        ]
        return np.vstack([p[0] for p in parts]), np.vstack([p[1] for p in parts])

    # -- persistence ------------------------------------------------------------------------
    def _params(self) -> dict:
        """JSON-serialisable constructor arguments."""
        raise NotImplementedError

    def _arrays(self) -> dict[str, np.ndarray]:
        """Fitted arrays to save (the training matrix is added by ``save``)."""
        raise NotImplementedError

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        """Set fitted state from ``arrays`` (validated: raise ValueError on any inconsistency)."""
        raise NotImplementedError

    def save(self, path) -> None:
        """Write the fitted model to ``path`` atomically (see the module docstring for the format)."""
        self._check_fitted()
        arrays = dict(self._arrays())
        train = self._train
        arrays.update(
            train_indptr=train.indptr.astype(np.int64),
            train_indices=train.indices.astype(np.int32),
            train_data=train.data.astype(np.float32),
            train_shape=np.asarray(train.shape, dtype=np.int64),
        )
        meta = {
            "format": "recforge-model",
            "format_version": FORMAT_VERSION,
            "class": type(self).__name__,
            "params": self._params(),
            "arrays": {k: [str(v.dtype), list(v.shape)] for k, v in arrays.items()},
        }
        arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        path = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent or ".")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def load(path) -> Recommender:
    """Read a model written by ``Recommender.save``; raise ValueError if the file is not a valid one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise ValueError(f"{path} is not a valid recforge model file (corrupt or truncated): {exc}") from None
    try:
        meta = json.loads(arrays.pop("__meta__").tobytes().decode())
    except KeyError:
        raise ValueError(f"{path} is not a recforge model file (no __meta__ entry)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: corrupt metadata ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != "recforge-model":
        raise ValueError(f"{path} is not a recforge model file")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} has format version {meta.get('format_version')}, this recforge reads version {FORMAT_VERSION}"
        )
    cls = _REGISTRY.get(meta.get("class"))
    if cls is None:
        raise ValueError(f"{path} holds an unknown model class {meta.get('class')!r}")
    declared = meta.get("arrays", {})
    for name, (dtype, shape) in declared.items():
        a = arrays.get(name)
        if a is None or str(a.dtype) != dtype or list(a.shape) != shape:
            raise ValueError(f"{path}: array {name!r} is missing or does not match its declared dtype/shape")
    try:
        model = cls(**meta.get("params", {}))
        shape = tuple(int(s) for s in arrays.pop("train_shape"))
        model._train = sp.csr_matrix(
            (arrays.pop("train_data"), arrays.pop("train_indices"), arrays.pop("train_indptr")), shape=shape
        )
        model._train.check_format(full_check=True)
        model._restore(arrays)
    except (TypeError, KeyError, ValueError) as exc:
        raise ValueError(f"{path}: inconsistent model file ({exc})") from None
    return model


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


def grow_rows(a: np.ndarray, n: int) -> np.ndarray:
    """``a`` with zero rows appended up to ``n`` rows (a copy either way: callers write into it)."""
    out = np.zeros((n,) + a.shape[1:], a.dtype)
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

    Subclasses set ``user_factors`` (n_users, f) and ``item_factors`` (n_items, f), float32, and may
    set ``item_bias`` (n_items,) and ``user_bias`` / ``global_bias`` for ``score``.
    """

    user_factors: np.ndarray | None = None
    item_factors: np.ndarray | None = None
    item_bias: np.ndarray | None = None
    user_bias: np.ndarray | None = None
    global_bias: float = 0.0

    # Bias arrays this configuration fits, among "user_bias", "item_bias", "global_bias".
    def _bias_names(self) -> tuple[str, ...]:
        return ()

    def _arrays(self):
        out = {"user_factors": self.user_factors, "item_factors": self.item_factors}
        for name in self._bias_names():
            out[name] = np.asarray([self.global_bias], np.float64) if name == "global_bias" else getattr(self, name)
        return out

    def _restore(self, arrays):
        n_users, n_items = self._train.shape
        shapes = {"user_factors": (n_users, self.factors), "item_factors": (n_items, self.factors),
                  "user_bias": (n_users,), "item_bias": (n_items,), "global_bias": (1,)}
        names = ("user_factors", "item_factors", *self._bias_names())
        check_state_arrays(arrays, {name: shapes[name] for name in names})
        self.user_factors = arrays["user_factors"].astype(np.float32)
        self.item_factors = arrays["item_factors"].astype(np.float32)
        self.user_bias = arrays["user_bias"].astype(np.float32) if "user_bias" in names else None
        self.item_bias = arrays["item_bias"].astype(np.float32) if "item_bias" in names else None
        self.global_bias = float(arrays["global_bias"][0]) if "global_bias" in names else 0.0

    def _ranking_vectors(self, users):
        return self._ranking_vectors_for(self.user_factors[users])

    def _ranking_vectors_for(self, q):
        """(queries, items) ranking vectors for user factor rows ``q`` (n, f)."""
        it = self.item_factors
        if self.item_bias is not None:  # [u, 1] . [i, b_i] = u.i + b_i; user terms do not change a ranking
            q = np.hstack([q, np.ones((len(q), 1), np.float32)])
            it = np.hstack([it, self.item_bias[:, None]])
        return np.ascontiguousarray(q, np.float32), np.ascontiguousarray(it, np.float32)

    def _score_pairs(self, users, items):
        s = np.einsum("ij,ij->i", self.user_factors[users], self.item_factors[items])
        if self.item_bias is not None:
            s = s + self.item_bias[items]
        if self.user_bias is not None:
            s = s + self.user_bias[users]
        return (s + self.global_bias).astype(np.float32)

    def similar_items(self, items, k: int = 10, threads: int = 0):
        """Top ``k`` items by cosine similarity of item factors (the item itself excluded)."""
        self._check_fitted()
        i = check_ids(items, self.n_items, "items")
        return self._similar(self.item_factors, i, k, threads)

    def similar_users(self, users, k: int = 10, threads: int = 0):
        """Top ``k`` users by cosine similarity of user factors (the user itself excluded)."""
        self._check_fitted()
        u = check_ids(users, self.n_users, "users")
        return self._similar(self.user_factors, u, k, threads)

    @staticmethod
    def _similar(factors, rows, k, threads):
        k = check_k(k)
        norms = np.linalg.norm(factors, axis=1)
        unit = (factors / np.where(norms > 0, norms, 1)[:, None]).astype(np.float32)
        self_ex = sp.csr_matrix(
            (np.ones(len(rows), np.float32), rows, np.arange(len(rows) + 1)), shape=(len(rows), len(factors))
        )
        return topk(unit[rows], unit, min(k, len(factors)), exclude=self_ex, threads=threads)
