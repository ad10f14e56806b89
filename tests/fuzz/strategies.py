"""Hypothesis strategies of hostile inputs (parent side): each draws one case ``(target, kwargs)`` for
``targets.TARGETS``. Valid inputs are mixed in on purpose: they must give correct results, and a
hostile spelling of a valid input (another dtype, a non-contiguous view, a list) must give the same.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from oracle import BrokenSparse

N_USERS, N_ITEMS = 30, 20  # the child's fitted models (targets.py)
MODELS = ["popular", "als", "als-cholesky", "als-explicit", "sgdmf", "bpr", "warp", "mlp", "mlp-gmf"]
FACTOR_MODELS = ["als", "als-cholesky", "als-explicit", "sgdmf", "bpr", "warp"]

INT_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
BAD_INTS = [-1, -(2**31), 2**31 - 1, 2**31, 2**32 + 1, 2**63 - 1, -(2**63), 10**5, 10**6]
ODD_SCALARS = [
    None,
    "3",
    1.5,
    2.0,
    math.nan,
    math.inf,
    True,
    False,
    [3],
    b"1",
    np.float64(2.0),
    np.int64(3),
    np.uint64(2**64 - 1),
    2**64,
    10**30,
]


def small_ints(low: int, high: int):
    return st.integers(low, high)


def int_arg(valid_low: int, valid_high: int):
    """An int argument: mostly valid, else out of range, absurd, of another type."""
    return st.one_of(
        small_ints(valid_low, valid_high),
        st.sampled_from(BAD_INTS + ODD_SCALARS + [0, valid_high + 1, valid_low - 1]),
        small_ints(valid_low, valid_high).map(np.int32),
    )


def threads_arg():
    return st.one_of(st.integers(0, 3), st.sampled_from([-1, 65, 2**31 - 1, 2**63, 1.5, True, "2", None, np.int64(2)]))


@st.composite
def ids_arg(draw, n: int, max_size: int = 6):
    """Ids into [0, n): valid ones in many spellings, or some out of range, fractional, 2-D, ..."""
    values = draw(st.lists(st.integers(0, n - 1), max_size=max_size))
    kind = draw(st.sampled_from(["list", "array", "array", "bad", "bad", "float", "scalar", "odd", "2d", "empty"]))
    if kind == "list":
        return values
    if kind == "array":
        return np.array(values, dtype=draw(st.sampled_from(INT_DTYPES)))
    if kind == "bad":
        bad = draw(st.sampled_from([-1, n, n + 7, 2**31, 2**32 + 1, 2**32, 2**63 - 1, -(2**63)]))
        pos = draw(st.integers(0, len(values)))
        return np.array(values[:pos] + [bad] + values[pos:], dtype=np.int64)
    if kind == "float":
        frac = draw(st.sampled_from([0.0, 0.5, math.nan]))
        return np.array(values + [1], dtype=np.float64) + frac
    if kind == "scalar":
        return draw(st.sampled_from([values[0] if values else 0, np.int64(n - 1), n, -1]))
    if kind == "odd":
        return draw(
            st.sampled_from(
                [
                    None,
                    "0",
                    [[0, 1]],
                    np.array([True, False]),
                    np.array(["0"]),
                    np.array([0, 1], dtype=object),
                    [0, None],
                    2**70,
                ]
            )
        )
    if kind == "2d":
        return np.array(values + [0], dtype=np.int64).reshape(1, -1)
    return draw(st.sampled_from([[], np.zeros(0, np.int64), np.zeros(0, np.float64)]))


@st.composite
def dense_arg(draw, shape: tuple[int, int]):
    """A real (rows, cols) matrix: small integers (exact in float32), in hostile spellings or with bad values."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    a = rng.integers(-3, 4, shape).astype(np.float32)
    kind = draw(st.sampled_from(["plain", "plain", "dtype", "layout", "value", "value", "shape", "odd"]))
    if kind == "dtype":
        return a.astype(
            draw(
                st.sampled_from(
                    [
                        "float16",
                        "float64",
                        "int8",
                        "int32",
                        "int64",
                        "uint8",
                        "bool",
                        "complex64",
                        "object",
                        "<U3",
                        "datetime64[s]",
                    ]
                )
            )
        )
    if kind == "layout":
        return draw(
            st.sampled_from(
                [np.asfortranarray(a), np.repeat(a, 2, axis=1)[:, ::2], a.tolist(), np.ascontiguousarray(a[::-1])[::-1]]
            )
        )
    if kind == "value" and a.size:
        bad = draw(st.sampled_from([math.nan, math.inf, -math.inf, 3e38, -3e38, 1e20, 1e30, 1e-45]))
        out = a.astype(np.float64)
        out.flat[draw(st.integers(0, a.size - 1))] = bad
        return out.astype(draw(st.sampled_from([np.float32, np.float64])))
    if kind == "shape":
        return draw(
            st.sampled_from(
                [
                    a[:, :-1] if shape[1] > 1 else a[:, :0],
                    a[:0],
                    a[:1].ravel(),
                    a[None],
                    a.ravel(),
                    np.zeros((shape[0], 0), np.float32),
                ]
            )
        )
    if kind == "odd":
        return draw(st.sampled_from([None, "a", 3.0, [[1, 2], [3]], sp.csr_matrix(a)]))
    return a


