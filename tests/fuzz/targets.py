"""The entry points under fuzz (run in the child process): one function per target, each taking the
case's arguments and returning ``(outcome, detail)`` from ``oracle.judge``.

Fixed, small fitted models and data are built once per child (``fixtures``); each target works out
what the arguments deserve by the documented rules (``oracle.rule_*``), calls the entry point, and
checks a result against a reference: NumPy for ``topk``, metrics and the CSR validator; for the rest,
the same call with the canonical form of the arguments (a hostile but valid spelling must give the
same answer) plus the structural checks of a ranking.
"""

from __future__ import annotations

import copy
import functools
import io
import json
import math
import numbers
import os
import tempfile
import zipfile

import numpy as np
import scipy.sparse as sp
from oracle import (
    Expect,
    Invalid,
    check_ranking,
    expectation,
    is_int,
    judge,
    rule_csr,
    rule_dense,
    rule_ids,
    rule_int,
    rule_threads,
    same,
    structurally_valid,
)

import recforge as rf
from recforge import _core

N_USERS, N_ITEMS = 30, 20
SCORE_LIMIT = float(np.finfo(np.float32).max) / 2


# -- fixtures --------------------------------------------------------------------------------------
@functools.cache
def train() -> sp.csr_matrix:
    rng = np.random.default_rng(0)
    dense = (rng.random((N_USERS, N_ITEMS)) < 0.25) * rng.integers(1, 6, (N_USERS, N_ITEMS))
    dense[np.arange(N_USERS), np.arange(N_USERS) % N_ITEMS] = 3  # every user has an interaction
    return sp.csr_matrix(dense.astype(np.float32))


MODEL_CONFIGS = {
    "popular": (rf.MostPopular, {}),
    "als": (rf.ALS, {"factors": 4, "epochs": 2}),
    "als-cholesky": (rf.ALS, {"factors": 3, "epochs": 2, "solver": "cholesky"}),
    "als-explicit": (rf.ALS, {"factors": 3, "epochs": 2, "feedback": "explicit"}),
    "sgdmf": (rf.SGDMF, {"factors": 3, "epochs": 2}),
    "bpr": (rf.BPR, {"factors": 3, "epochs": 2}),
    "warp": (rf.BPR, {"factors": 3, "epochs": 2, "loss": "warp"}),
    "mlp": (rf.MLPScorer, {"factors": 3, "layers": (4,), "epochs": 1}),
    "mlp-gmf": (rf.MLPScorer, {"factors": 3, "mode": "gmf", "epochs": 1}),
}
FACTOR_MODELS = [k for k, (cls, _) in MODEL_CONFIGS.items() if issubclass(cls, rf.FactorModel)]


def make(name: str, **override):
    cls, params = MODEL_CONFIGS[name]
    single = {"threads": 1} if "threads" in cls._param_names() else {}
    return cls(**{**params, **single, **override})


@functools.cache
def fitted(name: str):
    return make(name).fit(train(), progress=False)


def fresh(name: str):
    """A private copy of a fitted model (for the calls that change it)."""
    return copy.deepcopy(fitted(name))


def seen_lists(model, users) -> list:
    return [model.seen_.indices[model.seen_.indptr[u] : model.seen_.indptr[u + 1]] for u in users]


def ranking_against_scores(model, users, k, exclude_seen, items, ids, scores) -> str | None:
    """``recommend``'s answer against the model's own ``score`` of every pair: structure, then values."""
    n = len(users)
    exclude = seen_lists(model, users) if exclude_seen else None
    allowed = None if items is None else [items] * n
    # recommend clips k to the catalogue (issue 11): min(k, n_items) columns.
    why = check_ranking(ids, scores, n, min(k, model.n_items), model.n_items, exclude=exclude, allowed=allowed)
    if why or n == 0:
        return why
    # Rating models clip score() to the rating scale (issue 11) but rank by the unclipped prediction
    # (clipping would tie the top of the list): compare against the unclipped scores.
    model._clip_predictions = lambda s: s
    try:
        full = model.score(np.repeat(users, model.n_items), np.tile(np.arange(model.n_items), n)).reshape(n, -1)
    finally:
        del model._clip_predictions
    full = full.astype(np.float64)
    for r in range(n):
        real = ids[r] >= 0
        if not real.any():
            continue
        got = full[r, ids[r][real]]
        # Ranking scores may leave out terms constant per user (a user bias, the global mean): an offset.
        offset = float(np.median(got - scores[r][real]))
        tol = 1e-3 * (1 + np.abs(got))
        if (np.abs(got - offset - scores[r][real]) > tol).any():
            return f"row {r}: returned scores are not the model's scores of the returned ids"
        ok = np.ones(model.n_items, bool)
        if exclude is not None:
            ok[exclude[r]] = False
        if allowed is not None:
            mask = np.zeros(model.n_items, bool)
            mask[allowed[r]] = True
            ok &= mask
        best = np.sort(full[r, ok])[::-1][:k]
        if real.sum() != len(best):
            return f"row {r}: {real.sum()} results, {len(best)} items eligible"
        if (np.abs(best - offset - scores[r][real]) > 1e-3 * (1 + np.abs(best))).any():
            return f"row {r}: not the best {k} scores"
    return None


