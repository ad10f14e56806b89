"""The GPU top-K without a GPU: csrc/cuda/topk.cu compiled as C++ (tests/cuda_emu/simt.hpp runs each
CUDA thread as a std::thread) and driven by the real orchestration of recforge/_ops/cuda.py, with
NumPy for CuPy and a NumPy matrix product for cuBLAS.

This checks what can be checked on a CPU: the kernels' indexing, synchronisation and results, the
argument lists and scalar types cuda.py passes (against the kernels' own signatures, parsed from the
source), tiling, item shards and their merge, exclusion, candidates, ties and padding, and the
low-precision re-scoring, against the CPU kernel. What it cannot check (CuPy, NVRTC, cuBLAS, real
GPU timing and memory) is in test_gpu_topk.py, which runs on a GPU.

Scores are made exact on both sides (small integer factors: every product and sum is an integer
well inside float32's 24 bits), so ids and scores must equal the CPU's bit for bit, ties included.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from cuda_emu.emulator import Emulator, numpy_gemm
from hypothesis import given, settings
from hypothesis import strategies as st

import recforge as rf
from recforge._ops import cpu, cuda


@pytest.fixture
def gpu(emulator, monkeypatch) -> Emulator:
    """cuda.py running on the CPU: NumPy arrays, the emulated kernels, 3 blocks of 64 threads per launch
    (so every grid-stride loop turns), and a 4 MiB budget (so large inputs tile and shard)."""
    monkeypatch.setattr(cuda, "_xp", lambda: np)
    monkeypatch.setattr(cuda, "_launch", emulator.launch)
    monkeypatch.setattr(cuda, "_gemm", numpy_gemm)
    monkeypatch.setattr(cuda, "_memory_budget", lambda: 4 << 20)
    monkeypatch.setattr(cuda, "BLOCK", 64)
    monkeypatch.setattr(cuda, "MAX_GRID", 3)
    emulator.launches.clear()
    return emulator


def integer_factors(rng, n, m, f, low=-3, high=3):
    """Factors whose products and sums are exact in float32: the same scores on any device, many ties."""
    q = rng.integers(low, high + 1, (n, f)).astype(np.float32)
    it = rng.integers(low, high + 1, (m, f)).astype(np.float32)
    return q, it


def random_exclusion(rng, n, m, density, full_rows=(), empty_rows=()):
    ex = sp.random(n, m, density=density, format="lil", random_state=rng, dtype=np.float32)
    for r in full_rows:
        ex[r, :] = 1.0
    for r in empty_rows:
        ex[r, :] = 0.0
    ex = ex.tocsr()
    ex.eliminate_zeros()
    ex.sort_indices()
    return ex


def assert_same(got, want):
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert got[0].dtype == np.int64 and got[1].dtype == np.float32


# -- the kernels' argument lists ------------------------------------------------------------------
def test_every_loaded_kernel_is_parsed_and_launched_with_matching_types(gpu):
    from recforge._ops import kernels

    assert set(kernels.SOURCES["topk.cu"]) <= set(gpu.signatures)
    rng = np.random.default_rng(0)
    q, it = integer_factors(rng, 7, 40, 3)
    ex = random_exclusion(rng, 7, 40, 0.2)
    cuda.topk(q, it, 5, exclude=ex)  # small path + mask
    cuda.topk(q, it, 5, per_row=rng.integers(-1, 40, (7, 6)), exclude=ex)
    cuda.topk(q, it, 5, precision="tf32")
    q2, it2 = integer_factors(rng, 4, 300, 2)
    cuda.topk(q2, it2, 260)  # radix path + decode
    assert set(gpu.launches) == set(kernels.SOURCES["topk.cu"])


# -- parity with the CPU kernel ---------------------------------------------------------------------
KS = [1, 31, 32, 33, 255, 256, 257]


@pytest.mark.parametrize("k", KS + ["all"])
def test_matches_the_cpu_for_every_k_path(gpu, k):
    rng = np.random.default_rng(1)
    n, m, f = 6, 1200, 3  # rows of several chunks: the running threshold and the compactions matter
    q, it = integer_factors(rng, n, m, f)
    k = m if k == "all" else k
    ex = random_exclusion(rng, n, m, 0.1, full_rows=[2], empty_rows=[4])
    for exclude in (None, ex):
        want = cpu.topk(q, it, k, exclude=exclude, threads=1)
        assert_same(cuda.topk(q, it, k, exclude=exclude), want)
    got = cuda.topk(q, it, k, exclude=ex)
    assert (got[0][2] == -1).all() and np.isneginf(got[1][2]).all()  # an all-excluded row: padding only


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(0, 12),
    m=st.integers(1, 80),
    f=st.integers(1, 5),
    k_frac=st.floats(0, 1),
    density=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
    seed=st.integers(0, 2**16),
)
def test_matches_the_cpu_on_random_shapes(emulator, n, m, f, k_frac, density, seed):
    with pytest.MonkeyPatch.context() as mp:  # hypothesis: no function-scoped fixtures
        for attr, value in (("_xp", lambda: np), ("_launch", emulator.launch), ("_gemm", numpy_gemm),
                            ("_memory_budget", lambda: 4 << 20), ("BLOCK", 32), ("MAX_GRID", 2)):  # fmt: skip
            mp.setattr(cuda, attr, value)
        rng = np.random.default_rng(seed)
        q, it = integer_factors(rng, n, m, f, -2, 2)  # a narrow range: many exact ties
        k = max(1, int(round(k_frac * m)))
        ex = random_exclusion(rng, n, m, density) if n else None
        assert_same(cuda.topk(q, it, k, exclude=ex), cpu.topk(q, it, k, exclude=ex, threads=1))


def test_ties_go_to_the_lower_id_and_zero_signs_tie(gpu):
    q = np.array([[1.0], [0.0], [-1.0]], np.float32)
    it = np.array([[0.0], [1.0], [1.0], [0.0], [-0.0], [1.0]], np.float32)  # -0 * 1 = -0: ties with +0
    for k in (2, 4, 6, 300):
        k = min(k, len(it))
        assert_same(cuda.topk(q, it, k), cpu.topk(q, it, k, threads=1))


def test_negative_extremes_and_float_ordering(gpu):
    rng = np.random.default_rng(3)
    it = rng.standard_normal((50, 1)).astype(np.float32) * np.float32(1e30)  # huge negative and positive scores
    it[7] = -3.0e38
    q = np.array([[1.0], [-1.0]], np.float32)
    for k in (1, 10, 50):
        assert_same(cuda.topk(q, it, k), cpu.topk(q, it, k, threads=1))


# -- tiles, shards, candidates -----------------------------------------------------------------------
def test_users_in_tiles_and_items_in_shards_give_the_same_result(gpu, monkeypatch):
    rng = np.random.default_rng(4)
    q, it = integer_factors(rng, 20, 700, 4)
    ex = random_exclusion(rng, 20, 700, 0.05, full_rows=[0])
    want = {k: cpu.topk(q, it, k, exclude=ex, threads=1) for k in (3, 300)}
    monkeypatch.setattr(cuda, "MIN_TILE_USERS", 8)
    for budget in (4 << 20, 16 << 10, 8 << 10):  # one tile / tiles of a few users, 2 shards / 4 shards
        monkeypatch.setattr(cuda, "_memory_budget", lambda b=budget: b)
        for k, w in want.items():
            assert_same(cuda.topk(q, it, k, exclude=ex), w)


def test_subset_candidates_with_repeats(gpu):
    rng = np.random.default_rng(5)
    q, it = integer_factors(rng, 11, 90, 3)
    ex = random_exclusion(rng, 11, 90, 0.3, full_rows=[1])
    subset = np.array([5, 3, 3, 80, 17, 5, 0, 89, 41, 42, 43])
    for k in (1, 4, 8, 12, 90):
        assert_same(cuda.topk(q, it, k, exclude=ex, subset=subset),
                    cpu.topk(q, it, k, exclude=ex, subset=subset, threads=1))  # fmt: skip


def test_per_row_candidates_with_padding_and_repeats(gpu):
    rng = np.random.default_rng(6)
    q, it = integer_factors(rng, 13, 70, 3)
    ex = random_exclusion(rng, 13, 70, 0.3, full_rows=[3], empty_rows=[4])
    cand = rng.integers(-1, 70, (13, 20))
    cand[5] = -1  # a row of padding only
    cand[6] = 9  # one candidate, repeated
    for k in (1, 5, 20, 70):
        assert_same(cuda.topk(q, it, k, exclude=ex, per_row=cand),
                    cpu.topk(q, it, k, exclude=ex, per_row=cand, threads=1))  # fmt: skip
    ids, scores = cuda.topk(q, it, 3, per_row=np.zeros((13, 0), np.int64))
    assert (ids == -1).all() and np.isneginf(scores).all()


def test_no_queries(gpu):
    ids, scores = cuda.topk(np.zeros((0, 3), np.float32), np.ones((5, 3), np.float32), 2)
    assert ids.shape == scores.shape == (0, 2)


# -- low-precision scoring with exact re-scoring --------------------------------------------------------
@pytest.mark.parametrize(("precision", "base"), [("tf32", 4096), ("bf16", 256)])
def test_low_precision_rescores_the_survivors_exactly(gpu, precision, base):
    rng = np.random.default_rng(7)
    # Scores base + j (j < 64) are exact in fp32, but tf32 / bf16 round them to multiples of 4 / 2
    # (and of 8 / 4 for the doubled queries): the rounded ranking has ties in which the exact order
    # is lost; the survivors' re-scored values restore it. (Ties wider than the k + max(k, 32)
    # survivors would lose items: the documented limit of the low-precision modes.)
    it = (base + rng.integers(0, 64, (500, 1))).astype(np.float32)
    q = rng.choice([1.0, 2.0], (20, 1)).astype(np.float32)
    ex = random_exclusion(rng, 20, 500, 0.05)
    subset = rng.integers(0, 500, 300)
    for k in (1, 10, 100):
        got = cuda.topk(q, it, k, exclude=ex, precision=precision)
        assert_same(got, cpu.topk(q, it, k, exclude=ex, threads=1))  # the k + max(k, 32) survivors hold the best k
        got = cuda.topk(q, it, k, exclude=ex, subset=subset, precision=precision)  # survivors mapped to subset ids
        assert_same(got, cpu.topk(q, it, k, exclude=ex, subset=subset, threads=1))
    approx = np.empty((20, 500), np.float32)
    numpy_gemm(q, it, approx, precision)
    rounded_ranking = np.argsort(-approx, axis=1, kind="stable")[:, :10]
    assert not np.array_equal(rounded_ranking, cpu.topk(q, it, 10, threads=1)[0])  # rounding alone ranks otherwise


# -- through the public API and the models --------------------------------------------------------------
def test_public_topk_and_models_on_the_emulated_gpu(gpu, monkeypatch):
    """rf.topk(device="cuda") and a model moved with .to("cuda") go through cuda.topk (ids back on the host)."""
    from recforge import _backend

    monkeypatch.setattr(_backend, "_cupy_problem", lambda: None)  # "CuPy sees a GPU"
    rng = np.random.default_rng(8)
    data = sp.random(30, 50, density=0.2, format="csr", dtype=np.float32, random_state=rng)
    q, it = integer_factors(rng, 30, 50, 4)
    assert_same(rf.topk(q, it, 7, exclude=data, device="cuda"), rf.topk(q, it, 7, exclude=data, device="cpu"))
    model = rf.ALS.from_factors(q, it, seen=data)
    want = model.recommend(np.arange(30), k=6), model.similar_items([0, 5], k=4)
    pop = rf.MostPopular().fit(data)
    want_pop = pop.recommend(np.arange(30), k=6)
    n = len(gpu.launches)
    model.to("cuda")
    pop.to("cuda")
    assert model.device_ == pop.device_ == "cuda"
    got = model.recommend(np.arange(30), k=6)
    assert isinstance(got[0], np.ndarray)
    assert_same(got, want[0])
    assert_same(model.similar_items([0, 5], k=4), want[1])
    assert_same(pop.recommend(np.arange(30), k=6), want_pop)
    assert len(gpu.launches) > n  # the GPU path ran
    test = sp.random(30, 50, density=0.1, format="csr", dtype=np.float32, random_state=rng)
    test = test - test.multiply(data > 0)  # held-out items are not training items
    on_gpu = rf.evaluation.evaluate(model, data, test, k=5, progress=False)
    on_cpu = rf.evaluation.evaluate(model.to("cpu"), data, test, k=5, progress=False)
    assert on_gpu == on_cpu and on_gpu
