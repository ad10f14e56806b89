"""rf.topk (C++ kernel) against a plain numpy reference: shapes, k, exclusions, candidates, ties."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import recforge as rf
from recforge import _core

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# The dense path has two kernels with identical results; rf.topk picks one by CPU and size.
KERNELS = [
    "blas",
    pytest.param(
        "fused",
        marks=pytest.mark.skipif(
            not _core.topk_has_fused(), reason="the fused kernel needs an x86-64 CPU with AVX-512"
        ),
    ),
]


def reference(q, items, k, exclude=None, candidates=None):
    """Plain numpy: full float64 score matrix, masked, stable sort (equal scores: lower id first)."""
    scores = q.astype(np.float64) @ items.astype(np.float64).T
    n, m = scores.shape
    if exclude is not None:
        scores[exclude.toarray() != 0] = -np.inf
    if candidates is not None:
        allowed = np.zeros((n, m), dtype=bool)
        if candidates.ndim == 1:
            allowed[:, candidates] = True
        else:
            r, c = np.nonzero(candidates >= 0)
            allowed[r, candidates[r, c]] = True
        scores[~allowed] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(scores, order, axis=1)
    ids = np.where(np.isneginf(top), -1, order)
    return ids, top.astype(np.float32)


@st.composite
def problems(draw, max_n=30, max_m=50, max_f=6):
    """Integer-valued factors in [-2, 2]: exact arithmetic and many ties."""
    n = draw(st.integers(1, max_n))
    m = draw(st.integers(1, max_m))
    f = draw(st.integers(1, max_f))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    q = rng.integers(-2, 3, size=(n, f)).astype(np.float32)
    items = rng.integers(-2, 3, size=(m, f)).astype(np.float32)
    k = draw(st.integers(1, m))
    exclude = None
    if draw(st.booleans()):
        mask = rng.random((n, m)) < draw(st.sampled_from([0.1, 0.5, 0.9]))
        mask[rng.random(n) < 0.2] = True  # some rows fully excluded
        exclude = sp.csr_matrix(mask.astype(np.float32))
    candidates = None
    mode = draw(st.sampled_from(["none", "shared", "per_row"]))
    if mode == "shared":
        candidates = rng.integers(0, m, size=draw(st.integers(0, 2 * m)))  # duplicates, any order
    elif mode == "per_row":
        candidates = rng.integers(-1, m, size=(n, draw(st.integers(0, m + 3))))
    return q, items, k, exclude, candidates


@SETTINGS
@given(problems())
def test_matches_reference_exactly(problem):
    q, items, k, exclude, candidates = problem
    ids, scores = rf.topk(q, items, k, exclude=exclude, candidates=candidates, threads=2)
    ref_ids, ref_scores = reference(q, items, k, exclude, candidates)
    assert ids.dtype == np.int64 and scores.dtype == np.float32 and ids.shape == (q.shape[0], k)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(scores, ref_scores)


@pytest.mark.parametrize("kernel", KERNELS)
@SETTINGS
@given(problem=problems(max_n=40, max_m=90), block_queries=st.integers(1, 20), block_items=st.integers(1, 70))
def test_kernels_and_block_boundaries(kernel, problem, block_queries, block_items):
    """Each kernel, tiny blocks: the exclusion cursor and heaps must carry over block edges."""
    q, items, k, exclude, candidates = problem
    if candidates is not None and candidates.ndim == 2:
        candidates = None
    ex = None if exclude is None else _core.Csr(exclude.indptr, exclude.indices, None, exclude.shape)
    sub = None if candidates is None else candidates.astype(np.int64)
    ids, scores = _core.topk_f32(q, items, k, ex, sub, None, 2, block_queries, block_items,
                                 _core.TopkKernel.__members__[kernel])  # fmt: skip
    ref_ids, ref_scores = reference(q, items, k, exclude, candidates)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(scores, ref_scores)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("shape", [(600, 2500, 32), (1, 3000, 8), (300, 1, 4), (5, 40, 200), (70, 100, 33)])
def test_random_floats_agree_with_numpy(shape, kernel, rng):
    n, m, f = shape
    q = rng.standard_normal((n, f), dtype=np.float32)
    items = rng.standard_normal((m, f), dtype=np.float32)
    k = min(10, m)
    ids, scores = _core.topk_f32(q, items, k, kernel=_core.TopkKernel.__members__[kernel])
    exact = q.astype(np.float64) @ items.astype(np.float64).T
    # Returned scores are the inner products of the returned ids (float32 rounding apart) ...
    np.testing.assert_allclose(scores, np.take_along_axis(exact, ids, axis=1), rtol=1e-4, atol=1e-4)
    # ... and they are the k best ones, best first.
    best = -np.sort(-exact, axis=1)[:, :k]
    np.testing.assert_allclose(scores, best, rtol=1e-4, atol=1e-4)
    assert (np.diff(scores, axis=1) <= 0).all()
    assert all(len(set(row)) == k for row in ids.tolist())


def test_ties_go_to_the_lower_id():
    items = np.ones((50, 4), dtype=np.float32)
    items[[7, 30]] = 2.0  # two clear winners, then 48 equal scores
    ids, scores = rf.topk(np.ones((3, 4), np.float32), items, 6)
    np.testing.assert_array_equal(ids, [[7, 30, 0, 1, 2, 3]] * 3)
    np.testing.assert_array_equal(scores[0], [8, 8, 4, 4, 4, 4])


def test_padding_when_fewer_valid_items_than_k():
    items = np.arange(10, dtype=np.float32).reshape(5, 2)
    ex = sp.csr_matrix(np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=np.float32))
    ids, scores = rf.topk(np.ones((2, 2), np.float32), items, 4, exclude=ex)
    np.testing.assert_array_equal(ids, [[4, 3, -1, -1], [-1, -1, -1, -1]])
    assert np.isneginf(scores[0, 2:]).all() and np.isneginf(scores[1]).all()
    ids, scores = rf.topk(np.ones((2, 2), np.float32), items, 3, candidates=np.array([], dtype=np.int64))
    assert (ids == -1).all() and np.isneginf(scores).all()


def test_exclude_formats_explicit_zeros_and_unsorted_indices():
    items = np.eye(4, dtype=np.float32)
    q = np.array([[4, 3, 2, 1]], dtype=np.float32)
    # stored zeros still exclude; indices deliberately unsorted
    ex = sp.csr_matrix((np.array([0.0, 5.0], np.float32), np.array([2, 0]), np.array([0, 2])), shape=(1, 4))
    assert not ex.has_sorted_indices
    ids, _ = rf.topk(q, items, 2, exclude=ex)
    np.testing.assert_array_equal(ids, [[1, 3]])
    ids, _ = rf.topk(q, items, 2, exclude=sp.coo_matrix(([1.0], ([0], [0])), shape=(1, 4)))
    np.testing.assert_array_equal(ids, [[1, 2]])


def test_kernels_agree_on_random_floats(rng):
    if not _core.topk_has_fused():
        pytest.skip("the fused kernel needs an x86-64 CPU with AVX-512")
    q = rng.standard_normal((300, 24), dtype=np.float32)
    items = rng.standard_normal((1000, 24), dtype=np.float32)
    ex = sp.random(300, 1000, density=0.1, format="csr", random_state=2)
    ex = _core.Csr(ex.indptr, ex.indices, ex.data, ex.shape)
    a = _core.topk_f32(q, items, 7, ex, kernel=_core.TopkKernel.blas)
    b = _core.topk_f32(q, items, 7, ex, kernel=_core.TopkKernel.fused)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1], rtol=1e-5, atol=1e-5)


def test_results_do_not_depend_on_threads(rng):
    q = rng.standard_normal((700, 16), dtype=np.float32)
    items = rng.standard_normal((3000, 16), dtype=np.float32)
    ex = sp.random(700, 3000, density=0.05, format="csr", random_state=1)
    one = rf.topk(q, items, 25, exclude=ex, threads=1)
    two = rf.topk(q, items, 25, exclude=ex, threads=2)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])
    cand = rng.integers(-1, 3000, size=(700, 100))
    np.testing.assert_array_equal(
        rf.topk(q, items, 5, candidates=cand, threads=1)[0], rf.topk(q, items, 5, candidates=cand, threads=2)[0]
    )


def test_strided_and_float64_input_is_converted(rng):
    q64 = rng.standard_normal((20, 8))
    items = rng.standard_normal((30, 16)).astype(np.float32)[:, ::2]  # non-contiguous
    ids, _ = rf.topk(q64, items, 3)
    ref, _ = rf.topk(q64.astype(np.float32), np.ascontiguousarray(items), 3)
    np.testing.assert_array_equal(ids, ref)


def test_no_queries():
    ids, scores = rf.topk(np.zeros((0, 3), np.float32), np.ones((4, 3), np.float32), 2)
    assert ids.shape == (0, 2) and scores.shape == (0, 2)


GOOD_Q = np.ones((2, 3), np.float32)
GOOD_I = np.ones((4, 3), np.float32)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(queries=np.array([[np.nan, 1, 1]], np.float32)), ValueError, "queries contains NaN"),
        (dict(items=np.full((4, 3), np.inf, np.float32)), ValueError, "items contains NaN or inf"),
        (dict(queries=np.ones(3, np.float32)), ValueError, "queries must be 2-D"),
        (dict(items=np.ones((4, 2), np.float32)), ValueError, "same number of factors"),
        (dict(items=np.ones((0, 3), np.float32)), ValueError, "items is empty"),
        (dict(queries=np.array([["a", "b", "c"]])), TypeError, "queries must hold real numbers"),
        (dict(k=0), ValueError, "k must be >= 1"),
        (dict(k=-3), ValueError, "k must be >= 1"),
        (dict(k=5), ValueError, r"k must be <= the number of items \(4\)"),
        (dict(k=2.0), TypeError, "k must be an int"),
        (dict(exclude=np.zeros((2, 4))), TypeError, "exclude must be a scipy.sparse"),
        (dict(exclude=sp.csr_matrix((3, 4))), ValueError, "exclude must have shape"),
        (dict(candidates=np.array([0, 4])), ValueError, "candidates must be item ids"),
        (dict(candidates=np.array([[0, -2], [1, 1]])), ValueError, "candidates must be item ids"),
        (dict(candidates=np.array([0.5, 1.0])), TypeError, "candidates must be integer"),
        (dict(candidates=np.zeros((3, 2), np.int64)), ValueError, "candidates must be 1-D"),
        (
            dict(queries=np.full((2, 3), 1e19, np.float32), items=np.full((4, 3), 1e19, np.float32)),
            ValueError,
            "overflow",
        ),
        (dict(threads=-1), ValueError, "threads"),
        (dict(device="tpu"), ValueError, "device"),
    ],
)
def test_bad_input_is_rejected(kwargs, exc, match):
    args = dict(queries=GOOD_Q, items=GOOD_I, k=2)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        rf.topk(**args)


I64 = np.int64


def _ex(indptr, indices, shape=(2, 4)):
    return _core.Csr(np.array(indptr, I64), np.array(indices, I64), None, shape, "exclude")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(k=5), "k must be in"),
        (dict(exclude=_ex([0, 1], [0], shape=(1, 4))), "exclude must have shape \\(2, 4\\)"),
        (dict(exclude=_ex([0, 2, 2], [3, 1])), "sorted"),
        (dict(subset=np.array([0, 7], I64)), "outside"),
        (dict(subset=np.array([-1], I64)), "outside"),
        (dict(candidates=np.array([[0, 9], [1, 1]], I64)), "outside"),
        (dict(candidates=np.array([[0, -5], [1, 1]], I64)), "outside"),
        (dict(candidates=np.array([0, 1], I64)), "candidates must have shape"),
        (dict(block_queries=-1), "block sizes"),
    ],
)
def test_kernel_validates_at_its_boundary(kwargs, match):
    """The C++ side re-checks what Python normally guarantees: errors, never out-of-bounds reads."""
    args = dict(queries=GOOD_Q, items=GOOD_I, k=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        _core.topk_f32(**args)


@pytest.mark.parametrize(
    "indptr, indices, shape, match",
    [
        ([0, 2, 1], [0], (2, 4), "non-decreasing"),
        ([0, 1, 9], [0, 1], (2, 4), "end at nnz"),
        ([1, 1, 2], [0, 1], (2, 4), "start at 0"),
        ([0, 1, 1], [0, 1], (2, 4), "end at nnz"),
        ([0, 1, 2], [0, 4], (2, 4), "column index 4 at position 1 out of range"),
        ([0, 1, 2], [0, 2**31], (2, 4), "column index 2147483648"),  # not wrapped to int32
        ([0, 1], [0, 1], (2, 4), "indptr must have shape \\(3,\\)"),
        ([0, 1, 2], [0, 1], (2, -1), "shape must be >= 0"),
    ],
)
def test_csr_is_validated_when_built(indptr, indices, shape, match):
    """The one CSR validator runs once, in _core.Csr's constructor; kernels then trust the object."""
    with pytest.raises(ValueError, match=match):
        _ex(indptr, indices, shape)


