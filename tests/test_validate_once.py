"""Validated once, cached where it pays: the checks and caches behind a fast ``recommend``.

* ``as_csr`` checks a matrix once and recognises it afterwards (an Interactions' ``csr``, a model's
  ``seen_``); fit + evaluate on Interactions runs no full check of the interaction data at all.
* ``Interactions`` keeps the kernels' form of its matrix; a model keeps its checked ranking
  vectors and drops them whenever its fitted arrays change.
* ``recommend`` gathers the exclusion rows of ``seen_`` without SciPy indexing.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import recforge as rf
from recforge import _validation
from recforge._ops import get_ops
from recforge._validation import as_csr
from recforge.evaluation.protocols import FULL_METRICS
from recforge.models.base import seen_rows


@pytest.fixture(scope="module")
def split():
    df = rf.datasets.synthetic(n_users=200, n_items=100, nnz=4000, seed=0)
    inter = rf.Interactions.from_pandas(df, weight_col="rating", time_col="timestamp")
    return rf.split.random_holdout(inter, 0.2, seed=0)


@pytest.fixture
def full_checks(monkeypatch) -> list[str]:
    """The names of the matrices that get a full (O(nnz)) check while the test runs."""
    names: list[str] = []
    check = _validation._check_csr

    def counted(x, name):
        names.append(name)
        return check(x, name)

    monkeypatch.setattr(_validation, "_check_csr", counted)
    return names


MODELS = {
    "ALS": lambda: rf.ALS(factors=8, epochs=2),
    "ALS explicit": lambda: rf.ALS(factors=8, epochs=2, feedback="explicit"),
    "BPR": lambda: rf.BPR(factors=8, epochs=2),
    "SGDMF": lambda: rf.SGDMF(factors=8, epochs=2),
    "MostPopular": lambda: rf.MostPopular(),
    "MLPScorer": lambda: rf.MLPScorer(factors=4, layers=(8,), epochs=1),
}


# -- validation counts ----------------------------------------------------------------------------
@pytest.mark.parametrize("make", MODELS.values(), ids=MODELS.keys())
def test_fit_and_evaluate_on_interactions_check_nothing_again(split, make, full_checks):
    train, test = split  # checked when they were built
    model = make().fit(train, progress=False)
    # Rating models are ranked against the ratings >= 3 (their ranking needs a threshold) and also
    # scored by rmse / mae.
    rating = getattr(model, "predicts_ratings", False)
    extra = {"relevance_threshold": 3} if rating else {}
    metrics = FULL_METRICS + (("rmse", "mae") if rating else ())
    rf.evaluation.evaluate(model, train, test, k=5, metrics=metrics, progress=False, **extra)
    rf.evaluation.evaluate(model, train, test, k=5, protocol="sampled", n_negatives=20, progress=False, **extra)
    model.recommend(np.arange(10), k=5)
    assert full_checks == []


def test_scipy_inputs_are_checked_once_each(split, full_checks):
    # float64 matrices cannot be kept as they are: fit checks (and converts) train, evaluate checks
    # the caller's train and test once each; none of the metrics checks them again.
    train, test = (m.csr.astype(np.float64) for m in split)
    model = rf.ALS(factors=8, epochs=2).fit(train, progress=False)
    rf.evaluation.evaluate(model, train, test, k=5, metrics=FULL_METRICS, progress=False)
    assert full_checks == ["interactions", "train", "test"]


# -- as_csr ---------------------------------------------------------------------------------------
def test_as_csr_returns_a_checked_matrix_itself(split):
    train, _ = split
    assert as_csr(train) is train.csr
    m = sp.csr_matrix(np.array([[1, 0], [2, 3]], np.float32))
    assert as_csr(m) is m  # canonical float32: kept, not copied or re-wrapped
    converted = as_csr(m.astype(np.float64))
    assert converted.dtype == np.float32 and as_csr(converted) is converted
    assert rf.ALS(factors=4, epochs=1).fit(train, progress=False).seen_ is train.csr


def test_as_csr_fast_path_keeps_the_checks(full_checks):
    neg = sp.csr_matrix(np.array([[1, -1], [0, 2]], np.float32))
    assert as_csr(neg) is neg
    with pytest.raises(ValueError, match="negative"):  # remembered, not re-scanned
        as_csr(neg, allow_negative=False)
    empty = sp.csr_matrix((3, 2), dtype=np.float32)
    as_csr(empty, allow_empty=True)
    with pytest.raises(ValueError, match="empty"):
        as_csr(empty)
    assert len(full_checks) == 2
    with pytest.raises(ValueError, match="NaN"):
        as_csr(sp.csr_matrix(np.array([[np.nan, 1]], np.float32)))


def test_as_csr_canonicalises_a_copy():
    dup = sp.csr_matrix((np.ones(3, np.float32), np.array([1, 0, 1]), np.array([0, 3])), shape=(1, 2))
    out = as_csr(dup)
    assert out is not dup and out.has_canonical_format
    np.testing.assert_array_equal(out.toarray(), [[1, 2]])
    assert dup.nnz == 3  # the caller's matrix is left alone


def test_interactions_keep_the_kernel_matrix(split):
    train, _ = split
    with pytest.raises(AttributeError):
        train.csr = train.csr  # read-only: the kernel cache is derived from it
    ops = get_ops("cpu")
    assert train._kernel_csr(ops) is train._kernel_csr(ops)
    rf.ALS(factors=4, epochs=1).fit(train, progress=False)
    kept = dict(train._kernel)
    rf.ALS(factors=4, epochs=1).fit(train, progress=False)  # a second fit converts nothing
    assert train._kernel.keys() == kept.keys() and all(train._kernel[k] is v for k, v in kept.items())
    transposed = train._kernel_csr(ops, transposed=True)
    assert transposed.shape == train.csr.shape[::-1] and transposed.nnz == train.nnz


# -- exclusion rows -------------------------------------------------------------------------------
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_seen_rows_match_scipy_row_indexing(rng, index_dtype):
    m = sp.random(50, 30, density=0.2, format="csr", random_state=rng, dtype=np.float32)
    m = sp.csr_matrix((m.data, m.indices.astype(index_dtype), m.indptr.astype(index_dtype)), shape=m.shape)
    for rows in (np.array([3, 0, 49, 3, 7]), np.zeros(0, np.int64), np.arange(50)):
        out, ref = seen_rows(m, rows), m[rows]
        assert out.indptr.dtype == np.int64 and out.indices.dtype == m.indices.dtype  # no widening copy
        assert out.shape == ref.shape and out.nnz == ref.nnz
        np.testing.assert_array_equal(out.indptr, ref.indptr)
        np.testing.assert_array_equal(out.indices, ref.indices)


def test_recommend_excludes_seen_as_topk_does(split):
    train, _ = split
    model = rf.ALS(factors=8, epochs=2).fit(train, progress=False)
    users = np.array([5, 0, 5, 199])
    ids, scores = model.recommend(users, k=20)
    ref_ids, ref_scores = rf.topk(model.user_factors[users], model.item_factors, 20, exclude=train.csr[users])
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(scores, ref_scores)


# -- ranking cache --------------------------------------------------------------------------------
def _fresh_recommend(model, users, k=10):
    """What a model rebuilt from ``model``'s current arrays recommends (no cache carried over)."""
    twin = type(model).from_factors(model.user_factors, model.item_factors, seen=model.seen_,
                                    user_bias=model.user_bias, item_bias=model.item_bias,
                                    global_bias=model.global_bias, **model.get_params())  # fmt: skip
    return twin.recommend(users, k=k)


