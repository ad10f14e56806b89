"""Re-ranking for diversity (MMR) and calibration (Steck 2018): hand-checked cases, a per-user
reference implementation, property tests and bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import recforge as rf
import recforge.evaluation._common as common
from recforge.evaluation._common import DENSE_GATHER_MAX_DIM, FULL_PRODUCT_MAX_ITEMS
from recforge.rerank import calibrate, mmr


# -- per-user references: the greedy objectives written out, one user and one candidate at a time ----
def _rel(scores, valid):
    s = [scores[j] for j in range(len(scores)) if valid[j]]
    lo, hi = min(s), max(s)
    return [(scores[j] - lo) / (hi - lo) if hi > lo else 1.0 for j in range(len(scores))]


def _cos(x, y):
    nx, ny = np.linalg.norm(x), np.linalg.norm(y)
    return 0.0 if nx == 0 or ny == 0 else float(x @ y / (nx * ny))


def greedy_reference(ids, scores, k, t, penalty):
    """The greedy re-ranking by its definition: ``penalty(r, chosen positions, candidate position)``."""
    out = np.full((len(ids), k), -1)
    for r in range(len(ids)):
        valid = [i >= 0 for i in ids[r]]
        if not any(valid):
            continue
        rel = _rel(scores[r], valid)
        chosen = []
        for step in range(min(k, sum(valid))):
            vals = {j: (1 - t) * rel[j] - t * penalty(r, chosen, j) for j, i in enumerate(ids[r])
                    if i >= 0 and j not in chosen}  # fmt: skip
            top = max(vals.values())
            best = min(j for j, v in vals.items() if v >= top - 1e-12)  # ties: the earlier candidate
            chosen.append(best)
            out[r, step] = ids[r][best]
    return out


def mmr_reference(ids, scores, feats, k, t):
    def max_cos(r, chosen, j):
        return max((_cos(feats[ids[r][j]], feats[ids[r][c]]) for c in chosen), default=0.0)

    return greedy_reference(ids, scores, k, t, max_cos)


def _dist(v):
    v = np.asarray(v, float)
    return v / v.sum() if v.sum() > 0 else v


def _kl(p, q, alpha):
    qs = (1 - alpha) * q + alpha * p
    return sum(p[g] * np.log(p[g] / qs[g]) for g in range(len(p)) if p[g] > 0)


def calibrate_reference(ids, scores, history, genres, k, t, alpha):
    zero = np.zeros(genres.shape[1])
    targets = [_dist(sum((w * _dist(genres[i]) for i, w in zip(h.indices, h.data)), zero)) for h in history]

    def kl_after(r, chosen, j):
        return _kl(targets[r], _dist(sum((_dist(genres[ids[r][c]]) for c in [*chosen, j]), zero)), alpha)

    return greedy_reference(ids, scores, k, t, kl_after)


# -- hand-checked cases ------------------------------------------------------------------------------
def test_mmr_hand_checked():
    # item 0 and 1 point the same way, item 2 is orthogonal; relevance 1, 0.5, 0.
    feats = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    ids, scores = np.array([[0, 1, 2]]), np.array([[3.0, 2.0, 1.0]])
    # tradeoff 0.5, step 2: item 1: 0.5 * 0.5 - 0.5 * 1 = -0.25; item 2: 0.5 * 0 - 0.5 * 0 = 0 -> item 2
    got, got_scores = mmr(ids, scores, feats, k=3, tradeoff=0.5)
    assert got.tolist() == [[0, 2, 1]]
    assert got_scores.tolist() == [[3.0, 1.0, 2.0]]  # the model's scores travel with their items
    # tradeoff 0.2: item 1: 0.8 * 0.5 - 0.2 * 1 = 0.2 > item 2: 0 -> the model's order
    assert mmr(ids, scores, feats, k=3, tradeoff=0.2)[0].tolist() == [[0, 1, 2]]
    assert mmr(ids, scores, feats, k=2, tradeoff=0.0)[0].tolist() == [[0, 1]]


def test_calibrate_hand_checked():
    genres = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])  # A, A, B, A, B
    history = sp.csr_matrix(np.array([[0, 0, 0, 1.0, 1.0]]))  # p = (1/2, 1/2)
    history_a2 = sp.csr_matrix(np.array([[0, 0, 0, 2.0, 1.0]]))  # weights count: p = (2/3, 1/3)
    ids, scores = np.array([[0, 1, 2]]), np.array([[3.0, 2.0, 1.0]])
    assert calibrate(ids, scores, history_a2, genres, k=2, tradeoff=0.0)[0].tolist() == [[0, 1]]
    # tradeoff 1, p = (2/3, 1/3), alpha 0.01. Step 1: C_KL after A = 1.267 < after B = 2.706 -> item 0.
    # Step 2: {A, A}: 1.267; {A, B} (q = (1/2, 1/2)): 2/3 ln((2/3)/0.50167) + 1/3 ln((1/3)/0.49833) = 0.0556 -> item 2
    assert calibrate(ids, scores, history_a2, genres, k=2, tradeoff=1.0)[0].tolist() == [[0, 2]]
    p = np.array([2 / 3, 1 / 3])
    assert rf.evaluation.kl_miscalibration(p, np.array([0.5, 0.5])) == pytest.approx(
        2 / 3 * np.log((2 / 3) / 0.5016667) + 1 / 3 * np.log((1 / 3) / 0.4983333), rel=1e-6
    )
    assert rf.evaluation.kl_miscalibration(p, np.array([0.5, 0.5])) == pytest.approx(0.0556, abs=1e-4)
    # the metric on the re-ranked list, and a history with p = (1/2, 1/2) makes {A, B} exactly calibrated
    assert rf.evaluation.miscalibration(np.array([[0, 2]]), history, genres) == pytest.approx(0.0, abs=1e-12)
    assert rf.evaluation.miscalibration(np.array([[0, 1]]), history, genres) == pytest.approx(
        0.5 * np.log(0.5 / 0.995) + 0.5 * np.log(0.5 / 0.005)
    )


def test_calibrate_without_history_genres_keeps_the_model_order():
    genres = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    history = sp.csr_matrix(np.array([[0, 0, 1.0]]))  # only an item without genres: p = 0
    got, _ = calibrate(np.array([[1, 0]]), np.array([[2.0, 1.0]]), history, genres, k=2, tradeoff=1.0)
    assert got.tolist() == [[1, 0]]


# -- against the per-user reference ------------------------------------------------------------------
@st.composite
def candidate_case(draw, wide=False):
    n_items = draw(st.integers(3, 12))
    n, c = draw(st.integers(1, 4)), draw(st.integers(1, n_items))
    seed = draw(st.integers(0, 2**31 - 1))
    r = np.random.default_rng(seed)
    ids = np.stack([r.permutation(n_items)[:c] for _ in range(n)])
    pad = draw(st.integers(0, c - 1))
    if pad:
        ids[:, c - pad :] = -1
        ids[0, :] = -1 if draw(st.booleans()) else ids[0, :]
    scores = np.round(r.normal(size=(n, c)), 1)  # rounded: ties happen
    return ids, scores, r, n_items


@settings(max_examples=60, deadline=None)
@given(candidate_case(), st.sampled_from([0.0, 0.3, 0.7, 1.0]), st.integers(1, 6), st.sampled_from([0, 1, 2]))
def test_mmr_matches_the_reference(case, tradeoff, k, path):
    """path 0: dense features; 1: wide sparse, dense item-item product; 2: wide sparse, sparse product."""
    ids, scores, r, n_items = case
    sparse_wide = path > 0
    common.FULL_PRODUCT_MAX_ITEMS = 4096 if path == 1 else 0  # restored after the test
    d = DENSE_GATHER_MAX_DIM + 5 if sparse_wide else 3  # wide sparse: the precomputed item-item product
    feats = (r.random((n_items, d)) < 0.3) * r.integers(1, 3, size=(n_items, d)).astype(float)
    feats_in = sp.csr_matrix(feats) if sparse_wide else feats
    try:
        got, got_scores = mmr(ids, scores, feats_in, k=k, tradeoff=tradeoff)
    finally:
        common.FULL_PRODUCT_MAX_ITEMS = FULL_PRODUCT_MAX_ITEMS
    np.testing.assert_array_equal(got, mmr_reference(ids, scores, feats, k, tradeoff))
    _check_structure(ids, scores, got, got_scores, k)


@settings(max_examples=60, deadline=None)
@given(candidate_case(), st.sampled_from([0.0, 0.4, 0.9, 1.0]), st.integers(1, 6))
def test_calibrate_matches_the_reference(case, tradeoff, k):
    ids, scores, r, n_items = case
    genres = (r.random((n_items, 4)) < 0.4).astype(float)
    history = sp.csr_matrix((r.random((ids.shape[0], n_items)) < 0.4) * r.integers(1, 4, (ids.shape[0], n_items)))
    got, got_scores = calibrate(ids, scores, history, genres, k=k, tradeoff=tradeoff)
    np.testing.assert_array_equal(got, calibrate_reference(ids, scores, history, genres, k, tradeoff, 0.01))
    _check_structure(ids, scores, got, got_scores, k)


def _check_structure(ids, scores, got, got_scores, k):
    assert got.shape == got_scores.shape == (ids.shape[0], k)
    for r in range(ids.shape[0]):
        valid = ids[r][ids[r] >= 0]
        row = got[r]
        m = min(k, valid.size)
        assert (row[:m] >= 0).all() and (row[m:] == -1).all()  # padding only at the end
        assert len(set(row[:m])) == m and set(row[:m]) <= set(valid)  # a subset of the candidates, no repeats
        lookup = dict(zip(ids[r], scores[r]))
        np.testing.assert_allclose(got_scores[r, :m], [lookup[i] for i in row[:m]], rtol=1e-6)
        assert np.isneginf(got_scores[r, m:]).all()


@settings(max_examples=30, deadline=None)
@given(candidate_case(), st.integers(1, 6))
def test_tradeoff_zero_is_the_model_order(case, k):
    ids, scores, r, n_items = case
    order = np.argsort(-np.where(ids >= 0, scores, -np.inf), axis=1, kind="stable")[:, :k]
    expected = np.where(np.take_along_axis(ids, order, axis=1) >= 0, np.take_along_axis(ids, order, axis=1), -1)
    expected = np.hstack([expected, np.full((ids.shape[0], max(0, k - expected.shape[1])), -1)])
    got, _ = mmr(ids, scores, r.random((n_items, 3)), k=k, tradeoff=0.0)
    np.testing.assert_array_equal(got, expected)


def test_mmr_raises_intra_list_diversity_and_calibration_lowers_miscalibration():
    df = rf.datasets.synthetic(n_users=150, n_items=120, nnz=4000, seed=1)
    inter = rf.Interactions.from_pandas(df)
    als = rf.ALS(factors=8, epochs=4, seed=0).fit(inter, progress=False)
    users = np.arange(inter.n_users)
    genres = (np.random.default_rng(0).random((inter.n_items, 6)) < 0.3).astype(float)
    ild, mis = [], []
    for t in (0.0, 0.5, 1.0):
        ids, _ = rf.rerank.Reranked(als, "mmr", item_features=als.item_factors, tradeoff=t, candidates=40).recommend(
            users, k=10
        )
        ild.append(rf.evaluation.intra_list_diversity(ids, als.item_factors))
        ids, _ = rf.rerank.Reranked(als, "calibration", item_features=genres, tradeoff=t, candidates=40).recommend(
            users, k=10
        )
        mis.append(rf.evaluation.miscalibration(ids, inter, genres))
    assert ild[0] < ild[1] < ild[2]
    assert mis[0] > mis[1] > mis[2]


# -- the Reranked wrapper: evaluate, external ids ------------------------------------------------------
@pytest.fixture(scope="module")
def named():
    r = np.random.default_rng(3)
    users = [f"u{j}" for j in r.integers(0, 40, 600)]
    items = [f"i{j}" for j in r.integers(0, 30, 600)]
    inter = rf.Interactions.from_pandas(pd.DataFrame({"user": users, "item": items}), duplicates="sum")
    train, test = rf.split.random_holdout(inter, test_fraction=0.25, seed=0)
    model = rf.ALS(factors=4, epochs=3, seed=0).fit(train, progress=False)
    return train, test, model


def test_reranked_at_tradeoff_zero_evaluates_as_the_model(named):
    train, test, model = named
    wrapped = rf.rerank.Reranked(model, "mmr", item_features=model.item_factors, tradeoff=0.0, candidates=20)
    base = rf.evaluation.evaluate(model, train, test, k=5, progress=False)
    assert rf.evaluation.evaluate(wrapped, train, test, k=5, progress=False) == base
    diverse = rf.rerank.Reranked(model, "mmr", item_features=model.item_factors, tradeoff=0.8, candidates=20)
    m0 = rf.evaluation.evaluate(wrapped, train, test, k=5, item_features=model.item_factors, progress=False)
    m1 = rf.evaluation.evaluate(diverse, train, test, k=5, item_features=model.item_factors, progress=False)
    assert m1["diversity@5"] > m0["diversity@5"]


def test_reranked_takes_features_by_external_id(named):
    train, test, model = named
    frame = pd.DataFrame(model.item_factors, index=train.item_ids.values)
    shuffled = frame.sample(frac=1.0, random_state=0)  # rows in another order: aligned by id
    a = rf.rerank.Reranked(model, "mmr", item_features=model.item_factors, tradeoff=0.5, candidates=20)
    b = rf.rerank.Reranked(model, "mmr", item_features=shuffled, tradeoff=0.5, candidates=20)
    np.testing.assert_array_equal(a.recommend(np.arange(10), k=5)[0], b.recommend(np.arange(10), k=5)[0])
    ext = b.recommend_external(["u3", "u7"], k=5)
    ids, _ = a.recommend(train.user_ids.to_index(["u3", "u7"]), k=5)
    assert ext["item"].tolist() == train.item_ids.to_external(ids[ids >= 0]).tolist()
    assert ext["user"].tolist() == ["u3"] * 5 + ["u7"] * 5
    with pytest.raises(ValueError, match="unknown"):
        b.recommend_external(["nobody"], k=5)


# -- bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"tradeoff": 1.5}, ValueError, "tradeoff must be in"),
        ({"tradeoff": -0.1}, ValueError, "tradeoff must be in"),
        ({"tradeoff": True}, TypeError, "tradeoff must be a number"),
        ({"tradeoff": "0.5"}, TypeError, "tradeoff must be a number"),
        ({"k": 0}, ValueError, "k must be >= 1"),
        ({"candidate_ids": np.array([[0, 5]])}, ValueError, r"candidate_ids must be item indices in \[0, 3\)"),
        ({"candidate_ids": np.array([[0, 0]])}, ValueError, "repeats an item"),
        ({"candidate_ids": np.array([0, 1])}, ValueError, "candidate_ids must be 2-D"),
        ({"candidate_ids": np.array([[0.0, 1.0]])}, TypeError, "candidate_ids must hold integer"),
        ({"candidate_ids": "01"}, TypeError, "candidate_ids must be a 2-D integer array"),
        ({"candidate_scores": np.array([[1.0]])}, ValueError, "candidate_scores must have the shape"),
        ({"candidate_scores": np.array([[1.0, np.nan]])}, ValueError, "candidate_scores must be finite"),
        ({"item_features": np.ones((3, 2, 1))}, ValueError, "item_features must be 2-D"),
        ({"item_features": np.array([[1.0], [np.inf], [0.0]])}, ValueError, "item_features contains NaN"),
        ({"item_features": "x"}, TypeError, "item_features must be an"),
        ({"item_features": np.ones((3, 0))}, ValueError, "item_features is empty"),
    ],
)
def test_mmr_bad_input(kwargs, error, match):
    args = {"candidate_ids": np.array([[0, 1]]), "candidate_scores": np.array([[2.0, 1.0]]),
            "item_features": np.eye(3), **kwargs}  # fmt: skip
    with pytest.raises(error, match=match):
        mmr(**args)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"item_genres": -np.eye(3)}, ValueError, "item_genres contains negative values"),
        ({"history": sp.csr_matrix(np.ones((2, 3)))}, ValueError, r"history must have shape \(n, n_items\) = \(1, 3\)"),
        ({"alpha": 0.0}, ValueError, "alpha must be finite and > 0"),
        ({"alpha": 1.0}, ValueError, r"alpha must be in \(0, 1\)"),
        ({"history": np.ones((1, 3))}, TypeError, "history"),
    ],
)
def test_calibrate_bad_input(kwargs, error, match):
    args = {"candidate_ids": np.array([[0, 1]]), "candidate_scores": np.array([[2.0, 1.0]]),
            "history": sp.csr_matrix(np.ones((1, 3))), "item_genres": np.eye(3), **kwargs}  # fmt: skip
    with pytest.raises(error, match=match):
        calibrate(**args)


def test_reranked_bad_input(named):
    train, _, model = named
    with pytest.raises(ValueError, match="method must be one of"):
        rf.rerank.Reranked(model, "shuffle", item_features=model.item_factors)
    with pytest.raises(ValueError, match="item_features has 5 rows but the model has"):
        rf.rerank.Reranked(model, "mmr", item_features=np.ones((5, 2)))
    with pytest.raises(ValueError, match="candidates must be finite and > 0"):
        rf.rerank.Reranked(model, "mmr", item_features=model.item_factors, candidates=0)
    with pytest.raises(ValueError, match="not fitted"):
        rf.rerank.Reranked(rf.ALS(), "mmr", item_features=model.item_factors)
    with pytest.raises(TypeError, match="model must be a fitted recforge model"):
        rf.rerank.Reranked(object(), "mmr", item_features=model.item_factors)
    wrapped = rf.rerank.Reranked(model, "mmr", item_features=model.item_factors)
    with pytest.raises(ValueError, match="users must be in"):
        wrapped.recommend([10**6], k=5)


def test_compare_takes_a_reranked_model(named):
    train, test, model = named
    diverse = rf.rerank.Reranked(model, "mmr", item_features=model.item_factors, tradeoff=1.0, candidates=20)
    table = rf.evaluation.compare({"ALS": model, "ALS+MMR": diverse}, train, test, k=5, metrics=["ndcg"],
                                  n_bootstrap=50, progress=False)  # fmt: skip
    ndcg = rf.evaluation.evaluate(diverse, train, test, k=5, metrics=["ndcg"], progress=False)["ndcg@5"]
    assert table.reset_index().query("model == 'ALS+MMR'")["value"].iloc[0] == pytest.approx(ndcg)
