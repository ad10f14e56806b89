"""ALS fitted on the GPU (CuPy, NVRTC, cuBLAS) against the same fit on the CPU.

Runs only where CuPy sees a GPU (`cuda` marker; skipped with the reason elsewhere; ``nox -s
tests_fake_gpu`` runs it on a NumPy stand-in with the kernels compiled as C++). The kernels and
half-steps are checked op by op on the CPU in test_cuda_als_emulation.py; here the whole model runs on
the device: the objective after 15 iterations within 1e-4 relative of the CPU's (CG, Cholesky,
explicit, iALS-revisited options), NDCG@10 on MovieLens-100K within 0.002, the Cholesky fold-in equal
to a dense solve, CG approaching it as ``cg_steps`` grows, fold-in and ``recommend_for_rows`` on the
device, and a fit whose CSR does not fit the (artificially small) device memory.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import requires_cuda

import recforge as rf
from recforge._ops import cuda

pytestmark = [pytest.mark.cuda, requires_cuda]


def host(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)


@pytest.fixture(scope="module")
def data():
    """Implicit counts and explicit ratings (users x items), with an empty user and an empty item."""
    rng = np.random.default_rng(0)
    x = sp.random(300, 200, density=0.05, format="lil", random_state=rng, dtype=np.float32)
    x[5, :] = 0
    x[:, 7] = 0
    x = x.tocsr()
    x.eliminate_zeros()
    x.data[:] = rng.integers(1, 6, x.nnz)
    return x


def fitted(data, device, **params):
    model = rf.ALS(device=device, calculate_loss=True, threads=2, seed=3, **{"epochs": 15, **params})
    return model.fit(data, progress=False)


CONFIGS = {
    "cg": {"factors": 16},
    "cg-revisited": {"factors": 16, "alpha0": 0.3, "nu": 0.5, "cg_steps": 5},
    "cholesky": {"factors": 16, "solver": "cholesky"},
    "cholesky-f64": {"factors": 64, "solver": "cholesky", "regularization": 0.5},
    "explicit": {"factors": 8, "feedback": "explicit"},
}


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_objective_after_fifteen_iterations_matches_the_cpu(data, config):
    cpu_model, gpu_model = fitted(data, "cpu", **CONFIGS[config]), fitted(data, "cuda", **CONFIGS[config])
    assert type(gpu_model.user_factors).__module__.split(".")[0] != "numpy"  # the factors live on the device
    assert gpu_model.user_factors.dtype == np.float32
    cpu_loss, gpu_loss = cpu_model.history_[-1]["loss"], gpu_model.history_[-1]["loss"]
    assert gpu_loss == pytest.approx(cpu_loss, rel=1e-4)
    assert np.isfinite(host(gpu_model.item_factors)).all()
    assert not host(gpu_model.user_factors)[5].any()  # a user without entries: zero factors, as on the CPU


def test_ndcg_on_movielens_100k_matches_the_cpu():
    from conftest import data_path

    folder = data_path("ml-100k", "u.data").parents[1]
    df = rf.datasets.load_movielens("100k", data_home=folder, progress=False)
    df = df[df["rating"] >= 4]
    inter = rf.Interactions.from_pandas(df, user_col="user", item_col="item")
    train, test = rf.split.random_holdout(inter, test_fraction=0.2, seed=42)
    users = np.arange(train.csr.shape[0])
    ndcg = {}
    for device in ("cpu", "cuda"):
        model = rf.ALS(factors=64, regularization=0.05, epochs=15, alpha=1.0, device=device, seed=42)
        model.fit(train.csr, progress=False)
        ids, _ = model.recommend(users, k=10)
        ndcg[device] = float(rf.evaluation.ndcg_at_k(ids, test.csr, k=10))
    assert ndcg["cuda"] == pytest.approx(ndcg["cpu"], abs=0.002)
    assert ndcg["cpu"] > 0.1  # a real model, not two equal failures


def dense_fold_in(model, rows):
    """Each row's exact implicit solution against the model's item factors (float64 numpy.linalg.solve)."""
    Y = host(model.item_factors).astype(np.float64)
    f = Y.shape[1]
    out = np.zeros((rows.shape[0], f))
    for u in range(rows.shape[0]):
        cols, r = rows.indices[rows.indptr[u] : rows.indptr[u + 1]], rows.data[rows.indptr[u] : rows.indptr[u + 1]]
        c = 1.0 + model.alpha * r
        A = model.alpha0 * Y.T @ Y + (Y[cols].T * (c - model.alpha0)) @ Y[cols] + model.regularization * np.eye(f)
        out[u] = np.linalg.solve(A, Y[cols].T @ c)
    return out


def test_cholesky_fold_in_equals_a_dense_solve_and_cg_approaches_it(data):
    model = fitted(data, "cuda", factors=16, epochs=3, regularization=1.0)
    rows = data[10:30]
    exact = dense_fold_in(model, rows)
    np.testing.assert_allclose(host(model.recalculate_user(rows)), exact, rtol=1e-3, atol=1e-4)
    # One CG half-step from zero factors, more and more steps: the error shrinks towards the exact solve.
    Y = model.item_factors
    errors = []
    for steps in (1, 2, 4, 8, 16, 32):
        X = model._ops.xp.zeros((rows.shape[0], 16), np.float32)
        cuda.als_implicit_half_step(rows, Y, cuda.gram(Y), X, alpha=model.alpha, regularization=model.regularization,
                                    alpha0=1.0, nu=0.0, solver="cg", cg_steps=steps, threads=0)  # fmt: skip
        errors.append(float(np.abs(host(X) - exact).max()))
    assert all(b < a for a, b in zip(errors[:4], errors[1:5])), errors
    assert errors[-1] < 1e-3 * np.abs(exact).max()


@pytest.mark.parametrize("feedback", ["implicit", "explicit"])
def test_fold_in_and_recommend_for_rows_on_the_device_match_the_cpu(data, feedback):
    cpu_model = fitted(data, "cpu", factors=8, epochs=3, feedback=feedback)
    gpu_model = fitted(data, "cpu", factors=8, epochs=3, feedback=feedback).to("cuda")  # the same factors
    rows = data[[3, 4, 250]]
    np.testing.assert_allclose(host(gpu_model.recalculate_user(rows)), cpu_model.recalculate_user(rows), rtol=1e-3,
                               atol=1e-4)  # fmt: skip
    want_ids, want_scores = cpu_model.recommend_for_rows(rows, k=5)
    got_ids, got_scores = gpu_model.recommend_for_rows(rows, k=5)
    np.testing.assert_allclose(host(got_scores), want_scores, rtol=1e-3, atol=1e-4)
    new_rows = data[[0, 1]]
    for model in (cpu_model, gpu_model):
        model.partial_fit_items(np.array([2]), data.T.tocsr()[[9]])
        model.partial_fit_users(np.array([0, 300]), new_rows)  # one re-solved, one new user
    for name in ("user_factors", "item_factors") + (("user_bias", "item_bias") if feedback == "explicit" else ()):
        np.testing.assert_allclose(host(getattr(gpu_model, name)), getattr(cpu_model, name), rtol=1e-3, atol=1e-4)
    assert gpu_model.user_factors.shape[0] == 301


def test_a_csr_larger_than_the_device_memory_is_streamed(data, monkeypatch):
    want = fitted(data, "cuda", factors=8, solver="cholesky")
    monkeypatch.setattr(cuda, "_free_memory", lambda: 4096)  # the CSR "does not fit": pinned host memory
    monkeypatch.setattr(cuda, "_memory_budget", lambda: 32 << 10)  # batches of a few dozen rows
    assert not cuda.csr(data).resident
    got = fitted(data, "cuda", factors=8, solver="cholesky")
    np.testing.assert_allclose(host(got.user_factors), host(want.user_factors), rtol=1e-4, atol=1e-5)
    assert got.history_[-1]["loss"] == pytest.approx(want.history_[-1]["loss"], rel=1e-6)