# -- targets ---------------------------------------------------------------------------------------
def t_topk(queries, items, k, exclude=None, candidates=None, threads=1):
    def rules(r):
        q = r(rule_dense, queries, "queries")
        it = r(rule_dense, items, "items")
        kk = r(rule_int, k, "k", 1, 2**63 - 1)  # past int64: refused (recforge.topk, check_k)
        if q is not None and it is not None:
            if q.shape[1] != it.shape[1] or it.shape[0] == 0 or q.shape[1] == 0:
                r.bad("queries", "items", "factors")
            elif kk is not None and kk > it.shape[0]:
                r.bad("k")
            elif q.shape[0] and q.shape[1] * float(np.abs(q).max()) * float(np.abs(it).max()) > SCORE_LIMIT:
                r.bad("queries", "items", "overflow", "too large")
        n_rows = None if q is None else q.shape[0]
        n_cols = None if it is None else it.shape[0]
        ex = None
        if exclude is not None:
            ex = r(
                rule_csr, exclude, "exclude", shape=None if q is None or it is None else (n_rows, n_cols), pattern=True
            )
        allowed = None
        if candidates is not None:
            c = np.asarray(candidates) if not isinstance(candidates, (str, bytes)) else np.asarray([])
            if (
                isinstance(candidates, (str, bytes))
                or c.dtype == object
                or (c.size and (not np.issubdtype(c.dtype, np.integer) or c.dtype == np.bool_))
            ):
                r.bad("candidates")
            elif n_cols is not None and n_rows is not None:
                c = c.astype(np.int64)
                if c.ndim == 1:
                    if r(rule_ids, c, n_cols, "candidates") is not None:
                        allowed = [c] * n_rows
                elif c.ndim == 2 and c.shape[0] == n_rows:
                    if c.size and (c.min() < -1 or c.max() >= n_cols):
                        r.bad("candidates")
                    allowed = [row[row >= 0] for row in c]
                else:
                    r.bad("candidates")
        r(rule_threads, threads, r)
        return q, it, kk, ex, allowed

    expect, canon = expectation(rules)

    def check(result):
        q, it, kk, ex, allowed = canon
        ids, scores = result
        exl = None if ex is None else [ex.indices[ex.indptr[r] : ex.indptr[r + 1]] for r in range(q.shape[0])]
        why = check_ranking(ids, scores, q.shape[0], kk, it.shape[0], exclude=exl, allowed=allowed)
        if why:
            return why
        full = q.astype(np.float64) @ it.astype(np.float64).T
        for r in range(q.shape[0]):
            ok = np.ones(it.shape[0], bool)
            if exl is not None:
                ok[exl[r]] = False
            if allowed is not None:
                mask = np.zeros(it.shape[0], bool)
                mask[allowed[r]] = True
                ok &= mask
            best = np.sort(full[r, ok])[::-1][:kk]
            real = ids[r] >= 0
            tol = 1e-4 * (1 + np.abs(best)) + 1e-6 * q.shape[1] * np.abs(q[r]).max() * np.abs(it).max()
            if real.sum() != len(best) or (np.abs(scores[r][real] - best) > tol).any():
                return f"row {r}: scores {scores[r][real][:4]} are not the NumPy top-{kk} {best[:4]}"
            if (np.abs(full[r, ids[r][real]] - scores[r][real]) > tol).any():
                return f"row {r}: a returned score is not the inner product of its id"
        return None

    return judge(
        lambda: rf.topk(queries, items, k, exclude=exclude, candidates=candidates, threads=threads), expect, check
    )


def ranking_threads(m, threads, r) -> None:
    """``threads`` of a ranking call: documented for MLPScorer as optional (None: the model's own)."""
    if not (threads is None and isinstance(m, rf.MLPScorer)):
        r(rule_threads, threads, r)


def t_recommend(model, users, k, exclude_seen=True, items=None, threads=1):
    m = fitted(model)

    def rules(r):
        u = r(rule_ids, users, m.n_users, "users")
        kk = r(rule_int, k, "k", 1, None, r, soft_high=10_000)
        it = None if items is None else r(rule_ids, items, m.n_items, "items")
        ranking_threads(m, threads, r)
        return u, kk, it

    expect, canon = expectation(rules)

    def check(result):
        u, kk, it = canon
        return ranking_against_scores(m, u, kk, exclude_seen, it, *result)

    return judge(lambda: m.recommend(users, k, exclude_seen=exclude_seen, items=items, threads=threads), expect, check)


def t_recommend_all(model, k, batch_size=4096, threads=1):
    m = fitted(model)

    def rules(r):
        kk = r(rule_int, k, "k", 1, None, r, soft_high=10_000)
        r(rule_int, batch_size, "batch_size", 1)
        ranking_threads(m, threads, r)
        return kk

    expect, kk = expectation(rules)
    return judge(
        lambda: m.recommend_all(k, batch_size=batch_size, threads=threads),
        expect,
        lambda r: same(r, m.recommend(np.arange(m.n_users), kk, threads=1)),
    )


def t_score(model, users, items):
    m = fitted(model)

    def rules(r):
        u = r(rule_ids, users, m.n_users, "users")
        i = r(rule_ids, items, m.n_items, "items")
        if u is not None and i is not None and len(u) != len(i):
            raise Invalid("users", "items", "length")
        return u, i

    expect, canon = expectation(rules)

    def check(result):
        u, i = canon
        r = np.asarray(result)
        if r.shape != (len(u),) or not np.isfinite(r).all():
            return f"score gave shape {r.shape} or non-finite values"
        return same(r, m.score(u, i))

    return judge(lambda: m.score(users, items), expect, check)


def t_explain(model, user, item):
    """``explain`` with hostile ids: refused naming user / item, or a decomposition of the user's history
    that adds up to its score (and, but for ALS's exact re-solve, to the model's own ``score``)."""
    m = fitted(model)

    def rules(r):
        return r(rule_int, user, "user", 0, m.n_users - 1), r(rule_int, item, "item", 0, m.n_items - 1)

    expect, canon = expectation(rules)

    def check(e):
        u, i = canon
        history = sorted(e.contributions["index"])
        if history != sorted(m.seen_.indices[m.seen_.indptr[u] : m.seen_.indptr[u + 1]]):
            return "explain's history items are not the user's training items"
        if not np.isclose(e.base + e.contributions["contribution"].sum(), e.score, rtol=1e-9, atol=1e-9):
            return f"explain's contributions add up to {e.base + e.contributions['contribution'].sum()}, not {e.score}"
        if not isinstance(m, rf.ALS) and not np.isclose(e.model_score, m.score([u], [i])[0], rtol=1e-6):
            return "explain's model_score is not score()"
        return None

    return judge(lambda: m.explain(user, item), expect, check)


