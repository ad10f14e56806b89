"""How a fuzz case is judged (runs in the child process, next to the code under test).

Every case is a call plus an expectation worked out from the arguments alone, by the rules the
docstrings promise (``Expect``): the input is valid (a result is due, equal to a reference), invalid
(a ValueError/TypeError naming one of ``names`` is due), or valid but allowed to be refused
(absurd sizes, thread counts). The outcome of the call against it is one of

    crash    the process died (judged by the parent)          hang     no answer in time (parent)
    garbage  a result for an invalid input, or a wrong result  unclear  another exception, or a
    clear    a ValueError/TypeError naming the argument                 message naming nothing
    correct  the result equals the reference / passes the checks
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

OUTCOMES = ("crash", "hang", "garbage", "unclear", "clear", "correct", "harness")  # harness: a bug of the fuzzer
BAD = ("crash", "hang", "garbage", "unclear", "harness")


class Invalid(Exception):
    """Raised by an argument rule: the call must refuse, naming one of ``names``."""

    def __init__(self, *names: str):
        super().__init__(names)
        self.names = names


class MayRefuse(Exception):
    """Raised by an argument rule: a clear refusal naming ``names`` is as good as a correct result."""

    def __init__(self, *names: str):
        super().__init__(names)
        self.names = names


@dataclasses.dataclass
class Expect:
    valid: bool = True
    names: tuple = ()
    may_refuse: tuple = ()  # names a refusal of this valid input may give


class Rules:
    """Collects what a case's arguments deserve: ``r(rule, *args)`` applies one argument rule and gives
    its canonical value, or None when the argument is invalid (its names are kept: a refusal may name
    any invalid argument); ``r.bad(*names)`` records a cross-argument inconsistency; ``r.may(name)``
    lets a valid input be refused clearly (``may`` is the list the rules append to)."""

    def __init__(self):
        self.invalid: list[str] = []
        self.may: list[str] = []

    def __call__(self, rule, *args, **kwargs):
        try:
            return rule(*args, **kwargs)
        except Invalid as exc:
            self.invalid.extend(exc.names)
            return None

    def bad(self, *names: str) -> None:
        self.invalid.extend(names)


def expectation(rules: Callable[[Rules], Any]) -> tuple[Expect, Any]:
    """Run the argument ``rules`` (given a ``Rules``; they return the canonical arguments)."""
    r = Rules()
    try:
        canon = rules(r)
    except Invalid as exc:
        r.invalid.extend(exc.names)
    if r.invalid:  # a refusal may name any invalid argument, or one of the doubtful ones
        return Expect(valid=False, names=tuple(dict.fromkeys(r.invalid + r.may))), None
    return Expect(valid=True, may_refuse=tuple(r.may)), canon


def judge(
    call: Callable[[], Any], expect: Expect, check: Callable[[Any], str | None] | None, errors: tuple = ()
) -> tuple[str, str]:
    """Run ``call`` and classify it against ``expect``; ``check(result)`` returns None when right, else why.
    ``errors``: other exception types that count as a refusal (e.g. FloatingPointError of a diverged fit)."""
    try:
        result = call()
    except (ValueError, TypeError, *errors) as exc:
        msg = f"{type(exc).__name__}: {exc}"
        names = expect.names if not expect.valid else expect.may_refuse
        if not names:
            return "unclear", f"refused a valid input: {msg}"
        if "incompatible function arguments" in msg or "incompatible constructor arguments" in msg:
            return "unclear", msg[:300]  # pybind11's complaint lists whole signatures: it names every argument
        if any(n.lower() in str(exc).lower() for n in names):
            return "clear", msg
        return "unclear", f"message names none of {names}: {msg}"
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # every other exception is the finding
        return "unclear", f"{type(exc).__name__}: {exc}"[:500]
    if not expect.valid:
        return "garbage", f"accepted an input that must be refused naming {expect.names}"
    try:
        why = check(result) if check is not None else None
    except Exception as exc:  # the result itself is broken (e.g. a property raises)
        return "unclear", f"the result is unusable: {type(exc).__name__}: {exc}"[:500]
    return ("correct", "") if why is None else ("garbage", why)


# -- argument rules: each returns the canonical value or raises Invalid / appends to `may` ----------
def is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def rule_int(v, name: str, low: int, high: int | None = None, may: Rules | None = None, soft_high=None) -> int:
    """An int in [low, high]; above ``soft_high`` it may be refused (absurd sizes)."""
    if not is_int(v):
        raise Invalid(name)
    v = int(v)
    if v < low or (high is not None and v > high):
        raise Invalid(name)
    if soft_high is not None and v > soft_high:
        if may is None:
            raise Invalid(name)
        may.may.append(name)
    return v


def rule_threads(v, may: Rules) -> int:
    """threads: an int >= 0; above 64 a refusal (or a cap) is fine."""
    return rule_int(v, "threads", 0, None, may, soft_high=64)


def rule_ids(v, n: int, name: str) -> np.ndarray:
    """1-D (or scalar) integer ids in [0, n)."""
    try:
        a = np.asarray(v)
    except Exception:  # ragged lists and the like: refused
        raise Invalid(name) from None
    if a.ndim == 0:
        a = a.reshape(1)
    if a.ndim != 1:
        raise Invalid(name)
    if a.size == 0:
        return np.zeros(0, np.int64)
    if not np.issubdtype(a.dtype, np.integer):
        raise Invalid(name)
    if (a < 0).any() or (a >= n).any():
        raise Invalid(name)
    return a.astype(np.int64)


def rule_dense(v, name: str, ndim: int = 2, shape=None) -> np.ndarray:
    """A real (int or float, not bool/complex), finite array of ``ndim`` dims (and ``shape``), as float32."""
    if not hasattr(v, "__array__") and not isinstance(v, (list, tuple)):
        raise Invalid(name)
    try:
        a = np.asarray(v)
    except Exception:
        raise Invalid(name) from None
    if a.ndim != ndim or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise Invalid(name)
    if shape is not None and a.shape != shape:
        raise Invalid(name)
    with np.errstate(over="ignore", invalid="ignore"):
        f = np.ascontiguousarray(a, np.float32)
    if not np.isfinite(f).all():
        raise Invalid(name)
    return f


def rule_csr(v, name: str, shape=None, allow_empty=True, allow_negative=True, pattern=False) -> sp.csr_matrix:
    """A well-formed scipy.sparse matrix (or Interactions) of real, finite values: canonical float32 CSR.
    ``pattern``: only the stored positions matter (any values, even NaN)."""
    if hasattr(v, "csr") and not sp.issparse(v):
        v = v.csr
    if not sp.issparse(v) or v.ndim != 2:
        raise Invalid(name)
    real = v.dtype == np.bool_ or (np.issubdtype(v.dtype, np.number) and not np.issubdtype(v.dtype, np.complexfloating))
    if not real and not pattern:  # a pattern's values are not read: any dtype
        raise Invalid(name)
    if not structurally_valid(v):
        raise Invalid(name)
    if v.format in ("csr", "csc") and v.indptr[-1] < len(v.indices):  # drop the unused tail, as scipy's prune
        nnz = v.indptr[-1]
        v = type(v)((np.asarray(v.data)[:nnz], np.asarray(v.indices)[:nnz], np.asarray(v.indptr)), shape=v.shape)
    if pattern:  # the stored positions, as ones
        if v.format == "csr":  # from the arrays (their dtypes may differ: tocoo would refuse)
            p = np.asarray(v.indptr, np.int64)
            rows, cols = np.repeat(np.arange(v.shape[0]), np.diff(p)), np.asarray(v.indices, np.int64)[: p[-1]]
        else:
            coo = v.tocoo()
            rows, cols = coo.row, coo.col
        m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=v.shape)
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            m = sp.csr_matrix(v, dtype=np.float32, copy=True)
    m.sum_duplicates()
    if m.nnz and not np.isfinite(m.data).all():
        raise Invalid(name)
    if shape is not None and m.shape != shape:
        raise Invalid(name)
    if not allow_empty and (0 in m.shape or m.nnz == 0):
        raise Invalid(name)
    if not allow_negative and m.nnz and m.data.min() < 0:
        raise Invalid(name)
    return m


def structurally_valid(v) -> bool:
    """Whether a scipy.sparse matrix's arrays are consistent (what ``check_format(full_check=True)`` says)."""
    if v.format not in ("csr", "csc"):
        return all(s >= 0 for s in v.shape)  # coo/dok/lil built through their own checked constructors
    n_major = v.shape[0] if v.format == "csr" else v.shape[1]
    n_minor = v.shape[1] if v.format == "csr" else v.shape[0]
    p, i = np.asarray(v.indptr), np.asarray(v.indices)
    if p.ndim != 1 or i.ndim != 1 or len(p) != n_major + 1 or not np.issubdtype(p.dtype, np.integer):
        return False
    if (len(i) and not np.issubdtype(i.dtype, np.integer)) or len(np.asarray(v.data)) != len(i):
        return False
    p = p.astype(np.int64)  # unsigned row pointers would wrap in np.diff
    if p[0] != 0 or p[-1] > len(i) or (np.diff(p) < 0).any():  # scipy's contract: entries past indptr[-1] unused
        return False
    i = i[: p[-1]]
    return not (len(i) and (i.min() < 0 or i.max() >= n_minor))


# -- result checks ---------------------------------------------------------------------------------
def same(a, b) -> str | None:
    """None when ``a`` and ``b`` are equal arrays (or tuples of them), bit for bit with NaN == NaN."""
    if isinstance(a, tuple) or isinstance(b, tuple):
        if not (isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b)):
            return f"result structure differs: {type(a).__name__} vs {type(b).__name__}"
        for x, y in zip(a, b):
            why = same(x, y)
            if why:
                return why
        return None
    if sp.issparse(a) or sp.issparse(b):
        if not (sp.issparse(a) and sp.issparse(b)) or a.shape != b.shape:
            return "sparse results differ in kind or shape"
        d = abs(sp.csr_matrix(a, dtype=np.float64) - sp.csr_matrix(b, dtype=np.float64))
        return None if d.nnz == 0 or d.max() == 0 else f"sparse results differ (max |diff| {d.max()})"
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return f"shape {a.shape} != reference {b.shape}"
    if a.dtype.kind in "fc" or b.dtype.kind in "fc":
        ok = np.array_equal(a, b, equal_nan=True)
    else:
        ok = np.array_equal(a, b)
    return None if ok else f"values differ from the reference (first: {a.ravel()[:4]} vs {b.ravel()[:4]})"


def check_ranking(ids, scores, n_rows: int, k: int, n_items: int, exclude=None, allowed=None) -> str | None:
    """A top-k result: shapes, ids in range or -1 padding at the end, distinct, scores non-increasing,
    -inf exactly at the padding, ties in increasing id order, no excluded id, only allowed ids."""
    ids, scores = np.asarray(ids), np.asarray(scores)
    if ids.shape != (n_rows, k) or scores.shape != (n_rows, k):
        return f"shapes {ids.shape}, {scores.shape}, expected {(n_rows, k)}"
    if ids.dtype != np.int64 or scores.dtype != np.float32:
        return f"dtypes {ids.dtype}, {scores.dtype}, expected int64, float32"
    pad = ids == -1
    if ((ids < -1) | (ids >= n_items)).any():
        return "ids out of range"
    if not np.array_equal(pad, np.isneginf(scores)):
        return "-1 padding and -inf scores disagree"
    if np.isnan(scores).any():
        return "NaN scores"
    for r in range(n_rows):
        row, s = ids[r][~pad[r]], scores[r][~pad[r]]
        if pad[r].any() and not pad[r][len(row) :].all():
            return f"row {r}: padding before a real id"
        if len(np.unique(row)) != len(row):
            return f"row {r}: an id twice"
        if (np.diff(s) > 0).any():
            return f"row {r}: scores not in decreasing order"
        ties = (np.diff(s) == 0) & (np.diff(row) < 0)
        if ties.any():
            return f"row {r}: equal scores not in increasing id order ({row})"
        if exclude is not None and np.isin(row, exclude[r]).any():
            return f"row {r}: an excluded id was returned"
        if allowed is not None and not np.isin(row, allowed[r]).all():
            return f"row {r}: an id outside the candidates was returned"
    return None


def reference_topk(q: np.ndarray, it: np.ndarray, k: int, exclude=None, allowed=None):
    """NumPy top-k by float64 inner product: (ids, scores) with ties to the lower id, -1 / -inf padding."""
    s = q.astype(np.float64) @ it.astype(np.float64).T
    n, m = s.shape
    ids = np.full((n, k), -1, np.int64)
    out = np.full((n, k), -np.inf)
    for r in range(n):
        ok = np.ones(m, bool)
        if exclude is not None:
            ok[list(exclude[r])] = False
        if allowed is not None:
            mask = np.zeros(m, bool)
            mask[list(allowed[r])] = True
            ok &= mask
        cand = np.flatnonzero(ok)
        order = cand[np.lexsort((cand, -s[r, cand]))][:k]
        ids[r, : len(order)] = order
        out[r, : len(order)] = s[r, order]
    return ids, out


def close_ranking(ids, scores, ref_ids, ref_scores, rtol=1e-4) -> str | None:
    """The kernel's scores match the reference's, in order, within float32 rounding (ids may swap on near-ties)."""
    scores = np.asarray(scores, np.float64)
    if not np.array_equal(np.isneginf(scores), np.isneginf(ref_scores)):
        return "a different number of results than the reference"
    fin = np.isfinite(ref_scores)
    tol = rtol * (1 + np.abs(ref_scores[fin]))
    if (np.abs(scores[fin] - ref_scores[fin]) > tol).any():
        return f"scores differ from the NumPy reference: {scores[fin][:5]} vs {ref_scores[fin][:5]}"
    exact = np.array_equal(ids, ref_ids)
    if not exact and np.array_equal(np.sort(ref_scores[fin]), ref_scores[fin][np.argsort(ref_scores[fin])]):
        diff = ids != ref_ids
        if (np.abs(scores[diff] - ref_scores[diff]) > tol[diff[fin]] if diff[fin].any() else False).any():
            return "ids differ from the reference beyond near-ties"
    return None


# -- values built in the child: a sparse matrix whose arrays no constructor would accept ---------
class BrokenSparse(tuple):
    """``(format, indptr, indices, data, shape)`` of a csr/csc matrix, assembled in the child without
    scipy's checks (the parent cannot pickle what scipy refuses to build)."""

    def build(self):
        fmt, indptr, indices, data, shape = self
        m = (sp.csr_matrix if fmt == "csr" else sp.csc_matrix)((1, 1), dtype=np.asarray(data).dtype)
        m.indptr, m.indices, m.data, m._shape = indptr, indices, data, tuple(shape)
        return m


def materialize(value):
    """The actual argument for ``value`` (BrokenSparse specs are built; containers recursed into)."""
    if isinstance(value, BrokenSparse):
        return value.build()
    if isinstance(value, dict):
        return {k: materialize(v) for k, v in value.items()}
    return value
