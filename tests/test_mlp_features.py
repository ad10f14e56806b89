"""MLPScorer with side features (feature towers): the kernel's feature path against NumPy and finite
differences, cold users and items from features, persistence, bad input (the plain model: test_mlp.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import rewrite_model_file
from test_mlp import MODES, central_differences

import recforge as rf
from recforge import _core


def _csr(m):
    return _core.Csr(m.indptr, m.indices, m.data, m.shape, "features")


def _weighted_features(rng, n_rows, n_features, density=0.4):
    """Random non-negative weights, every row at least one feature (one row empty: a featureless entity)."""
    m = sp.random(n_rows, n_features, density=density, random_state=rng, dtype=np.float64).tolil()
    for r in range(n_rows - 1):
        if m[r].nnz == 0:
            m[r, rng.integers(n_features)] = 1.0
    m[n_rows - 1] = 0
    return sp.csr_matrix(m, dtype=np.float32)


def _feature_problem(mode, rng, n_users=5, n_items=6, n_uf=4, n_if=7, n=12):
    arch = _core.MLPArch(*MODES[mode])
    e = arch.emb_width
    fu, fi = _weighted_features(rng, n_users, n_uf), _weighted_features(rng, n_items, n_if)
    user_table = rng.normal(0, 0.5, (n_uf, e))
    item_table = rng.normal(0, 0.5, (n_if, e))
    dense = rng.normal(0, 0.5, arch.n_dense)
    users, items = rng.integers(0, n_users, n), rng.integers(0, n_items, n)
    labels = rng.integers(0, 2, n).astype(np.float32)
    return arch, fu, fi, user_table, item_table, dense, users, items, labels


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("l2", [0.0, 0.03])
def test_feature_gradients_match_numpy_and_finite_differences(mode, l2, rng):
    """A feature table's gradient is X^T (gradient of the representations X @ table): checked against
    the plain kernel on NumPy-materialised representations, and against central differences."""
    arch, fu, fi, ut, it, dense, users, items, labels = _feature_problem(mode, rng)
    loss, gu, gi, gd = _core.mlp_loss_grad(arch, ut, it, dense, users, items, labels, l2,
                                           user_features=_csr(fu), item_features=_csr(fi))  # fmt: skip
    assert gu.shape == ut.shape and gi.shape == it.shape
    ref_loss, ref_gu, ref_gi, ref_gd = _core.mlp_loss_grad(arch, fu @ ut, fi @ it, dense, users, items, labels, l2)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_allclose(gu, fu.T @ ref_gu, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gi, fi.T @ ref_gi, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gd, ref_gd, rtol=1e-10, atol=1e-12)

    def numeric(x):
        features = (_csr(fu), _csr(fi))
        return central_differences(lambda: _core.mlp_loss_grad(arch, ut, it, dense, users, items, labels, l2,
                                                               *features)[0], x)  # fmt: skip

    np.testing.assert_allclose(gu, numeric(ut), atol=1e-8, err_msg="user feature embeddings")
    np.testing.assert_allclose(gi, numeric(it), atol=1e-8, err_msg="item feature embeddings")
    assert np.abs(gu).max() > 1e-3 and np.abs(gi).max() > 1e-3  # the check above can fail


def _sgd_epoch(arch, ut, it, dense, users, items, labels, threads, fu, fi, optimizer="sgd", batch_size=200):
    moments = [np.zeros_like(a) for a in (ut, ut, it, it, dense, dense)]
    return _core.mlp_train_epoch(arch, ut, it, dense, *moments, 0, users, items, labels,
                                 _core.Optimizer.__members__[optimizer], 0.5, 0.9, 0.999, 1e-8, 0.02, batch_size,
                                 threads, user_features=fu, item_features=fi)  # fmt: skip


@pytest.mark.parametrize("threads", [1, 2])
def test_training_with_features_applies_the_exact_gradient(threads, rng):
    """One SGD step over a full batch (several chunks) moves every feature row by -lr * its gradient."""
    arch, fu, fi, ut, it, dense, users, items, labels = _feature_problem("neumf", rng, n=200)
    ut, it, dense = (a.astype(np.float32) for a in (ut, it, dense))
    loss, gu, gi, gd = _core.mlp_loss_grad(arch, ut, it, dense, users, items, labels, 0.02, _csr(fu), _csr(fi))
    before = [a.copy() for a in (ut, it, dense)]
    epoch_loss, step = _sgd_epoch(arch, ut, it, dense, users, items, labels, threads, _csr(fu), _csr(fi))
    assert step == 1 and epoch_loss == pytest.approx(loss, rel=1e-5)
    for new, old, g in zip((ut, it, dense), before, (gu, gi, gd)):
        np.testing.assert_allclose(new, old - 0.5 * g, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("optimizer", ["adam", "lazy_adam"])
def test_feature_training_is_identical_for_any_thread_count(optimizer, rng):
    arch, fu, fi, ut, it, dense, users, items, labels = _feature_problem("neumf", rng, n=500)
    runs = []
    for threads in (1, 2):
        arrays = [a.astype(np.float32) for a in (ut, it, dense)]
        _sgd_epoch(arch, *arrays, users, items, labels, threads, _csr(fu), _csr(fi), optimizer, batch_size=64)
        runs.append(arrays)
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_identity_features_train_exactly_as_no_features(rng):
    """Identity matrices take the feature path in the kernel and must give the plain model's bits."""
    likes = rng.random((30, 20)) < 0.3
    likes[:, 0] = likes[0, :] = True  # every user and item has history: no identity embedding is zeroed
    x = sp.csr_matrix(likes.astype(np.float32))
    params = dict(factors=4, layers=(8, 4), epochs=2, optimizer="lazy_adam", threads=1, seed=3)
    plain = rf.MLPScorer(**params).fit(x, progress=False)
    eye = rf.MLPScorer(**params).fit(x, progress=False, user_features=sp.identity(30, np.float32, format="csr"),
                                     item_features=sp.identity(20, np.float32, format="csr"))  # fmt: skip
    np.testing.assert_array_equal(eye.user_embedding, plain.user_embedding)
    np.testing.assert_array_equal(eye.item_embedding, plain.item_embedding)
    np.testing.assert_array_equal(eye.dense, plain.dense)
    assert plain.user_features_ is None and plain.user_feature_embedding is None


