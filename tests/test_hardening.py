"""Regression tests of issue 10 (hardening): each defect found by hostile inputs is a clear error now.

Crashes (threads, broken sparse matrices, foreign BLAS capsules, singular systems), hangs (huge sizes
refused, long kernels interruptible), silent garbage (out-of-range ids, ties, padding, NaN cutoffs,
overflowing values, wrapped ids) and the thread-safety contract of the models.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from fractions import Fraction

import numpy as np
import pytest
import scipy.sparse as sp

import recforge as rf
from recforge import _backend, _core
from recforge.models.mlp import _select_topk


def _implicit(rng, n_users=40, n_items=30, density=0.2):
    m = sp.random(n_users, n_items, density=density, random_state=rng, format="csr", dtype=np.float32)
    m.data[:] = 1.0
    return m


@pytest.fixture
def train(rng):
    return _implicit(rng)


# -- crashes: threads --------------------------------------------------------------------------
HUGE_THREADS = (10**5, 2**31 - 1, 2**63, 10**30)


@pytest.mark.parametrize("threads", HUGE_THREADS)
def test_threads_above_the_limit_are_refused_everywhere(train, threads):
    limit = _backend.THREAD_LIMIT
    match = rf"threads must be in \[0, {limit}\]"
    q = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match=match):
        rf.topk(q, q, k=2, threads=threads)
    for model in (rf.ALS(factors=4, epochs=1, threads=threads), rf.BPR(factors=4, epochs=1, threads=threads),
                  rf.MLPScorer(factors=4, layers=(4,), epochs=1, threads=threads)):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            model.fit(train, progress=False)
    als = rf.ALS(factors=4, epochs=1).fit(train, progress=False)
    with pytest.raises(ValueError, match=match):
        als.recommend(np.arange(300) % train.shape[0], threads=threads)
    with pytest.raises(ValueError, match=match):
        als.recommend_all(threads=threads)
    with pytest.raises(ValueError, match=match):
        als.similar_items([0], threads=threads)
    mlp = rf.MLPScorer(factors=4, layers=(4,), epochs=1).fit(train, progress=False)
    mlp.set_params(threads=threads)  # checked again where it is used, not only by fit
    with pytest.raises(ValueError, match=match):
        mlp.recommend([0])
    with pytest.raises(ValueError, match=match):
        _core.max_threads(threads)


def test_threads_type_and_negative():
    with pytest.raises(TypeError, match="threads must be an int"):
        _backend.resolve_threads(1.5)
    with pytest.raises(ValueError, match="threads must be in"):
        _backend.resolve_threads(-1)
    assert _backend.resolve_threads(0) >= 1
    assert _backend.resolve_threads(_backend.THREAD_LIMIT) == _backend.THREAD_LIMIT
    assert _core.thread_limit() == _backend.THREAD_LIMIT >= 256


def test_load_refuses_a_file_whose_threads_are_absurd(train, tmp_path):
    path = tmp_path / "als.rf"
    rf.ALS(factors=4, epochs=1).fit(train, progress=False).save(path)
    # Rewrite the metadata with threads=1000000 (what a damaged or hostile file could say).
    with np.load(path) as z:
        arrays = {n: z[n] for n in z.files}
    meta = json.loads(arrays["__meta__"].tobytes().decode())
    meta["params"]["threads"] = 1_000_000
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    bad = tmp_path / "bad.rf"
    with open(bad, "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(ValueError, match="threads must be in"):
        rf.load(bad)


# -- crashes: sparse inputs ----------------------------------------------------------------------
def _broken(kind):
    """A 3 x 4 float32 matrix with one broken index array (SciPy does not check arrays given to it)."""
    if kind == "column_past_end":
        m = sp.csr_matrix((np.ones(3, np.float32), np.array([0, 1, 2]), np.array([0, 1, 2, 3])), shape=(3, 4))
        m.indices[2] = 1000
    elif kind == "negative_column":
        m = sp.csr_matrix((np.ones(3, np.float32), np.array([0, 1, 2]), np.array([0, 1, 2, 3])), shape=(3, 4))
        m.indices[1] = -5
    elif kind == "decreasing_indptr":
        m = sp.csr_matrix((np.ones(3, np.float32), np.array([0, 1, 2]), np.array([0, 1, 2, 3])), shape=(3, 4))
        m.indptr[1] = 3
        m.indptr[2] = 1
    elif kind == "indptr_past_indices":
        m = sp.csr_matrix((np.ones(3, np.float32), np.array([0, 1, 2]), np.array([0, 1, 2, 3])), shape=(3, 4))
        m.indptr[3] = 7
    elif kind == "csc_row_past_end":
        m = sp.csc_matrix((np.ones(3, np.float32), np.array([0, 1, 2]), np.array([0, 1, 2, 3, 3])), shape=(3, 4))
        m.indices[0] = 99
    else:  # coo
        m = sp.coo_matrix((np.ones(3, np.float32), (np.array([0, 1, 2]), np.array([0, 1, 2]))), shape=(3, 4))
        m.col[0] = 4
    return m


BROKEN = ("column_past_end", "negative_column", "decreasing_indptr", "indptr_past_indices", "csc_row_past_end", "coo")
BROKEN_MESSAGE = r"out of range|non-decreasing|indptr ends at|must start at 0"


@pytest.mark.parametrize("kind", BROKEN)
def test_broken_sparse_matrices_are_refused_before_scipy_converts_them(kind):
    entries = [
        lambda m: rf.ALS(factors=2, epochs=1).fit(m, progress=False),
        lambda m: rf.MostPopular().fit(m),
        lambda m: rf.BPR(factors=2, epochs=1).fit(m, progress=False),
        lambda m: rf.Interactions.from_scipy(m),
        lambda m: rf.transforms.bm25_weight(m),
        lambda m: rf.transforms.log_scale(m),
        lambda m: rf.evaluation.precision_at_k(np.zeros((3, 1), np.int64), m),
        lambda m: rf.topk(np.ones((3, 2), np.float32), np.ones((4, 2), np.float32), k=1, exclude=m),
    ]
    for entry in entries:
        with pytest.raises(ValueError, match=BROKEN_MESSAGE):
            entry(_broken(kind))


def test_core_csr_refuses_decreasing_row_pointers_clearly():
    with pytest.raises(ValueError, match="non-decreasing"):
        _core.Csr(np.array([0, 2, 1, 3]), np.array([0, 1, 2], np.int32), None, (3, 4))


# -- crashes: BLAS capsules, singular systems ---------------------------------------------------------
def test_set_blas_refuses_a_capsule_with_another_signature():
    from scipy.linalg import cython_blas, cython_lapack

    blas, lapack = cython_blas.__pyx_capi__, cython_lapack.__pyx_capi__
    with pytest.raises(ValueError, match="sgemm must be the capsule of a routine with signature"):
        _core.set_blas(blas["dgemm"], blas["ssyrk"], lapack["spotrf"], lapack["spotrs"])
    with pytest.raises(ValueError, match="spotrs"):
        _core.set_blas(blas["sgemm"], blas["ssyrk"], lapack["spotrf"], lapack["spotrf"])
    # Nothing was installed: top-K still runs on the right routines.
    q = np.eye(4, dtype=np.float32)
    ids, _ = rf.topk(q, q, k=1)
    assert ids.ravel().tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("feedback", ["implicit", "explicit"])
def test_singular_exact_solve_raises_not_positive_definite(feedback):
    # No regularisation, no unobserved-pair weight: a row with one entry has a rank-1 system.
    m = sp.csr_matrix(np.eye(6, dtype=np.float32) * 3)
    model = rf.ALS(factors=4, epochs=1, regularization=0.0, alpha0=0.0, solver="cholesky", feedback=feedback)
    with pytest.raises(ValueError, match="not positive definite"):
        model.fit(m, progress=False)
    assert not model.is_fitted


# -- hangs: sizes refused up front ---------------------------------------------------------------
def test_absurd_sizes_are_refused_with_what_they_would_need(train):
    with pytest.raises(ValueError, match=r"factors must be <= 2048 for solver='cholesky'.*flops"):
        rf.ALS(factors=20000, solver="cholesky").fit(train, progress=False)
    with pytest.raises(ValueError, match=r"negatives must be <= 10000, got 2147483647 \(each positive draws"):
        rf.MLPScorer(negatives=2**31 - 1, factors=4, layers=(4,)).fit(train, progress=False)
    with pytest.raises(ValueError, match=r"epochs must be <= 10000, got 2147483647 \(each epoch is a pass"):
        rf.ALS(epochs=2**31 - 1).fit(train, progress=False)
    with pytest.raises(ValueError, match=r"factors=1000000000 .* GiB of memory"):
        rf.BPR(factors=10**9).fit(train, progress=False)
    als = rf.ALS(factors=4, epochs=1).fit(train, progress=False)
    # recommend and similar_* clip k to the catalogue (issue 11): an absurd k is no absurd result.
    assert als.recommend([0, 1], k=10**15)[0].shape == (2, train.shape[1])
    assert als.similar_items([0], k=10**15)[0].shape == (1, train.shape[1])
    mlp = rf.MLPScorer(factors=4, layers=(4,), epochs=1).fit(train, progress=False)
    assert mlp.recommend([0], k=10**15)[0].shape == (1, train.shape[1])
    with pytest.raises(ValueError, match=r"GiB of memory"):
        mlp.rerank([0], [[1, 2]], k=10**15)


def test_int_parameters_past_a_c_int_are_a_clear_error(train):
    with pytest.raises(ValueError, match=r"negatives must be <= 10000"):  # the work bound comes first
        rf.BPR(negatives=2**31).fit(train, progress=False)
    with pytest.raises(ValueError, match=r"max_sampled must be <= 2147483647"):
        rf.BPR(loss="warp", max_sampled=2**31).fit(train, progress=False)
    with pytest.raises(ValueError, match=r"each item of layers must be <= 2147483647"):
        rf.MLPScorer(layers=(2**40,)).fit(train, progress=False)


_INTERRUPT_SCRIPT = """
import os, signal, sys, threading, time
import numpy as np, scipy.sparse as sp
import recforge as rf

