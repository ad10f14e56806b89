"""The GPU top-K on a real GPU (CuPy, NVRTC, cuBLAS): parity with the CPU, device semantics, models.

Runs only where CuPy sees a GPU (`cuda` marker; skipped with the reason elsewhere). The same kernels
and orchestration run on the CPU in test_cuda_emulation.py; what only a GPU shows is checked here:
NVRTC compiles the shipped sources, the launches and cuBLAS calls work through CuPy, and the
results agree with the CPU kernel. Parity: integer-valued factors make every score exact on both
devices (ids and scores bit for bit, ties included); real-valued factors agree up to float32
near-ties (scores within a tolerance, ids equal wherever the scores are not near-tied).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import requires_cuda
from hypothesis import given, settings
from hypothesis import strategies as st

import recforge as rf
from recforge._ops import cpu, cuda

pytestmark = [pytest.mark.cuda, requires_cuda]

KS = [1, 31, 32, 33, 255, 256, 257, 1024]


@pytest.fixture(scope="module")
def cp():
    import cupy

    return cupy


def integer_factors(rng, n, m, f, low=-3, high=3):
    return (rng.integers(low, high + 1, (n, f)).astype(np.float32),
            rng.integers(low, high + 1, (m, f)).astype(np.float32))  # fmt: skip


def exclusion(rng, n, m, density, full_rows=(), empty_rows=()):
    ex = sp.random(n, m, density=density, format="lil", random_state=rng, dtype=np.float32)
    for r in full_rows:
        ex[r, :] = 1.0
    for r in empty_rows:
        ex[r, :] = 0.0
    ex = ex.tocsr()
    ex.eliminate_zeros()
    ex.sort_indices()
    return ex


def host(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)


def assert_exactly_the_cpu(got, want):
    np.testing.assert_array_equal(host(got[0]), want[0])
    np.testing.assert_array_equal(host(got[1]), want[1])


def assert_close_to_the_cpu(got, want, q, it, exclude=None):
    """Up to float32 near-ties: same padding, scores within tol, and every id valid, distinct, not excluded
    and scored (in float64) within tol of the CPU's score at its position."""
    ids, scores = host(got[0]), host(got[1])
    cpu_ids, cpu_scores = want
    np.testing.assert_array_equal(ids == -1, cpu_ids == -1)
    valid = ids >= 0
    tol = 1e-5 * max(1.0, float(np.abs(cpu_scores[np.isfinite(cpu_scores)]).max(initial=0.0)))
    np.testing.assert_allclose(scores[valid], cpu_scores[valid], rtol=0, atol=tol)
    exact = np.einsum("ij,ikj->ik", q.astype(np.float64), it.astype(np.float64)[np.maximum(ids, 0)])
    np.testing.assert_allclose(exact[valid], cpu_scores[valid], rtol=0, atol=2 * tol)
    for r in range(len(ids)):
        row = ids[r][valid[r]]
        assert len(set(row)) == len(row)
        if exclude is not None:
            assert not np.isin(row, exclude.indices[exclude.indptr[r] : exclude.indptr[r + 1]]).any()


def test_the_kernels_compile_and_load_here():
    assert rf.cupy_available() and rf.gpu_available()


@pytest.mark.parametrize("k", KS + ["all"])
def test_exact_parity_for_every_k_path(cp, k):
    rng = np.random.default_rng(0)
    n, m, f = 300, 2000, 16
    q, it = integer_factors(rng, n, m, f)
    k = m if k == "all" else k
    ex = exclusion(rng, n, m, 0.05, full_rows=[3, 4], empty_rows=[5])
    for exclude in (None, ex):
        want = cpu.topk(q, it, k, exclude=exclude, threads=0)
        assert_exactly_the_cpu(rf.topk(cp.asarray(q), cp.asarray(it), k, exclude=exclude), want)
    ids, scores = rf.topk(cp.asarray(q), cp.asarray(it), k, exclude=ex)
    assert (ids[3] == -1).all() and bool(cp.isneginf(scores[4]).all())  # all-excluded rows: padding only


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 300), m=st.integers(1, 3000), f=st.integers(1, 96), k_pick=st.integers(0, 9),
       density=st.sampled_from([0.0, 0.01, 0.3]), seed=st.integers(0, 2**16))  # fmt: skip