def t_similar(model, side, ids, k, threads=1):
    m = fitted(model)
    n = m.n_items if side == "items" else m.n_users
    call = m.similar_items if side == "items" else m.similar_users

    def rules(r):
        i = r(rule_ids, ids, n, side)
        kk = r(rule_int, k, "k", 1, None, r, soft_high=10_000)
        r(rule_threads, threads, r)
        return i, kk

    expect, canon = expectation(rules)

    def check(result):
        i, kk = canon
        # similar_* clip k to the rows there are, like recommend (issue 11)
        return check_ranking(*result, len(i), min(kk, n), n, exclude=[[x] for x in i]) or same(
            result, call(i, kk, threads=1)
        )

    return judge(lambda: call(ids, k, threads=threads), expect, check)


def fitted_state(model) -> dict:
    return {k: np.asarray(v) for k, v in model._arrays().items()}


def finite_state(model) -> str | None:
    for name, a in fitted_state(model).items():
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            return f"the fit left NaN or infinite values in {name}"
    return None


INT_PARAMS = {
    "epochs": 200,
    "factors": 256,
    "negatives": 200,
    "batch_size": 10**6,
    "cg_steps": 100,
    "max_sampled": 10**4,
}
FLOAT_PARAMS = ("lr", "regularization", "alpha", "alpha0", "nu", "bias_regularization", "eps")


def t_fit(model, interactions=None, param=None, value=None):
    """``fit`` with a hostile training matrix (compared with the fit of its canonical form) or one
    hostile hyperparameter (a clear refusal, or a fit with finite state)."""
    cls, params = MODEL_CONFIGS[model]

    def rules(r):
        if param is None:
            m = rule_csr(interactions, "interactions", allow_empty=False)
            if m.data.min() < 0:
                r.may.append("interactions")  # implicit-feedback models refuse negative values
            if np.abs(m.data).max() > 1e15:
                r.may.extend(["interactions", "rating"])  # rating models name their input "ratings"
            return m
        if param == "threads":
            return rule_threads(value, r)
        spec = cls._param_spec.get(param)
        if value is None and spec is not None and spec.optional:  # documented: None picks the default
            return value
        if param in INT_PARAMS:
            return rule_int(value, param, 1, None, r, soft_high=INT_PARAMS[param])
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise Invalid(param)
        if not math.isfinite(value):
            raise Invalid(param)
        r.may.append(param)  # a diverged fit may say so (FloatingPointError naming the parameter)
        return value

    expect, canon = expectation(rules)
    if param is None:
        data = interactions

        def check(fitted_model):
            return _same_state(fitted_model, make(model).fit(canon, progress=False))
    else:
        data = train()

        def check(fitted_model):
            return finite_state(fitted_model)

    def call():
        m = make(model, **({} if param is None else {param: value}))
        return m.fit(data, progress=False)

    return judge(call, expect, check, errors=(FloatingPointError,))  # a diverged fit says so


def _same_state(a, b) -> str | None:
    sa, sb = fitted_state(a), fitted_state(b)
    if sa.keys() != sb.keys():
        return "fitted arrays differ in names"
    for k in sa:
        why = same(sa[k], sb[k])
        if why:
            return f"{k}: {why}"
    return finite_state(a)


def t_partial_fit(model, ids, rows, side="users"):
    """``partial_fit_users`` (``partial_fit_items`` of ALS: ``side="items"``) with hostile ids or rows: a
    clear refusal or the canonical answer."""
    m = fresh(model)
    id_name, width = ("user_ids", m.n_items) if side == "users" else ("item_ids", m.n_users)

    def rules(r):
        a = np.asarray(ids) if not isinstance(ids, (str, type(None))) else None
        if a is None or a.ndim > 1 or (a.size and (not np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_)):
            r.bad(id_name)
            a = None
        else:
            a = a.reshape(-1).astype(np.int64)
            if a.size and (a.min() < 0 or len(np.unique(a)) != len(a)):
                r.bad(id_name)
            if a.size and a.max() > 10**6:
                r.may.append(id_name)
        shape = None if a is None else (len(a), width)
        rows_ok = r(rule_csr, rows, "interactions_rows", shape=shape)
        if rows_ok is not None and rows_ok.nnz and (rows_ok.data.min() < 0 or np.abs(rows_ok.data).max() > 1e15):
            r.may.append("interactions_rows")  # negative or absurd values: a model may refuse them
        return a, rows_ok

    expect, canon = expectation(rules)

    def check(result):
        ref = fresh(model)
        getattr(ref, f"partial_fit_{side}")(*canon)
        return _same_state(m, ref)

    return judge(lambda: getattr(m, f"partial_fit_{side}")(ids, rows), expect, check)


def external_ids_as_ints(values):
    """``from_arrays`` takes external ids of any hashable type: with ``IdMap.range(n)`` the known ones are
    those equal to 0..n-1 (Python equality: 3, np.int8(3), 3.0 and an object array's 3 are one id)."""
    try:
        a = np.asarray(values)
    except ValueError:
        return values
    if a.dtype.kind not in "fO" or a.ndim != 1:
        return values
    flat = a.tolist()
    if all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and v == int(v) for v in flat):
        ints = [int(v) for v in flat]
        if all(-(2**63) <= v < 2**63 for v in ints):
            return np.array(ints, np.int64)
    return values