rng = np.random.default_rng(0)
{setup}
threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
t0 = time.perf_counter()
try:
    {job}
except KeyboardInterrupt:
    print("interrupted after %.1f s" % (time.perf_counter() - t0))
    sys.exit(0)
print("finished without an interrupt")
sys.exit(1)
"""

# (setup, job): each job runs for minutes uninterrupted (> 60 s on a free 2-core machine).
_LONG_JOBS = {
    "topk": ("q = rng.standard_normal((20000, 64), np.float32); it = rng.standard_normal((400000, 64), np.float32)",
             "rf.topk(q, it, k=10, threads=1)"),
    "als_cg": ("m = sp.csr_matrix((np.ones(10**6, np.float32), (rng.integers(0, 50000, 10**6), "
               "rng.integers(0, 20000, 10**6))), shape=(50000, 20000))",
               "rf.ALS(factors=512, epochs=1000, threads=1).fit(m, progress=False)"),
    "mlp": ("m = sp.csr_matrix((np.ones(10**6, np.float32), (rng.integers(0, 20000, 10**6), "
            "rng.integers(0, 5000, 10**6))), shape=(20000, 5000))",
            "rf.MLPScorer(factors=64, layers=(256, 128), epochs=100, threads=1).fit(m, progress=False)"),
    "bpr_negatives": ("m = sp.csr_matrix((np.ones(2 * 10**5, np.float32), (rng.integers(0, 50000, 2 * 10**5), "
                      "rng.integers(0, 40000, 2 * 10**5))), shape=(50000, 40000))",
                      "rf.BPR(factors=8, epochs=1, negatives=10**4, threads=1).fit(m, progress=False)"),
}  # fmt: skip


@pytest.mark.parametrize("job", sorted(_LONG_JOBS))
def test_long_kernels_stop_on_ctrl_c(job):
    """SIGINT during a long C++ call raises KeyboardInterrupt promptly (in a subprocess: a hang is a timeout)."""
    setup, call = _LONG_JOBS[job]
    script = _INTERRUPT_SCRIPT.format(setup=setup, job=call)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "interrupted" in out.stdout


# -- silent garbage --------------------------------------------------------------------------------
def test_mlp_ties_go_to_the_lower_id(train):
    model = rf.MLPScorer(factors=4, layers=(4,), epochs=1).fit(train, progress=False)
    model.dense[:] = 0.0  # every logit is the output bias: all items tie
    ids, scores = model.recommend([0, 1], k=5, exclude_seen=False)
    assert ids.tolist() == [[0, 1, 2, 3, 4]] * 2
    assert np.all(scores == scores[0, 0])
    ids, _ = model.rerank([0], [[9, 3, -1, 7, 5]], k=3)
    assert ids.tolist() == [[3, 5, 7]]


def test_select_topk_breaks_ties_at_the_cut_by_id():
    rng = np.random.default_rng(3)
    for _ in range(50):
        scores = rng.integers(0, 3, (4, 40)).astype(np.float32)
        scores[rng.random(scores.shape) < 0.1] = -np.inf
        scores[0, :5] = -0.0  # -0.0 and 0.0 are equal scores
        k = int(rng.integers(1, 45))
        pos, vals = _select_topk(scores, k)
        for r in range(4):
            finite = np.flatnonzero(np.isfinite(scores[r]))
            want = finite[np.lexsort((finite, -scores[r, finite]))][:k]
            assert pos[r, : len(want)].tolist() == want.tolist()
            assert np.all(pos[r, len(want) :] == -1) and np.all(vals[r, len(want) :] == -np.inf)


def test_similar_items_and_users_clip_k_like_recommend(train):
    model = rf.ALS(factors=4, epochs=1).fit(train, progress=False)
    n_users, n_items = train.shape
    ids, scores = model.similar_items([0, 1], k=n_items + 5)
    assert ids.shape == scores.shape == (2, n_items)  # k clipped to the catalogue; the item itself is padding
    assert np.all(ids[:, n_items - 1 :] == -1) and np.all(scores[:, n_items - 1 :] == -np.inf)
    ids, _ = model.similar_users([0], k=n_users + 1)
    assert ids.shape == (1, n_users) and ids[0, -1] == -1
    rec, _ = model.recommend([0], k=n_items + 5)
    assert rec.shape == (1, n_items)


def test_batch_sizes_must_be_positive(train):
    model = rf.ALS(factors=4, epochs=1).fit(train, progress=False)
    with pytest.raises(ValueError, match="batch_size must be finite and > 0"):
        model.recommend_all(batch_size=0)
    scores = np.zeros(train.shape, np.float32)
    with pytest.raises(ValueError, match="batch_size must be finite and > 0"):
        rf.evaluation.auc(scores, train, batch_size=-1)


def test_temporal_split_refuses_a_nan_cutoff():
    inter = rf.Interactions.from_arrays(np.array([0, 1, 2]), np.array([0, 1, 2]), timestamps=np.array([1, 2, 3]))
    for cutoff in (float("nan"), np.float32("nan"), float("inf"), -np.inf):
        with pytest.raises(ValueError, match="cutoff must be a finite number"):
            rf.split.temporal(inter, cutoff=cutoff)


def test_finite_but_huge_values_are_refused_not_turned_into_nan(train):
    huge = train.copy()
    huge.data[:] = 3e38
    with pytest.raises(ValueError, match=r"values up to 3e\+38.*scale the values down"):
        rf.ALS(factors=4, epochs=1).fit(huge, progress=False)
    with pytest.raises(ValueError, match="alpha=1e\\+12"):
        rf.ALS(factors=4, epochs=1, alpha=1e12).fit(train * 1e20, progress=False)
    with pytest.raises(ValueError, match="overflow float32"):
        rf.transforms.linear_confidence(huge, alpha=40)
    with pytest.raises(ValueError, match="float32's range"):
        rf.MostPopular(weighted=True).fit(huge)


def test_numbers_of_any_real_type_get_a_clear_message():
    from recforge._validation import check_positive

    assert check_positive(Fraction(1, 2), "lr") == 0.5
    with pytest.raises(ValueError, match="lr must be finite and > 0"):
        check_positive(10**400, "lr")
    with pytest.raises(TypeError, match="lr must be a number"):
        check_positive("0.1", "lr")


# -- _core: ids are never wrapped or truncated, outputs never silently copied ---------------------
def test_core_refuses_wrapping_and_fractional_ids(train):
    model = rf.MLPScorer(factors=4, layers=(4,), epochs=1).fit(train, progress=False)
    args = (model.arch, model.user_embedding, model.item_embedding, model.dense)
    with pytest.raises(ValueError, match="users: id 18446744073709551615 .* does not fit int64"):
        _core.mlp_score_pairs(*args, np.array([2**64 - 1], np.uint64), np.array([0]), 1)
    with pytest.raises(TypeError, match="items must be an integer array"):
        _core.mlp_score_pairs(*args, np.array([0]), np.array([1.5]), 1)
    with pytest.raises(TypeError, match="users must be an integer array"):
        _core.mlp_score_all(*args, np.array([0.0]), 1)
    data = _core.SGDPositiveData(_core.Csr(train.indptr, train.indices, train.data, train.shape))
    with pytest.raises(ValueError, match="users: id 4294967297 .* does not fit int32"):
        _core.sgd_sample_negatives(data, np.array([2**32 + 1]), _core.Sampling.uniform, 0)
    q = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match="subset must be an integer array"):
        _core.topk_f32(q, q, 1, subset=np.array([0.5, 1.0]))
    with pytest.raises(TypeError, match="candidates must be an integer array"):
        _core.topk_f32(q, q, 1, candidates=np.array([[0.5], [1.0]]))


def _misaligned(a: np.ndarray) -> np.ndarray:
    """A copy of ``a`` starting one byte into its buffer, as arrays unpickled from a message can be."""
    raw = np.zeros(a.nbytes + 1, np.uint8)[1:]
    out = raw.view(a.dtype).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned
    return out


@pytest.mark.parametrize("layout", ["float16", "float64", "non_contiguous", "read_only", "misaligned"])
def test_core_solvers_refuse_outputs_they_would_write_into_a_copy(train, layout):
    csr = _core.Csr(train.indptr, train.indices, train.data, train.shape)
    f = 4
    Y = np.ones((train.shape[1], f), np.float32)
    X = np.zeros((train.shape[0], f), np.float32)
    if layout in ("float16", "float64"):
        X = X.astype(layout)
    elif layout == "non_contiguous":
        X = np.zeros((train.shape[0], 2 * f), np.float32)[:, ::2]
    elif layout == "misaligned":
        X = _misaligned(X)
    else:
        X.setflags(write=False)
    err = TypeError if layout.startswith("float") else ValueError
    with pytest.raises(err, match="X must be"):
        _core.als_implicit_solve(
            csr, Y, _core.als_gram(Y, 1), X, 1.0, 0.1, 1.0, 0.0, _core.RegScaling.all_pairs, _core.Solver.cg, 2, 1
        )


def test_core_reads_misaligned_inputs_through_an_aligned_copy(train):
    """Misaligned read-only inputs (a Dask worker's unpickled blocks) give the same result as aligned
    ones: the binding copies them rather than loading floats from unaligned addresses."""
    csr = _core.Csr(train.indptr, train.indices, train.data, train.shape)
    Y = np.random.default_rng(0).random((train.shape[1], 4)).astype(np.float32)
    G = _core.als_gram(Y, 1)
    X = np.zeros((train.shape[0], 4), np.float32)
    _core.als_implicit_solve(csr, Y, G, X, 1.0, 0.1, 1.0, 0.0, _core.RegScaling.all_pairs, _core.Solver.cholesky, 2, 1)
    X2 = np.zeros_like(X)
    _core.als_implicit_solve(
        csr,
        _misaligned(Y),
        _misaligned(G),
        X2,
        1.0,
        0.1,
        1.0,
        0.0,
        _core.RegScaling.all_pairs,
        _core.Solver.cholesky,
        2,
        1,
    )
    np.testing.assert_array_equal(X2, X)
    loss = _core.als_implicit_loss(csr, X, Y, G, 1.0, 0.1, 1.0, 0.0, _core.RegScaling.all_pairs, 1)
    assert (
        _core.als_implicit_loss(
            csr, _misaligned(X), _misaligned(Y), _misaligned(G), 1.0, 0.1, 1.0, 0.0, _core.RegScaling.all_pairs, 1
        )
        == loss
    )


# -- failed refits keep the previous model -----------------------------------------------------------
def _fail_at(epoch):
    def callback(e, seconds, loss):
        if e == epoch:
            raise RuntimeError("stop")

    return callback


@pytest.mark.parametrize(
    "make",
    [
        lambda: rf.MLPScorer(factors=4, layers=(4,), epochs=3),
        lambda: rf.ALS(factors=4, epochs=3),
        lambda: rf.BPR(factors=4, epochs=3),
        lambda: rf.SGDMF(factors=4, epochs=3),
    ],  # fmt: skip
    ids=["mlp", "als", "bpr", "sgdmf"],
)
def test_a_failed_refit_leaves_the_previous_model_intact(train, rng, make):
    model = make().fit(train, progress=False)
    before_ids, before_scores = model.recommend([0, 1, 2], k=5)
    before_history = list(model.history_)
    other = _implicit(rng, 50, 35)  # a different shape: a half-replaced model could not hide it
    with pytest.raises(RuntimeError, match="stop"):
        model.fit(other, callback=_fail_at(1), progress=False)
    assert model.seen_.shape == train.shape
    ids, scores = model.recommend([0, 1, 2], k=5)
    np.testing.assert_array_equal(ids, before_ids)
    np.testing.assert_array_equal(scores, before_scores)
    assert model.history_ == before_history
    fresh = make()
    with pytest.raises(RuntimeError):
        fresh.fit(train, callback=_fail_at(0), progress=False)
    assert not fresh.is_fitted


# -- threads: the contract ---------------------------------------------------------------------------
N_THREADS = 8


def _run_threads(target, n=N_THREADS):
    errors = []

    def run(i):
        try:
            target(i)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def test_readers_see_the_old_or_the_new_model_never_a_mix(train, rng):
    other = train.copy()
    other.data[:] = rng.random(other.nnz).astype(np.float32) * 5
    users = np.arange(10)
    model = rf.ALS(factors=8, epochs=3, seed=1, threads=1).fit(train, progress=False)
    old = model.recommend(users, k=5)
    new = rf.ALS(factors=8, epochs=3, seed=2, threads=1).fit(other, progress=False).recommend(users, k=5)
    done = threading.Event()

    def work(i):
        if i == 0:
            for j in range(4):  # new, old, new, old
                model.set_params(seed=2 if j % 2 == 0 else 1)
                model.fit(other if j % 2 == 0 else train, progress=False)
            done.set()
            return
        seen = 0
        while not done.is_set() or seen == 0:
            ids, scores = model.recommend(users, k=5)
            assert any(np.array_equal(ids, w[0]) and np.array_equal(scores, w[1]) for w in (old, new)), (
                "a reader saw a mix of two fits"
            )
            seen += 1

    _run_threads(work)


def test_two_threads_fitting_one_model_serialize(train):
    model = rf.MLPScorer(factors=4, layers=(4,), epochs=2, threads=1)
    want = rf.MLPScorer(factors=4, layers=(4,), epochs=2, threads=1).fit(train, progress=False).recommend([0, 1])
    _run_threads(lambda i: model.fit(train, progress=False))
    got = model.recommend([0, 1])
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_save_during_refits_writes_a_whole_model(train, rng, tmp_path):
    other = _implicit(rng, 50, 35)
    model = rf.BPR(factors=4, epochs=3, threads=1).fit(train, progress=False)

    def work(i):
        if i % 2 == 0:
            model.fit(other if i % 4 == 0 else train, progress=False)
        else:
            path = tmp_path / f"m{i}.rf"
            model.save(path)
            loaded = rf.load(path)  # a half-fitted model would fail its shape checks here
            assert loaded.seen_.shape in (train.shape, other.shape)
            assert loaded.user_factors.shape[0] == loaded.seen_.shape[0]

    _run_threads(work)


def test_blas_threads_are_restored_after_overlapping_calls(train):
    from threadpoolctl import threadpool_info

    def blas_threads():
        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

    before = blas_threads()
    model = rf.ALS(factors=8, epochs=2, threads=1).fit(train, progress=False)

    def work(i):
        for _ in range(5):
            if i % 2:
                model.recommend(np.arange(10), k=3)
            else:
                rf.ALS(factors=8, epochs=1, threads=1).fit(train, progress=False)

    _run_threads(work)
    assert blas_threads() == before


def test_models_still_copy_and_clone(train):
    import copy

    model = rf.ALS(factors=4, epochs=1).fit(train, progress=False)
    model.recommend([0])  # creates the lock
    twin = copy.deepcopy(model)
    np.testing.assert_array_equal(twin.recommend([0])[0], model.recommend([0])[0])
    assert twin._model_lock() is not model._model_lock()


def test_sigint_is_restored_to_python(train):
    # After an interrupted kernel nothing is left pending: the next call runs normally.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    rf.topk(np.ones((3, 2), np.float32), np.ones((4, 2), np.float32), k=2)


# -- unclear messages ------------------------------------------------------------------------------
def test_messages_name_the_argument():
    with pytest.raises(TypeError, match="threads must be an int"):
        _core.max_threads(1.5)
    with pytest.raises(TypeError, match="global_bias must be a number"):
        rf.ALS.from_factors(np.ones((2, 2)), np.ones((2, 2)), global_bias="x")
    with pytest.raises(ValueError, match="layer sizes must be in"):
        _core.MLPArch(_core.Mode.mlp, 0, 4, [2**30])
    with pytest.raises(ValueError, match=r"users must be in \[0, 40\), got 18446744073709551615"):
        rf.ALS(factors=2, epochs=1).fit(_implicit(np.random.default_rng(0)), progress=False).recommend(
            np.array([2**64 - 1], np.uint64)
        )


def test_interactions_with_timestamps_checks_the_matrix_first():
    with pytest.raises(ValueError, match="out of range"):
        rf.Interactions(_broken("column_past_end"), timestamps=np.arange(3))


def test_huge_finite_parameters_are_an_error_when_scored_not_nan(train):
    model = rf.ALS(factors=4, epochs=1).fit(train, progress=False)
    model.user_factors[:] = 3e38
    model.item_factors[:] = 3e38
    model._invalidate()
    with pytest.raises(ValueError, match="scores overflow float32"):
        model.score([0], [1])
    with pytest.raises(ValueError, match="overflow float32"):
        model.recommend([0])
    mlp = rf.MLPScorer(factors=4, layers=(4,), epochs=1).fit(train, progress=False)
    mlp.user_embedding[:] = 3e38
    mlp.dense[:] = 3e38
    with pytest.raises(ValueError, match="scores overflow float32"):
        mlp.recommend([0])
    with pytest.raises(ValueError, match="scores overflow float32"):
        mlp.rerank([0], [[1, 2]])


def test_fuzz_findings_f2_f5_f6_f8_f9_f12_f13_f15(train):
    """The h10-fuzz findings of /work/notes/h10-fuzz-findings.md in this branch's scope."""
    # F2: the read-only views of an empty Csr are arrays (no dtype reference stolen).
    for _ in range(300):
        c = _core.Csr(np.array([0], np.int32), np.array([], np.int32), None, (0, 0), "m")
        assert c.indices.shape == (0,) and c.indptr.tolist() == [0]
    # F5: data and indices of different lengths.
    m = sp.csr_matrix((np.ones(3, np.float32), np.array([0, 1, 2]), np.array([0, 1, 2, 3])), shape=(3, 4))
    m.data = np.ones(2, np.float32)
    with pytest.raises(ValueError, match="interactions: indices and data must have one length"):
        rf.MostPopular().fit(m)
    # F8: scores of a non-numeric dtype, ragged scores.
    with pytest.raises(TypeError, match="scores must hold real numbers"):
        rf.evaluation.auc(np.zeros((2, 2), "datetime64[s]"), sp.csr_matrix(np.eye(2, dtype=np.float32)))
    with pytest.raises(ValueError, match="scores must be a rectangular array"):
        rf.evaluation.auc([[1.0, 2.0], [3.0]], sp.csr_matrix(np.eye(2, dtype=np.float32)))
    ones = sp.csr_matrix(np.eye(2, dtype=np.float32))
    assert rf.evaluation.auc([[1.0, 0.0], [0.0, 1.0]], ones) == rf.evaluation.auc(np.eye(2), ones)  # lists are arrays
    # F9: complex data, ids out of range in the MLP kernels are errors naming them.
    with pytest.raises(TypeError, match="m.data must hold real numbers"):
        _core.Csr(np.array([0, 1]), np.array([0], np.int32), np.array([1 + 2j]), (1, 1), "m")
    mlp = rf.MLPScorer(factors=4, layers=(4,), epochs=1).fit(train, progress=False)
    with pytest.raises(ValueError, match="users: id 40"):
        _core.mlp_score_all(mlp.arch, mlp.user_embedding, mlp.item_embedding, mlp.dense, [40], 1)
    # F12 / F15: ragged nested lists.
    with pytest.raises(ValueError, match="queries must be a rectangular array"):
        rf.topk([[1.0, 2.0], [3.0]], np.ones((3, 2), np.float32), 1)
    with pytest.raises(ValueError, match="recommended_ids must be a rectangular array"):
        rf.evaluation.precision_at_k([[0, 1], [2]], train)
    # F13: fold-in rows holding 3e38 (confidence inf) are refused up front, and never abort.
    als = rf.ALS(factors=4, epochs=1, threads=1).fit(train, progress=False)
    row = sp.csr_matrix(np.array([[3e38, 1, 1] + [0] * 27], np.float32))
    with pytest.raises(ValueError, match="interactions_rows holds values up to 3e"):
        als.partial_fit_users(0, row)
    # F6: a fold-in id far past the model grows it only if memory allows.
    with pytest.raises(ValueError, match=r"user_ids up to 1099511627776 .* GiB of memory"):
        als.partial_fit_users([2**40], sp.csr_matrix((1, train.shape[1]), dtype=np.float32))


def test_core_csr_takes_lists_and_names_a_bad_shape():
    c = _core.Csr([0, 1, 3], [0, 1, 2], None, (2, 3), "m")
    assert c.shape == (2, 3) and c.indices.tolist() == [0, 1, 2]
    for shape in ((1, 2, 3), (2, "a"), 5, (True, 3)):
        with pytest.raises(TypeError, match=r"m.shape must be an \(n_rows, n_cols\) pair of ints"):
            _core.Csr([0, 1], [0], None, shape, "m")
    with pytest.raises(TypeError, match="m.indptr must be an integer array"):
        _core.Csr(np.array([0.0, 1.0]), [0], None, (1, 1), "m")


def test_a_diverging_sgd_fold_in_is_an_error_and_keeps_the_model(train):
    model = rf.SGDMF(factors=4, epochs=2).fit(train * 3, progress=False)
    before = model.user_factors.copy()
    rows = sp.csr_matrix(np.full((1, train.shape[1]), 1e30, np.float32))
    with pytest.raises(ValueError, match="fold-in diverged"):
        model.partial_fit_users([0], rows)
    np.testing.assert_array_equal(model.user_factors, before)


def test_k_past_int64_is_refused_even_for_no_users(train):
    model = rf.BPR(factors=4, epochs=1).fit(train, progress=False)
    with pytest.raises(ValueError, match=r"k must be <= 2\^63 - 1"):
        model.recommend(np.array([], np.uint32), k=2**64)


@pytest.mark.parametrize("threads", [1.5, None, True, "2", -1, 10**6, 2**70])
def test_core_kernels_name_a_bad_threads_argument(threads):
    q = np.ones((2, 3), np.float32)
    err = ValueError if isinstance(threads, int) and not isinstance(threads, bool) else TypeError
    with pytest.raises(err, match="threads must be"):
        _core.topk_f32(q, q, 1, threads=threads)
    with pytest.raises(err, match="threads must be"):
        _core.als_gram(q, threads)


def test_core_kernels_take_numpy_integer_threads():
    q = np.eye(3, dtype=np.float32)
    ids, _ = _core.topk_f32(q, q, 1, threads=np.int64(2))
    assert ids.ravel().tolist() == [0, 1, 2]


def test_split_seeds_are_checked_like_the_models():
    inter = rf.Interactions.from_arrays(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]))
    for seed, err in ((2**64, ValueError), (-1, ValueError), (1.5, TypeError)):
        with pytest.raises(err, match="seed must be"):
            rf.split.random_holdout(inter, seed=seed)
        with pytest.raises(err, match="seed must be"):
            rf.split.strong_generalization(inter, seed=seed)