def test_parity_up_to_near_ties_on_random_shapes(n, m, f, k_pick, density, seed):
    import cupy

    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n, f)).astype(np.float32)
    it = rng.standard_normal((m, f)).astype(np.float32)
    k = min(m, (KS + [m, 7])[k_pick])
    ex = exclusion(rng, n, m, density, full_rows=[0] if n else []) if density else None
    got = rf.topk(cupy.asarray(q), cupy.asarray(it), k, exclude=ex)
    assert_close_to_the_cpu(got, cpu.topk(q, it, k, exclude=ex, threads=0), q, it, ex)


def test_host_inputs_with_device_cuda_and_gpu_exclusion(cp):
    import cupyx.scipy.sparse as csp

    rng = np.random.default_rng(1)
    q, it = integer_factors(rng, 100, 500, 8)
    ex = exclusion(rng, 100, 500, 0.1)
    want = cpu.topk(q, it, 20, exclude=ex, threads=0)
    got = rf.topk(q, it, 20, exclude=ex, device="cuda")  # explicit: host data copied tile by tile
    assert isinstance(got[0], cp.ndarray)
    assert_exactly_the_cpu(got, want)
    assert_exactly_the_cpu(rf.topk(cp.asarray(q), cp.asarray(it), 20, exclude=csp.csr_matrix(ex)), want)


def test_tiles_and_item_shards_on_the_gpu(cp, monkeypatch):
    rng = np.random.default_rng(2)
    q, it = integer_factors(rng, 3000, 5000, 8)
    ex = exclusion(rng, 3000, 5000, 0.01, full_rows=[7])
    want = {k: cpu.topk(q, it, k, exclude=ex, threads=0) for k in (10, 300)}
    monkeypatch.setattr(cuda, "MIN_TILE_USERS", 64)
    for budget in (1 << 30, 1 << 20, 256 << 10):  # one tile / tiles and 4 shards / 16 shards
        monkeypatch.setattr(cuda, "_memory_budget", lambda b=budget: b)
        for k, w in want.items():
            assert_exactly_the_cpu(rf.topk(cp.asarray(q), cp.asarray(it), k, exclude=ex), w)


def test_candidates_on_the_gpu(cp):
    rng = np.random.default_rng(3)
    q, it = integer_factors(rng, 200, 900, 8)
    ex = exclusion(rng, 200, 900, 0.2, full_rows=[1])
    subset = rng.integers(0, 900, 120)
    per_row = rng.integers(-1, 900, (200, 50))
    per_row[9] = -1
    for k in (1, 10, 64, 300):
        for cand in (subset, per_row):
            want = cpu.topk(q, it, k, exclude=ex, subset=cand if cand.ndim == 1 else None,
                            per_row=cand if cand.ndim == 2 else None, threads=0)  # fmt: skip
            assert_exactly_the_cpu(rf.topk(cp.asarray(q), cp.asarray(it), k, exclude=ex, candidates=cand), want)
            assert_exactly_the_cpu(rf.topk(cp.asarray(q), cp.asarray(it), k, exclude=ex,
                                           candidates=cp.asarray(cand)), want)  # fmt: skip


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_low_precision_scores_are_exact_and_ids_nearly_always_equal(cp, precision):
    rng = np.random.default_rng(4)
    q = rng.standard_normal((2000, 64)).astype(np.float32)
    it = rng.standard_normal((4000, 64)).astype(np.float32)
    ex = exclusion(rng, 2000, 4000, 0.01)
    ids, scores = (host(a) for a in rf.topk(cp.asarray(q), cp.asarray(it), 10, exclude=ex, precision=precision))
    want_ids, want_scores = cpu.topk(q, it, 10, exclude=ex, threads=0)
    exact = np.einsum("ij,ikj->ik", q.astype(np.float64), it.astype(np.float64)[ids])
    np.testing.assert_allclose(scores, exact, rtol=0, atol=1e-4)  # re-scored in fp32: not tf32/bf16 error
    assert (ids == want_ids).all(axis=1).mean() > 0.99


