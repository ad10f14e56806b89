"""HybridMF: feature embeddings, cold users and items, the content fallback, the kernel's boundary, real data.

What every model does alike is in test_contract.py (HybridMF without features: identity, plain MF).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import data_path, rewrite_model_file
from hypothesis import given, settings
from hypothesis import strategies as st

import recforge as rf
from recforge import _core


@pytest.fixture(scope="module")
def world(two_tastes):
    return two_tastes


@pytest.mark.parametrize("loss", ["warp", "bpr", "logistic"])
def test_cold_items_are_ranked_from_their_features(world, loss):
    x, fu, fi, user_group, item_group = world
    model = rf.HybridMF(factors=8, loss=loss, epochs=30, negatives="interacted", threads=1, seed=1).fit(
        x, user_features=fu, item_features=fi, progress=False)  # fmt: skip
    losses = [h["loss"] for h in model.history_]
    assert losses[-1] < losses[0]
    cold = np.arange(30, 40)
    scores = model.user_factors @ model.item_factors[cold].T + model.item_bias[cold]
    same = user_group[:, None] == item_group[cold][None, :]
    assert scores[same].mean() > scores[~same].mean() + 0.1
    # A cold item's identity feature was never trained: it is its group's embedding only.
    group_only = fi.matrix[cold].multiply(np.array([not n.startswith("id=") for n in fi.names]))
    np.testing.assert_allclose(model.item_factors[cold], group_only @ model.item_embeddings, rtol=1e-5, atol=1e-7)


def test_new_users_and_items_from_features(world):
    x, fu, fi, user_group, item_group = world
    model = rf.HybridMF(factors=8, epochs=30, threads=1).fit(x, user_features=fu, item_features=fi, progress=False)
    new_users = fu.transform(pd.DataFrame({"user": [100, 101], "group": ["0", "1"]}))
    ids, scores = model.recommend_for_features(new_users, k=5)
    assert (item_group[ids[0]] == 0).all() and (item_group[ids[1]] == 1).all()
    q = new_users @ model.user_embeddings
    np.testing.assert_allclose(scores, np.take_along_axis(q @ model.item_factors.T + model.item_bias, ids, 1),
                               rtol=1e-5)  # fmt: skip
    new_items = fi.transform(pd.DataFrame({"item": [900], "group": ["1"]}))
    near, cos = model.similar_items_by_features(new_items, k=3)  # the content-based fallback
    assert (item_group[near[0]] == 1).all() and (cos > 0).all()
    added = model.add_items(new_items)
    assert added.tolist() == [40] and model.n_items == 41 and model.seen_.shape == (60, 41)
    np.testing.assert_allclose(model.item_factors[40], model.item_factors_for(new_items)[0][0])
    assert 40 in model.recommend([int(np.flatnonzero(user_group == 1)[0])], k=41)[0]
    empty, _ = model.similar_items_by_features(sp.csr_matrix((1, fi.n_features), dtype=np.float32), k=2)
    assert (empty == -1).all()  # a new item without features has no neighbours
    with pytest.raises(ValueError, match=f"user_rows must have {fu.n_features} columns"):
        model.recommend_for_features(new_users[:, :-1])


def test_save_load_keeps_embeddings_features_and_vocabulary(world, tmp_path):
    x, fu, fi, *_ = world
    model = rf.HybridMF(factors=4, epochs=3, positive_sampling=0.5, threads=1)
    model.fit(x, user_features=fu, item_features=fi, progress=False)
    model.save(tmp_path / "h.rf")
    back = rf.load(tmp_path / "h.rf")
    assert back.get_params() == model.get_params() and back.positive_sampling == 0.5
    for name in ("user_embeddings", "item_embeddings", "item_feature_bias", "user_factors", "item_factors"):
        np.testing.assert_array_equal(getattr(back, name), getattr(model, name))
    assert (back.item_features_ != model.item_features_).nnz == 0
    np.testing.assert_array_equal(back._item_spec, fi.spec_array())


def test_a_file_saved_before_positive_sampling_existed_loads_as_fitted_per_interaction(world, tmp_path):
    """positive_sampling came with draws per interaction; its default is now 0.5, and an older file (no
    positive_sampling in its parameters) must refit as it was fitted."""
    x, fu, fi, *_ = world
    model = rf.HybridMF(factors=4, epochs=2, positive_sampling="interactions", threads=1)
    model.fit(x, user_features=fu, item_features=fi, progress=False).save(tmp_path / "old.rf")
    old = tmp_path / "old.rf"
    rewrite_model_file(old, lambda arrays, meta: meta["params"].pop("positive_sampling"))
    loaded = rf.load(old)
    assert loaded.positive_sampling == "interactions" and rf.HybridMF().positive_sampling == 0.5
    refit = loaded.fit(x, user_features=fu, item_features=fi, progress=False)
    np.testing.assert_array_equal(refit.item_factors, model.item_factors)  # one thread: the same fit


@pytest.mark.parametrize("model_class", [rf.HybridMF, rf.MLPScorer, rf.ALS])
def test_features_must_match_the_interactions(world, model_class):
    """Every model taking features checks them in one place (models/_features.py): same messages."""
    x, fu, fi, *_ = world
    with pytest.raises(ValueError, match="item_features must have one row per entity of the interactions"):
        model_class(epochs=1).fit(x, item_features=fi.matrix[:-1])
    nan = fi.matrix.copy()
    nan.data[0] = np.nan
    with pytest.raises(ValueError, match="item_features contains NaN"):
        model_class(epochs=1).fit(x, item_features=nan)


def test_kernel_boundary_rejects_bad_arrays(world):
    x, fu, fi, *_ = world
    csr = lambda m: _core.Csr(m.indptr, m.indices, m.data, m.shape)  # noqa: E731
    f = 4
    arrays = [np.zeros((fu.n_features, f), np.float32), np.zeros((fi.n_features, f), np.float32),
              np.zeros(fi.n_features, np.float32)]  # fmt: skip
    g2 = [np.zeros_like(a) for a in arrays]
    args = (csr(x), csr(fu.matrix), csr(fi.matrix), np.arange(40, dtype=np.int32), *arrays, *g2, 0.05, 0.0, 0.0,
            _core.HybridLoss.warp, 10, 1, 0, 0)  # fmt: skip
    stats = _core.hybrid_epoch(*args)
    assert stats["samples"] > 0 and np.isfinite(stats["loss"])
    bad_negatives = list(args)
    bad_negatives[3] = np.array([0, 40], np.int32)
    with pytest.raises(ValueError, match="negatives: id 40"):
        _core.hybrid_epoch(*bad_negatives)
    short_rows = list(args)
    short_rows[2] = csr(fi.matrix[:-1])
    with pytest.raises(ValueError, match="item_features must have one row per item"):
        _core.hybrid_epoch(*short_rows)
    wrong_shape = list(args)
    wrong_shape[5] = np.zeros((fi.n_features + 1, f), np.float32)
    with pytest.raises(ValueError, match="item_emb must have shape"):
        _core.hybrid_epoch(*wrong_shape)
    wrong_dtype = list(args)
    wrong_dtype[4] = arrays[0].astype(np.float64)
    with pytest.raises(TypeError, match="user_emb must be a float32"):
        _core.hybrid_epoch(*wrong_dtype)
    strided = list(args)
    strided[5] = np.zeros((fi.n_features, 2 * f), np.float32)[:, ::2]
    with pytest.raises(ValueError, match="item_emb must have contiguous rows"):
        _core.hybrid_epoch(*strided)
    spacing = list(args)
    spacing[8] = np.zeros((fi.n_features, 3 * f), np.float32)[:, :f]
    with pytest.raises(ValueError, match="item_emb_g2 must have the row spacing of item_emb"):
        _core.hybrid_epoch(*spacing)


def test_embeddings_and_accumulators_may_share_rows(world):
    """The kernel takes each embedding table and its accumulators as views of one array (a feature's
    embedding and accumulators side by side, as fit keeps them): the same epoch as separate arrays."""
    x, fu, fi, *_ = world
    csr = lambda m: _core.Csr(m.indptr, m.indices, m.data, m.shape)  # noqa: E731
    f = 4
    start = np.random.default_rng(0).random((fu.n_features + fi.n_features, f), dtype=np.float32) - 0.5

    def run(side_by_side):
        users = np.zeros((fu.n_features, 2 * f), np.float32)
        items = np.zeros((fi.n_features, 2 * f), np.float32)
        users[:, :f], items[:, :f] = start[: fu.n_features], start[fu.n_features :]
        views = [users[:, :f], items[:, :f], users[:, f:], items[:, f:]]
        if not side_by_side:
            views = [np.ascontiguousarray(v) for v in views]
        bias = [np.zeros(fi.n_features, np.float32), np.zeros(fi.n_features, np.float32)]
        for epoch in range(3):
            _core.hybrid_epoch(csr(x), csr(fu.matrix), csr(fi.matrix), np.arange(40, dtype=np.int32), views[0],
                               views[1], bias[0], views[2], views[3], bias[1], 0.05, 0.0, 0.0, _core.HybridLoss.warp,
                               10, 1, 0, epoch)  # fmt: skip
        return [np.array(v) for v in views] + bias

    for shared, separate in zip(run(True), run(False)):
        np.testing.assert_array_equal(shared, separate)
    assert not np.array_equal(run(True)[0], start[: fu.n_features])


def test_negative_pools():
    """Which ids negatives are drawn from (uniformly from the pool): every item; only those with a
    training interaction; or every item with the interacted ones MIXED_WEIGHT times as likely."""
    from recforge.models.hybrid import MIXED_WEIGHT

    train = sp.csr_matrix(np.array([[1, 0, 0, 1], [0, 0, 0, 1]], np.float32))  # items 1, 2 without history
    pools = {n: rf.HybridMF(negatives=n)._negative_pool(train) for n in ("mixed", "interacted", "all")}
    assert rf.HybridMF().negatives == "mixed"
    np.testing.assert_array_equal(pools["all"], [0, 1, 2, 3])
    np.testing.assert_array_equal(pools["interacted"], [0, 3])
    counts = np.bincount(pools["mixed"], minlength=4)
    np.testing.assert_array_equal(counts, [MIXED_WEIGHT, 1, 1, MIXED_WEIGHT])
    assert all(p.dtype == np.int32 for p in pools.values())


def positive_draws_per_user(lengths, power, epochs, seed=0):
    """How many times each user's positives were drawn in ``epochs`` one-thread BPR epochs with
    ``user_power=power``: user u owns ``lengths[u]`` items of their own, negatives come from items no
    one has, and every embedding row starts alike with a tiny lr, so each positive draw adds
    sigmoid(0)^2 = 1/4 (to within lr) to its item's bias accumulator and nothing else touches it."""
    lengths = np.asarray(lengths)
    nnz, n_items = int(lengths.sum()), int(lengths.sum()) + 3
    x = sp.csr_matrix(
        (np.ones(nnz, np.float32), np.arange(nnz), np.r_[0, np.cumsum(lengths)]), shape=(len(lengths), n_items)
    )
    csr = lambda m: _core.Csr(m.indptr, m.indices, m.data, m.shape)  # noqa: E731
    identity = lambda n: csr(sp.identity(n, np.float32, format="csr"))  # noqa: E731
    emb = [
        np.full((len(lengths), 2), 0.1, np.float32),
        np.full((n_items, 2), 0.1, np.float32),
        np.zeros(n_items, np.float32),
    ]
    g2 = [np.zeros_like(a) for a in emb]
    for epoch in range(epochs):
        _core.hybrid_epoch(csr(x), identity(len(lengths)), identity(n_items), np.arange(nnz, n_items, dtype=np.int32),
                           *emb, *g2, 1e-7, 0.0, 0.0, _core.HybridLoss.bpr, 10, 1, seed, epoch, power)  # fmt: skip
    per_item = np.rint(g2[2][:nnz] / 0.25).astype(np.int64)
    assert per_item.sum() == epochs * nnz  # every draw counted once
    return np.add.reduceat(per_item, np.r_[0, np.cumsum(lengths)[:-1]]), per_item