def test_csr_is_an_immutable_copy():
    m = sp.csr_matrix(np.array([[0, 2, 1], [0, 0, 0], [3, 0, -1]], np.float32))
    m.indices = m.indices.astype(np.int64)
    c = _core.Csr(m.indptr, m.indices, m.data, m.shape)
    assert c.shape == (3, 3) and c.nnz == 4 and c.indptr.dtype == np.int64 and c.indices.dtype == np.int32
    assert c.finite and not c.nonnegative and c.unique and c.sorted
    m.indices[0] = 99  # later writes to the source cannot reach the validated copy
    np.testing.assert_array_equal(c.indices, [1, 2, 0, 2])
    for a in (c.indptr, c.indices, c.data):
        with pytest.raises(ValueError):
            a.flags.writeable = True
    dup = _core.Csr(np.array([0, 2]), np.array([1, 1]), None, (1, 3))
    assert dup.sorted and not dup.unique and dup.data is None and not dup.finite
    assert not _core.Csr(np.array([0, 2]), np.array([2, 1]), np.ones(2), (1, 3)).sorted
    with pytest.raises(TypeError, match="indices must be an integer array"):
        _core.Csr(np.array([0, 1]), np.array([0.5]), None, (1, 3))


@pytest.mark.slow
def test_more_scores_than_int32_can_index():
    """n * m > 2^31: offsets into the score space must be 64-bit (f = 1 keeps it a few seconds)."""
    n, m = 46_500, 46_500  # 2.16e9 scores
    q = np.linspace(0.5, 1.5, n, dtype=np.float32)[:, None]
    items = np.linspace(1.0, -1.0, m, dtype=np.float32)[:, None]  # best first: few heap insertions
    items[-1] = 2.0  # ... but the overall best is the very last item
    ids, scores = rf.topk(q, items, 2, threads=2)
    assert (ids[:, 0] == m - 1).all() and (ids[:, 1] == 0).all()  # positive queries: largest items
    np.testing.assert_array_equal(scores[:, 0], q[:, 0] * 2.0)