@st.composite
def sparse_arg(draw, shape: tuple[int, int], integer_values: bool = True):
    """A sparse (rows, cols) matrix: valid in several formats and dtypes, or broken (indices out of range,
    decreasing row pointers, inconsistent lengths), or with bad values, or not sparse at all."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n, m = shape
    dense = (rng.random(shape) < 0.3) * rng.integers(1, 6, shape)
    dense[0, 0] = 2  # never empty
    base = sp.csr_matrix(dense.astype(np.float32))
    kind = draw(
        st.sampled_from(
            ["plain", "plain", "format", "dtype", "value", "value", "dup", "broken", "broken", "broken", "shape", "odd"]
        )
    )
    if kind == "format":
        return base.asformat(draw(st.sampled_from(["coo", "csc", "lil", "dok", "bsr"])))
    if kind == "dtype":
        return base.astype(draw(st.sampled_from(["float64", "int32", "int64", "bool", "complex64", "uint8"])))
    if kind == "value":
        out = base.astype(np.float64)
        out.data[draw(st.integers(0, out.nnz - 1))] = draw(
            st.sampled_from([math.nan, math.inf, -math.inf, -1.0, 0.0, 3e38, 1e30, -3e38, 1e20, 1e-40])
        )
        return out
    if kind == "dup":  # duplicates and unsorted columns in valid structure
        coo = base.tocoo()
        rows = np.concatenate([coo.row, coo.row[:2]])
        cols = np.concatenate([coo.col, coo.col[:2]])
        vals = np.concatenate([coo.data, coo.data[:2]])
        order = rng.permutation(len(rows))
        m2 = sp.coo_matrix((vals[order], (rows[order], cols[order])), shape=shape)
        csr = m2.tocsr()
        csr.has_canonical_format = False
        return (
            csr
            if draw(st.booleans())
            else BrokenSparse(
                (
                    "csr",
                    np.searchsorted(np.sort(rows), np.arange(n + 1)),
                    cols[np.argsort(rows, kind="stable")],
                    vals[np.argsort(rows, kind="stable")].astype(np.float32),
                    shape,
                )
            )
        )
    if kind == "broken":
        indptr, indices, data = base.indptr.copy(), base.indices.copy(), base.data.copy()
        how = draw(
            st.sampled_from(
                [
                    "col past end",
                    "negative col",
                    "huge col",
                    "indptr decreasing",
                    "indptr short",
                    "indptr last",
                    "indptr first",
                    "data short",
                    "indptr float",
                    "indices 64-bit",
                    "indptr huge",
                ]
            )
        )
        if how == "col past end":
            indices[draw(st.integers(0, len(indices) - 1))] = m + draw(st.integers(0, 3))
        elif how == "negative col":
            indices[draw(st.integers(0, len(indices) - 1))] = -1
        elif how == "huge col":
            indices = indices.astype(np.int64)
            indices[draw(st.integers(0, len(indices) - 1))] = 2**32 + 1
        elif how == "indptr decreasing" and n >= 2:
            indptr[1] = indptr[-1]
        elif how == "indptr short":
            indptr = indptr[:-1]
        elif how == "indptr last":
            indptr[-1] += 3
        elif how == "indptr first":
            indptr[0] = 1
        elif how == "data short":
            data = data[:-1]
        elif how == "indptr float":
            indptr = indptr.astype(np.float64)
        elif how == "indices 64-bit":
            indices = indices.astype(np.int64)  # valid values: fine
        elif how == "indptr huge":
            indptr = indptr.astype(np.int64)
            indptr[-1] = 2**40
        return BrokenSparse(("csr", indptr, indices, data, shape))
    if kind == "shape":
        return draw(
            st.sampled_from(
                [
                    base[:, :-1],
                    base[:-1],
                    sp.csr_matrix((n, m + 1), dtype=np.float32),
                    sp.csr_matrix((0, m), dtype=np.float32),
                    sp.csr_matrix(shape, dtype=np.float32),
                ]
            )
        )
    if kind == "odd":
        return draw(st.sampled_from([dense.astype(np.float32), None, "m", dense.tolist()]))
    return base


def float_arg():
    return st.one_of(
        st.floats(0.01, 10.0),
        st.sampled_from(
            [math.nan, math.inf, -math.inf, -1.0, 0.0, 1e-300, 1e300, 3e38, "1", None, True, 1, np.float32(0.5), 1e308]
        ),
    )


# -- one strategy per target -----------------------------------------------------------------------
@st.composite
def topk_case(draw):
    n, m, f = draw(st.integers(0, 5)), draw(st.integers(1, 8)), draw(st.integers(1, 4))
    kw = {
        "queries": draw(dense_arg((n, f))),
        "items": draw(dense_arg((m, f))),
        "k": draw(st.one_of(st.integers(1, m), int_arg(1, m))),
        "threads": draw(threads_arg()),
    }
    if draw(st.booleans()):
        kw["exclude"] = draw(sparse_arg((n, m))) if n else sp.csr_matrix((0, m))
    if draw(st.booleans()):
        kw["candidates"] = draw(
            st.one_of(
                ids_arg(m),
                ids_arg(m).map(lambda c: np.tile(np.asarray(c), (n, 1)) if isinstance(c, (list, np.ndarray)) else c),
            )
        )
    return "topk", kw


@st.composite
def recommend_case(draw):
    kw = {
        "model": draw(st.sampled_from(MODELS)),
        "users": draw(ids_arg(N_USERS)),
        "k": draw(st.one_of(st.integers(1, 25), int_arg(1, 25))),
        "threads": draw(threads_arg()),
        "exclude_seen": draw(st.booleans()),
    }
    if draw(st.booleans()):
        kw["items"] = draw(ids_arg(N_ITEMS))
    return "recommend", kw


@st.composite
def model_call_case(draw):
    which = draw(st.sampled_from(["recommend_all", "score", "similar"]))
    if which == "recommend_all":
        return which, {
            "model": draw(st.sampled_from(MODELS)),
            "k": draw(st.one_of(st.integers(1, 25), int_arg(1, 25))),
            "batch_size": draw(int_arg(1, 40)),
            "threads": draw(threads_arg()),
        }
    if which == "score":
        users = draw(ids_arg(N_USERS))
        items = draw(
            st.one_of(
                ids_arg(N_ITEMS),
                st.just(np.zeros(len(np.atleast_1d(users)), np.int64))
                if isinstance(users, (list, np.ndarray))
                else ids_arg(N_ITEMS),
            )
        )
        return which, {"model": draw(st.sampled_from(MODELS)), "users": users, "items": items}
    side = draw(st.sampled_from(["items", "users"]))
    return which, {
        "model": draw(st.sampled_from(FACTOR_MODELS)),
        "side": side,
        "ids": draw(ids_arg(N_ITEMS if side == "items" else N_USERS)),
        "k": draw(st.one_of(st.integers(1, 40), int_arg(1, 40))),
        "threads": draw(threads_arg()),
    }


PARAMS_OF = {
    "popular": [],  # MostPopular has no hyperparameter to fuzz but its data
    "als": ["epochs", "factors", "regularization", "alpha", "cg_steps", "threads", "alpha0", "nu"],
    "als-cholesky": ["factors", "regularization", "threads"],
    "als-explicit": ["epochs", "regularization", "threads"],
    "sgdmf": ["epochs", "factors", "lr", "regularization", "bias_regularization", "threads"],
    "bpr": ["epochs", "factors", "lr", "regularization", "negatives", "threads"],
    "warp": ["epochs", "lr", "max_sampled", "threads"],
    "mlp": ["epochs", "factors", "lr", "negatives", "batch_size", "regularization", "threads"],
    "mlp-gmf": ["epochs", "lr", "negatives", "threads"],
}


@st.composite
def fit_case(draw):
    model = draw(st.sampled_from(MODELS))
    if draw(st.booleans()) or not PARAMS_OF[model]:
        return "fit", {"model": model, "interactions": draw(sparse_arg((N_USERS, N_ITEMS)))}
    param = draw(st.sampled_from(PARAMS_OF[model]))
    if param == "threads":
        value = draw(threads_arg())
    elif param in ("epochs", "factors", "negatives", "batch_size", "cg_steps", "max_sampled"):
        value = draw(int_arg(1, 4))
    else:
        value = draw(float_arg())
    return "fit", {"model": model, "param": param, "value": value}


@st.composite
def partial_fit_case(draw):
    model = draw(st.sampled_from(["als", "sgdmf", "bpr", "als-items"]))
    side = "items" if model == "als-items" else "users"
    model = "als" if model == "als-items" else model
    n_ids, width = (N_USERS, N_ITEMS) if side == "users" else (N_ITEMS, N_USERS)
    ids = draw(st.one_of(ids_arg(n_ids + 3), st.sampled_from([[2**31], [2**40], [-1], [1, 1]])))
    n = len(np.atleast_1d(np.asarray(ids, dtype=object))) if ids is not None and not isinstance(ids, str) else 1
    rows = draw(sparse_arg((max(n, 1), width)))
    return "partial_fit", {"model": model, "ids": ids, "rows": rows, "side": side}


@st.composite
def data_case(draw):
    which = draw(st.sampled_from(["interactions", "from_scipy", "transform", "split"]))
    if which == "interactions":
        users = draw(ids_arg(7, max_size=5))
        n = len(users) if isinstance(users, (list, np.ndarray)) and np.ndim(users) == 1 else 1
        items = draw(st.one_of(ids_arg(5, max_size=5), st.just(list(range(n))) if n <= 5 else ids_arg(5)))
        kw = {"users": users, "items": items}
        if draw(st.booleans()):
            w = np.ones(len(np.atleast_1d(np.asarray(items, dtype=object))), np.float64)
            w[...] = draw(st.sampled_from([1.0, 2.5, math.nan, math.inf, -1.0, 3e38]))
            kw["weights"] = w
        return which, kw
    if which == "from_scipy":
        return which, {"matrix": draw(sparse_arg((6, 5)))}
    if which == "transform":
        from targets import TRANSFORMS  # the child's table, importable without fixtures

        fn = draw(st.sampled_from(sorted(TRANSFORMS)))
        params = {p: draw(st.one_of(st.floats(0.1, 5.0), float_arg())) for p in TRANSFORMS[fn] if draw(st.booleans())}
        return which, {"fn": fn, "csr": draw(sparse_arg((8, 6))), "params": params}
    fn = draw(st.sampled_from(["random_holdout", "leave_last_out", "temporal", "strong_generalization"]))
    frac = st.one_of(st.floats(0.05, 0.95), st.sampled_from([0.0, 1.0, -0.5, 2.0, math.nan, math.inf, "0.2", None]))
    if fn == "random_holdout":
        kw = {"test_fraction": draw(frac), "seed": draw(st.one_of(st.integers(0, 100), st.sampled_from([-1, 2**64])))}
    elif fn == "leave_last_out":
        kw = {"n": draw(int_arg(1, 3))}
    elif fn == "temporal":
        kw = (
            {
                "cutoff": draw(
                    st.one_of(st.integers(-5, 120), st.sampled_from([math.nan, math.inf, -math.inf, "x", None, 1e300]))
                )
            }
            if draw(st.booleans())
            else {"test_fraction": draw(frac)}
        )
    else:
        kw = {"test_users_fraction": draw(frac), "fold_in_fraction": draw(frac)}
    return "split", {"fn": fn, "kwargs": kw}


@st.composite
def metric_case(draw):
    n, m = draw(st.integers(1, 5)), draw(st.integers(2, 8))
    if draw(st.integers(0, 5)) == 0:
        return "auc", {
            "scores": draw(dense_arg((n, m))),
            "test": draw(sparse_arg((n, m))),
            "batch_size": draw(st.one_of(st.none(), int_arg(1, 4))),
        }
    from targets import METRICS

    k = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    rec = rng.integers(-1, m, (n, k))
    kind = draw(st.sampled_from(["ok", "ok", "out", "dtype", "shape"]))
    if kind == "out":
        rec[rng.integers(0, n), rng.integers(0, k)] = draw(st.sampled_from([m, m + 5, -2, 2**32, 2**62]))
    elif kind == "dtype":
        rec = rec.astype(draw(st.sampled_from(["int32", "uint8", "float64", "bool"])))
    elif kind == "shape":
        rec = draw(st.sampled_from([rec[0], rec[:, :0], rec[None], rec.tolist()]))
    kw = {
        "fn": draw(st.sampled_from(METRICS)),
        "recommended_ids": rec,
        "test": draw(sparse_arg((n, m))),
        "k": draw(st.one_of(st.none(), int_arg(1, k))),
    }
    if draw(st.integers(0, 3)) == 0:
        kw["users"] = draw(ids_arg(n))
    return "metric", kw


META_EDITS = [
    (["params", "threads"], 10**6),
    (["params", "threads"], -3),
    (["params", "factors"], -1),
    (["params", "factors"], 10**9),
    (["params", "epochs"], "x"),
    (["params"], []),
    (["class"], "Recommender"),
    (["class"], None),
    (["format_version"], 0),
    (["arrays", "train_shape"], ["int64", [3]]),
    (["arrays", "train_indptr"], ["float64", [31]]),
    (["arrays"], {}),
    (["params", "device"], "cuda"),
    (["params", "seed"], 2**64),
    (["params", "layers"], [10**6]),
    (["params", "layers"], [0]),
]


@st.composite
def load_case(draw):
    model = draw(st.sampled_from(MODELS))
    kind = draw(st.sampled_from(["truncate", "flip", "flip", "meta", "array"]))
    if kind == "truncate":
        damage = ("truncate", draw(st.floats(0, 0.999)))
    elif kind == "flip":
        damage = ("flip", draw(st.lists(st.tuples(st.floats(0, 0.999), st.integers(1, 255)), min_size=1, max_size=4)))
    elif kind == "meta":
        path, value = draw(st.sampled_from(META_EDITS))
        damage = ("meta", path, value)
    else:
        name = draw(st.sampled_from(["train_data", "train_indices", "train_indptr", "train_shape"]))
        value = draw(
            st.sampled_from(
                [
                    np.zeros(3, np.complex64),
                    np.array([3e38], np.float32),
                    np.array(["a"]),
                    np.zeros(2, "datetime64[s]"),
                    np.array([2**40, -1], np.int64),
                    np.array([30, 2**31 + 5], np.int64),
                    np.zeros((2, 2), np.float32),
                ]
            )
        )
        damage = ("array", name, value)
    return "load", {"model": model, "damage": damage}


@st.composite
def core_csr_case(draw):
    n, m = draw(st.integers(0, 5)), draw(st.integers(0, 6))
    spec = draw(sparse_arg((max(n, 1), max(m, 1)))) if draw(st.booleans()) else None
    if isinstance(spec, BrokenSparse):
        _, indptr, indices, data, shape = spec
    elif sp.issparse(spec) and spec.format == "csr":
        indptr, indices, data, shape = spec.indptr, spec.indices, spec.data, spec.shape
    else:
        base = sp.random(n, m, density=0.4, format="csr", random_state=draw(st.integers(0, 2**31)), dtype=np.float32)
        indptr, indices, data, shape = base.indptr, base.indices, base.data, base.shape
    edit = draw(st.sampled_from(["none", "none", "data None", "shape", "dtype", "list"]))
    if edit == "data None":
        data = None
    elif edit == "shape":
        shape = draw(st.sampled_from([(-1, 3), (2**31, 2), (2, 2**31), (1, 2, 3), (2.0, 3), "x", (shape[0], 0)]))
    elif edit == "dtype":
        indices = np.asarray(indices).astype(draw(st.sampled_from(["float64", "uint64", "int8", "bool"])))
    elif edit == "list":
        indptr = list(np.asarray(indptr).tolist())
    return "core_csr", {"indptr": indptr, "indices": indices, "data": data, "shape": shape}


# _core function -> its hostile-able arguments
CORE_FUNCTIONS = {
    "als_gram": ["Y"],
    "als_implicit_solve": ["Y", "YtY", "X", "alpha", "regularization", "cg_steps", "prior", "prior_weight"],
    "als_implicit_loss": ["X", "Y", "YtY", "alpha", "regularization"],
    "als_explicit_solve": ["Y", "other_bias", "X", "own_bias", "regularization", "global_mean"],
    "als_explicit_sse": ["X", "own_bias", "Y", "other_bias", "global_mean"],
    "sgd_mf_predict": ["users", "items", "user_factors", "item_factors", "user_bias", "item_bias"],
    "mlp_score_pairs": ["user_emb", "item_emb", "dense", "users", "items"],
    "mlp_score_all": ["user_emb", "item_emb", "dense", "users"],
    "mlp_sample_epoch": ["negatives", "seed"],
    "mlp_loss_grad": ["user_emb", "item_emb", "dense", "users", "items", "labels", "l2"],
    "topk_f32": ["queries", "items", "k", "subset", "candidates"],
    "sgd_sample_negatives": ["users", "seed"],
    "sgd_mf_epoch": ["user_factors", "item_factors", "user_bias", "item_bias", "lr", "regularization", "seed"],
    "sgd_rank_epoch": ["user_factors", "item_factors", "item_bias", "lr", "negatives", "max_sampled"],
    "mlp_train_epoch": [
        "user_emb",
        "item_emb",
        "dense",
        "m_user",
        "users",
        "items",
        "labels",
        "lr",
        "batch_size",
        "step",
    ],
}
ID_ARGS = {"users", "items", "subset", "candidates"}
ARRAY_ARGS = {
    "prior",
    "Y",
    "YtY",
    "X",
    "other_bias",
    "own_bias",
    "user_factors",
    "item_factors",
    "user_bias",
    "item_bias",
    "user_emb",
    "item_emb",
    "dense",
    "m_user",
    "labels",
    "queries",
}


@st.composite
def core_case(draw):
    """One ``_core`` argument replaced: a wrong value (must be refused naming it) or an equivalent one."""
    fn = draw(st.sampled_from(sorted(CORE_FUNCTIONS)))
    if draw(st.integers(0, 9)) == 0:  # the architecture constructor
        dims = st.one_of(st.integers(0, 4), st.sampled_from([-1, 2**31, 2**63, 10**6, 1.5, None]))
        return "core_arch", {
            "mode": draw(st.sampled_from(["gmf", "mlp", "neumf"])),
            "dim_gmf": draw(dims),
            "dim_mlp": draw(dims),
            "layers": draw(st.one_of(st.lists(dims, max_size=3), dims)),
        }
    if draw(st.integers(0, 9)) == 0:
        return "core_threads", {
            "fn": "max_threads",
            "threads": draw(st.sampled_from([-1, 0, 2, 65, 10**5, 2**31, 2**63, 1.5, None, True])),
        }
    if draw(st.integers(0, 4)) == 0 and fn not in ("mlp_loss_grad", "sgd_sample_negatives"):
        return "core_threads", {
            "fn": fn,
            "threads": draw(st.sampled_from([-1, 0, 2, 65, 10**5, 2**31 - 1, 2**31, 1.5, None, True])),
        }
    arg = draw(st.sampled_from(CORE_FUNCTIONS[fn]))
    if fn in ("sgd_mf_predict",) and arg in ("users", "items") or arg in ID_ARGS:
        n = N_USERS if arg == "users" else N_ITEMS
        kind = draw(st.sampled_from(["64-bit wrap", "negative", "past end", "fraction", "int32", "list"]))
        base = [0, 5, min(n - 1, 29)] if arg == "users" else [1, n - 1, 3]
        if fn == "sgd_sample_negatives":
            base = [0, 5, 29]
        value, equivalent = {
            "64-bit wrap": (np.array([2**32 + base[0], base[1], base[2]], np.int64), False),
            "negative": (np.array([-1, base[1], base[2]], np.int64), False),
            "past end": (np.array([base[0], n + 3, base[2]], np.int64), False),
            "fraction": (np.array(base, np.float64) + 0.5, False),
            "int32": (np.array(base, np.int32), True),
            "list": (list(base), True),
        }[kind]
        if arg in ("subset", "candidates") and kind == "list":
            value, equivalent = np.array([1, 2, 3], np.int64), None  # valid, but not the baseline's (None) call
        if fn == "sgd_mf_predict" and kind in ("past end",):
            equivalent = True  # documented: out-of-range ids count as unknown (bias fallback)
        return "core", {"fn": fn, "arg": arg, "value": value, "equivalent": equivalent}
    if arg in ARRAY_ARGS:
        kind = draw(
            st.sampled_from(
                [
                    "float16",
                    "float64",
                    "non-contiguous",
                    "fortran",
                    "read-only",
                    "wrong shape",
                    "nan",
                    "huge",
                    "none",
                    "list",
                ]
            )
        )
        return "core", {"fn": fn, "arg": arg, "value": ("array", kind), "equivalent": None}
    value = draw(st.sampled_from([math.nan, math.inf, -1.0, 2**31, 2**63, -(2**31), 10**9, 1.5, None, "1"]))
    return "core", {"fn": fn, "arg": arg, "value": value, "equivalent": False}


@st.composite
def explain_case(draw):
    """``explain`` (its own stream, so that adding it left the seeded cases of ``any_case`` as they were)."""
    return "explain", {"model": draw(st.sampled_from(MODELS)), "user": draw(int_arg(0, N_USERS - 1)),
                       "item": draw(int_arg(0, N_ITEMS - 1))}  # fmt: skip


def any_case():
    return st.one_of(
        topk_case(),
        recommend_case(),
        model_call_case(),
        fit_case(),
        partial_fit_case(),
        data_case(),
        metric_case(),
        load_case(),
        core_csr_case(),
        core_case(),
    )


def generate(n: int, seed_value: int, strategy=None) -> list:
    """``n`` cases drawn from ``strategy`` (default ``any_case()``), the same ones for the same seed."""
    cases: list = []

    @seed(seed_value)
    @settings(
        max_examples=n, database=None, phases=[Phase.generate], deadline=None, suppress_health_check=list(HealthCheck)
    )
    @given(any_case() if strategy is None else strategy)
    def collect(case):
        cases.append(case)

    collect()
    return cases