def t_interactions(users, items, weights=None):
    """``Interactions.from_arrays`` with integer id maps (id j -> index j): out-of-range ids must be refused."""
    nu, ni = 7, 5

    def rules(r):
        u = r(rule_ids, external_ids_as_ints(users), nu, "users")
        i = r(rule_ids, external_ids_as_ints(items), ni, "items")
        for name, v in (("users", users), ("items", items)):
            if np.ndim(v) == 0:
                r.may.append(name)  # a scalar for a sequence: a refusal is fine
        if weights is not None:
            r(rule_dense, weights, "weights", ndim=1)
        if u is None or i is None:
            return None
        if len(u) != len(i):
            raise Invalid("users", "items", "length", "same")
        if len(u) == 0:
            r.may.append("users")  # no interactions at all: a refusal is fine
        if weights is None:  # each row one event: repeats counted
            return sp.csr_matrix((np.ones(len(u)), (u, i)), shape=(nu, ni))
        w = rule_dense(weights, "weights", ndim=1, shape=(len(u),)).astype(np.float64)
        last = {(a, b): x for a, b, x in zip(u.tolist(), i.tolist(), w.tolist())}  # weighted rows: the latest kept
        rows, cols = zip(*last) if last else ((), ())
        return sp.csr_matrix((list(last.values()), (rows, cols)), shape=(nu, ni))

    expect, canon = expectation(rules)

    def call():
        return rf.Interactions.from_arrays(
            users, items, weights, user_ids=rf.IdMap.range(nu), item_ids=rf.IdMap.range(ni)
        ).csr

    return judge(call, expect, lambda r: same(r, canon))


def t_from_scipy(matrix):
    def rules(r):
        m = rule_csr(matrix, "matrix")
        if m.nnz == 0 or 0 in m.shape:
            r.may.append("matrix")  # no interactions at all: a refusal is fine
        return m

    expect, canon = expectation(rules)
    return judge(lambda: rf.Interactions.from_scipy(matrix).csr, expect, lambda r: same(r, canon))


TRANSFORMS = {
    "linear_confidence": ("alpha",),
    "log_confidence": ("alpha", "eps"),
    "log_scale": ("eps",),
    "bm25_weight": ("K1", "B"),
    "tfidf_weight": (),
}


def t_transform(fn, csr, params):
    f = getattr(rf.transforms, fn)

    def rules(r):
        m = r(rule_csr, csr, "csr")
        if m is not None and m.nnz and m.data.min() < 0:
            r.may.append("csr")
        if m is not None and m.nnz and np.abs(m.data).max() > 1e15:
            r.may.append("csr")
        for name, v in params.items():
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
                r.bad(name)
            elif name == "B" and not 0 <= v <= 1:  # BM25's length normalisation is a fraction
                r.bad(name)
            elif not 1e-6 <= v <= 1e3:
                r.may.append(name)
        return m

    expect, canon = expectation(rules)

    def check(result):
        if not sp.issparse(result) or result.shape != canon.shape:
            return "not a sparse matrix of the input's shape"
        if result.nnz and not np.isfinite(result.data).all():
            return "NaN or infinite weights"
        return same(result, f(canon, **params))

    return judge(lambda: f(csr, **params), expect, check)


@functools.cache
def interactions_with_time() -> rf.Interactions:
    m = train().tocoo()
    ts = np.arange(m.nnz, dtype=np.int64) * 7 % 101
    return rf.Interactions.from_arrays(
        m.row, m.col, m.data, timestamps=ts, user_ids=rf.IdMap.range(N_USERS), item_ids=rf.IdMap.range(N_ITEMS)
    )


def t_split(fn, kwargs):
    inter = interactions_with_time()
    f = getattr(rf.split, fn)

    def rules(r):
        for name, v in kwargs.items():
            if name in ("test_fraction", "test_users_fraction", "fold_in_fraction"):
                if isinstance(v, bool) or not isinstance(v, (float, int, np.floating, np.integer)) or not 0 < v < 1:
                    r.bad(name)
            elif name == "n":
                r(rule_int, v, "n", 1, None, r, soft_high=10**6)
            elif name == "seed":
                if not is_int(v) or v < 0 or v >= 2**63:
                    r.bad("seed")
            elif name == "cutoff":
                if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                    r.bad("cutoff")
                elif not math.isfinite(v):
                    r.bad("cutoff")
        if fn == "strong_generalization":
            r.may.append("test_users_fraction")
        return None

    expect, _ = expectation(rules)

    def check(parts):
        pieces = list(parts[:-1]) if fn == "strong_generalization" else list(parts)
        total = pieces[0].csr.copy()
        for p in pieces[1:]:
            total = total + p.csr
        if sum(p.nnz for p in pieces) != inter.nnz or same(total, inter.csr):
            return "the parts do not partition the interactions"
        if fn == "temporal" and "cutoff" in kwargs:
            tr, te = pieces
            if (tr.nnz and tr.timestamps.max() >= kwargs["cutoff"]) or (
                te.nnz and te.timestamps.min() < kwargs["cutoff"]
            ):
                return "temporal split puts an interaction on the wrong side of the cutoff"
        return None

    return judge(lambda: f(inter, **kwargs), expect, check)


METRICS = ("precision_at_k", "recall_at_k", "ndcg_at_k", "map_at_k", "hit_rate_at_k", "mrr_at_k")


def t_metric(fn, recommended_ids, test, k=None, users=None):
    f = getattr(rf.evaluation, fn)

    def rules(r):
        t = r(rule_csr, test, "test")
        try:
            rec = np.asarray(recommended_ids) if hasattr(recommended_ids, "__len__") else None
        except ValueError:  # ragged
            rec = None
        if rec is None or rec.ndim != 2 or 0 in rec.shape:
            r.bad("recommended_ids")
        elif not np.issubdtype(rec.dtype, np.integer) or rec.dtype == np.bool_:
            r.bad("recommended_ids")
        if k is not None:
            r(rule_int, k, "k", 1)
        if r.invalid:
            return None
        kk = rec.shape[1] if k is None else rule_int(k, "k", 1, rec.shape[1])
        if rec[:, :kk].min() < -1 or (t is not None and rec[:, :kk].max() >= t.shape[1]):
            raise Invalid("recommended_ids")
        if t is None:
            return None
        if users is None:
            if t.shape[0] != rec.shape[0]:
                raise Invalid("test", "users", "rows")
            rows = t
        else:
            u = rule_ids(users, t.shape[0], "users")
            if len(u) != rec.shape[0]:
                raise Invalid("users")
            rows = t[u]
        if (rows > 0).sum() == 0:
            raise Invalid("test")
        return rec[:, :kk].astype(np.int64), rows, kk

    expect, canon = expectation(rules)

    def check(value):
        rec, rows, kk = canon
        ref = reference_metric(fn, rec, rows, kk)
        if not (isinstance(value, float) and math.isfinite(value)):
            return f"{fn} returned {value!r}, not a finite float"
        return None if abs(value - ref) <= 1e-9 + 1e-6 * abs(ref) else f"{fn} = {value}, NumPy reference {ref}"

    return judge(lambda: f(recommended_ids, test, k, users=users), expect, check)