@pytest.fixture(scope="module")
def world(two_tastes):
    return two_tastes


def _fit(x, fu, fi, mode="neumf", **kw):
    params = dict(factors=8, layers=(16, 8), mode=mode, epochs=15, lr=0.01, optimizer="lazy_adam", threads=1, seed=1)
    return rf.MLPScorer(**{**params, **kw}).fit(x, user_features=fu, item_features=fi, progress=False)


@pytest.fixture(scope="module")
def fitted(world):
    x, fu, fi, *_ = world
    return _fit(x, fu, fi)


@pytest.mark.parametrize("mode", ["gmf", "neumf"])
def test_cold_items_are_ranked_from_their_features(world, mode):
    x, fu, fi, user_group, item_group = world
    model = _fit(x, fu, fi, mode)
    losses = [h["loss"] for h in model.history_]
    assert losses[-1] < losses[0]
    cold = np.arange(30, 40)
    users = np.repeat(np.arange(60), len(cold))
    scores = model.score(users, np.tile(cold, 60)).reshape(60, len(cold))
    same = user_group[:, None] == item_group[cold][None, :]
    assert scores[same].mean() > scores[~same].mean() + 0.5
    # A cold item's identity embedding learnt only from being drawn as a negative: zeroed, so the item
    # is its group's embedding only (and items of different groups score differently).
    group_only = fi.matrix[cold].multiply(np.array([not n.startswith("id=") for n in fi.names]))
    np.testing.assert_allclose(model.item_embedding[cold], group_only @ model.item_feature_embedding,
                               rtol=1e-5, atol=1e-7)  # fmt: skip
    identity = np.flatnonzero([n.startswith("id=") for n in fi.names])
    assert not model.item_feature_embedding[identity[30:]].any() and model.item_feature_embedding[identity[:30]].any()


def _copy(model, tmp_path):
    """An independent copy of a fitted model (through its file: MLPScorer's arch does not deep-copy)."""
    model.save(tmp_path / "copy.rf")
    return rf.load(tmp_path / "copy.rf")


def test_new_users_and_items_from_features(world, fitted, tmp_path):
    x, fu, fi, user_group, item_group = world
    model = fitted
    new_users = fu.transform(pd.DataFrame({"user": [100, 101], "group": ["0", "1"]}))
    ids, scores = model.recommend_for_features(new_users, k=5)
    assert (item_group[ids[0]] == 0).all() and (item_group[ids[1]] == 1).all()
    rep = new_users @ model.user_feature_embedding  # the same logits as a user with that embedding
    logits = _core.mlp_score_all(model.arch, np.asarray(rep, np.float32), model.item_embedding, model.dense,
                                 np.arange(2), 1)  # fmt: skip
    np.testing.assert_allclose(scores, np.take_along_axis(logits, ids, 1), rtol=1e-6)
    with pytest.raises(ValueError, match=f"user_rows must have {fu.n_features} columns"):
        model.recommend_for_features(new_users[:, :-1])

    new_items = fi.transform(pd.DataFrame({"item": [900, 901], "group": ["1", "0"]}))
    near, cos = model.similar_items_by_features(new_items[:1], k=3)  # the content-based fallback
    assert (item_group[near[0]] == 1).all() and (cos > 0).all()
    grown = _copy(model, tmp_path)  # the module's fitted model stays as it is
    added = grown.add_items(new_items)
    assert added.tolist() == [40, 41] and grown.n_items == 42 and grown.seen_.shape == (60, 42)
    fans = np.flatnonzero(user_group == 1)
    s = grown.score(np.repeat(fans, 2), np.tile(added, len(fans))).reshape(-1, 2)
    assert (s[:, 0] > s[:, 1]).mean() > 0.9  # different features, different scores
    assert 40 in grown.recommend(fans[:1], k=42)[0]


