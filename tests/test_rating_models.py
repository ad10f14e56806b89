"""Rating models (SGDMF, explicit ALS): predictions clipped to the learned rating scale, the scale
saved with the model; implicit ALS warns about raw heavy-tailed counts; BPR's per-loss defaults."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import rewrite_model_file

import recforge as rf

RATING_MODELS = [
    pytest.param(lambda **kw: rf.SGDMF(factors=8, epochs=40, lr=0.1, regularization=0.0, threads=1, **kw), id="sgdmf"),
    pytest.param(lambda **kw: rf.ALS(factors=4, epochs=3, feedback="explicit", regularization=0.0, **kw), id="als"),
]


def ratings(seed=0, n_users=40, n_items=30):
    """Ratings 1..5 on a random half of the pairs; the high learning rate / no regularisation of the
    models above overshoot, so unclipped predictions leave the scale."""
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < 0.5
    r, c = np.nonzero(mask)
    return sp.csr_matrix((rng.integers(1, 6, r.size).astype(np.float32), (r, c)), shape=(n_users, n_items))


def all_pairs(m):
    n_users, n_items = m.shape
    return np.repeat(np.arange(n_users), n_items), np.tile(np.arange(n_items), n_users)


@pytest.mark.parametrize("make", RATING_MODELS)
def test_predictions_are_clipped_to_the_learned_rating_scale(make, tmp_path):
    train = ratings()
    clipped = make().fit(train, progress=False)
    raw = make(clip=False).fit(train, progress=False)
    assert clipped.predicts_ratings and clipped.rating_range_ == (1.0, 5.0)
    u, i = all_pairs(train)
    s, r = clipped.score(u, i), raw.score(u, i)
    assert r.min() < 1 or r.max() > 5, "the raw predictions must leave the scale for this test to mean anything"
    assert s.min() >= 1 and s.max() <= 5
    np.testing.assert_array_equal(s, np.clip(r, 1, 5))
    # An explicit range wins; recommend ranks the unclipped predictions either way.
    assert make(clip=(2, 3)).fit(train, progress=False).score(u, i).max() <= 3
    np.testing.assert_array_equal(clipped.recommend([0, 1])[0], raw.recommend([0, 1])[0])
    # The scale is saved: a loaded model clips the same way, even after fold-in changed seen_.
    clipped.save(tmp_path / "m.rf")
    loaded = rf.load(tmp_path / "m.rf")
    assert loaded.rating_range_ == (1.0, 5.0)
    np.testing.assert_array_equal(loaded.score(u, i), s)


def test_rating_scale_declared_and_files_without_the_saved_range(tmp_path):
    train = ratings()
    model = rf.SGDMF(factors=4, epochs=3, rating_scale=(0, 10), threads=1).fit(train, progress=False)
    assert model.rating_range_ == (0.0, 10.0)
    model = rf.SGDMF(factors=4, epochs=3, threads=1).fit(train * 0.5, progress=False)
    model.save(tmp_path / "m.rf")

    def drop_range(arrays, meta):  # a file written before the range was saved
        del arrays["rating_range"], meta["arrays"]["rating_range"]

    rewrite_model_file(tmp_path / "m.rf", drop_range)
    assert rf.load(tmp_path / "m.rf").rating_range_ == (0.5, 2.5)  # from the saved training ratings

    def bad_range(arrays, meta):
        arrays["rating_range"] = np.array([3.0, 1.0])

    model.save(tmp_path / "bad.rf")
    rewrite_model_file(tmp_path / "bad.rf", bad_range)
    with pytest.raises(ValueError, match="rating_range"):
        rf.load(tmp_path / "bad.rf")


def test_implicit_models_do_not_predict_ratings():
    train = ratings()
    assert not rf.ALS(factors=4, epochs=1).fit(train, progress=False).predicts_ratings
    assert not hasattr(rf.BPR(), "predicts_ratings") or not rf.BPR().predicts_ratings


def test_als_warns_on_raw_heavy_tailed_counts():
    rng = np.random.default_rng(0)
    counts = ratings()
    counts.data = np.floor(rng.pareto(1.0, counts.nnz) * 50 + 1).astype(np.float32)  # plays: a heavy tail
    with pytest.warns(UserWarning, match="raw counts with a heavy tail.*log_scale.*bm25"):
        rf.ALS(factors=4, epochs=1).fit(counts, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rf.ALS(factors=4, epochs=1).fit(rf.transforms.bm25_weight(counts), progress=False)  # weighted
        rf.ALS(factors=4, epochs=1).fit(ratings(), progress=False)  # 1..5: no tail
        binary = ratings()
        binary.data[:] = 1
        rf.ALS(factors=4, epochs=1).fit(binary, progress=False)


def test_bpr_defaults_depend_on_the_loss():
    assert rf.BPR().steps() == (0.05, 0.01)
    assert rf.BPR(loss="warp").steps() == (0.002, 1.0)
    assert rf.BPR(loss="warp", lr=0.01).steps() == (0.01, 1.0)
    assert rf.BPR(loss="warp", regularization=0.1).steps() == (0.002, 0.1)
    assert rf.BPR().get_params()["lr"] is None  # the choice stays the loss's until set


# -- evaluation of rating models ---------------------------------------------------------------------
def split_ratings():
    inter = rf.Interactions.from_scipy(ratings(n_users=60, n_items=40))
    return rf.split.random_holdout(inter, test_fraction=0.25, seed=1)


def test_evaluate_gives_rating_models_rating_metrics():
    train, test = split_ratings()
    model = rf.SGDMF(factors=4, epochs=5, threads=1).fit(train, progress=False)
    got = rf.evaluation.evaluate(model, train, test, progress=False)
    coo = test.csr.tocoo()
    pred = model.score(coo.row, coo.col)
    assert set(got) == {"rmse", "mae", "n_ratings", "n_users"}  # no silent ranking on binarised ratings
    assert got["rmse"] == pytest.approx(rf.evaluation.rmse(coo.data, pred))
    assert got["mae"] == pytest.approx(rf.evaluation.mae(coo.data, pred))
    assert got["n_ratings"] == test.nnz
    with pytest.raises(ValueError, match="predicts ratings: ranking metrics need relevance_threshold"):
        rf.evaluation.evaluate(model, train, test, metrics=["ndcg"], progress=False)
    # With a threshold: ranking against the test ratings >= 4 only, plus the rating metrics.
    both = rf.evaluation.evaluate(model, train, test, relevance_threshold=4, progress=False)
    assert both["rmse"] == got["rmse"] and "ndcg@10" in both
    high = test.csr.multiply(test.csr >= 4).tocsr()
    only_high = rf.evaluation.evaluate(model, train, high, metrics=["ndcg", "recall"], relevance_threshold=4)
    assert both["ndcg@10"] == only_high["ndcg@10"] and both["recall@10"] == only_high["recall@10"]


def test_evaluate_rating_metrics_need_a_rating_model_and_thresholds_apply_to_any_model():
    train, test = split_ratings()
    pop = rf.MostPopular().fit(train)
    with pytest.raises(ValueError, match="MostPopular does not predict ratings"):
        rf.evaluation.evaluate(pop, train, test, metrics=["rmse"], progress=False)
    every = rf.evaluation.evaluate(pop, train, test, metrics=["recall"], progress=False)
    high = rf.evaluation.evaluate(pop, train, test, metrics=["recall"], relevance_threshold=5, progress=False)
    assert high["n_users"] < every["n_users"]  # fewer users have a 5 in test than any rating
    with pytest.raises(ValueError, match="no test entry has a value >= relevance_threshold=6"):
        rf.evaluation.evaluate(pop, train, test, relevance_threshold=6, progress=False)
    with pytest.raises(TypeError, match="relevance_threshold must be a number"):
        rf.evaluation.evaluate(pop, train, test, relevance_threshold="4", progress=False)