def reference_metric(fn: str, rec: np.ndarray, rows: sp.csr_matrix, k: int) -> float:
    """The metric by its textbook definition (mean over users with a relevant item)."""
    rel = [
        set(rows.indices[rows.indptr[r] : rows.indptr[r + 1]][rows.data[rows.indptr[r] : rows.indptr[r + 1]] > 0])
        for r in range(rows.shape[0])
    ]
    values = []
    for r, rr in enumerate(rel):
        if not rr:
            continue
        seen, hits = set(), []
        for i in rec[r, :k]:
            hits.append(int(i) >= 0 and int(i) in rr and int(i) not in seen)
            seen.add(int(i))
        h = np.array(hits, float)
        if fn == "precision_at_k":
            values.append(h.sum() / k)
        elif fn == "recall_at_k":
            values.append(h.sum() / len(rr))
        elif fn == "hit_rate_at_k":
            values.append(float(h.any()))
        elif fn == "mrr_at_k":
            values.append(1.0 / (np.argmax(h) + 1) if h.any() else 0.0)
        elif fn == "ndcg_at_k":
            disc = 1 / np.log2(np.arange(2, k + 2))
            values.append((h * disc).sum() / disc[: min(k, len(rr))].sum())
        elif fn == "map_at_k":
            prec = np.cumsum(h) / np.arange(1, k + 1)
            values.append((prec * h).sum() / min(k, len(rr)))
    return float(np.mean(values))


def t_auc(scores, test, batch_size=None):
    def rules(r):
        t = r(rule_csr, test, "test")
        s = r(rule_dense, scores, "scores", shape=None if t is None else t.shape)
        if isinstance(scores, (list, tuple)):
            r.may.append("scores")  # a nested list for the score matrix: a refusal is fine
        if batch_size is not None:
            r(rule_int, batch_size, "batch_size", 1)
        if t is not None:
            pos = np.asarray((t > 0).sum(axis=1)).ravel()
            if not ((pos > 0) & (pos < t.shape[1])).any():  # no user with both a positive and a negative
                r.bad("test", "evaluated user")
        return s, t

    expect, canon = expectation(rules)

    def check(value):
        if not (isinstance(value, float) and 0 <= value <= 1):
            return f"auc returned {value!r}, not in [0, 1]"
        return same(value, rf.evaluation.auc(*canon))

    return judge(lambda: rf.evaluation.auc(scores, test, batch_size=batch_size), expect, check)


@functools.cache
def saved_model(name: str) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        fitted(name).save(os.path.join(d, "m.rf"))
        with open(os.path.join(d, "m.rf"), "rb") as f:
            return f.read()


def t_load(model, damage):
    """``rf.load`` of a damaged file: ValueError (clear), or a model that works (correct)."""
    raw = mutate_file(saved_model(model), damage)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.rf")
        with open(path, "wb") as f:
            f.write(raw)

        def call():
            back = rf.load(path)
            return back, back.recommend([0, 1], k=3, threads=1)

        def check(result):
            back, (ids, scores) = result
            return check_ranking(ids, scores, 2, 3, back.n_items, exclude=seen_lists(back, [0, 1]))

        return judge(call, file_expectation(damage), check)


# Metadata edits that leave a file a loader may still accept (the rest must be refused).
TOLERABLE_META = {("params", "threads"), ("params", "device"), ("params", "layers"), ("params", "factors")}


def file_expectation(damage) -> Expect:
    """A replaced array (all in strategies.load_case are wrong for their slot) or a broken metadata
    field must be refused; a truncated or flipped file may load only if the damage missed everything."""
    names = ("model file", "m.rf")
    if damage[0] == "array" or (damage[0] == "meta" and tuple(damage[1]) not in TOLERABLE_META):
        return Expect(valid=False, names=names)
    return Expect(valid=True, may_refuse=names)


def mutate_file(raw: bytes, damage) -> bytes:
    kind = damage[0]
    if kind == "raw":  # the whole file given (atheris)
        return damage[1]
    if kind == "truncate":
        return raw[: int(len(raw) * damage[1])]
    if kind == "flip":
        b = bytearray(raw)
        for pos, bits in damage[1]:
            b[int(pos * len(b)) % len(b)] ^= bits
        return bytes(b)
    if kind == "meta":  # edit the metadata JSON: (path of keys, new value)
        path, value = damage[1], damage[2]
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            members = {n: z.read(n) for n in z.namelist()}
        meta = json.loads(np.lib.format.read_array(io.BytesIO(members["__meta__.npy"])).tobytes())
        node = meta
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.frombuffer(json.dumps(meta).encode(), np.uint8))
        members["__meta__.npy"] = buf.getvalue()
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as z:
            for n, b in members.items():
                z.writestr(n, b)
        return out.getvalue()
    if kind == "array":  # replace one array by a hostile one, declared consistently
        name, value = damage[1], damage[2]
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            members = {n: z.read(n) for n in z.namelist()}
        meta = json.loads(np.lib.format.read_array(io.BytesIO(members["__meta__.npy"])).tobytes())
        buf = io.BytesIO()
        np.lib.format.write_array(buf, value, allow_pickle=True)
        members[f"{name}.npy"] = buf.getvalue()
        meta["arrays"][name] = [str(value.dtype), list(value.shape)]
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.frombuffer(json.dumps(meta).encode(), np.uint8))
        members["__meta__.npy"] = buf.getvalue()
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as z:
            for n, b in members.items():
                z.writestr(n, b)
        return out.getvalue()
    raise AssertionError(kind)


