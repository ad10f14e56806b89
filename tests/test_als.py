"""ALS: the C++ solves against dense numpy normal equations, objective descent, exact fold-in, ALS-specific
input checks, and an accuracy check on MovieLens-100K (what every model does alike: test_contract.py)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import data_path
from hypothesis import given, settings
from hypothesis import strategies as st

import recforge as rf
from recforge import _core
from recforge._ops import get_ops

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


# ---- numpy references -----------------------------------------------------------------------
def reference_lambda(counts, n_cols, reg, alpha0, nu, scaling):
    """lambda_u of the docstring: reg (n_u + alpha0 n_cols)^nu ("all_pairs") or reg n_u^nu ("observed", ALS-WR)."""
    counts = np.asarray(counts, np.float64)
    return reg * (counts if scaling == "observed" else counts + alpha0 * n_cols) ** nu


def implicit_reference(m: sp.csr_matrix, Y: np.ndarray, alpha, reg, alpha0=1.0, nu=0.0, scaling="all_pairs"):
    """Exact iALS rows in float64: (alpha0 YᵀY + sum (c - alpha0) y yᵀ + lambda_u I) x = sum c y."""
    Y = Y.astype(np.float64)
    G = Y.T @ Y
    f = Y.shape[1]
    out = np.zeros((m.shape[0], f))
    for u in range(m.shape[0]):
        idx = m.indices[m.indptr[u] : m.indptr[u + 1]]
        if not len(idx):  # no entries: x = 0 (the kernel's convention; A may be singular at alpha0 = 0)
            continue
        c = 1.0 + alpha * m.data[m.indptr[u] : m.indptr[u + 1]].astype(np.float64)
        lam = reference_lambda(len(idx), m.shape[1], reg, alpha0, nu, scaling)
        A = alpha0 * G + (Y[idx].T * (c - alpha0)) @ Y[idx] + lam * np.eye(f)
        out[u] = np.linalg.solve(A, Y[idx].T @ c)
    return out


def explicit_reference(m: sp.csr_matrix, Y, other_bias, mu, reg):
    """Exact explicit rows: [x, b] minimising sum (r - mu - b_i - [y_i, 1].[x, b])^2 + reg n (|x|^2 + b^2)."""
    f = Y.shape[1]
    X, B = np.zeros((m.shape[0], f)), np.zeros(m.shape[0])
    for u in range(m.shape[0]):
        lo, hi = m.indptr[u], m.indptr[u + 1]
        if hi == lo:
            continue
        idx = m.indices[lo:hi]
        Z = np.hstack([Y[idx].astype(np.float64), np.ones((hi - lo, 1))])
        t = m.data[lo:hi] - mu - other_bias[idx]
        w = np.linalg.solve(Z.T @ Z + reg * (hi - lo) * np.eye(f + 1), Z.T @ t)
        X[u], B[u] = w[:f], w[f]
    return X, B


def implicit_objective(m: sp.csr_matrix, X, Y, alpha, reg, alpha0=1.0, nu=0.0, scaling="all_pairs") -> float:
    """The full iALS objective, dense over every pair (tiny problems only)."""
    X, Y = X.astype(np.float64), Y.astype(np.float64)
    pred = X @ Y.T
    dense = m.toarray().astype(np.float64)
    stored = np.zeros(dense.shape, bool)
    stored[np.repeat(np.arange(m.shape[0]), np.diff(m.indptr)), m.indices] = True
    c = 1.0 + alpha * dense
    data = np.where(stored, c * (1 - pred) ** 2, alpha0 * pred**2).sum()
    nu_u, nu_i = np.diff(m.indptr), np.bincount(m.indices, minlength=m.shape[1])
    lam_u = reference_lambda(nu_u, m.shape[1], reg, alpha0, nu, scaling)
    lam_i = reference_lambda(nu_i, m.shape[0], reg, alpha0, nu, scaling)
    return data + lam_u @ (X**2).sum(1) + lam_i @ (Y**2).sum(1)


def random_csr(rng, rows, cols, density, low=1.0, high=5.0, integer=False) -> sp.csr_matrix:
    m = sp.random(rows, cols, density=density, format="csr", dtype=np.float32, random_state=rng)
    m.data = (rng.integers(int(low), int(high) + 1, m.nnz) if integer else rng.uniform(low, high, m.nnz)).astype(
        np.float32
    )
    return m


def empty_row(m: sp.csr_matrix, row: int) -> sp.csr_matrix:
    keep = np.ones(m.shape[0], np.float32)
    keep[row] = 0
    out = (sp.diags(keep) @ m).tocsr()
    out.eliminate_zeros()
    return out


def kernel_csr(m: sp.csr_matrix) -> _core.Csr:
    return _core.Csr(m.indptr, m.indices, m.data, m.shape)


def solve_rows(m, Y, X=None, solver="cholesky", cg_steps=3, alpha=2.0, reg=0.1, alpha0=1.0, nu=0.0, threads=2,
               scaling="all_pairs"):  # fmt: skip
    X = np.zeros((m.shape[0], Y.shape[1]), np.float32) if X is None else X.copy()
    Y = np.ascontiguousarray(Y, np.float32)
    _core.als_implicit_solve(kernel_csr(m), Y, _core.als_gram(Y, threads), X, alpha, reg, alpha0, nu,
                             _core.RegScaling.__members__[scaling], _core.Solver.__members__[solver], cg_steps,
                             threads)  # fmt: skip
    return X


# ---- the solves -------------------------------------------------------------------------------
@pytest.mark.parametrize("f", [5, 32, 64])  # 5: the generic BLAS path; 32/64: the tiled kernels
@pytest.mark.parametrize(
    "alpha0,nu,scaling",
    [(1.0, 0.0, "all_pairs"), (0.3, 0.0, "all_pairs"), (3.0, 0.0, "all_pairs"), (1.0, 0.7, "all_pairs"),
     (1.0, 1.0, "observed"), (0.3, 0.7, "observed"), (0.0, 1.0, "observed")],
)  # fmt: skip
def test_cholesky_matches_dense_normal_equations(rng, f, alpha0, nu, scaling):
    m = random_csr(rng, 40, 90, 0.15, 0.0, 4.0)
    m = empty_row(m, 3)
    Y = rng.standard_normal((90, f)).astype(np.float32) * 0.3
    got = solve_rows(m, Y, alpha=2.0, reg=0.1, alpha0=alpha0, nu=nu, scaling=scaling)
    want = implicit_reference(m, Y, 2.0, 0.1, alpha0, nu, scaling)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4 * np.abs(want).max())
    assert not got[3].any()  # empty row: exactly zero


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(1, 12),
    cols=st.integers(1, 40),
    f=st.sampled_from([1, 3, 32]),
    density=st.floats(0.0, 1.0),
    alpha=st.floats(0.0, 10.0),
    reg=st.floats(0.01, 5.0),
    seed=st.integers(0, 999),
)
def test_cholesky_property(rows, cols, f, density, alpha, reg, seed):
    """Backward error of the float32 solve against the float64 normal equations: small for any
    conditioning (the forward error of an ill-conditioned system need not be)."""
    rng = np.random.default_rng(seed)
    m = random_csr(rng, rows, cols, density, 0.0, 3.0)
    Y = rng.standard_normal((cols, f)).astype(np.float32)
    X = solve_rows(m, Y, alpha=alpha, reg=reg).astype(np.float64)
    Y64 = Y.astype(np.float64)
    for u in range(rows):
        idx = m.indices[m.indptr[u] : m.indptr[u + 1]]
        c = 1.0 + alpha * m.data[m.indptr[u] : m.indptr[u + 1]].astype(np.float64)
        A = Y64.T @ Y64 + (Y64[idx].T * (c - 1)) @ Y64[idx] + reg * np.eye(f)
        b = Y64[idx].T @ c
        # Componentwise scale: the sums forming A and b can cancel (b ~ 0 from terms ~ 10), and
        # float32 rounding is relative to the summands, not to the (small) result.
        aY, aYi = np.abs(Y64), np.abs(Y64[idx])
        A_abs = aY.T @ aY + (aYi.T * np.abs(c - 1)) @ aYi + reg * np.eye(f)
        scale = np.linalg.norm(A_abs @ np.abs(X[u])) + np.linalg.norm(aYi.T @ np.abs(c))
        assert np.linalg.norm(A @ X[u] - b) <= 1e-5 * scale + 1e-30


def test_cg_approaches_exact_solution(rng):
    f = 8
    m = random_csr(rng, 30, 60, 0.2, 0.0, 3.0)
    Y = rng.standard_normal((60, f)).astype(np.float32) * 0.5
    exact = implicit_reference(m, Y, 2.0, 0.1)
    errors = [np.abs(solve_rows(m, Y, solver="cg", cg_steps=s) - exact).max() for s in range(1, f + 1)]
    assert errors[-1] < 1e-3 * np.abs(exact).max()  # f steps: CG is exact up to rounding
    assert errors[-1] < errors[0] / 100
    # monotone up to rounding once near the solution
    assert all(b <= a * 1.01 + 1e-5 for a, b in zip(errors, errors[1:]))


def test_cg_warm_start_improves(rng):
    m = random_csr(rng, 30, 60, 0.2, 0.0, 3.0)
    Y = rng.standard_normal((60, 16)).astype(np.float32) * 0.5
    exact = implicit_reference(m, Y, 2.0, 0.1)
    x1 = solve_rows(m, Y, solver="cg", cg_steps=2)
    x2 = solve_rows(m, Y, X=x1, solver="cg", cg_steps=2)  # continues from x1
    assert np.abs(x2 - exact).max() < np.abs(x1 - exact).max()


@pytest.mark.parametrize("f", [4, 32])
def test_explicit_matches_dense_with_biases(rng, f):
    m = random_csr(rng, 30, 50, 0.2, 1, 5, integer=True)
    m = empty_row(m, 2)
    Y = rng.standard_normal((50, f)).astype(np.float32) * 0.3
    ib = rng.standard_normal(50).astype(np.float32) * 0.2
    X, B = np.zeros((30, f), np.float32), np.full(30, 7.0, np.float32)
    _core.als_explicit_solve(kernel_csr(m), Y, ib, X, B, 0.1, 3.5, 2)
    wx, wb = explicit_reference(m, Y, ib, 3.5, 0.1)
    np.testing.assert_allclose(X, wx, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(B, wb, rtol=1e-4, atol=1e-4)
    assert B[2] == 0 and not X[2].any()


@pytest.mark.parametrize("scaling", ["all_pairs", "observed"])
def test_fit_last_half_step_is_the_exact_item_solve(rng, scaling):
    m = random_csr(rng, 50, 40, 0.15, 0.0, 2.0)
    model = rf.ALS(factors=6, epochs=2, solver="cholesky", alpha=3.0, regularization=0.2, alpha0=0.5, nu=0.3,
                   regularization_scaling=scaling, threads=2).fit(m, progress=False)  # fmt: skip
    want = implicit_reference(m.T.tocsr(), model.user_factors, 3.0, 0.2, 0.5, 0.3, scaling)
    np.testing.assert_allclose(model.item_factors, want, rtol=1e-4, atol=1e-5)


# ---- objective --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "solver,alpha0,nu,scaling",
    [("cholesky", 1.0, 0.0, "all_pairs"), ("cg", 1.0, 0.0, "all_pairs"), ("cholesky", 0.2, 0.5, "all_pairs"),
     ("cg", 0.2, 0.5, "all_pairs"), ("cholesky", 1.0, 1.0, "observed"), ("cg", 0.2, 1.0, "observed")],
)  # fmt: skip
def test_objective_decreases_every_iteration(rng, solver, alpha0, nu, scaling):
    m = random_csr(rng, 60, 45, 0.1, 0.0, 3.0)
    states, reported = [], []

    def callback(it, seconds, loss):
        assert seconds >= 0
        states.append((model.user_factors.copy(), model.item_factors.copy()))
        reported.append(loss)

    model = rf.ALS(
        factors=8,
        epochs=8,
        solver=solver,
        alpha=2.0,
        regularization=0.1,
        alpha0=alpha0,
        nu=nu,
        regularization_scaling=scaling,
        calculate_loss=True,
        threads=1,
    )
    model.fit(m, callback=callback, progress=False)
    objectives = [implicit_objective(m, X, Y, 2.0, 0.1, alpha0, nu, scaling) for X, Y in states]
    assert len(objectives) == 8
    assert all(b <= a * (1 + 1e-6) for a, b in zip(objectives, objectives[1:])), objectives
    assert objectives[-1] < objectives[0]
    np.testing.assert_allclose(np.array(reported) * m.nnz, objectives, rtol=1e-4)


def test_explicit_loss_decreases_and_fits(rng):
    m = random_csr(rng, 80, 60, 0.2, 1, 5, integer=True)
    losses = []
    model = rf.ALS(factors=4, epochs=6, feedback="explicit", regularization=0.05, calculate_loss=True)
    model.fit(m, callback=lambda it, s, loss: losses.append(loss), progress=False)
    assert all(b <= a * (1 + 1e-6) for a, b in zip(losses, losses[1:])), losses
    coo = m.tocoo()
    pred = model.score(coo.row, coo.col)
    rmse = np.sqrt(np.mean((pred - coo.data) ** 2))
    assert rmse < np.std(coo.data) * 0.9  # better than predicting the mean
    assert model.global_bias == pytest.approx(m.data.mean())


# ---- fold-in, partial fit ------------------------------------------------------------------------
@pytest.mark.parametrize("feedback", ["implicit", "explicit"])
def test_partial_fit_users_equals_full_solve(rng, feedback):
    m = random_csr(rng, 40, 30, 0.2, 1, 5, integer=True)
    model = rf.ALS(factors=5, epochs=3, feedback=feedback, solver="cholesky", threads=2).fit(m, progress=False)
    ids = np.array([3, 17, 42])  # 42 >= n_users: grows the model (40, 41 become empty users)
    rows = random_csr(rng, 3, 30, 0.3, 1, 5, integer=True)
    model.partial_fit_users(ids, rows)
    assert model.user_factors.shape == (43, 5) and model.n_users == 43
    if feedback == "implicit":
        want = implicit_reference(rows, model.item_factors, model.alpha, model.regularization)
    else:
        want, wb = explicit_reference(
            rows, model.item_factors, model.item_bias, model.global_bias, model.regularization
        )
        np.testing.assert_allclose(model.user_bias[ids], wb, rtol=1e-4, atol=1e-5)
        assert model.user_bias.shape == (43,)
    np.testing.assert_allclose(model.user_factors[ids], want, rtol=1e-4, atol=1e-5)


def test_observed_scaling_is_als_wr_and_ignores_alpha0(rng):
    """ALS-WR (Spark MLlib's lambda * n_u): lambda_u does not move with alpha0, and at nu = 0 the two
    scalings are the same fit bit for bit (the constant lambda)."""
    m = random_csr(rng, 30, 50, 0.2, 0.0, 3.0)
    Y = rng.standard_normal((50, 8)).astype(np.float32) * 0.3
    Y64 = Y.astype(np.float64)
    for alpha0 in (0.0, 0.5, 2.0):
        got = solve_rows(m, Y, alpha=2.0, reg=0.1, alpha0=alpha0, nu=1.0, scaling="observed")
        want = np.zeros(got.shape)
        for u in range(m.shape[0]):  # the normal equations written out with lambda_u = 0.1 * n_u
            idx = m.indices[m.indptr[u] : m.indptr[u + 1]]
            if not len(idx):
                continue
            c = 1.0 + 2.0 * m.data[m.indptr[u] : m.indptr[u + 1]].astype(np.float64)
            A = alpha0 * Y64.T @ Y64 + (Y64[idx].T * (c - alpha0)) @ Y64[idx] + 0.1 * len(idx) * np.eye(8)
            want[u] = np.linalg.solve(A, Y64[idx].T @ c)
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4 * np.abs(want).max())
    params = dict(factors=6, epochs=2, alpha0=0.5, threads=1, seed=3)
    a = rf.ALS(**params).fit(m, progress=False)
    b = rf.ALS(regularization_scaling="observed", **params).fit(m, progress=False)
    np.testing.assert_array_equal(a.user_factors, b.user_factors)
    np.testing.assert_array_equal(a.item_factors, b.item_factors)


@pytest.mark.parametrize("feedback", ["implicit", "explicit"])
def test_regularization_scaling_survives_save_and_load(rng, tmp_path, feedback):
    m = random_csr(rng, 40, 30, 0.2, 1, 5, integer=True)
    model = rf.ALS(factors=5, epochs=2, nu=1.0, regularization_scaling="observed", feedback=feedback,
                   threads=1).fit(m, progress=False)  # fmt: skip
    model.save(tmp_path / "m.rf")
    back = rf.load(tmp_path / "m.rf")
    assert back.regularization_scaling == "observed" and back.get_params() == model.get_params()
    rows = random_csr(rng, 2, 30, 0.3, 1, 5, integer=True)
    np.testing.assert_array_equal(back.recalculate_user(rows), model.recalculate_user(rows))
    if feedback == "implicit":  # the fold-in solves with lambda_u = reg * n_u
        want = implicit_reference(rows, model.item_factors, model.alpha, model.regularization, model.alpha0, 1.0,
                                  "observed")  # fmt: skip
        np.testing.assert_allclose(back.recalculate_user(rows), want, rtol=1e-4, atol=1e-5)


def test_regularization_scaling_is_validated():
    with pytest.raises(ValueError, match="regularization_scaling must be one of"):
        rf.ALS(regularization_scaling="rendle").fit(sp.eye(4, format="csr"), progress=False)
    m = sp.eye(4, format="csr", dtype=np.float32)
    Y, X = np.ones((4, 2), np.float32), np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match="scaling must be one of"):
        get_ops("cpu").als_implicit_half_step(m, Y, Y.T @ Y, X, alpha=1.0, regularization=0.1, alpha0=1.0, nu=1.0,
                                              solver="cg", cg_steps=1, threads=1, scaling="count")  # fmt: skip


def test_partial_fit_items_equals_full_solve(rng):
    m = random_csr(rng, 40, 30, 0.2, 0.0, 2.0)
    model = rf.ALS(factors=5, epochs=3, solver="cholesky").fit(m, progress=False)
    cols = random_csr(rng, 2, 40, 0.3, 0.0, 2.0)  # item x users
    model.partial_fit_items([4, 30], cols)
    want = implicit_reference(cols, model.user_factors, model.alpha, model.regularization)
    np.testing.assert_allclose(model.item_factors[[4, 30]], want, rtol=1e-4, atol=1e-5)
    assert model.item_factors.shape == (31, 5) and model.n_items == 31
    np.testing.assert_array_equal(model.seen_[:, [4, 30]].T.toarray(), cols.toarray())


def test_fold_in_new_user_and_recommend_for_rows(rng):
    m = random_csr(rng, 50, 40, 0.15, 0.0, 2.0)
    model = rf.ALS(factors=6, epochs=3).fit(m, progress=False)
    row = random_csr(rng, 1, 40, 0.2, 0.0, 2.0)
    x = model.recalculate_user(row)
    np.testing.assert_allclose(
        x, implicit_reference(row, model.item_factors, model.alpha, model.regularization), rtol=1e-4, atol=1e-5
    )
    ids, scores = model.recommend_for_rows(row, k=5)
    full = (x @ model.item_factors.T)[0]
    full[row.indices] = -np.inf
    np.testing.assert_array_equal(ids[0], np.argsort(-full, kind="stable")[:5])
    assert model.n_users == 50  # the model is unchanged
    with pytest.raises(ValueError, match="40 columns"):
        model.recalculate_user(sp.csr_matrix((1, 39), dtype=np.float32))


# ---- bad input -----------------------------------------------------------------------------------
def test_negative_weights_are_ratings_only(rng):
    model = rf.ALS(factors=4, epochs=1)
    neg = random_csr(rng, 10, 8, 0.5)
    neg.data[0] = -1.0
    with pytest.raises(ValueError, match="negative"):
        model.fit(neg, progress=False)
    assert not model.is_fitted
    rf.ALS(factors=4, epochs=1, feedback="explicit").fit(neg, progress=False)  # ratings may be negative


def test_kernel_boundary_checks(rng):
    m = random_csr(rng, 5, 6, 0.5)
    c = kernel_csr(m)
    Y = np.zeros((6, 3), np.float32)
    G = _core.als_gram(Y, 1)
    cg = _core.Solver.cg

    def solve(c=c, Y=Y, G=G, X=None, solver=cg):
        X = np.zeros((5, 3), np.float32) if X is None else X
        _core.als_implicit_solve(c, Y, G, X, 1, 0.1, 1, 0, _core.RegScaling.all_pairs, solver, 3, 1)

    with pytest.raises(ValueError, match="X must have shape"):
        solve(X=np.zeros((4, 3), np.float32))
    with pytest.raises(TypeError, match="X must be a float32"):  # updated in place: never a silent copy
        solve(X=np.zeros((5, 3)))
    with pytest.raises(ValueError, match="Y must have shape"):
        solve(Y=np.zeros((7, 3), np.float32))
    with pytest.raises(ValueError, match="YtY must have shape"):
        solve(G=np.zeros((2, 2), np.float32))
    neg = m.copy()
    neg.data[0] = -1.0
    with pytest.raises(ValueError, match="negative"):
        solve(c=kernel_csr(neg))
    _core.als_explicit_solve(
        kernel_csr(neg), Y, np.zeros(6, np.float32), np.zeros((5, 3), np.float32), np.zeros(5, np.float32), 0.1, 0.0, 1
    )  # ratings may be negative
    nan = m.copy()
    nan.data[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        _core.als_explicit_solve(kernel_csr(nan), Y, np.zeros(6, np.float32), np.zeros((5, 3), np.float32),
                                 np.zeros(5, np.float32), 0.1, 0.0, 1)  # fmt: skip
    with pytest.raises(TypeError):  # the solver is an enum, not a string
        solve(solver="cg")
    with pytest.raises(TypeError):  # the matrix is a validated _core.Csr, not raw arrays
        _core.als_implicit_solve(
            m, Y, G, np.zeros((5, 3), np.float32), 1, 0.1, 1, 0, _core.RegScaling.all_pairs, cg, 3, 1
        )


def test_gram_is_ytY_for_any_thread_count(rng):
    Y = rng.standard_normal((50, 7)).astype(np.float32)
    np.testing.assert_allclose(_core.als_gram(Y, 2), Y.T.astype(np.float64) @ Y, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(_core.als_gram(Y, 1), _core.als_gram(Y, 2))
    assert (_core.als_gram(np.zeros((0, 3), np.float32), 1) == 0).all()
    with pytest.raises(ValueError, match="Y must have shape"):
        _core.als_gram(np.zeros(3, np.float32), 1)


@pytest.mark.parametrize("solver", ["cg", "cholesky"])
def test_half_step_per_row_partition_equals_one_call(rng, solver):
    """A driver (Dask) solves row partitions separately with the one Gram matrix: same bits as one call."""
    m = random_csr(rng, 60, 40, 0.2, 0.0, 3.0)
    Y = rng.standard_normal((40, 32)).astype(np.float32) * 0.3
    X0 = rng.standard_normal((60, 32)).astype(np.float32) * 0.1  # CG warm-starts from X
    whole = solve_rows(m, Y, X=X0, solver=solver, threads=2)
    G = _core.als_gram(Y, 1)
    parts = X0.copy()
    for lo, hi in [(0, 17), (17, 60)]:
        _core.als_implicit_solve(kernel_csr(m[lo:hi]), Y, G, parts[lo:hi], 2.0, 0.1, 1.0, 0.0,
                                 _core.RegScaling.all_pairs, _core.Solver.__members__[solver], 3, 1)  # fmt: skip
    np.testing.assert_array_equal(parts, whole)


def test_singular_system_is_a_clear_error(rng):
    m = random_csr(rng, 10, 3, 0.5, 1, 2)
    with pytest.raises(ValueError, match="positive definite"):
        rf.ALS(factors=8, epochs=1, regularization=0.0, feedback="explicit").fit(m, progress=False)


def test_users_and_items_without_interactions(rng):
    m = random_csr(rng, 20, 15, 0.3)
    m = sp.vstack([m, sp.csr_matrix((2, 15), dtype=np.float32)]).tocsr()  # users 20, 21 empty
    m = sp.hstack([m, sp.csr_matrix((22, 1), dtype=np.float32)]).tocsr()  # item 15 empty
    model = rf.ALS(factors=4, epochs=2).fit(m, progress=False)
    assert not model.user_factors[20:].any() and not model.item_factors[15].any()
    ex = rf.ALS(factors=4, epochs=2, feedback="explicit").fit(m, progress=False)
    assert ex.user_bias[21] == 0 and ex.score([21], [0])[0] == pytest.approx(ex.global_bias + ex.item_bias[0])


def test_callback_can_evaluate_between_iterations(rng):
    m = random_csr(rng, 20, 15, 0.3)
    seen = []
    model = rf.ALS(factors=4, epochs=2)
    model.fit(
        m, callback=lambda it, s, loss: seen.append((it, model.recommend([0], k=3)[0].shape, loss)), progress=False
    )
    assert seen == [(0, (1, 3), None), (1, (1, 3), None)]


# ---- accuracy on real data -------------------------------------------------------------------------
def test_movielens_100k_beats_most_popular():
    data_path("ml-100k", "u.data")  # skips with a reason when absent
    from conftest import DATA_DIR

    df = rf.datasets.load_movielens("100k", data_home=DATA_DIR)
    inter = rf.Interactions.from_pandas(df[df["rating"] >= 4], user_col="user", item_col="item")
    train, test = rf.split.random_holdout(inter, test_fraction=0.2, seed=42)
    users = np.arange(train.csr.shape[0])
    pop = rf.evaluation.ndcg_at_k(rf.MostPopular().fit(train).recommend(users, k=10)[0], test.csr, k=10)
    model = rf.ALS(factors=32, epochs=10, threads=2).fit(train, progress=False)
    als = rf.evaluation.ndcg_at_k(model.recommend(users, k=10)[0], test.csr, k=10)
    assert als > pop * 1.2, (als, pop)
