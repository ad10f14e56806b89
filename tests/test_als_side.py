"""ALS with side information: the prior kernel against NumPy, the fit against a NumPy reference, cold start,
fold-in, save/load, bad input. (ALS without features: test_als.py, the golden fits, test_contract.py.)"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import requires_cuda, rewrite_model_file, two_taste_world
from hypothesis import given, settings
from hypothesis import strategies as st

import recforge as rf
from recforge import _core
from recforge._ops import cpu, to_host


@pytest.fixture(scope="module")
def world():
    """60 users x 40 items in two tastes (conftest.two_taste_world): items 30.. and users 50.. are cold; features
    without identity columns (ALS's own factors are the per-entity part)."""
    return two_taste_world(identity=False, cold_users=10)


def reference_solve(m, Y, alpha, reg, alpha0, prior=None, weight=0.0):
    """Exact implicit ALS rows of ``m`` against ``Y`` (float64), pulled toward ``prior`` with ``weight``."""
    f = Y.shape[1]
    out = np.zeros((m.shape[0], f))
    for u in range(m.shape[0]):
        s, e = m.indptr[u], m.indptr[u + 1]
        if s == e and prior is None:
            continue
        y, c = Y[m.indices[s:e]], 1.0 + alpha * m.data[s:e]
        a = alpha0 * Y.T @ Y + (y.T * (c - alpha0)) @ y + (reg + weight) * np.eye(f)
        b = y.T @ c + (weight * prior[u] if prior is not None else 0.0)
        out[u] = np.linalg.solve(a, b)
    return out


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), f=st.sampled_from([3, 32]), solver=st.sampled_from(["cholesky", "cg"]),
       weight=st.floats(0.0, 50.0))  # fmt: skip
def test_prior_half_step_matches_numpy(seed, f, solver, weight):
    rng = np.random.default_rng(seed)
    m = sp.random(12, 9, density=0.3, random_state=seed, format="csr", dtype=np.float32)
    m.data = rng.integers(1, 4, m.nnz).astype(np.float32)
    Y = rng.standard_normal((9, f)).astype(np.float32)
    prior = rng.standard_normal((12, f)).astype(np.float32)
    X = np.zeros((12, f), np.float32)
    cpu.als_implicit_half_step(m, Y, cpu.gram(Y, 1), X, alpha=2.0, regularization=0.5, alpha0=1.0, nu=0.0,
                               solver=solver, cg_steps=3 * f, threads=2, prior=prior,
                               prior_weight=weight)  # fmt: skip
    expected = reference_solve(m, Y.astype(np.float64), 2.0, 0.5, 1.0, prior, weight)
    np.testing.assert_allclose(X, expected, rtol=2e-3, atol=2e-3)


def test_prior_boundary_errors():
    m = cpu.csr(sp.csr_matrix(np.eye(3, dtype=np.float32)))
    Y = np.ones((3, 2), np.float32)
    X = np.zeros((3, 2), np.float32)
    args = (m, Y, cpu.gram(Y, 1), X, 1.0, 0.1, 1.0, 0.0, _core.RegScaling.all_pairs, _core.Solver.cg, 2, 1)
    with pytest.raises(ValueError, match="prior must have shape"):
        _core.als_implicit_solve(*args, np.zeros((2, 2), np.float32), 1.0)
    with pytest.raises(ValueError, match="prior must hold finite values"):
        _core.als_implicit_solve(*args, np.full((3, 2), np.nan, np.float32), 1.0)
    with pytest.raises(ValueError, match="prior_weight must be finite and >= 0"):
        _core.als_implicit_solve(*args, np.zeros((3, 2), np.float32), -1.0)


def reference_fit(x, fu, fi, *, factors, epochs, alpha, reg, weight, seed):
    """ALS with side features in NumPy: before each half-step W = ridge(F, factors), then the exact solve."""
    rng = np.random.default_rng(seed)
    scale = np.float32(0.1 / np.sqrt(factors))
    X = (rng.standard_normal((x.shape[0], factors), np.float32) * scale).astype(np.float64)
    Y = (rng.standard_normal((x.shape[1], factors), np.float32) * scale).astype(np.float64)

    def ridge(F, Z):
        F = F.toarray().astype(np.float64)
        return np.linalg.solve(F.T @ F + reg * np.eye(F.shape[1]), F.T @ Z)

    xt = x.T.tocsr()
    for _ in range(epochs):
        X = reference_solve(x, Y, alpha, reg, 1.0, fu @ ridge(fu, X), weight)
        Y = reference_solve(xt, X, alpha, reg, 1.0, fi @ ridge(fi, Y), weight)
    return X, Y