# -- recforge._core --------------------------------------------------------------------------------
def t_core_csr(indptr, indices, data, shape):
    """``_core.Csr``: the C++ CSR contract; refused (naming the matrix) unless exactly well-formed."""

    def rules(r):
        if not (isinstance(shape, tuple) and len(shape) == 2 and all(is_int(s) for s in shape)):
            raise Invalid("m", "shape")
        n, m = shape
        if n < 0 or m < 0 or m > 2**31 - 1:
            raise Invalid("m", "shape")
        p, i = np.asarray(indptr), np.asarray(indices)
        for a, nm in ((p, "indptr"), (i, "indices")):
            if a.ndim != 1 or (a.size and (not np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_)):
                raise Invalid("m", nm)
        d = None
        if data is not None:
            d = np.asarray(data)
            if d.ndim != 1 or d.dtype.kind not in "biuf":
                raise Invalid("m", "data")
            if len(d) != len(i):
                raise Invalid("m", "data")
        fake = sp.csr_matrix((1, 1))
        fake.indptr, fake.indices, fake._shape = p, i, (n, m)
        fake.data = np.zeros(len(i)) if d is None else d
        # Stricter than scipy (which ignores entries past indptr[-1]): the C++ contract wants nnz == len(indices).
        if p.size == 0 or not structurally_valid(fake) or p[-1] != len(i):
            raise Invalid("m", "indptr", "indices", "row pointers", "column")
        return p.astype(np.int64), i.astype(np.int32), None if d is None else d.astype(np.float32)

    expect, canon = expectation(rules)

    def check(c):
        p, i, d = canon
        return (
            same(np.asarray(c.indptr), p)
            or same(np.asarray(c.indices), i)
            or (None if d is None and (c.data is None or len(c.data) == 0) else same(np.asarray(c.data), d))
        )

    return judge(lambda: _core.Csr(indptr, indices, data, shape, "m"), expect, check)


def core_baseline(fn: str) -> dict:
    """Valid arguments of each ``_core`` function (fresh arrays: some are written in place)."""
    rng = np.random.default_rng(1)
    m = train()
    c = _core.Csr(m.indptr.astype(np.int64), m.indices.astype(np.int32), m.data, m.shape, "m")
    f = 3
    y = rng.standard_normal((N_ITEMS, f)).astype(np.float32)
    x = rng.standard_normal((N_USERS, f)).astype(np.float32)
    arch = _core.MLPArch(_core.Mode.neumf, 2, 2, [3])
    ue = rng.standard_normal((N_USERS, arch.emb_width)).astype(np.float32) * 0.1
    ie = rng.standard_normal((N_ITEMS, arch.emb_width)).astype(np.float32) * 0.1
    dense = rng.standard_normal(arch.n_dense).astype(np.float32) * 0.1
    users = np.array([0, 5, 29], np.int64)
    items = np.array([1, 19, 3], np.int64)
    yty = y.T @ y
    out = {
        "als_gram": dict(Y=y, threads=1),
        "als_implicit_solve": dict(
            m=c,
            Y=y,
            YtY=yty,
            X=x.copy(),
            alpha=1.0,
            regularization=0.1,
            alpha0=0.0,
            nu=0.0,
            scaling=_core.RegScaling.all_pairs,
            solver=_core.Solver.cg,
            cg_steps=3,
            threads=1,
            prior=x * 0.5,
            prior_weight=0.5,
        ),
        "als_implicit_loss": dict(
            m=c,
            X=x,
            Y=y,
            YtY=yty,
            alpha=1.0,
            regularization=0.1,
            alpha0=0.0,
            nu=0.0,
            scaling=_core.RegScaling.all_pairs,
            threads=1,
        ),
        "als_explicit_solve": dict(
            m=c,
            Y=y,
            other_bias=np.zeros(N_ITEMS, np.float32),
            X=x.copy(),
            own_bias=np.zeros(N_USERS, np.float32),
            regularization=0.1,
            global_mean=1.0,
            threads=1,
        ),
        "als_explicit_sse": dict(
            m=c,
            X=x,
            own_bias=np.zeros(N_USERS, np.float32),
            Y=y,
            other_bias=np.zeros(N_ITEMS, np.float32),
            global_mean=1.0,
            threads=1,
        ),
        "sgd_mf_predict": dict(
            users=users,
            items=items,
            user_factors=x,
            item_factors=y,
            user_bias=np.zeros(N_USERS, np.float32),
            item_bias=np.zeros(N_ITEMS, np.float32),
            global_mean=0.5,
            threads=1,
        ),
        "mlp_score_pairs": dict(arch=arch, user_emb=ue, item_emb=ie, dense=dense, users=users, items=items, threads=1),
        "mlp_score_all": dict(arch=arch, user_emb=ue, item_emb=ie, dense=dense, users=users, threads=1),
        "mlp_sample_epoch": dict(interactions=c, negatives=2, seed=3, threads=1),
        "mlp_loss_grad": dict(
            arch=arch,
            user_emb=ue,
            item_emb=ie,
            dense=dense,
            users=users,
            items=items,
            labels=np.array([1, 0, 1], np.float32),
            l2=0.01,
        ),
        "max_threads": dict(threads=1),
        "topk_f32": dict(queries=x, items=y, k=4, exclude=None, subset=None, candidates=None, threads=1),
        "sgd_sample_negatives": dict(
            data=_core.SGDPositiveData(c), users=users.astype(np.int32), sampling=_core.Sampling.uniform, seed=1
        ),
        "sgd_mf_epoch": dict(
            data=_core.SGDRatingData(c),
            user_factors=x.copy(),
            item_factors=y.copy(),
            user_bias=np.zeros(N_USERS, np.float32),
            item_bias=np.zeros(N_ITEMS, np.float32),
            global_mean=1.0,
            lr=0.01,
            regularization=0.01,
            bias_regularization=0.01,
            threads=1,
            seed=1,
            epoch=0,
        ),
        "sgd_rank_epoch": dict(
            data=_core.SGDPositiveData(c),
            user_factors=x.copy(),
            item_factors=y.copy(),
            item_bias=np.zeros(N_ITEMS, np.float32),
            lr=0.01,
            regularization=0.01,
            negatives=1,
            sampling=_core.Sampling.uniform,
            loss=_core.Loss.bpr,
            max_sampled=10,
            threads=1,
            seed=1,
            epoch=0,
        ),
        "mlp_train_epoch": dict(
            arch=arch,
            user_emb=ue.copy(),
            item_emb=ie.copy(),
            dense=dense.copy(),
            m_user=np.zeros_like(ue),
            v_user=np.zeros_like(ue),
            m_item=np.zeros_like(ie),
            v_item=np.zeros_like(ie),
            m_dense=np.zeros_like(dense),
            v_dense=np.zeros_like(dense),
            step=0,
            users=users,
            items=items,
            labels=np.array([1, 0, 1], np.float32),
            optimizer=_core.Optimizer.adam,
            lr=0.01,
            beta1=0.9,
            beta2=0.999,
            eps=1e-8,
            l2=0.0,
            batch_size=2,
            threads=1,
        ),
    }
    return out[fn]