@pytest.mark.parametrize("feedback", ["implicit", "explicit"])
def test_ranking_cache_follows_partial_fit(split, rng, feedback):
    train, _ = split
    model = rf.ALS(factors=8, epochs=2, feedback=feedback).fit(train, progress=False)
    users = np.arange(20)
    before = model.recommend(users, k=10)  # fills the cache
    rows = sp.random(5, model.n_users, density=0.3, format="csr", random_state=rng, dtype=np.float32)
    model.partial_fit_items([1, 2, 3, 4, 100], rows * 5)  # changes item factors (and biases), adds an item
    after = model.recommend(users, k=10)
    assert after[0].max() <= 100 and not np.array_equal(before[0], after[0])
    for a, b in zip(after, _fresh_recommend(model, users)):
        np.testing.assert_array_equal(a, b)
    model.partial_fit_users([0, 1], sp.csr_matrix(np.eye(2, model.n_items, dtype=np.float32)))
    for a, b in zip(model.recommend(users, k=10), _fresh_recommend(model, users)):
        np.testing.assert_array_equal(a, b)


def test_ranking_cache_follows_fit_to_and_load(split, tmp_path):
    train, _ = split
    model = rf.ALS(factors=8, epochs=2).fit(train, progress=False)
    users = np.arange(20)
    model.recommend(users)
    assert "_rank_cache" in model.__dict__
    model.to("cpu")
    assert "_rank_cache" not in model.__dict__  # moved arrays: rebuilt on the next call
    first = model.recommend(users)
    model.set_params(factors=4, seed=9)  # parameters only: the fitted arrays still rank
    np.testing.assert_array_equal(model.recommend(users)[0], first[0])
    model.fit(train, progress=False)
    np.testing.assert_array_equal(
        model.recommend(users)[0], rf.ALS(factors=4, epochs=2, seed=9).fit(train, progress=False).recommend(users)[0]
    )
    model.save(tmp_path / "m.rf")
    loaded = rf.load(tmp_path / "m.rf")
    np.testing.assert_array_equal(loaded.recommend(users)[0], model.recommend(users)[0])


def test_ranking_cache_follows_a_refit_of_most_popular(split):
    train, test = split
    model = rf.MostPopular().fit(train)
    first = model.recommend(np.arange(5), k=5, exclude_seen=False)[0]
    model.fit(test)
    again = model.recommend(np.arange(5), k=5, exclude_seen=False)[0]
    np.testing.assert_array_equal(again, rf.MostPopular().fit(test).recommend(np.arange(5), k=5,
                                                                           exclude_seen=False)[0])  # fmt: skip
    assert not np.array_equal(first, again)
