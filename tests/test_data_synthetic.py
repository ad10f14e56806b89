"""synthetic(): determinism, exact size, power-law shapes, planted structure that models can learn."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import svds

import recforge as rf


@pytest.fixture(scope="module")
def data():
    return rf.datasets.synthetic(3_000, 1_000, 100_000, factors=16, seed=1, return_truth=True)


def test_size_dtypes_and_no_duplicates(data):
    df, truth = data
    assert list(df.columns) == ["user", "item", "rating", "timestamp"]
    assert len(df) == 100_000
    assert not df.duplicated(["user", "item"]).any()
    assert df.user.nunique() == 3_000  # every user has at least one interaction
    assert df.user.between(0, 2_999).all() and df.item.between(0, 999).all()
    assert df.user.dtype == np.int64 and df.item.dtype == np.int64 and df.rating.dtype == np.float32
    assert set(np.unique(df.rating)) <= {1, 2, 3, 4, 5}
    assert df.user.value_counts().max() <= 500  # at most half the catalogue
    assert truth.user_topics.shape == (3_000, 17) and truth.item_topics.shape == (17, 1_000)
    np.testing.assert_allclose(truth.item_topics.sum(1), 1.0)
    np.testing.assert_allclose(truth.user_topics.sum(1), 1.0)


def test_seeded_determinism():
    a = rf.datasets.synthetic(300, 200, 5_000, seed=7)
    b = rf.datasets.synthetic(300, 200, 5_000, seed=7)
    c = rf.datasets.synthetic(300, 200, 5_000, seed=8)
    assert a.equals(b)
    assert not a.equals(c)
    assert "timestamp" not in rf.datasets.synthetic(300, 200, 5_000, seed=7, timestamps=False)


def _loglog_slope(counts, lo, hi):
    c = np.sort(counts)[::-1][lo:hi].astype(float)
    r = np.arange(lo + 1, lo + 1 + len(c))
    return np.polyfit(np.log(r), np.log(c), 1)[0]


def test_power_law_shapes(data):
    df, _ = data
    users = df.user.value_counts().to_numpy()
    items = df.item.value_counts().to_numpy()
    # rank-frequency slopes near the exponents (0.8 both by default) away from the cap and the tail
    assert -1.0 < _loglog_slope(users, 20, 1_500) < -0.6
    assert -1.1 < _loglog_slope(items, 10, 500) < -0.4
    # heavy tails: the top 10% of users make a large share of the interactions
    assert np.sort(users)[::-1][:300].sum() / len(df) > 0.3
    flat = rf.datasets.synthetic(2_000, 1_000, 40_000, user_exponent=0, item_exponent=0, seed=0)
    assert flat.user.value_counts().max() <= 21  # uniform activity: 20 each, rounding aside


def _recall_at_10(scores, train, test):
    scores = scores.astype(np.float64, copy=True)
    scores[train.nonzero()] = -np.inf
    top = np.argpartition(-scores, 10, axis=1)[:, :10]
    t = test.toarray() > 0
    hits = np.take_along_axis(t, top, 1).sum(1)
    n = t.sum(1)
    keep = n > 0
    return float((hits[keep] / np.minimum(n[keep], 10)).mean())


def test_planted_structure_beats_popularity(data):
    """A low-rank model (truncated SVD, a cheap stand-in for ALS) clearly beats popularity."""
    df, truth = data
    inter = rf.Interactions.from_pandas(df)
    train, test = rf.split.random_holdout(inter, test_fraction=0.2, seed=0)
    x = train.csr
    popularity = np.asarray(x.sum(axis=0)).ravel()
    pop = _recall_at_10(np.tile(popularity, (x.shape[0], 1)), x, test.csr)
    u, s, vt = svds(x.astype(np.float64), k=16, random_state=0)
    svd = _recall_at_10((u * s) @ vt, x, test.csr)
    planted = _recall_at_10(truth.scores(np.arange(x.shape[0])), x, test.csr)
    assert svd > 1.5 * pop, (svd, pop)
    assert planted > 1.8 * pop, (planted, pop)
    # shuffling the items within users destroys the structure: SVD then is no better than popularity
    rng = np.random.default_rng(0)
    shuffled = sp.csr_matrix(
        (x.data, rng.choice(x.shape[1], size=x.nnz, p=popularity / popularity.sum()), x.indptr), shape=x.shape
    )
    shuffled.sum_duplicates()
    u2, s2, vt2 = svds(shuffled.astype(np.float64), k=16, random_state=0)
    assert _recall_at_10((u2 * s2) @ vt2, shuffled, test.csr) < 1.2 * pop


def test_ratings_follow_affinity(data):
    df, truth = data
    q = truth.item_affinity
    aff = truth.user_topics[df.user.to_numpy(), :-1][np.arange(len(df)), q.argmax(1)[df.item.to_numpy()]]
    assert np.corrcoef(aff, df.rating)[0, 1] > 0.4
    assert 3.0 < df.rating.mean() < 4.2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_users=10, n_items=10, nnz=5), r"nnz must be in .* = \[10, 50\]"),
        (dict(n_users=10, n_items=10, nnz=51), r"nnz must be in .* = \[10, 50\]"),
        (dict(n_users=0, n_items=10, nnz=5), "n_users must be finite and > 0"),
        (dict(n_users=10, n_items=10, nnz=20, noise=2.0), r"noise must be in \[0, 1\]"),
        (dict(n_users=10, n_items=10, nnz=20, concentration=0), "concentration must be finite and > 0"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        rf.datasets.synthetic(**kwargs)


def test_dense_corner_reaches_exact_size():
    # every user at the cap (half the catalogue): needs the redraw rounds to finish
    df = rf.datasets.synthetic(50, 40, 50 * 20, seed=3)
    assert len(df) == 1_000 and (df.user.value_counts() == 20).all()
    assert not df.duplicated(["user", "item"]).any()


def test_als_learns_the_planted_structure(data):
    """The real thing, where the cheap proxy above stands in: ALS clearly beats popularity."""
    if not hasattr(rf, "ALS"):
        pytest.skip("recforge.ALS not built in this checkout")
    df, _ = data
    inter = rf.Interactions.from_pandas(df)
    train, test = rf.split.random_holdout(inter, test_fraction=0.2, seed=0)
    pop = rf.evaluation.evaluate(rf.MostPopular().fit(train), train, test, k=10)["ndcg@10"]
    als = rf.ALS(factors=16, epochs=8, regularization=0.05, threads=2, seed=0).fit(train, progress=False)
    assert rf.evaluation.evaluate(als, train, test, k=10)["ndcg@10"] > 1.5 * pop