# The arguments each ``_core`` function writes in place (the others are read).
OUTPUTS = {
    "als_implicit_solve": {"X"},
    "als_explicit_solve": {"X", "own_bias"},
    "sgd_mf_epoch": {"user_factors", "item_factors", "user_bias", "item_bias"},
    "sgd_rank_epoch": {"user_factors", "item_factors", "item_bias"},
    "mlp_train_epoch": {"user_emb", "item_emb", "dense", "m_user", "v_user", "m_item", "v_item", "m_dense", "v_dense"},
}
OPTIONAL = {"user_bias", "item_bias", "prior"}  # None is a valid value of these


def hostile_array(base: np.ndarray, kind: str):
    """``base`` in a hostile form (``kind`` from strategies.core_case)."""
    if kind in ("float16", "float64"):
        return base.astype(kind)
    if kind == "non-contiguous":
        return np.repeat(base, 2, axis=-1)[..., ::2]
    if kind == "fortran":
        return np.asfortranarray(base)
    if kind == "read-only":
        out = base.copy()
        out.flags.writeable = False
        return out
    if kind == "wrong shape":
        return base[:-1]
    if kind in ("nan", "huge"):
        out = base.copy()
        out.flat[0] = np.nan if kind == "nan" else 3e38
        return out
    return None if kind == "none" else base.tolist()


def core_array_expectation(fn: str, arg: str, base: np.ndarray, kind: str) -> tuple[Expect, bool]:
    """What a hostile array deserves, and whether the result must equal the baseline's."""
    if kind == "fortran" and base.ndim == 1:
        kind = "float32"  # a 1-D array is C- and Fortran-contiguous: the same array
    if kind == "float32":
        return Expect(valid=True), True
    if kind in ("nan", "huge") or (kind == "float16" and arg not in OUTPUTS.get(fn, ())) or fn == "als_gram":
        return Expect(valid=True, may_refuse=(arg,)), False  # no crash is all that is asked
    if fn == "mlp_score_all" and arg == "item_emb" and kind == "wrong shape":
        return Expect(valid=True, may_refuse=(arg,)), False  # its rows are the catalogue: one item fewer
    if kind == "none" and arg in OPTIONAL:
        return Expect(valid=True, may_refuse=(arg,)), False
    if arg in OUTPUTS.get(fn, ()) or kind in ("wrong shape", "none"):
        # an embedding a row short: the ids past it are out of range, a message naming them is as clear
        # a wrong shape is an inconsistency between arguments: a message naming any array argument is clear
        also = (
            tuple(k for k, v in core_baseline(fn).items() if isinstance(v, np.ndarray)) if kind == "wrong shape" else ()
        )
        return Expect(valid=False, names=(arg, *also)), False  # written through a silent copy = lost
    return Expect(valid=True, may_refuse=(arg,)), True  # float64, strided, read-only, list: the same input


COUNT_ARGS = {"negatives", "cg_steps", "batch_size", "max_sampled", "k"}
SEED_ARGS = {"seed", "epoch", "step"}


def core_scalar_expectation(arg: str, value) -> Expect:
    """A scalar for a ``_core`` argument: counts are ints >= 1 (absurd ones may be refused), seeds ints >= 0,
    reals finite numbers (any finite value may be refused, none may crash or hang)."""
    if arg in COUNT_ARGS or arg in SEED_ARGS:
        if not is_int(value) or value < (1 if arg in COUNT_ARGS else 0) or value >= 2**64:
            return Expect(valid=False, names=(arg,))
        return Expect(valid=True, may_refuse=(arg,))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return Expect(valid=False, names=(arg,))
    return Expect(valid=True, may_refuse=(arg,))


