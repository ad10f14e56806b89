"""Interactions: a users x items float32 CSR with its id maps and optional aligned timestamps.

Construction is vectorised end to end: ids are factorised by hashing (pandas), entries are
ordered by one argsort of the int64 key ``user * n_items + item`` and duplicates are combined
with ``ufunc.reduceat`` over runs of equal keys, so 10M+ rows take seconds.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._validation import as_csr, check_nonnegative, check_sparse_structure
from .idmap import IdMap

__all__ = ["Interactions", "DUPLICATE_RULES", "default_duplicate_rule"]

log = logging.getLogger(__name__)

#: How repeated (user, item) pairs are combined into one stored value.
DUPLICATE_RULES = ("sum", "max", "mean", "first", "last")


class Interactions:
    """User-item interactions: ``csr`` (users x items), id maps, optional timestamps.

    Build one with :meth:`from_pandas`, :meth:`from_arrays` or :meth:`from_scipy` rather than
    the constructor, which takes an already canonical CSR.

    Parameters
    ----------
    csr : scipy.sparse matrix, shape (n_users, n_items)
        Converted to float32 CSR with sorted indices and no duplicates.
    user_ids, item_ids : IdMap or sequence, optional
        External ids of the rows / columns (default: ``IdMap.range``).
    timestamps : ndarray of shape (nnz,), optional
        One timestamp per stored value, aligned with ``csr.data`` (numeric or datetime64).

    Attributes
    ----------
    csr : scipy.sparse.csr_matrix, float32, shape (n_users, n_items)
        Sorted indices, no duplicates. Models accept an ``Interactions`` wherever they take a CSR.
    user_ids, item_ids : IdMap
    timestamps : ndarray of shape (nnz,) or None
        ``timestamps[j]`` belongs to ``csr.data[j]``.

    Notes
    -----
    An Interactions is validated once, when it is built, and then treated as immutable: models and
    evaluation take its ``csr`` without checking it again, and the kernels' form of the matrix
    (and of its transpose) is built on first use and kept. Derive new data with the methods
    (``filter``, the splits, ``recforge.transforms``) rather than editing ``csr`` in place.
    """

    __slots__ = ("_csr", "user_ids", "item_ids", "timestamps", "_kernel")

    def __init__(self, csr, user_ids=None, item_ids=None, timestamps=None):
        if timestamps is not None and sp.issparse(csr):
            check_sparse_structure(csr, "csr")  # before SciPy reads the index arrays (has_canonical_format)
        if timestamps is not None and sp.issparse(csr) and not (csr.format == "csr" and csr.has_canonical_format):
            raise ValueError(
                "csr must be canonical (CSR, sorted indices, no duplicates) when timestamps are given,"
                " since timestamps are aligned with csr.data; use Interactions.from_arrays to combine duplicates"
            )
        self._csr = as_csr(csr, "csr", allow_empty=True)
        self._kernel = {}  # (ops name, transposed) -> ops.csr(...), see _kernel_csr
        n_users, n_items = self.csr.shape
        self.user_ids = _as_idmap(user_ids, n_users)
        self.item_ids = _as_idmap(item_ids, n_items)
        if len(self.user_ids) != n_users:
            raise ValueError(f"user_ids has {len(self.user_ids)} ids but csr has {n_users} rows")
        if len(self.item_ids) != n_items:
            raise ValueError(f"item_ids has {len(self.item_ids)} ids but csr has {n_items} columns")
        self.timestamps = None if timestamps is None else _check_timestamps(timestamps, self.csr.nnz)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_pandas(
        cls,
        df: pd.DataFrame,
        user_col: str = "user",
        item_col: str = "item",
        weight_col: str | None = None,
        time_col: str | None = None,
        duplicates: str | None = None,
        user_ids=None,
        item_ids=None,
        unknown: str = "error",
    ) -> Interactions:
        """Interactions from a DataFrame with one row per event.

        Parameters
        ----------
        df : pandas.DataFrame
        user_col, item_col : str
            Columns holding the external user / item ids (any hashable type).
        weight_col : str, optional
            Column of finite numeric weights (ratings, play counts). Without it every row
            weighs 1.0, so ``duplicates="sum"`` counts repeats.
        time_col : str, optional
            Column of timestamps (numeric or datetime64), kept aligned with ``csr.data``.
        duplicates : {"sum", "max", "mean", "first", "last"}, optional
            How rows with the same (user, item) are combined. "first"/"last" pick the earliest /
            latest row by timestamp when ``time_col`` is given (ties: row order), else by row
            order. The combined timestamp is that of the picked row for "first"/"last" and the
            latest one for "sum"/"max"/"mean". Default (None) by kind of data: without
            ``weight_col`` each row is one event and repeats are counted ("sum"); with it the
            weights may be ratings, which must not add up (4 and 5 are not a 9), so the latest
            row stands ("last"); pass "sum" for play counts split over several rows. Combining
            duplicates under the default rule warns (naming the rule and the count).
        user_ids, item_ids : IdMap or sequence, optional
            Fixed id maps (for example a training set's, so a test set lines up with it). By
            default the maps hold the distinct ids present, sorted when comparable.
        unknown : {"error", "drop"}
            With fixed maps: what to do with rows whose id is not in the map.
        """
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"df must be a pandas DataFrame, got {type(df).__name__}")
        named = {"user_col": user_col, "item_col": item_col, "weight_col": weight_col, "time_col": time_col}
        for arg, col in named.items():
            if col is not None and col not in df.columns:
                raise ValueError(f"{arg}={col!r} is not a column of df (columns: {list(df.columns)})")
        return cls.from_arrays(
            df[user_col],
            df[item_col],
            weights=None if weight_col is None else df[weight_col],
            timestamps=None if time_col is None else df[time_col],
            duplicates=duplicates,
            user_ids=user_ids,
            item_ids=item_ids,
            unknown=unknown,
            _names=(user_col, item_col, weight_col, time_col),
            _stacklevel=3,
        )

    @classmethod
    def from_arrays(
        cls,
        users,
        items,
        weights=None,
        timestamps=None,
        duplicates: str | None = None,
        user_ids=None,
        item_ids=None,
        unknown: str = "error",
        _names: tuple = ("users", "items", "weights", "timestamps"),
        _stacklevel: int = 2,
    ) -> Interactions:
        """Interactions from parallel 1-D arrays of external user ids, item ids, weights, timestamps.

        ``users``/``items`` hold external ids (any hashable type). To keep integer ids as they are
        (id ``j`` -> index ``j``), pass ``user_ids=IdMap.range(n_users)`` (likewise for items).
        See :meth:`from_pandas` for the other parameters.
        """
        u_name, i_name, w_name, t_name = (n or d for n, d in zip(_names, ("users", "items", "weights", "timestamps")))
        default_rule = duplicates is None
        if default_rule:
            duplicates = default_duplicate_rule(weighted=weights is not None)
        if duplicates not in DUPLICATE_RULES:
            raise ValueError(f"duplicates must be one of {DUPLICATE_RULES}, got {duplicates!r}")
        if unknown not in ("error", "drop"):
            raise ValueError(f"unknown must be 'error' or 'drop', got {unknown!r}")
        users = _as_1d(users, u_name)
        items = _as_1d(items, i_name)
        n = len(users)
        if len(items) != n:
            raise ValueError(f"{u_name} and {i_name} must have the same length, got {n} and {len(items)}")
        if n == 0:
            raise ValueError(f"{u_name} is empty: no interactions given")
        if weights is not None:
            weights = _as_1d(weights, w_name)
            if len(weights) != n:
                raise ValueError(f"{w_name} must have one value per interaction ({n}), got {len(weights)}")
            weights = np.asarray(weights)
            if (
                weights.dtype == object
                or not (np.issubdtype(weights.dtype, np.number) or weights.dtype == bool)
                or np.issubdtype(weights.dtype, np.complexfloating)
            ):
                raise TypeError(f"{w_name} must be numeric, got dtype {weights.dtype}")
            if not np.issubdtype(weights.dtype, np.floating):  # ints, bools: exact in float64
                weights = weights.astype(np.float64)
            if not np.isfinite(weights).all():
                raise ValueError(f"{w_name} contains {int((~np.isfinite(weights)).sum())} NaN or infinite values")
        if timestamps is not None:
            timestamps = _as_1d(timestamps, t_name)
            if len(timestamps) != n:
                raise ValueError(f"{t_name} must have one value per interaction ({n}), got {len(timestamps)}")
            timestamps = _check_timestamps(timestamps, n, t_name)

        user_map, u = _encode(users, user_ids, u_name)
        item_map, i = _encode(items, item_ids, i_name)
        bad = (u < 0) | (i < 0)
        if bad.any():
            if unknown == "error":
                which, source, codes = (u_name, users, u) if (u < 0).any() else (i_name, items, i)
                vals = np.asarray(source, dtype=object)[codes < 0]
                raise ValueError(
                    f"{which} has {int(bad.sum())} row(s) with ids not in the given id map, e.g. {vals[0]!r}"
                    " (pass unknown='drop' to drop them)"
                )
            keep = ~bad
            log.info("dropping %d interactions with unknown ids", int(bad.sum()))
            u, i = u[keep], i[keep]
            weights = None if weights is None else weights[keep]
            timestamps = None if timestamps is None else timestamps[keep]
            if u.size == 0:
                raise ValueError("no interactions left after dropping unknown ids")
        out = cls._from_codes(u, i, weights, timestamps, duplicates, user_map, item_map)
        combined = u.size - out.nnz
        if combined and default_rule:
            what = "each row is one event: repeats counted" if weights is None else "weighted rows: the latest kept"
            warnings.warn(
                f"{combined} rows repeat an earlier (user, item) pair and were combined with duplicates="
                f"{duplicates!r} (the default for this data: {what}); pass duplicates='sum' | 'mean' | 'max' | "
                "'first' | 'last' to choose the rule",
                UserWarning,
                stacklevel=_stacklevel,  # the user's call (from_pandas passes one more level)
            )
        elif combined:
            log.info("%d repeated (user, item) rows combined with duplicates=%r", combined, duplicates)
        return out

    @classmethod
    def from_scipy(cls, matrix, user_ids=None, item_ids=None) -> Interactions:
        """Interactions from a scipy.sparse users x items matrix (duplicates summed)."""
        csr = as_csr(matrix, "matrix")
        return cls(csr, user_ids, item_ids)

    @classmethod
    def _from_codes(cls, u, i, weights, timestamps, duplicates, user_map, item_map) -> Interactions:
        """Canonical CSR from dense codes; the core of every constructor."""
        n_users, n_items = len(user_map), len(item_map)
        if n_users and n_items > np.iinfo(np.int64).max // max(n_users, 1):
            raise ValueError(f"shape {n_users} x {n_items} is too large for int64 keys")
        small = max(len(u), n_users, n_items) < 2**31  # int32 halves the memory traffic
        idx = np.int32 if small else np.int64
        ui = (u.astype(idx, copy=False), i.astype(idx, copy=False))
        out = None
        if timestamps is None:
            # scipy's C++ COO->CSR (a counting sort by row, per-row sorts, duplicates summed) is
            # exactly the "sum" rule, and every rule's answer when there are no duplicates.
            data = np.ones(len(u), dtype=np.float32) if weights is None else weights
            out = sp.coo_matrix((data, ui), shape=(n_users, n_items)).tocsr()
            if duplicates != "sum" and out.nnz != len(u):
                out = None  # duplicates under another rule: the general path below
        if out is not None:
            out.sort_indices()  # done by tocsr in practice; cheap check otherwise
            w, t, cols, indptr = out.data, None, out.indices, out.indptr
        else:
            # The same conversion carrying each entry's position. It sums duplicates, so when
            # the count drops there were some, and the general path (one argsort) takes over.
            pos = sp.coo_matrix((np.arange(len(u), dtype=idx), ui), shape=(n_users, n_items)).tocsr()
            pos.sort_indices()
            if pos.nnz == len(u):
                order = pos.data
                w = np.ones(len(u), dtype=np.float32) if weights is None else weights[order]
                t = None if timestamps is None else timestamps[order]
                cols, indptr = pos.indices, pos.indptr
            else:
                w, t, cols, indptr = _combine_duplicates(u, i, weights, timestamps, duplicates, n_users, n_items)
        csr = sp.csr_matrix((w.astype(np.float32, copy=False), cols, indptr), shape=(n_users, n_items))
        csr.has_sorted_indices = True
        csr.has_canonical_format = True
        if not np.isfinite(csr.data).all():
            raise ValueError("combined weights overflow float32")
        return cls(csr, user_map, item_map, t)

    # ------------------------------------------------------------------ properties
    @property
    def csr(self) -> sp.csr_matrix:
        """The canonical float32 CSR (users x items), read-only: the kernel cache is derived from it."""
        return self._csr

    def _kernel_csr(self, ops, transposed: bool = False):
        """``ops.csr`` of ``csr`` (``transposed``: of its items x users transpose), built once per device.

        Fitting several models on one Interactions (a grid search, a benchmark) converts once.
        """
        key = (ops.name, transposed)
        if key not in self._kernel:
            self._kernel[key] = ops.csr(self._csr.T.tocsr() if transposed else self._csr)
        return self._kernel[key]

    @property
    def shape(self) -> tuple[int, int]:
        return self.csr.shape

    @property
    def nnz(self) -> int:
        return int(self.csr.nnz)

    @property
    def n_users(self) -> int:
        return self.csr.shape[0]

    @property
    def n_items(self) -> int:
        return self.csr.shape[1]

    def __len__(self) -> int:
        return self.nnz

    def __repr__(self) -> str:
        t = "" if self.timestamps is None else ", with timestamps"
        return f"Interactions({self.n_users} users x {self.n_items} items, {self.nnz} interactions{t})"

    def user_of_entry(self) -> np.ndarray:
        """Row index of every stored value: int64 array of shape (nnz,), aligned with ``csr.data``."""
        return np.repeat(np.arange(self.n_users, dtype=np.int64), np.diff(self.csr.indptr))

    # ------------------------------------------------------------------ transforms
    def _subset(self, keep: np.ndarray) -> Interactions:
        """Same id maps and shape, only the stored values where ``keep`` (bool, shape (nnz,))."""
        csr = self.csr
        rows = self.user_of_entry()[keep]
        indptr = np.zeros(self.n_users + 1, dtype=csr.indptr.dtype)
        np.cumsum(np.bincount(rows, minlength=self.n_users), out=indptr[1:])
        out = sp.csr_matrix((csr.data[keep], csr.indices[keep], indptr), shape=csr.shape)
        out.has_sorted_indices = True
        out.has_canonical_format = True
        ts = None if self.timestamps is None else self.timestamps[keep]
        return Interactions(out, self.user_ids, self.item_ids, ts)

    def filter(
        self,
        min_user_interactions: int = 1,
        min_item_interactions: int = 1,
        min_rating: float | None = None,
    ) -> Interactions:
        """Drop weak ratings, then keep the k-core.

        First every stored value below ``min_rating`` is dropped (when given). Then users with
        fewer than ``min_user_interactions`` and items with fewer than ``min_item_interactions``
        stored values are removed, repeatedly, until every remaining user and item meets its
        minimum (removing an item can push a user below its minimum, and so on). Users and items
        left without interactions are removed from the id maps, so the result is usually smaller.

        Returns
        -------
        Interactions
            Possibly empty (shape (0, 0)) when nothing survives.
        """
        mu = check_nonnegative(min_user_interactions, "min_user_interactions", integer=True)
        mi = check_nonnegative(min_item_interactions, "min_item_interactions", integer=True)
        mu, mi = max(mu, 1), max(mi, 1)
        keep = np.ones(self.nnz, dtype=bool)
        if min_rating is not None:
            min_rating = float(min_rating)
            if not np.isfinite(min_rating):
                raise ValueError(f"min_rating must be finite, got {min_rating}")
            keep &= self.csr.data >= min_rating
        rows, cols = self.user_of_entry(), self.csr.indices
        while True:  # each pass is vectorised; the number of passes is small in practice
            ucount = np.bincount(rows[keep], minlength=self.n_users)
            icount = np.bincount(cols[keep], minlength=self.n_items)
            bad = ((ucount < mu)[rows] | (icount < mi)[cols]) & keep
            if not bad.any():
                break
            keep &= ~bad
        users = np.flatnonzero(np.bincount(rows[keep], minlength=self.n_users))
        items = np.flatnonzero(np.bincount(cols[keep], minlength=self.n_items))
        # Compaction is monotone, so the surviving entries stay sorted by (row, column).
        row_new = np.full(self.n_users, -1, dtype=np.int64)
        row_new[users] = np.arange(len(users))
        col_new = np.full(self.n_items, -1, dtype=np.int64)
        col_new[items] = np.arange(len(items))
        r = row_new[rows[keep]]
        indptr = np.zeros(len(users) + 1, dtype=np.int64)
        np.cumsum(np.bincount(r, minlength=len(users)), out=indptr[1:])
        new_cols = col_new[cols[keep]].astype(self.csr.indices.dtype)
        csr = sp.csr_matrix(
            (self.csr.data[keep], new_cols, indptr.astype(self.csr.indptr.dtype)), shape=(len(users), len(items))
        )
        csr.has_sorted_indices = True
        csr.has_canonical_format = True
        ts = None if self.timestamps is None else self.timestamps[keep]
        return Interactions(csr, self.user_ids.subset(users), self.item_ids.subset(items), ts)

    def to_pandas(
        self,
        user_col: str = "user",
        item_col: str = "item",
        weight_col: str = "weight",
        time_col: str = "timestamp",
        external_ids: bool = True,
    ) -> pd.DataFrame:
        """One row per stored value, ordered by (user index, item index).

        Columns: ``user_col``, ``item_col`` (external ids, or dense indices when
        ``external_ids=False``), ``weight_col`` (float32) and ``time_col`` when there are
        timestamps.
        """
        rows, cols = self.user_of_entry(), self.csr.indices.astype(np.int64)
        data = {
            user_col: self.user_ids.to_external(rows) if external_ids else rows,
            item_col: self.item_ids.to_external(cols) if external_ids else cols,
            weight_col: self.csr.data.copy(),
        }
        if self.timestamps is not None:
            data[time_col] = self.timestamps.copy()
        return pd.DataFrame(data)


# ---------------------------------------------------------------------- helpers
def default_duplicate_rule(weighted: bool) -> str:
    """The rule for repeated (user, item) rows when none is given (see ``Interactions.from_pandas``).

    Unweighted rows are events, counted ("sum"); weighted rows may be ratings, which must not add up,
    so the latest stands ("last").
    """
    return "last" if weighted else "sum"


def _as_1d(x, name):
    if isinstance(x, (pd.Series, pd.Index)):
        return x
    if isinstance(x, np.ndarray):
        if x.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {x.shape}")
        return x
    if isinstance(x, (str, bytes)) or not pd.api.types.is_list_like(x):
        raise TypeError(f"{name} must be a 1-D array or sequence, got {type(x).__name__}")
    if any(isinstance(v, tuple) for v in x):  # tuple ids (hashable): one object each, not a 2-D array
        out = np.empty(len(x), dtype=object)
        out[:] = list(x)
        return out
    try:
        arr = np.asarray(x)
    except ValueError:  # ragged nested sequences
        arr = None
    if arr is None or arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of ids, got nested sequences")
    return arr


def _encode(values, id_map, name) -> tuple[IdMap, np.ndarray]:
    """(id map, int64 codes; -1 where a value is not in a fixed ``id_map``)."""
    try:
        if id_map is None:
            return IdMap.factorize(values)
        id_map = _as_idmap(id_map)
        return id_map, id_map.to_index(values, missing=-1)
    except (TypeError, ValueError) as exc:  # e.g. unhashable ids: say whose
        raise type(exc)(f"{name}: {exc}") from None


def _as_idmap(ids, n: int | None = None) -> IdMap:
    """An IdMap as is (shared, not copied: splits and test sets keep their parent's maps)."""
    if ids is None:
        return IdMap.range(n)
    return ids if isinstance(ids, IdMap) else IdMap(ids)


def _combine_duplicates(u, i, weights, timestamps, duplicates, n_users, n_items):
    """(weights, timestamps, indices, indptr) of the CSR with repeated (u, i) pairs combined."""
    key = u * np.int64(n_items) + i
    order = np.argsort(key)  # unstable (2x faster than stable): no rule below needs the run order
    skey = key[order]
    starts = np.flatnonzero(np.concatenate(([True], skey[1:] != skey[:-1])))
    if duplicates in ("first", "last"):
        # Per run, the row with the smallest / largest (timestamp, row position): reductions
        # over the runs, no sort inside them.
        pick, fill = (np.minimum, np.iinfo(np.int64).max) if duplicates == "first" else (np.maximum, -1)
        candidate = order
        if timestamps is not None:
            ts = timestamps[order]
            best_t = pick.reduceat(ts, starts)
            run = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(skey))))
            candidate = np.where(ts == best_t[run], order, fill)
        chosen = pick.reduceat(candidate, starts)
        w = np.ones(len(starts)) if weights is None else weights[chosen]
        t = None if timestamps is None else timestamps[chosen]
    else:
        w = np.ones(len(key)) if weights is None else weights[order].astype(np.float64)  # exact sums
        if duplicates == "sum":
            w = np.add.reduceat(w, starts)
        elif duplicates == "max":
            w = np.maximum.reduceat(w, starts)
        else:  # mean
            w = np.add.reduceat(w, starts) / np.diff(np.append(starts, len(skey)))
        t = None if timestamps is None else np.maximum.reduceat(timestamps[order], starts)
    skey = skey[starts]
    rows = skey // n_items
    cols = (skey - rows * n_items).astype(np.int32 if n_items < 2**31 else np.int64)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_users), out=indptr[1:])
    if indptr[-1] < 2**31:
        indptr = indptr.astype(np.int32)
    return w, t, cols, indptr


def _check_timestamps(ts, n, name="timestamps") -> np.ndarray:
    arr = np.asarray(ts.to_numpy() if isinstance(ts, (pd.Series, pd.Index)) else ts)
    if arr.ndim != 1 or len(arr) != n:
        raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    if np.issubdtype(arr.dtype, np.datetime64):
        if np.isnat(arr).any():
            raise ValueError(f"{name} contains missing values (NaT)")
        return arr
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name} must be numeric or datetime64, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr
