"""Features: side information of users or items as a sparse matrix, built from a DataFrame.

One row per entity (aligned with an ``IdMap``, e.g. ``Interactions.item_ids``), one column per
feature, float32:

* ``categorical`` columns: one-hot, feature ``"col=value"``;
* ``tags`` columns (multi-valued strings such as ``"Action|Comedy"``, split on ``sep``): one
  feature ``"col=value"`` per tag;
* ``numeric`` columns: min-max scaled to [0, 1] on the building data, feature ``"col"``;
* ``identity``: one feature per entity of the id map (``"id=<external id>"``), so a hybrid model
  can learn a per-entity embedding on top of the shared ones.

With ``normalize`` each row is scaled to sum 1 (LightFM's convention: a representation is the
mean, not the sum, of its features' embeddings).

The vocabulary (``names``, each column's categories, the numeric ranges) is fixed when built;
``transform`` encodes new entities (cold start) with it. Documented handling of bad input:

* a DataFrame row whose id is not in the id map: ValueError (or dropped with ``unknown_ids="drop"``);
* the same id on two rows: ValueError (aggregate multi-valued tags into one string first);
* an entity of the id map without a DataFrame row: a row with no features but its identity one
  (a new item with no features: ``transform`` gives an empty row, and models fall back to
  their bias / popularity for it);
* NaN in a numeric column: ValueError naming the column (impute first); NaN in a categorical or
  tag column: no feature for that entity;
* a category or tag unseen when building, at ``transform``: ignored with a warning (``unknown=
  "ignore"``), or ValueError (``unknown="error"``).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .idmap import IdMap

__all__ = ["Features"]


class Features:
    """A users x features or items x features matrix with its vocabulary (see the module docstring).

    Attributes
    ----------
    matrix : scipy.sparse.csr_matrix (len(ids), n_features), float32
    ids : IdMap
        The entities, in row order.
    names : list of str
        The feature of each column.
    """

    def __init__(self, matrix: sp.csr_matrix, ids: IdMap, spec: dict):
        self.matrix, self.ids, self._spec = matrix, ids, spec

    @property
    def names(self) -> list[str]:
        return list(self._spec["names"])

    @property
    def n_features(self) -> int:
        return len(self._spec["names"])

    def __repr__(self) -> str:
        return f"Features({self.matrix.shape[0]} rows x {self.n_features} features, nnz={self.matrix.nnz})"

    # -- building -------------------------------------------------------------------------------
    @classmethod
    def from_pandas(cls, df: pd.DataFrame, id_col: str, *, ids=None, categorical=(), tags=None, numeric=(),
                    identity: bool = False, normalize: bool = True,
                    unknown_ids: str = "error") -> Features:  # fmt: skip
        """Build the matrix and its vocabulary.

        Parameters
        ----------
        df : pandas.DataFrame, one row per entity
        id_col : str
            Column of the external ids.
        ids : IdMap or sequence, optional
            The row order (e.g. ``inter.item_ids``); default: the distinct ids of ``df``, sorted.
        categorical : sequence of str
        tags : dict {column: separator}, optional
        numeric : sequence of str
        identity : bool
            Add one feature per entity of ``ids``.
        normalize : bool
            Scale every row to sum 1.
        unknown_ids : "error" | "drop"
            What to do with rows of ``df`` whose id is not in ``ids``.
        """
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"df must be a pandas DataFrame, got {type(df).__name__}")
        tags = dict(tags or {})
        columns = [id_col, *categorical, *tags, *numeric]
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise ValueError(f"columns {missing} are not in df (columns: {list(df.columns)})")
        if unknown_ids not in ("error", "drop"):
            raise ValueError(f"unknown_ids must be 'error' or 'drop', got {unknown_ids!r}")
        ids = IdMap.from_values(df[id_col]) if ids is None else IdMap(ids)
        rows = ids.to_index(df[id_col].to_numpy(), missing=-1)
        if (rows < 0).any():
            if unknown_ids == "error":
                bad = df[id_col].to_numpy()[rows < 0][:5]
                raise ValueError(f"{int((rows < 0).sum())} rows of df have ids that are not in ids (e.g. "
                                 f"{list(bad)}): the feature rows must match the id map (unknown_ids='drop' "
                                 "leaves them out)")  # fmt: skip
            df, rows = df[rows >= 0], rows[rows >= 0]
        if len(np.unique(rows)) != len(rows):
            dup = df[id_col].to_numpy()[pd.Series(rows).duplicated().to_numpy()][0]
            raise ValueError(f"id {dup!r} appears on more than one row of df: one row per entity (join "
                             "multi-valued tags into one string first)")  # fmt: skip
        spec = {"columns": [], "names": []}
        for col in numeric:
            values = pd.to_numeric(df[col], errors="coerce").to_numpy(np.float64)
            if not np.isfinite(values).all():
                raise ValueError(f"numeric column {col!r} has {int((~np.isfinite(values)).sum())} NaN, infinite or "
                                 "non-numeric values: impute them first (e.g. df[col].fillna(...))")  # fmt: skip
            low, high = (float(values.min()), float(values.max())) if len(values) else (0.0, 1.0)
            spec["columns"].append({"kind": "numeric", "column": col, "low": low, "high": high})
            spec["names"].append(col)
        for kind, group in (("categorical", {c: None for c in categorical}), ("tags", tags)):
            for col, sep in group.items():
                values = _split(df[col], sep)
                vocabulary = sorted({v for vs in values for v in vs})
                spec["columns"].append({"kind": kind, "column": col, "sep": sep, "values": vocabulary})
                spec["names"].extend(f"{col}={v}" for v in vocabulary)
        features = cls(None, ids, spec)
        own = features._encode(df, rows=rows, n_rows=len(ids), unknown="error")
        if identity:
            spec["identity"] = True
            spec["names"].extend(f"id={v}" for v in ids.values)
            own = sp.hstack([own, sp.identity(len(ids), np.float32, format="csr")], format="csr")
        spec["normalize"] = bool(normalize)
        features.matrix = _normalized(own) if normalize else own
        return features

    def transform(self, df: pd.DataFrame, id_col: str | None = None, unknown: str = "ignore") -> sp.csr_matrix:
        """Rows for the entities of ``df`` (in its row order) with this vocabulary: new users or items.

        Identity features stay empty (a new entity has no learnt embedding of its own); numeric
        columns use the building range; ``unknown`` categories or tags: "ignore" (a warning
        counts them) or "error". ``id_col`` is accepted for symmetry and not used.
        """
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"df must be a pandas DataFrame, got {type(df).__name__}")
        if unknown not in ("ignore", "error"):
            raise ValueError(f"unknown must be 'ignore' or 'error', got {unknown!r}")
        own = self._encode(df, rows=np.arange(len(df)), n_rows=len(df), unknown=unknown)
        if self._spec.get("identity"):
            own = sp.hstack([own, sp.csr_matrix((len(df), len(self.ids)), dtype=np.float32)], format="csr")
        return _normalized(own) if self._spec["normalize"] else own

    def _encode(self, df, rows, n_rows, unknown) -> sp.csr_matrix:
        """The non-identity columns for ``df`` (its rows go to ``rows`` of an ``n_rows``-row matrix)."""
        r, c, v = [], [], []  # one array per column
        offset = 0
        for column in self._spec["columns"]:
            col = column["column"]
            if col not in df.columns:
                raise ValueError(f"column {col!r} (a feature column) is not in df")
            if column["kind"] == "numeric":
                values = pd.to_numeric(df[col], errors="coerce").to_numpy(np.float64)
                if not np.isfinite(values).all():
                    raise ValueError(f"numeric column {col!r} has NaN, infinite or non-numeric values: impute first")
                span = column["high"] - column["low"]
                r.append(np.asarray(rows, np.int64))
                c.append(np.full(len(rows), offset, np.int64))
                v.append((values - column["low"]) / span if span > 0 else np.zeros(len(rows)))
                offset += 1
                continue
            index = {value: j for j, value in enumerate(column["values"])}
            hit_rows, hit_cols, unseen = [], [], 0
            for row, values in zip(rows, _split(df[col], column.get("sep"))):
                for value in values:
                    j = index.get(value)
                    if j is None:
                        unseen += 1
                    else:
                        hit_rows.append(row)
                        hit_cols.append(offset + j)
            if unseen:
                message = f"column {col!r}: {unseen} value(s) not in the vocabulary built at fit time"
                if unknown == "error":
                    raise ValueError(message)
                warnings.warn(message + ": ignored", UserWarning, stacklevel=3)
            r.append(np.asarray(hit_rows, np.int64))
            c.append(np.asarray(hit_cols, np.int64))
            v.append(np.ones(len(hit_rows)))
            offset += len(index)
        r, c, v = (np.concatenate(x) if x else np.zeros(0) for x in (r, c, v))
        m = sp.csr_matrix((v.astype(np.float32), (r.astype(np.int64), c.astype(np.int64))), shape=(n_rows, offset))
        m.sum_duplicates()
        return m

    @property
    def identity_offset(self) -> int | None:
        """The first column of the identity features (``identity=True``; they come last), else None."""
        if not self._spec.get("identity"):
            return None
        return sum(1 if c["kind"] == "numeric" else len(c["values"]) for c in self._spec["columns"])

    def without_identity(self, columns) -> Features:
        """The vocabulary without the identity features at ``columns`` (entities forgotten): no matrix."""
        drop = set(np.asarray(columns, np.int64).tolist())
        offset = self.identity_offset
        if drop and (offset is None or min(drop) < offset):
            raise ValueError(f"columns {sorted(drop)} are not all identity features (those start at {offset})")
        spec = {**self._spec, "names": [n for j, n in enumerate(self._spec["names"]) if j not in drop]}
        return Features(None, self.ids, spec)

    # -- persistence (inside a model file) ------------------------------------------------------
    def spec_array(self) -> np.ndarray:
        """The vocabulary as a uint8 array of UTF-8 JSON (what a model saves)."""
        return np.frombuffer(json.dumps(self._spec).encode(), np.uint8)

    @classmethod
    def from_spec_array(cls, array: np.ndarray, ids: IdMap) -> Features:
        """A Features without matrix (for ``transform``) from ``spec_array``; ValueError if malformed."""
        try:
            spec = json.loads(np.asarray(array, np.uint8).tobytes().decode())
            if not isinstance(spec, dict) or not isinstance(spec["names"], list):
                raise ValueError("not a feature spec")
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, ValueError) as exc:
            raise ValueError(f"corrupt feature vocabulary ({exc})") from None
        return cls(None, ids, spec)


def _split(series: pd.Series, sep: str | None) -> list[list]:
    """Each cell's values: [] for a missing one, the cell itself (categorical), or its tags split on ``sep``."""
    out = []
    for value in series.to_numpy(object):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            out.append([])
        elif sep is None:
            out.append([str(value)])
        else:
            out.append([t.strip() for t in str(value).split(sep) if t.strip()])
    return out


def _normalized(m: sp.csr_matrix) -> sp.csr_matrix:
    """Rows scaled to sum 1 (empty rows stay empty)."""
    sums = np.asarray(m.sum(axis=1)).ravel()
    scale = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
    return sp.csr_matrix(sp.diags(scale.astype(np.float32)) @ m, dtype=np.float32)