def test_auto_follows_cupy_data_and_refuses_mixing(cp):
    q, it = np.ones((3, 4), np.float32), np.ones((5, 4), np.float32)
    ids, _ = rf.topk(cp.asarray(q), cp.asarray(it), 2)
    assert isinstance(ids, cp.ndarray)
    with pytest.raises(ValueError, match="same device"):
        rf.topk(cp.asarray(q), it, 2)
    with pytest.raises(ValueError, match="GPU"):
        rf.topk(cp.asarray(q), cp.asarray(it), 2, device="cpu")


# -- models ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def train():
    df = rf.datasets.synthetic(n_users=400, n_items=300, nnz=8000, factors=8, seed=0, timestamps=False)
    return sp.csr_matrix((np.ones(len(df), np.float32), (df["user"], df["item"])), shape=(400, 300))


@pytest.mark.parametrize("make", [lambda: rf.ALS(factors=16, epochs=3, threads=1),
                                  lambda: rf.ALS(factors=8, epochs=3, feedback="explicit", threads=1),
                                  lambda: rf.BPR(factors=8, epochs=2, threads=1),
                                  lambda: rf.SGDMF(factors=8, epochs=2, threads=1), rf.MostPopular],
                         ids=["als", "als-explicit", "bpr", "sgdmf", "popular"])  # fmt: skip
def test_a_cpu_fitted_model_recommends_and_evaluates_on_the_gpu(cp, make, train, tmp_path):
    model = make().fit(train, progress=False)
    users = np.arange(train.shape[0])
    want = model.recommend(users, k=10), model.recommend_all(k=300, batch_size=128)
    similar = model.similar_items([0, 1, 2], k=5) if isinstance(model, rf.FactorModel) else None
    test = sp.random(400, 300, density=0.02, format="csr", dtype=np.float32, random_state=0)
    test = test - test.multiply(train > 0)
    metrics = rf.evaluation.evaluate(model, train, test, k=10, progress=False)
    model.save(tmp_path / "cpu.rf")

    assert model.to("cuda") is model and model.device_ == "cuda"
    for name in model._array_names():
        if getattr(model, name) is not None:
            assert isinstance(getattr(model, name), cp.ndarray), name  # the fitted arrays live on the GPU
    got = model.recommend(users, k=10)
    assert isinstance(got[0], np.ndarray)
    it = host(model._ranking_cache()[0])
    q = host(model._ranking_queries(users))
    assert_close_to_the_cpu(got, want[0], q, it)
    assert_close_to_the_cpu(model.recommend_all(k=300, batch_size=128), want[1], q, it)
    if similar is not None:
        np.testing.assert_allclose(model.similar_items([0, 1, 2], k=5)[1], similar[1], atol=1e-5)
    on_gpu = rf.evaluation.evaluate(model, train, test, k=10, progress=False)
    for name, value in metrics.items():
        assert on_gpu[name] == pytest.approx(value, abs=2e-3), name
    model.save(tmp_path / "gpu.rf")  # the same content from either device
    with np.load(tmp_path / "cpu.rf") as a, np.load(tmp_path / "gpu.rf") as b:
        assert a.files == b.files
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert rf.load(tmp_path / "gpu.rf").device_ == "cpu"
    model.to("cpu")
    assert isinstance(model.recommend(users[:3], k=3)[0], np.ndarray)


def test_most_popular_fits_on_the_gpu(cp, train):
    model = rf.MostPopular(device="cuda").fit(train)
    assert model.device_ == "cuda" and isinstance(model.item_popularity, cp.ndarray)
    assert_exactly_the_cpu(model.recommend(np.arange(50), k=20),
                           rf.MostPopular().fit(train).recommend(np.arange(50), k=20))  # fmt: skip


def test_from_factors_keeps_cupy_factors_on_the_gpu(cp, train):
    rng = np.random.default_rng(5)
    uf, itf = integer_factors(rng, 400, 300, 8)
    model = rf.ALS.from_factors(cp.asarray(uf), cp.asarray(itf), seen=train)
    assert model.device_ == "cuda" and isinstance(model.user_factors, cp.ndarray)
    assert_exactly_the_cpu(model.recommend(np.arange(400), k=15),
                           rf.ALS.from_factors(uf, itf, seen=train).recommend(np.arange(400), k=15))  # fmt: skip
