"""IdMap: external ids of any hashable type <-> dense int64 indices, vectorised both ways.

The map is a thin wrapper around a unique :class:`pandas.Index`: ``to_index`` is a hash lookup
(``Index.get_indexer``), ``to_external`` is array indexing, so both are O(n) in C.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["IdMap"]


_RAISE = object()  # to_external's default: -1 is an error


def _dtype_holding(dtype: np.dtype, value) -> np.dtype:
    """A dtype holding ``dtype``'s values and ``value`` (object unless both are numbers)."""
    if dtype.kind in "biuf" and isinstance(value, (bool, int, float, np.number)):
        return np.result_type(dtype, np.asarray(value).dtype)
    return np.dtype(object)


def _as_list_like(ids) -> tuple[Any, bool]:
    """(ids as something pandas takes as a 1-D sequence, whether the input was a scalar)."""
    if isinstance(ids, (pd.Index, pd.Series, np.ndarray)) or pd.api.types.is_list_like(ids):
        arr = ids
        if isinstance(arr, np.ndarray) and arr.ndim != 1:
            if arr.ndim == 0:
                return arr.reshape(1), True
            raise ValueError(f"ids must be 1-D, got shape {arr.shape}")
        return arr, False
    return [ids], True


class IdMap:
    """Bijection between external ids and dense indices ``0 .. len(self) - 1``.

    Parameters
    ----------
    ids : sequence of hashable, length n
        The external ids in index order: ``ids[j]`` gets index ``j``. They must be unique and
        not missing (None/NaN). Any hashable type works (ints, strings, tuples, a mixture);
        lookups use Python equality, so ``1`` and ``1.0`` are the same id.

    Examples
    --------
    >>> m = IdMap.from_values(["b", "a", "b", "c"])
    >>> m.to_index(["c", "a", "zzz"])
    array([ 2,  0, -1])
    >>> m.to_external([1, 0])
    array(['b', 'a'], dtype=object)
    """

    __slots__ = ("_index",)

    def __init__(self, ids: Iterable[Hashable]):
        if isinstance(ids, IdMap):
            self._index = ids._index
            return
        index = ids if isinstance(ids, pd.Index) else pd.Index(_tupleize(ids), tupleize_cols=False)
        if index.ndim != 1 or isinstance(index, pd.MultiIndex):
            raise ValueError("ids must be a 1-D sequence of hashable values")
        if index.hasnans:
            raise ValueError("ids contains missing values (None/NaN), which cannot be ids")
        if not index.is_unique:
            dup = index[index.duplicated()][0]
            raise ValueError(f"ids must be unique, {dup!r} appears more than once")
        self._index = index

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_values(cls, values: Iterable[Hashable], sort: bool = True) -> IdMap:
        """Map over the distinct values of ``values`` (repeats allowed).

        Ids are sorted when they are mutually comparable and ``sort`` is True (so integer ids
        keep their order); otherwise they keep the order of first appearance.
        """
        return cls.factorize(values, sort=sort)[0]

    @classmethod
    def factorize(cls, values: Iterable[Hashable], sort: bool = True) -> tuple[IdMap, np.ndarray]:
        """(map over the distinct values, int64 index of every value), in one hashing pass.

        Raises ValueError when ``values`` holds missing values (None/NaN).
        """
        arr, _ = _as_list_like(values)
        if not isinstance(arr, (pd.Index, pd.Series, np.ndarray)):
            arr = pd.Index(_tupleize(arr), tupleize_cols=False)
        codes, uniques = pd.factorize(arr, sort=False, use_na_sentinel=True)
        codes = np.asarray(codes, dtype=np.int64)
        if codes.size and codes.min() < 0:
            raise ValueError(f"ids contain {int((codes < 0).sum())} missing values (None/NaN)")
        uniques = pd.Index(uniques, tupleize_cols=False) if not isinstance(uniques, pd.Index) else uniques
        if sort and len(uniques) > 1:
            # Sort the distinct ids only (few), then renumber the codes: pandas' own sort of
            # object arrays mangles tuples. Mixed, unorderable types keep first appearance.
            try:
                if uniques.dtype == object:
                    values = list(uniques)
                    order = np.array(sorted(range(len(values)), key=values.__getitem__), dtype=np.int64)
                else:
                    order = np.asarray(uniques.argsort(), dtype=np.int64)
            except TypeError:
                order = None
            if order is not None:
                rank = np.empty_like(order)
                rank[order] = np.arange(len(order))
                codes = rank[codes]
                uniques = uniques[order]
        return cls(uniques), codes

    @classmethod
    def range(cls, n: int) -> IdMap:
        """Identity map: external id ``j`` (an int) <-> index ``j`` for ``j < n``."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be an int >= 0, got {n!r}")
        return cls(pd.RangeIndex(int(n)))

    # ---------------------------------------------------------------- lookups
    def to_index(self, ids, missing: int | None = -1):
        """Dense indices of external ``ids``.

        Parameters
        ----------
        ids : hashable or sequence of hashable, length n
        missing : int or None
            Index given to ids that are not in the map; ``None`` raises KeyError instead.

        Returns
        -------
        int64 ndarray of shape (n,), or an int when ``ids`` is a scalar.
        """
        arr, scalar = _as_list_like(ids)
        if not isinstance(arr, (pd.Index, pd.Series, np.ndarray)):
            arr = pd.Index(_tupleize(arr), tupleize_cols=False)
        idx = np.asarray(self._index.get_indexer(arr), dtype=np.int64)
        unknown = idx < 0
        if unknown.any():
            if missing is None:
                bad = np.asarray(arr, dtype=object)[unknown]
                shown = ", ".join(repr(b) for b in bad[:5])
                raise KeyError(f"{int(unknown.sum())} unknown id(s), e.g. {shown}")
            idx[unknown] = missing
        return int(idx[0]) if scalar else idx

    def to_external(self, indices, missing=_RAISE) -> np.ndarray | Any:
        """External ids of dense ``indices``, in the shape of ``indices``.

        Parameters
        ----------
        indices : int or int array of any shape
            E.g. the (n, k) ids of ``recommend``.
        missing : optional
            External id given to the padding index -1 (``recommend`` pads short rows with it),
            e.g. ``None``, ``""`` or ``-1``. Without it a -1 is an error, never silently the
            last id. The result's dtype widens to hold it (object for ``None`` next to ints).

        Returns
        -------
        ndarray of the shape of ``indices`` (object dtype for non-numeric ids), or one id for a
        scalar.

        Raises ValueError for indices outside ``[0, len(self))`` (negative indices are not
        taken from the end), and for -1 when ``missing`` is not given.

        Examples
        --------
        >>> m = IdMap(["a", "b", "c"])
        >>> m.to_external([[2, 0], [1, -1]], missing=None)
        array([['c', 'a'],
               ['b', None]], dtype=object)
        """
        arr = np.asarray(indices)
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"indices must be integers, got dtype {arr.dtype}")
        scalar = arr.ndim == 0
        arr = arr.astype(np.int64, copy=False).reshape(arr.shape or (1,))
        n = len(self._index)
        pad = (arr == -1) if missing is not _RAISE else np.zeros(arr.shape, bool)
        bad = ((arr < 0) | (arr >= n)) & ~pad
        if bad.any():
            hint = " (-1 is recommend's padding: pass missing=... to map it)" if (arr[bad] == -1).any() else ""
            raise ValueError(f"indices must be in [0, {n}), got {arr[bad][0]}{hint}")
        values = self.values
        out = values[np.where(pad, 0, arr)] if n else np.empty(arr.shape, values.dtype)
        if pad.any():
            out = out.astype(_dtype_holding(out.dtype, missing), copy=False)
            out[pad] = missing
        return out[0] if scalar else out

    # ---------------------------------------------------------------- container protocol
    @property
    def values(self) -> np.ndarray:
        """The external ids in index order (ndarray of shape (n,); object dtype for non-numeric ids)."""
        vals = self._index.to_numpy()
        if vals.dtype.kind not in "biufcmM":  # strings, mixed: plain object array
            vals = vals.astype(object)
        return vals

    @property
    def index(self) -> pd.Index:
        """The underlying pandas Index (read-only view)."""
        return self._index

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, item) -> bool:
        try:
            return item in self._index
        except TypeError:  # unhashable
            return False

    def __iter__(self):
        return iter(self._index)

    def __eq__(self, other) -> bool:
        if not isinstance(other, IdMap):
            return NotImplemented
        return self is other or (len(self) == len(other) and bool(self._index.equals(other._index)))

    def __hash__(self):
        return id(self)

    # ---------------------------------------------------------------- storage without pickle
    def to_arrays(self) -> tuple[str, dict[str, np.ndarray]]:
        """(kind, arrays): the ids as plain bool/int/float arrays, for files that refuse pickle.

        kind "range": the identity map (no arrays); "int64" / "float64": ``{"values"}``; "str":
        UTF-8 bytes ``{"utf8"}`` (uint8) cut at ``{"offsets"}`` (int64, n + 1); "json": the same
        with each id's JSON text (mixed types, tuples). ``from_arrays`` reverses it. Ids that JSON
        cannot hold (dates, objects) raise ValueError.
        """
        index = self._index
        if len(index) == 0 or (isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1):
            return "range", {}
        if index.dtype.kind in "iub":
            return "int64", {"values": index.to_numpy().astype(np.int64)}
        if index.dtype.kind == "f":
            return "float64", {"values": index.to_numpy().astype(np.float64)}
        values = list(index)
        if all(isinstance(v, str) for v in values):
            return "str", _utf8_arrays(values)
        import json

        try:
            texts = [json.dumps(v) for v in (_plain(v) for v in values)]
        except TypeError as exc:
            raise ValueError(
                f"these ids cannot be stored without pickle ({exc}); use str or int ids (e.g. df[col].astype(str))"
            ) from None
        return "json", _utf8_arrays(texts)

    @classmethod
    def from_arrays(cls, kind: str, arrays: dict[str, np.ndarray], n: int) -> IdMap:
        """The map ``to_arrays`` stored (``n`` ids); ValueError for anything inconsistent."""
        if kind == "range":
            return cls.range(n)
        if kind in ("int64", "float64"):
            values = arrays.get("values")
            if values is None or values.dtype != np.dtype(kind) or values.shape != (n,):
                raise ValueError(f"id map of kind {kind}: expected {n} {kind} values")
            return cls(values)
        if kind not in ("str", "json"):
            raise ValueError(f"unknown id map kind {kind!r}")
        utf8, offsets = arrays.get("utf8"), arrays.get("offsets")
        if utf8 is None or offsets is None or utf8.dtype != np.uint8 or utf8.ndim != 1:
            raise ValueError(f"id map of kind {kind}: missing its utf8 bytes or offsets")
        if offsets.dtype != np.int64 or offsets.shape != (n + 1,) or offsets[0] != 0 or offsets[-1] != len(utf8):
            raise ValueError(f"id map of kind {kind}: offsets must be {n + 1} int64 from 0 to {len(utf8)}")
        if (np.diff(offsets) < 0).any():
            raise ValueError(f"id map of kind {kind}: offsets must not decrease")
        raw = utf8.tobytes()
        texts = [raw[a:b].decode("utf-8") for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
        if kind == "str":
            return cls(texts)
        import json

        return cls([_tuples(json.loads(t)) for t in texts])

    def subset(self, indices) -> IdMap:
        """Map over the ids at ``indices`` (in that order), e.g. the survivors of a filter."""
        arr = np.asarray(indices, dtype=np.int64)
        return IdMap(self._index[arr])

    def __repr__(self) -> str:
        head = ", ".join(repr(v) for v in self._index[:3])
        more = ", ..." if len(self) > 3 else ""
        return f"IdMap(n={len(self)}: [{head}{more}])"


def _utf8_arrays(texts: list[str]) -> dict[str, np.ndarray]:
    encoded = [t.encode("utf-8") for t in texts]
    offsets = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return {"utf8": np.frombuffer(b"".join(encoded), np.uint8).copy(), "offsets": offsets}


def _plain(value):
    """A Python value JSON holds as the same id: NumPy scalars as Python ones, tuples as lists."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _tuples(value):
    """JSON lists back to the tuples they were (lists are not hashable ids)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _tupleize(values) -> list | np.ndarray:
    """Object array so that tuples stay single ids instead of becoming a 2-D array."""
    if isinstance(values, (np.ndarray, pd.Index, pd.Series)):
        return values
    values = list(values)
    if any(isinstance(v, tuple) for v in values):
        arr = np.empty(len(values), dtype=object)
        arr[:] = values
        return arr
    return values
