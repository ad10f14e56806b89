"""SGD factorisation: SGDMF (explicit ratings), BPR and WARP (implicit feedback): learning, kernels, sampling
(what every model does alike, persistence, threads and bad parameters included: test_contract.py)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import recforge as rf
from recforge import _core


# -- planted problems --------------------------------------------------------------------------
def planted_ratings(seed=0, n_users=300, n_items=200, rank=3, density=0.4, noise=0.1):
    """Ratings mu + b_u + b_i + U V^T + noise on a random subset; returns (train, test) COO parts."""
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((n_users, rank))
    V = rng.standard_normal((n_items, rank))
    full = 3.0 + 0.3 * rng.standard_normal(n_users)[:, None] + 0.3 * rng.standard_normal(n_items)[None, :] + U @ V.T
    mask = rng.random((n_users, n_items)) < density
    rows, cols = np.nonzero(mask)
    vals = (full[rows, cols] + noise * rng.standard_normal(rows.size)).astype(np.float32)
    held = rng.random(rows.size) < 0.2
    shape = (n_users, n_items)
    train = sp.csr_matrix((vals[~held], (rows[~held], cols[~held])), shape=shape)
    return train, rows[held], cols[held], full[rows[held], cols[held]]


def planted_implicit(seed=0, n_users=400, n_items=300, n_groups=6, per_user=15):
    """Users and items fall in groups; a user's positives come from its group, plus a popular head
    every user likes a little. Returns (train, test) CSR with a per-user held-out part."""
    rng = np.random.default_rng(seed)
    ugroup = rng.integers(0, n_groups, n_users)
    igroup = rng.integers(0, n_groups, n_items)
    popularity = rng.pareto(1.5, n_items) + 1
    rows, cols = [], []
    for u in range(n_users):
        own = np.flatnonzero(igroup == ugroup[u])
        p = popularity[own] / popularity[own].sum()
        items = rng.choice(own, size=min(per_user, own.size), replace=False, p=p)
        rows += [u] * items.size
        cols += list(items)
    rows, cols = np.array(rows), np.array(cols)
    held = rng.random(rows.size) < 0.2
    shape = (n_users, n_items)
    ones = np.ones(rows.size, np.float32)
    train = sp.csr_matrix((ones[~held], (rows[~held], cols[~held])), shape=shape)
    test = sp.csr_matrix((ones[held], (rows[held], cols[held])), shape=shape)
    return train, test


def hit_rate(model, test, k=10):
    """Fraction of held-out positives found in the top k (training items excluded)."""
    users = np.flatnonzero(np.diff(test.indptr))
    ids, _ = model.recommend(users, k=k)
    hits = sum(np.isin(ids[n], test.indices[test.indptr[u] : test.indptr[u + 1]]).sum() for n, u in enumerate(users))
    return hits / test.nnz


# -- SGDMF ------------------------------------------------------------------------------------
def test_sgdmf_loss_decreases_and_recovers_rank3():
    train, ru, ri, truth = planted_ratings()
    losses = []
    model = rf.SGDMF(factors=3, lr=0.01, regularization=0.005, epochs=60, init_std=0.1, threads=1, seed=0)
    model.fit(train, callback=lambda e, s, loss: losses.append(loss), progress=False)
    assert len(losses) == 60
    # Down while it learns, then it sits near the noise floor (noise variance 0.01; it only
    # wiggles there in the 5th decimal).
    assert (np.diff(losses[:15]) < 0).all()
    assert losses[-1] < 0.02 < 0.01 * losses[0]
    assert max(losses[30:]) < min(losses[:15])
    pred = model.score(ru, ri)
    rmse = np.sqrt(np.mean((pred - truth) ** 2))
    baseline = np.sqrt(np.mean((truth - train.data.mean()) ** 2))
    assert rmse < 0.25, rmse  # the signal has std ~1.8; the noise is 0.1
    assert rmse < 0.15 * baseline


def test_sgdmf_multithreaded_fit_is_sane():
    # > 2 * 2^16 ratings, so the epochs really run on 2 threads (smaller ones use fewer).
    train, ru, ri, truth = planted_ratings(seed=1, n_users=1000, n_items=500)
    assert train.nnz > 2 * 2**16
    model = rf.SGDMF(factors=3, lr=0.01, regularization=0.005, epochs=15, threads=2).fit(train, progress=False)
    assert np.sqrt(np.mean((model.score(ru, ri) - truth) ** 2)) < 0.3


def test_sgdmf_early_stopping_keeps_best_epoch():
    train, ru, ri, truth = planted_ratings(seed=2, density=0.15, noise=0.5)
    val = sp.csr_matrix((truth.astype(np.float32), (ru, ri)), shape=train.shape)
    # Many factors, no regularisation, noisy ratings: it overfits, so the validation RMSE turns up.
    model = rf.SGDMF(factors=50, lr=0.005, regularization=0.0, epochs=200, lr_schedule="constant", threads=1)
    model.fit(train, validation=val, patience=3, progress=False)
    hist = [h["val_rmse"] for h in model.history_]
    assert 10 < len(hist) < 200
    assert model.best_epoch_ == int(np.argmin(hist))
    assert len(hist) == model.best_epoch_ + 4
    final = np.sqrt(np.mean((model.score(ru, ri) - truth) ** 2))
    assert final == pytest.approx(min(hist), rel=1e-5)


def test_sgdmf_lr_schedules():
    assert rf.SGDMF(lr=0.1, lr_schedule="constant").learning_rate(5) == 0.1
    assert rf.SGDMF(lr=0.1, lr_schedule="inverse", decay=0.5).learning_rate(2) == pytest.approx(0.05)
    assert rf.SGDMF(lr=0.1, lr_schedule="exponential", decay=0.5).learning_rate(2) == pytest.approx(0.025)
    train, *_ = planted_ratings(n_users=50, n_items=40)
    a = rf.SGDMF(epochs=3, threads=1).fit(train, progress=False)
    b = rf.SGDMF(epochs=3, threads=1, lr_schedule="exponential", decay=0.5).fit(train, progress=False)
    assert not np.array_equal(a.user_factors, b.user_factors)


def test_sgdmf_clip_cold_rows_and_unknown_ids():
    train, *_ = planted_ratings(n_users=60, n_items=50)
    train = sp.csr_matrix(sp.vstack([train, sp.csr_matrix((1, 50))]))  # user 60: no ratings
    train = sp.csr_matrix(sp.hstack([train, sp.csr_matrix((61, 1))]))  # item 50: no ratings
    model = rf.SGDMF(factors=4, epochs=5, clip=(1, 5)).fit(train, progress=False)
    s = model.score(np.arange(61).repeat(51), np.tile(np.arange(51), 61))
    assert s.min() >= 1 and s.max() <= 5
    # A user or item without training ratings predicts from the biases alone.
    assert not model.user_factors[60].any() and not model.item_factors[50].any()
    mu = model.global_bias
    assert model.score([60], [3])[0] == pytest.approx(np.clip(mu + model.item_bias[3], 1, 5), abs=1e-5)
    with pytest.raises(ValueError, match="users must be in"):
        model.score([61], [0])
    fallback = model.score([61, -1, 2], [0, 3, 50], unknown="bias")
    expect = np.clip([mu + model.item_bias[0], mu + model.item_bias[3], mu + model.user_bias[2]], 1, 5)
    np.testing.assert_allclose(fallback, expect, rtol=1e-6)
    np.testing.assert_array_equal(model.predict([1, 2], [3, 4]), model.score([1, 2], [3, 4]))
    with pytest.raises(ValueError, match="unknown must be"):
        model.score([0], [0], unknown="zero")


def test_sgdmf_without_biases():
    train, ru, ri, truth = planted_ratings(n_users=60, n_items=50)
    model = rf.SGDMF(factors=4, epochs=3, biases=False).fit(train, progress=False)
    assert model.user_bias is None and model.global_bias == 0.0
    np.testing.assert_allclose(
        model.score(ru, ri), np.einsum("ij,ij->i", model.user_factors[ru], model.item_factors[ri]), rtol=1e-5
    )


# -- bad input --------------------------------------------------------------------------------
def test_sgdmf_bad_data():
    good, ru, ri, truth = planted_ratings(n_users=30, n_items=20)
    with pytest.raises(ValueError, match="outside rating_scale"):
        rf.SGDMF(rating_scale=(1, 2)).fit(good, progress=False)
    val = sp.csr_matrix((truth.astype(np.float32), (ru, ri)), shape=good.shape)
    with pytest.raises(ValueError, match="validation set"):
        rf.SGDMF().fit(good, patience=2, progress=False)
    with pytest.raises(ValueError, match="training shape"):
        rf.SGDMF().fit(good, validation=val[:10], progress=False)
    with pytest.raises(ValueError, match="validation is empty"):
        rf.SGDMF().fit(good, validation=sp.csr_matrix(good.shape, dtype=np.float32), progress=False)
    with pytest.raises(ValueError, match="patience"):
        rf.SGDMF().fit(good, validation=val, patience=0, progress=False)
    diverging = rf.SGDMF(lr=50.0, epochs=5)
    with pytest.raises(FloatingPointError, match="diverged"):
        diverging.fit(good, progress=False)
    assert not diverging.is_fitted


def test_bpr_needs_positives():
    with pytest.raises(ValueError, match="no positive entries"):
        rf.BPR().fit(sp.csr_matrix(-np.ones((3, 4), np.float32)), progress=False)


def kernel_csr(m) -> _core.Csr:
    m = sp.csr_matrix(m, dtype=np.float32)
    return _core.Csr(m.indptr, m.indices, m.data, m.shape)


def test_core_boundary_checks():
    with pytest.raises(ValueError, match="NaN"):
        _core.SGDRatingData(kernel_csr(np.array([[1, np.nan], [0, 2]])))
    with pytest.raises(ValueError, match="n_users and n_items"):
        _core.SGDRatingData(kernel_csr(np.zeros((0, 3))))
    with pytest.raises(ValueError, match="sorted and unique"):  # the sampler binary-searches each row
        _core.SGDPositiveData(_core.Csr(np.array([0, 2], np.int64), np.array([3, 1], np.int32), None, (1, 5)))
    with pytest.raises(ValueError, match="n_items"):
        _core.SGDPositiveData(kernel_csr(np.zeros((2, 0))))
    with pytest.raises(TypeError):  # data is prepared from a validated _core.Csr only
        _core.SGDPositiveData(np.array([0, 1], np.int64), np.array([1], np.int32), 5)
    data = _core.SGDRatingData(kernel_csr(np.eye(3)))
    assert data.n == 3
    P, Q = np.zeros((3, 4), np.float32), np.zeros((3, 4), np.float32)
    with pytest.raises(TypeError, match="float32"):
        _core.sgd_mf_epoch(data, P.astype(np.float64), Q, None, None, 0.0, 0.1, 0.0, 0.0, 1, 0, 0)
    with pytest.raises(ValueError, match="shape"):
        _core.sgd_mf_epoch(data, P, Q[:2], None, None, 0.0, 0.1, 0.0, 0.0, 1, 0, 0)
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.sgd_mf_epoch(data, np.asfortranarray(np.zeros((3, 4), np.float32)), Q, None, None, 0, 0.1, 0, 0, 1, 0, 0)
    with pytest.raises(ValueError, match="both"):
        _core.sgd_mf_epoch(data, P, Q, np.zeros(3, np.float32), None, 0.0, 0.1, 0.0, 0.0, 1, 0, 0)
    pos = _core.SGDPositiveData(kernel_csr(np.array([[1, 0, 2], [0, -1, 0]])))
    assert pos.nnz == 2  # stored values <= 0 are not positives
    with pytest.raises(ValueError, match="users: id 2"):
        _core.sgd_sample_negatives(pos, np.array([0, 2], np.int32), _core.Sampling.uniform, 0)
    with pytest.raises(ValueError, match="item_bias must have shape"):
        _core.sgd_rank_epoch(pos, P[:2], Q, np.zeros(2, np.float32), 0.1, 0.0, 1, _core.Sampling.uniform,
                             _core.Loss.bpr, 10, 1, 0, 0)  # fmt: skip


# -- negatives ---------------------------------------------------------------------------------
def positive_data(csr):
    return _core.SGDPositiveData(kernel_csr(csr))


@settings(max_examples=40, deadline=None)
@given(
    n_items=st.integers(1, 40),
    density=st.floats(0.0, 1.0),
    sampling=st.sampled_from(["uniform", "popularity"]),
    seed=st.integers(0, 2**32),
)
def test_negatives_are_never_positives(n_items, density, sampling, seed):
    rng = np.random.default_rng(seed)
    dense = rng.random((12, n_items)) < density
    dense[0] = True  # a user with every item: no negative exists
    dense[1, 0] = True  # at least one stored entry (popularity sampling draws from them)
    csr = sp.csr_matrix(dense.astype(np.float32))
    users = np.repeat(np.arange(12, dtype=np.int32), 50)
    neg = _core.sgd_sample_negatives(positive_data(csr), users, _core.Sampling.__members__[sampling], seed)
    for u in range(12):
        got = neg[users == u]
        row = set(csr.indices[csr.indptr[u] : csr.indptr[u + 1]])
        assert not row.intersection(got[got >= 0].tolist())
        assert (got < n_items).all()
        if len(row) == n_items:
            assert (got == -1).all()
    if sampling == "uniform":  # with < 32 tries allowed per draw, a half-empty row always finds one
        sparse_rows = [u for u in range(12) if csr.indptr[u + 1] - csr.indptr[u] <= n_items // 2]
        assert all((neg[users == u] >= 0).all() for u in sparse_rows)


def test_negative_sampling_distributions():
    # 1 user with item 0; items 1..4 liked by other users 1, 2, 3, 4 times.
    rows = [0] + [1] + [1, 2] + [1, 2, 3] + [1, 2, 3, 4]
    cols = [0] + [1] + [2, 2] + [3, 3, 3] + [4, 4, 4, 4]
    csr = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(5, 5))
    users = np.zeros(40000, np.int32)
    data = positive_data(csr)
    uni = np.bincount(_core.sgd_sample_negatives(data, users, _core.Sampling.uniform, 1), minlength=5) / users.size
    pop = np.bincount(_core.sgd_sample_negatives(data, users, _core.Sampling.popularity, 1), minlength=5) / users.size
    assert uni[0] == 0 and pop[0] == 0
    np.testing.assert_allclose(uni[1:], 0.25, atol=0.01)
    np.testing.assert_allclose(pop[1:], np.arange(1, 5) / 10, atol=0.01)


def test_user_with_every_item_is_skipped():
    dense = np.zeros((3, 6), np.float32)
    dense[0] = 1
    dense[1, :2] = 1
    dense[2, 3] = 1
    model = rf.BPR(factors=4, epochs=2, threads=1).fit(sp.csr_matrix(dense), progress=False)
    h = model.history_[0]
    assert h["skipped"] > 0 and h["pairs"] + h["skipped"] == 9


# -- BPR / WARP --------------------------------------------------------------------------------
@pytest.mark.parametrize("loss, kwargs", [("bpr", {}), ("warp", {"lr": 0.01, "regularization": 0.05})])
def test_ranking_beats_most_popular_on_planted_problem(loss, kwargs):
    train, test = planted_implicit()
    pop = hit_rate(rf.MostPopular().fit(train), test)
    model = rf.BPR(factors=16, epochs=40, loss=loss, threads=2, **kwargs).fit(train, progress=False)
    ours = hit_rate(model, test)
    assert ours > 1.5 * pop, (ours, pop)
    losses = [h["loss"] for h in model.history_]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])


def test_bpr_multithreaded_fit_is_sane():
    train, test = planted_implicit(n_users=12000, n_items=600, per_user=15)
    assert train.nnz > 2 * 2**16
    pop = hit_rate(rf.MostPopular().fit(train), test)
    model = rf.BPR(factors=16, epochs=10, threads=2).fit(train, progress=False)
    assert hit_rate(model, test) > 1.5 * pop


def test_bpr_epoch_stats():
    train, _ = planted_implicit(n_users=50, n_items=40)
    model = rf.BPR(factors=4, epochs=3, negatives=3).fit(train, progress=True)
    assert model.history_[0]["pairs"] == 3 * train.nnz  # no user has every item
    # The first epoch's loss is close to log 2: the initial scores are near 0.
    assert abs(model.history_[0]["loss"] - np.log(2)) < 0.1


# -- fold-in (partial_fit_users) ---------------------------------------------------------------
def _without_rows(csr, rows):
    keep = np.ones(csr.shape[0], bool)
    keep[rows] = False
    return sp.csr_matrix(sp.diags(keep.astype(np.float32)) @ csr)


def test_sgdmf_fold_in_learns_users_and_leaves_items():
    train, ru, ri, truth = planted_ratings(seed=3)
    folded = np.arange(10)
    model = rf.SGDMF(factors=3, lr=0.01, regularization=0.005, epochs=40, threads=1).fit(
        _without_rows(train, folded), progress=False
    )
    items_before, bias_before = model.item_factors.copy(), model.item_bias.copy()
    others_before = model.user_factors[10:].copy()
    n = model.n_users
    new_row = train[[0]]
    model.partial_fit_users(np.r_[folded, n + 1], sp.vstack([train[folded], new_row]))
    np.testing.assert_array_equal(model.item_factors, items_before)
    np.testing.assert_array_equal(model.item_bias, bias_before)
    np.testing.assert_array_equal(model.user_factors[10:n], others_before)
    assert model.n_users == n + 2 and not model.user_factors[n].any()  # the gap row stays empty
    assert (model.seen_[folded] != train[folded]).nnz == 0
    mask = np.isin(ru, folded)
    rmse = np.sqrt(np.mean((model.score(ru[mask], ri[mask]) - truth[mask]) ** 2))
    assert rmse < 0.3, rmse
    # The new user's ratings are user 0's: the two predict alike.
    np.testing.assert_allclose(model.score([n + 1] * 5, np.arange(5)), model.score([0] * 5, np.arange(5)), atol=0.3)


def test_bpr_fold_in_learns_users_and_leaves_items():
    train, test = planted_implicit(seed=4)
    folded = np.arange(40)
    model = rf.BPR(factors=16, epochs=40, threads=1).fit(_without_rows(train, folded), progress=False)
    items_before = model.item_factors.copy()
    pop = rf.MostPopular().fit(train)
    model.partial_fit_users(folded, train[folded])
    np.testing.assert_array_equal(model.item_factors, items_before)
    sub = _without_rows(test, np.arange(40, test.shape[0]))
    assert hit_rate(model, sub) > 1.5 * hit_rate(pop, sub)


# -- kernels against numpy references (one update, where the sampling leaves no choice) ---------
@settings(max_examples=30, deadline=None)
@given(
    f=st.integers(1, 40),
    seed=st.integers(0, 2**31),
    rating=st.floats(1, 5, width=32),
    lr=st.floats(0.001, 0.2),
    reg=st.floats(0, 0.5),
    bias_reg=st.floats(0, 0.5),
)
def test_mf_step_matches_numpy(f, seed, rating, lr, reg, bias_reg):
    rng = np.random.default_rng(seed)
    P, Q = rng.standard_normal((1, f), dtype=np.float32), rng.standard_normal((1, f), dtype=np.float32)
    bu, bi = rng.standard_normal(1, dtype=np.float32), rng.standard_normal(1, dtype=np.float32)
    mu = 3.0
    p, q, b_u, b_i = (a.astype(np.float64) for a in (P[0], Q[0], bu[0], bi[0]))
    err = rating - (mu + b_u + b_i + p @ q)
    data = _core.SGDRatingData(kernel_csr(np.array([[rating]], np.float32)))
    mse = _core.sgd_mf_epoch(data, P, Q, bu, bi, mu, lr, reg, bias_reg, 1, 0, 0)
    assert mse == pytest.approx(err**2, rel=1e-4, abs=1e-5)
    np.testing.assert_allclose(P[0], p + lr * (err * q - reg * p), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(Q[0], q + lr * (err * p - reg * q), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bu[0], b_u + lr * (err - bias_reg * b_u), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bi[0], b_i + lr * (err - bias_reg * b_i), rtol=1e-4, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(
    f=st.integers(1, 40),
    seed=st.integers(0, 2**31),
    lr=st.floats(0.001, 0.1),
    reg=st.floats(0, 0.5),
    loss=st.sampled_from(["bpr", "warp"]),
    n_items=st.integers(3, 9),
)
def test_rank_step_matches_numpy(f, seed, lr, reg, loss, n_items):
    # One user with one positive (item 0): an epoch is one sample, its negative j is one of the
    # other items (found afterwards as the only other row that moved). The positive scores far
    # below every negative, so WARP's first draw violates the margin: its weight is
    # log(max(1, floor((n_items - 1) / 1))) (> 0 with 3 items or more).
    rng = np.random.default_rng(seed)
    P = 0.1 * rng.standard_normal((1, f), dtype=np.float32)
    Q = 0.1 * rng.standard_normal((n_items, f), dtype=np.float32)
    b = rng.uniform(-1, 1, n_items).astype(np.float32)
    b[0] = -20.0
    P0, Q0, b0 = P.astype(np.float64), Q.astype(np.float64), b.astype(np.float64)
    data = _core.SGDPositiveData(_core.Csr(np.array([0, 1]), np.array([0]), None, (1, n_items)))
    stats = _core.sgd_rank_epoch(data, P, Q, b, lr, reg, 1, _core.Sampling.uniform, _core.Loss.__members__[loss], 10, 1,
                                 seed, 0)  # fmt: skip
    moved = [j for j in range(1, n_items) if not np.array_equal(Q[j], Q0[j].astype(np.float32))]
    assert len(moved) == 1 and stats["pairs"] == 1 and stats["updates"] == 1
    j = moved[0]
    p, qi, qj = P0[0], Q0[0], Q0[j]
    x = p @ (qi - qj) + b0[0] - b0[j]
    if loss == "bpr":
        g = 1 / (1 + np.exp(x))
        assert stats["loss"] == pytest.approx(np.logaddexp(0, -x), rel=1e-4)
    else:
        g = np.log(max(1.0, n_items - 1))
        assert stats["loss"] == pytest.approx(g * (1 - x), rel=1e-4)
    tol = dict(rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(P[0], p + lr * (g * (qi - qj) - reg * p), **tol)
    np.testing.assert_allclose(Q[0], qi + lr * (g * p - reg * qi), **tol)
    np.testing.assert_allclose(Q[j], qj + lr * (-g * p - reg * qj), **tol)
    np.testing.assert_allclose(b[0], b0[0] + lr * (g - reg * b0[0]), **tol)
    np.testing.assert_allclose(b[j], b0[j] + lr * (-g - reg * b0[j]), **tol)