def t_core(fn, arg, value, equivalent=False):
    """One ``_core`` function with ``arg`` replaced by a hostile ``value``.

    ``equivalent`` marks a value that is the same data in another spelling (another int dtype, a
    list): the call must then give the baseline's answer or refuse clearly. Otherwise the value is
    wrong for the argument and must be refused with a message naming it, never ``incompatible
    function arguments`` (the binding's generic complaint lists every signature, naming nothing).
    ``("array", kind)`` derives a hostile form of the baseline array (``hostile_array``).
    """
    f = getattr(_core, fn)
    base_args = core_baseline(fn)
    baseline = f(**base_args)
    args = core_baseline(fn)
    compare = True
    if isinstance(value, tuple) and value[:1] == ("array",):
        expect, compare = core_array_expectation(fn, arg, args[arg], value[1])
        value = hostile_array(args[arg], value[1])
    elif fn == "sgd_mf_predict" and arg in ("users", "items") and np.issubdtype(np.asarray(value).dtype, np.integer):
        # documented: out-of-range ids are unknown (bias fallback), the same as an id one past the end
        n = N_USERS if arg == "users" else N_ITEMS
        v = np.asarray(value, np.int64)
        baseline = f(**dict(base_args, **{arg: np.where((v < 0) | (v >= n), n, v)}))
        expect = Expect(valid=True, may_refuse=(arg,))
    elif equivalent:
        expect = Expect(valid=True, may_refuse=(arg,))
    elif equivalent is None:  # another valid value: no crash is all that is asked
        expect, compare = Expect(valid=True, may_refuse=(arg,)), False
    elif not isinstance(value, np.ndarray) and not isinstance(value, list):
        expect, compare = core_scalar_expectation(arg, value), False
    else:
        expect = Expect(valid=False, names=(arg,))
    hostile = dict(args, **{arg: value})

    def call():
        r = f(**hostile)
        return r, {k: np.array(hostile[k]) for k in OUTPUTS.get(fn, ()) if hostile.get(k) is not None}

    def check(result):
        if not compare:
            return None
        r, written = result
        why = same_core(r, baseline)
        if why:
            return why
        for k, v in written.items():
            why = same(v, base_args[k])
            if why:
                return f"{k} (written in place): {why}"
        return None

    return judge(call, expect, check)


def same_core(a, b) -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        return None if a.keys() == b.keys() else "stats differ"
    if isinstance(a, (float, int)) and isinstance(b, (float, int)):
        return None if (a == b or (math.isnan(a) and math.isnan(b))) else f"{a} != {b}"
    if a is None and b is None:
        return None
    return same(a if not isinstance(a, list) else tuple(a), b if not isinstance(b, list) else tuple(b))


def t_core_threads(fn, threads):
    """``threads`` of a ``_core`` kernel: an int >= 0 (<= 0: all cores), any size refused or capped clearly."""

    def rules(r):
        if not is_int(threads) or threads < 0:  # threads: 0 (all cores) .. a bound, refused beyond it
            raise Invalid("threads")
        if threads > 64:
            r.may.append("threads")
        return None

    expect, _ = expectation(rules)
    base_args = core_baseline(fn)
    baseline = getattr(_core, fn)(**base_args) if fn != "max_threads" else None
    args = dict(core_baseline(fn), threads=threads)

    def call():
        return getattr(_core, fn)(**args)

    def check(r):
        if fn == "max_threads":
            return None if is_int(r) and 1 <= r <= max(256, os.cpu_count() or 1) else f"max_threads gave {r}"
        return same_core(r, baseline)

    return judge(call, expect, check)


def t_core_arch(mode, dim_gmf, dim_mlp, layers):
    """``_core.MLPArch``: dims are ints >= 0 (the mode's branch >= 1), layers ints >= 1; absurd sizes
    may be refused; an accepted architecture has consistent offsets."""

    def rules(r):
        for name, v in (("dim_gmf", dim_gmf), ("dim_mlp", dim_mlp)):
            if not is_int(v) or v < 0:
                r.bad(name, "embedding dimension")
            elif v > 4096:
                r.may.extend([name, "embedding dimension"])
        if not isinstance(layers, list):
            r.bad("layers")
        else:
            for v in layers:
                r(rule_int, v, "layer", 1, None, r, soft_high=4096)  # "layer sizes must be ..."
        if r.invalid:
            return None
        want_gmf, want_mlp = mode != "mlp", mode != "gmf"  # each branch present exactly when the mode has it
        if (dim_gmf >= 1) != want_gmf or (dim_mlp >= 1) != want_mlp or bool(layers) != want_mlp:
            r.bad("dim_gmf", "dim_mlp", "layers", "mode")
        return None

    expect, _ = expectation(rules)

    def check(arch):
        return None if arch.n_dense >= 1 and arch.emb_width >= 1 else f"n_dense {arch.n_dense}, emb {arch.emb_width}"

    return judge(lambda: _core.MLPArch(getattr(_core.Mode, mode), dim_gmf, dim_mlp, layers), expect, check)


def t_set_blas(swap):
    """``_core.set_blas`` with another routine's capsule (``swap``: (argument, capsule name)): it must be
    refused naming the argument, never installed (the next kernel would call it with the wrong signature)."""
    import scipy.linalg.cython_blas as blas
    import scipy.linalg.cython_lapack as lapack

    args = {
        "sgemm": blas.__pyx_capi__["sgemm"],
        "ssyrk": blas.__pyx_capi__["ssyrk"],
        "spotrf": lapack.__pyx_capi__["spotrf"],
        "spotrs": lapack.__pyx_capi__["spotrs"],
    }
    arg, capsule = swap
    source = blas if capsule in blas.__pyx_capi__ else lapack
    args[arg] = source.__pyx_capi__[capsule]

    def call():
        _core.set_blas(**args)
        q = np.ones((64, 32), np.float32)
        return rf.topk(q, q, 3, threads=1)  # the installed routine at work

    return judge(call, Expect(valid=False, names=(arg,)), None)


TARGETS = {
    "topk": t_topk,
    "recommend": t_recommend,
    "recommend_all": t_recommend_all,
    "score": t_score,
    "similar": t_similar,
    "explain": t_explain,
    "fit": t_fit,
    "partial_fit": t_partial_fit,
    "interactions": t_interactions,
    "from_scipy": t_from_scipy,
    "transform": t_transform,
    "split": t_split,
    "metric": t_metric,
    "auc": t_auc,
    "load": t_load,
    "core_csr": t_core_csr,
    "core": t_core,
    "core_threads": t_core_threads,
    "core_arch": t_core_arch,
    "set_blas": t_set_blas,
}