def test_save_load_keeps_feature_towers_and_vocabulary(world, fitted, tmp_path):
    x, fu, fi, *_ = world
    fitted.save(tmp_path / "m.rf")
    back = rf.load(tmp_path / "m.rf")
    for name in ("user_embedding", "item_embedding", "dense", "user_feature_embedding", "item_feature_embedding"):
        np.testing.assert_array_equal(getattr(back, name), getattr(fitted, name))
    assert (back.item_features_ != fitted.item_features_).nnz == 0
    # After loading, new users are encoded with the saved vocabulary and ranked as before saving.
    new_users = back.feature_encoder("user").transform(pd.DataFrame({"user": [7], "group": ["1"]}))
    assert (new_users != fu.transform(pd.DataFrame({"user": [7], "group": ["1"]}))).nnz == 0
    for a, b in zip(back.recommend_for_features(new_users, k=5), fitted.recommend_for_features(new_users, k=5)):
        np.testing.assert_array_equal(a, b)
    plain = rf.MLPScorer(factors=4, layers=(4,), epochs=1, threads=1).fit(x, progress=False, item_features=fi)
    plain.save(tmp_path / "items_only.rf")
    back = rf.load(tmp_path / "items_only.rf")
    assert back.user_features_ is None and back.user_feature_embedding is None
    np.testing.assert_array_equal(back.item_feature_embedding, plain.item_feature_embedding)


def test_load_rejects_a_feature_table_that_does_not_fit(world, fitted, tmp_path):
    def shorten(arrays, meta):
        arrays["item_feature_embedding"] = arrays["item_feature_embedding"][:-1]
        meta["arrays"]["item_feature_embedding"][1][0] -= 1

    fitted.save(tmp_path / "m.rf")
    rewrite_model_file(tmp_path / "m.rf", shorten)
    with pytest.raises(ValueError, match="item_feature_embedding"):
        rf.load(tmp_path / "m.rf")


def test_bad_feature_input_is_refused_clearly(world, fitted, tmp_path):
    x, fu, fi, *_ = world  # rows and NaN: test_hybrid.py::test_features_must_match_the_interactions
    with pytest.raises(ValueError, match="init_from"):
        rf.MLPScorer(epochs=1).fit(x, item_features=fi, init_from=rf.ALS(factors=64, epochs=1).fit(x))
    # An unknown category at predict time: ignored with a warning (Features.transform), the user
    # gets the features that are known.
    with pytest.warns(UserWarning, match="not in the vocabulary"):
        rows = fu.transform(pd.DataFrame({"user": [5], "group": ["martian"]}))
    assert rows.nnz == 0
    # A new user / item without any feature: an all-zero embedding, finite scores.
    ids, scores = fitted.recommend_for_features(rows, k=3)
    assert (ids >= 0).all() and np.isfinite(scores).all()
    grown = _copy(fitted, tmp_path)
    (new_item,) = grown.add_items(sp.csr_matrix((1, fi.n_features), dtype=np.float32))
    assert not grown.item_embedding[new_item].any() and np.isfinite(grown.score([0], [new_item])).all()
    plain = rf.MLPScorer(factors=4, layers=(4,), epochs=1, threads=1).fit(x, progress=False)
    with pytest.raises(ValueError, match="fitted without user_features"):
        plain.recommend_for_features(rows)
    with pytest.raises(ValueError, match="not fitted with item_features"):
        plain.feature_encoder("item")


def test_kernel_boundary_rejects_bad_feature_matrices(rng):
    arch, fu, fi, ut, it, dense, users, items, labels = _feature_problem("neumf", rng)
    ut, it, dense = (a.astype(np.float32) for a in (ut, it, dense))
    with pytest.raises(ValueError, match="item_features has 7 columns but the item embedding table has 6 rows"):
        _core.mlp_loss_grad(arch, ut, it[:-1], dense, users, items, labels, 0.0, _csr(fu), _csr(fi))
    with pytest.raises(ValueError, match="users"):  # ids index the feature matrix's rows
        _core.mlp_loss_grad(arch, ut, it, dense, np.array([5]), np.array([0]), labels[:1], 0.0, _csr(fu), _csr(fi))
    nan = fi.copy()
    nan.data[0] = np.nan
    with pytest.raises(ValueError, match="item_features"):
        _sgd_epoch(arch, ut, it, dense, users, items, labels, 1, _csr(fu), _csr(nan))


def test_folded_in_users_keep_the_model_saveable(world, fitted, tmp_path):
    """partial_fit_users adds users described by their learnt embedding: an empty feature row each."""
    x, fu, *_ = world
    model = _copy(fitted, tmp_path)
    model.partial_fit_users([60, 61], x[:2], epochs=2)
    assert model.n_users == 62 and model.user_features_.shape == (62, fu.n_features)
    assert model.user_features_[60:].nnz == 0
    model.save(tmp_path / "grown.rf")
    back = rf.load(tmp_path / "grown.rf")
    np.testing.assert_array_equal(back.score([60, 61], [0, 1]), model.score([60, 61], [0, 1]))