@settings(max_examples=25, deadline=None)
@given(lengths=st.lists(st.integers(1, 40), min_size=1, max_size=12), power=st.floats(0.0, 1.0),
       seed=st.integers(0, 2**32))  # fmt: skip
def test_user_power_draws_users_in_proportion_to_history_length_to_the_power(lengths, power, seed):
    """A positive is drawn via a user with probability lengths[u]^power / sum (Walker's alias table when
    0 < power < 1), then uniformly among theirs: per-user counts within 5 binomial sigmas."""
    epochs = max(1, 6000 // sum(lengths))
    counts, _ = positive_draws_per_user(lengths, power, epochs, seed)
    expected_share = np.power(lengths, power) / np.power(lengths, power).sum()
    n = epochs * sum(lengths)
    sigma = np.sqrt(n * expected_share * (1 - expected_share))
    assert np.all(np.abs(counts - n * expected_share) <= 5 * sigma + 1)


def test_positive_sampling_per_user_or_per_interaction():
    """positive_sampling: "interactions" (user_power 1), "users" (0) or a power in between; one heavy user
    (64 positives) among 64 with one each: their share of the draws is 1/2, 1/65 and 8/72 at power 0.5,
    and within a user the positives are drawn alike."""
    lengths = [64] + [1] * 64
    shares = {}
    for power in (1.0, 0.0, 0.5):
        counts, per_item = positive_draws_per_user(lengths, power, epochs=40)
        shares[power] = counts[0] / counts.sum()
        heavy = per_item[:64]
        assert heavy.max() - heavy.min() < 8 * np.sqrt(heavy.mean())  # uniform among the heavy user's positives
    assert abs(shares[1.0] - 0.5) < 0.02 and abs(shares[0.0] - 1 / 65) < 0.006 and abs(shares[0.5] - 8 / 72) < 0.015

    assert rf.HybridMF().positive_sampling == 0.5
    rows, cols = np.r_[np.zeros(64, int), np.arange(1, 65)], np.r_[np.arange(64), np.arange(64) % 7]
    x = sp.csr_matrix((np.ones(128, np.float32), (rows, cols)), shape=(65, 70))
    fit = lambda s: rf.HybridMF(factors=4, epochs=5, positive_sampling=s, threads=1, seed=2).fit(x, progress=False)  # noqa: E731
    for sampling in ("users", 0.5):
        np.testing.assert_array_equal(fit(sampling).item_factors, fit(sampling).item_factors)  # one thread: repeats
        assert not np.array_equal(fit(sampling).item_factors, fit("interactions").item_factors)
    np.testing.assert_array_equal(fit(1.0).item_factors, fit("interactions").item_factors)  # names are powers
    np.testing.assert_array_equal(fit(0).item_factors, fit("users").item_factors)
    for bad, error in ((1.5, ValueError), (-0.1, ValueError), ("some", TypeError), (float("nan"), ValueError)):
        with pytest.raises(error, match="positive_sampling"):
            rf.HybridMF(positive_sampling=bad).fit(x, progress=False)


def test_kernel_rejects_a_user_power_outside_zero_one(world):
    x, fu, fi, *_ = world
    csr = lambda m: _core.Csr(m.indptr, m.indices, m.data, m.shape)  # noqa: E731
    arrays = [np.zeros((fu.n_features, 4), np.float32), np.zeros((fi.n_features, 4), np.float32),
              np.zeros(fi.n_features, np.float32)]  # fmt: skip
    g2 = [np.zeros_like(a) for a in arrays]
    for power in (-0.5, 1.5, float("nan")):
        with pytest.raises(ValueError, match="user_power must be"):
            _core.hybrid_epoch(csr(x), csr(fu.matrix), csr(fi.matrix), np.arange(40, dtype=np.int32), *arrays, *g2,
                               0.05, 0.0, 0.0, _core.HybridLoss.warp, 10, 1, 0, 0, power)  # fmt: skip


def test_item_cold_start_on_movielens_beats_pure_cf():
    path = data_path("ml-100k", "u.item")
    genres = [f"g{j}" for j in range(19)]
    items = pd.read_csv(path, sep="|", header=None, encoding="latin-1", names=["item", "t", "d", "v", "u", *genres])
    items["genres"] = items[genres].apply(lambda r: "|".join(g for g in genres if r[g]), axis=1)
    df = rf.datasets.load_movielens("100k", data_home=path.parent.parent)
    inter = rf.Interactions.from_pandas(df[df.rating >= 4], user_col="user", item_col="item",
                                        item_ids=rf.IdMap.from_values(items["item"]))  # fmt: skip
    fi = rf.Features.from_pandas(items, "item", ids=inter.item_ids, tags={"genres": "|"}, identity=True)
    m = inter.csr.tocsc()
    cold = np.sort(np.random.default_rng(0).choice(m.shape[1], m.shape[1] // 5, replace=False))
    is_cold = np.zeros(m.shape[1], bool)
    is_cold[cold] = True
    coo = inter.csr.tocoo()
    keep = ~is_cold[coo.col]
    split = lambda k: sp.csr_matrix((coo.data[k], (coo.row[k], coo.col[k])), shape=m.shape)  # noqa: E731
    train, test = split(keep), split(~keep)
    users = np.flatnonzero(np.diff(test.indptr))
    hybrid = rf.HybridMF(factors=32, epochs=10, seed=0).fit(train, item_features=fi, progress=False)
    bpr = rf.BPR(factors=32, epochs=10, seed=0).fit(train, progress=False)

    def cold_auc(model):
        s = model.user_factors[users] @ model.item_factors[cold].T
        if model.item_bias is not None:
            s = s + model.item_bias[cold]
        return rf.evaluation.auc(s, test[users][:, cold])

    assert cold_auc(hybrid) > 0.65 > cold_auc(bpr) + 0.1, (cold_auc(hybrid), cold_auc(bpr))


@pytest.mark.parametrize("loss", ["warp", "bpr"])
def test_several_threads_step_on_copies_of_shared_rows_and_add_their_changes(world, loss):
    """At several threads each thread steps on its own copies of the rows of features many entities
    share (here the two groups) and adds its block's changes to the shared rows when the block ends.
    One block (fewer than 4096 positives) runs on one thread: the same steps as threads=1, the shared
    rows reaching the same values up to the rounding of the added changes."""
    x, fu, fi, _, _ = world
    assert x.nnz < 4096

    def fit(threads):
        return rf.HybridMF(factors=8, loss=loss, epochs=5, threads=threads, seed=3).fit(
            x, user_features=fu, item_features=fi, progress=False)  # fmt: skip

    one, two = fit(1), fit(2)
    shared = [k for k, name in enumerate(fi.names) if not name.startswith("id=")]
    assert len(shared) == 2 and np.abs(one.item_embeddings[shared]).min() > 0  # the group rows were trained
    for name in ("user_embeddings", "item_embeddings", "item_feature_bias"):
        np.testing.assert_allclose(getattr(two, name), getattr(one, name), rtol=1e-4, atol=1e-6, err_msg=name)