def test_fit_matches_the_numpy_reference(world):
    x, fu, fi, *_ = world
    params = dict(factors=4, epochs=4, alpha=3.0, regularization=0.2, feature_weight=5.0, seed=3)
    model = rf.ALS(solver="cholesky", threads=2, **params).fit(x, user_features=fu, item_features=fi, progress=False)
    X, Y = reference_fit(x, fu.matrix, fi.matrix, factors=4, epochs=4, alpha=3.0, reg=0.2, weight=5.0, seed=3)
    np.testing.assert_allclose(model.user_factors, X, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(model.item_factors, Y, rtol=1e-3, atol=1e-4)


@pytest.mark.cuda
@requires_cuda
@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_gpu_fit_with_features_matches_the_cpu_fit(world, solver):
    """The side-information prior on the GPU half-step (issue 15): the same fit as the CPU's, to float32
    tolerance, cold rows included; the model comes back with its factors on the device."""
    x, fu, fi, *_ = world
    params = dict(factors=8, epochs=4, alpha=3.0, regularization=0.2, feature_weight=5.0, seed=3, solver=solver,
                  cg_steps=8)  # fmt: skip
    cpu_model = rf.ALS(device="cpu", threads=1, **params).fit(x, user_features=fu, item_features=fi, progress=False)
    gpu_model = rf.ALS(device="cuda", **params).fit(x, user_features=fu, item_features=fi, progress=False)
    assert gpu_model.device_ == "cuda"
    for name in ("user_factors", "item_factors"):
        np.testing.assert_allclose(to_host(getattr(gpu_model, name)), getattr(cpu_model, name), rtol=2e-3, atol=2e-4)
    np.testing.assert_array_equal(
        gpu_model.recommend(np.arange(50, 60), k=5)[0], cpu_model.recommend(np.arange(50, 60), k=5)[0]
    )


def test_cold_items_and_users_are_ranked_from_their_features(world):
    x, fu, fi, user_group, item_group = world
    plain = rf.ALS(factors=8, alpha=5.0, regularization=1.0, threads=1).fit(x, progress=False)
    model = rf.ALS(factors=8, alpha=5.0, regularization=1.0, solver="cholesky", threads=1).fit(
        x, user_features=fu, item_features=fi, progress=False)  # fmt: skip
    cold = np.arange(30, 40)
    assert not plain.item_factors[cold].any()  # pure CF knows nothing of a cold item
    scores = model.user_factors[:50] @ model.item_factors[cold].T
    same = user_group[:50, None] == item_group[cold][None, :]
    assert scores[same].min() > scores[~same].max()
    # A cold user (no interactions) is ranked from their group too.
    ids, _ = model.recommend(np.arange(50, 60), k=5)
    assert (item_group[ids] == user_group[50:, None]).all()
    # In the catalogue or new, a cold item's factor is the same solve from its features.
    np.testing.assert_allclose(model.item_factors_for(fi.matrix[cold])[0], model.item_factors[cold], rtol=1e-4,
                               atol=1e-6)  # fmt: skip
    assert model.item_factors_for(fi.matrix[cold])[1] is None  # implicit ALS has no item bias


def test_new_users_and_items_from_features(world):
    x, fu, fi, user_group, item_group = world
    model = rf.ALS(factors=8, alpha=5.0, regularization=1.0, threads=1).fit(
        x, user_features=fu, item_features=fi, progress=False)  # fmt: skip
    new_users = fu.transform(pd.DataFrame({"user": [100, 101], "group": ["0", "1"]}))
    ids, scores = model.recommend_for_features(new_users, k=5)
    assert (item_group[ids[0]] == 0).all() and (item_group[ids[1]] == 1).all()
    new_items = fi.transform(pd.DataFrame({"item": [900], "group": ["1"]}))
    near, cos = model.similar_items_by_features(new_items, k=3)  # the content-based fallback, shared with HybridMF
    assert (item_group[near[0]] == 1).all() and (cos > 0).all()
    added = model.add_items(new_items)
    assert added.tolist() == [40] and model.n_items == 41 and model.item_features_.shape == (41, fi.n_features)
    np.testing.assert_allclose(model.item_factors[40], model.item_factors_for(new_items)[0][0])
    # Among the items nobody has interacted with, a group-1 user gets the new group-1 item first.
    ids, _ = model.recommend([int(np.flatnonzero(user_group[:50] == 1)[0])], k=1,
                             items=[*np.flatnonzero(item_group[30:] == 0) + 30, 40])  # fmt: skip
    assert ids[0, 0] == 40
    with pytest.raises(ValueError, match=f"user_rows must have {fu.n_features} columns"):
        model.recommend_for_features(new_users[:, :-1])


def test_fold_in_and_explain_with_features(world):
    x, fu, fi, user_group, _ = world
    model = rf.ALS(factors=8, alpha=5.0, regularization=1.0, solver="cholesky", threads=1).fit(
        x, user_features=fu, item_features=fi, progress=False)  # fmt: skip
    # A user re-solved against the final items from their own row and features: the explanation adds up.
    model.partial_fit_users([3], x[3])
    parts = model.explain(3, 7)
    assert parts.score == pytest.approx(float(model.user_factors[3] @ model.item_factors[7]), rel=1e-3, abs=1e-5)
    # A user added by a fold-in has no features: an empty feature row (prior mean 0).
    model.partial_fit_users([60], x[0])
    assert model.user_features_.shape == (61, fu.n_features) and model.user_features_[60].nnz == 0
    model.partial_fit_items([40], sp.csr_matrix((1, 61), dtype=np.float32))
    assert model.item_features_.shape == (41, fi.n_features)
    # Forgetting users is refused with either side's features (the item map was fitted to what they taught).
    user_only = rf.ALS(factors=4, epochs=1, threads=1).fit(x, user_features=fu, progress=False)
    with pytest.raises(TypeError, match="ALS forgets users only when fitted without user_features and item_features"):
        user_only.forget_users([0])
    item_only = rf.ALS(factors=4, epochs=1, threads=1).fit(x, item_features=fi, progress=False)
    with pytest.raises(TypeError, match="ALS forgets items only when fitted without user_features and item_features"):
        item_only.forget_items([0])
    with pytest.raises(TypeError, match="ALS forgets users only"):
        item_only.forget_users([0])
    assert item_only.n_users == 60


def test_streaming_updates_refuse_a_model_with_features(world):
    x, _, fi, *_ = world
    model = rf.ALS(factors=4, epochs=1, threads=1).fit(x, item_features=fi, progress=False)
    with pytest.raises(TypeError, match="fitted with user_features / item_features is not kept current"):
        rf.online.StreamingUpdater(model)


def test_save_load_keeps_maps_features_and_vocabulary(world, tmp_path):
    x, fu, fi, *_ = world
    model = rf.ALS(factors=4, epochs=3, threads=1).fit(x, item_features=fi, progress=False)
    assert model.user_feature_map is None and model.user_features_ is None
    model.save(tmp_path / "a.rf")
    back = rf.load(tmp_path / "a.rf")
    for name in ("user_factors", "item_factors", "item_feature_map"):
        np.testing.assert_array_equal(getattr(back, name), getattr(model, name))
    assert back.user_features_ is None and (back.item_features_ != model.item_features_).nnz == 0
    np.testing.assert_array_equal(back._item_spec, fi.spec_array())
    new_items = fi.transform(pd.DataFrame({"item": [900], "group": ["0"]}))
    np.testing.assert_array_equal(back.item_factors_for(new_items)[0], model.item_factors_for(new_items)[0])

    def drop_features(arrays, meta):  # a map without its features is refused
        for part in ("indptr", "indices", "data", "shape"):
            del arrays[f"item_features_{part}"], meta["arrays"][f"item_features_{part}"]

    rewrite_model_file(tmp_path / "a.rf", drop_features)
    with pytest.raises(ValueError, match="item_feature_map"):
        rf.load(tmp_path / "a.rf")


def test_bad_input(world):
    x, fu, fi, *_ = world
    with pytest.raises(ValueError, match="need feedback='implicit'"):
        rf.ALS(feedback="explicit").fit(x, item_features=fi)
    # rows and NaN: test_hybrid.py::test_features_must_match_the_interactions
    with pytest.raises(ValueError, match="feature_weight"):
        rf.ALS(feature_weight=-1.0).fit(x, item_features=fi)
    model = rf.ALS(factors=4, epochs=1, threads=1).fit(x, item_features=fi, progress=False)
    with pytest.raises(ValueError, match="fitted without user_features"):
        model.recommend_for_features(fu.matrix[:1])
    plain = rf.ALS(factors=4, epochs=1, threads=1).fit(x, progress=False)
    with pytest.raises(ValueError, match="fitted without item_features"):
        plain.item_factors_for(fi.matrix[:1])
