"""Evaluation metrics: hand-computed small cases, hypothesis checks against plain per-user
Python references, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import recforge as rf
from recforge import evaluation as ev

L3 = 1 / math.log2(3)  # discount at rank 2
L4 = 1 / math.log2(4)  # discount at rank 3 (= 0.5)


def csr(rows, cols, vals, shape):
    # built from (data, indices, indptr) via coo so explicit zeros are kept as stored entries
    return sp.coo_matrix((np.asarray(vals, np.float32), (rows, cols)), shape=shape).tocsr()


@pytest.fixture
def case():
    """5 users x 6 items, k = 3.

    u0: T = {1, 3}          rec [3, 0, 1]   hits at ranks 1 and 3
    u1: T = {}              rec [0, 1, 2]   no test items: skipped
    u2: T = {0, 2, 4, 5}    rec [2, 2, -1]  hit at rank 1; the repeated 2 and the padding are misses
    u3: T = {5}; item 0 stored with value 0 (not relevant)
                            rec [0, 4, 5]   hit at rank 3 only
    u4: T = {0}             rec [1, 2, 3]   no hit
    """
    test = csr([0, 0, 2, 2, 2, 2, 3, 3, 4], [1, 3, 0, 2, 4, 5, 5, 0, 0], [1, 1, 1, 1, 1, 1, 1, 0, 2], (5, 6))
    rec = np.array([[3, 0, 1], [0, 1, 2], [2, 2, -1], [0, 4, 5], [1, 2, 3]])
    return rec, test


def test_hand_computed_at_3(case):
    rec, test = case
    # precision: (2/3 + 1/3 + 1/3 + 0) / 4 users with test items
    assert ev.precision_at_k(rec, test) == pytest.approx((2 / 3 + 1 / 3 + 1 / 3 + 0) / 4)
    # recall: (2/2 + 1/4 + 1/1 + 0/1) / 4
    assert ev.recall_at_k(rec, test) == pytest.approx((1 + 0.25 + 1 + 0) / 4)
    # ndcg: u0 (1 + 1/2) / (1 + 1/log2 3) [ideal over min(3, 2) = 2]; u2 1 / (1 + 1/log2 3 + 1/2)
    #       [ideal over 3]; u3 (1/2) / 1; u4 0
    expected = ((1 + L4) / (1 + L3) + 1 / (1 + L3 + L4) + L4 / 1 + 0) / 4
    assert ev.ndcg_at_k(rec, test) == pytest.approx(expected)
    # map: u0 (1 / min(3, 2)) * (P@1 + P@3) = (1/2)(1 + 2/3) = 5/6; u2 (1/3)(1) = 1/3;
    #      u3 (1/1)(P@3 = 1/3) = 1/3; u4 0  ->  (5/6 + 1/3 + 1/3) / 4 = 0.375
    assert ev.map_at_k(rec, test) == pytest.approx(0.375)
    # hit rate: u0, u2, u3 hit, u4 not: 3/4
    assert ev.hit_rate_at_k(rec, test) == pytest.approx(0.75)
    # mrr: 1/1 + 1/1 + 1/3 + 0 over 4 = 7/12
    assert ev.mrr_at_k(rec, test) == pytest.approx(7 / 12)


def test_hand_computed_at_2_uses_first_columns(case):
    rec, test = case
    # first two columns: u0 [3, 0] hit at 1; u2 [2, 2] hit at 1; u3 [0, 4] none; u4 none
    assert ev.precision_at_k(rec, test, k=2) == pytest.approx((1 / 2 + 1 / 2) / 4)
    assert ev.recall_at_k(rec, test, k=2) == pytest.approx((1 / 2 + 1 / 4) / 4)
    # ideal DCG over min(2, |T|) = 2 for u0 and u2
    assert ev.ndcg_at_k(rec, test, k=2) == pytest.approx((1 / (1 + L3) + 1 / (1 + L3)) / 4)
    assert ev.map_at_k(rec, test, k=2) == pytest.approx((1 / 2 + 1 / 2) / 4)
    assert ev.mrr_at_k(rec, test, k=2) == pytest.approx(2 / 4)


def test_per_user_values_and_skipped_users(case):
    rec, test = case
    v = ev.precision_at_k(rec, test, per_user=True)
    assert v.shape == (5,) and v.dtype == np.float64
    np.testing.assert_allclose(v, [2 / 3, np.nan, 1 / 3, 1 / 3, 0.0])
    v = ev.mrr_at_k(rec, test, per_user=True)
    np.testing.assert_allclose(v, [1.0, np.nan, 1.0, 1 / 3, 0.0])


def test_users_selects_rows_of_test(case):
    rec, test = case
    big = sp.vstack([sp.csr_matrix((2, 6), dtype=np.float32), test]).tocsr()  # test rows now 2..6
    users = np.array([2, 3, 4, 5, 6])
    assert ev.ndcg_at_k(rec, big, users=users) == pytest.approx(ev.ndcg_at_k(rec, test))
    # rows reversed: the same per-user values, reversed
    v = ev.recall_at_k(rec[::-1], big, users=users[::-1], per_user=True)
    np.testing.assert_allclose(v, ev.recall_at_k(rec, test, per_user=True)[::-1])


def test_perfect_and_empty_lists():
    test = csr([0, 0, 1], [2, 0, 1], [1, 1, 1], (2, 4))
    perfect = np.array([[0, 2, 3], [1, 0, 2]])
    assert ev.ndcg_at_k(perfect, test) == pytest.approx(1.0)
    assert ev.map_at_k(perfect, test) == pytest.approx(1.0)
    assert ev.recall_at_k(perfect, test) == pytest.approx(1.0)
    # u0 has 2 relevant of 3 slots, u1 1 of 3
    assert ev.precision_at_k(perfect, test) == pytest.approx((2 / 3 + 1 / 3) / 2)
    padding = np.full((2, 3), -1)
    for f in (ev.precision_at_k, ev.recall_at_k, ev.ndcg_at_k, ev.map_at_k, ev.hit_rate_at_k, ev.mrr_at_k):
        assert f(padding, test) == 0.0


def test_auc_hand_computed():
    # u0: train {0}; test {1, 2}; scores [9, 3, 1, 1, 2]: positives {1, 2}, negatives {3, 4}
    #     pairs (1,3): 3 > 1 -> 1; (1,4): 3 > 2 -> 1; (2,3): tie -> 0.5; (2,4): 1 < 2 -> 0
    #     AUC = 2.5 / 4 = 0.625
    # u1: test {4}; scores [0, 0, 0, 0, 1]: beats all 4 negatives -> 1.0
    # u2: no test item -> skipped
    # u3: train {0, 1}, test {2, 3, 4}: no negatives -> skipped
    train = csr([0, 3, 3], [0, 0, 1], [1, 1, 1], (4, 5))
    test = csr([0, 0, 1, 3, 3, 3], [1, 2, 4, 2, 3, 4], [1, 1, 1, 1, 1, 1], (4, 5))
    scores = np.array([[9, 3, 1, 1, 2], [0, 0, 0, 0, 1], [1, 2, 3, 4, 5], [5, 4, 3, 2, 1]], float)
    assert ev.auc(scores, test, train) == pytest.approx((0.625 + 1.0) / 2)
    np.testing.assert_allclose(ev.auc(scores, test, train, per_user=True), [0.625, 1.0, np.nan, np.nan])
    # without train, u0's item 0 (score 9) is a negative that beats both positives:
    # pairs vs {0, 3, 4}: item 1 -> 0 + 1 + 1, item 2 -> 0 + 0.5 + 0 -> 2.5 / 6
    assert ev.auc(scores[:1], test, users=[0]) == pytest.approx(2.5 / 6)
    # a model is asked for the same scores
    model = rf.MostPopular().fit(train)
    expected = ev.auc(np.tile(model.item_popularity, (4, 1)), test, train)
    assert ev.auc(model, test, train, batch_size=1) == pytest.approx(expected)


def test_rating_metrics_hand_computed():
    # errors 0, -2, 2: rmse = sqrt((0 + 4 + 4) / 3), mae = (0 + 2 + 2) / 3
    assert ev.rmse([1, 2, 3], [1, 4, 1]) == pytest.approx(math.sqrt(8 / 3))
    assert ev.mae(np.array([1.0, 2, 3]), np.array([1.0, 4, 1])) == pytest.approx(4 / 3)


def test_coverage_diversity_novelty_hand_computed():
    rec = np.array([[0, 1, -1], [1, 2, 2]])
    # items {0, 1, 2} of 5
    assert ev.coverage(rec, 5) == pytest.approx(3 / 5)
    assert ev.coverage(rec, 5, k=1) == pytest.approx(2 / 5)  # {0, 1}

    feats = np.array([[1.0, 0], [0, 1], [1, 1], [0, 0]])
    lists = np.array([[0, 1, 2], [0, -1, -1], [3, 0, -1]])
    # list 0: d(0,1) = 1 - 0, d(0,2) = d(1,2) = 1 - 1/sqrt 2; mean over 3 pairs
    # list 1: one valid id -> skipped; list 2: item 3 is a zero vector -> distance 1
    expected = ((1 + 2 * (1 - 1 / math.sqrt(2))) / 3 + 1.0) / 2
    assert ev.intra_list_diversity(lists, feats) == pytest.approx(expected)
    assert ev.intra_list_diversity(lists, sp.csr_matrix(feats), batch_size=1) == pytest.approx(expected)

    # 4 training users; item 0 seen by 4, item 1 by 2, item 2 by 1, item 3 by none (counted as 1)
    train = csr([0, 1, 2, 3, 0, 1, 2], [0, 0, 0, 0, 1, 1, 2], [1] * 7, (4, 4))
    # -log2 p: item 0 -> log2(4/4) = 0, item 1 -> log2(4/2) = 1, item 2 -> log2(4/1) = 2, item 3 -> 2
    # list 0: (0 + 1) / 2 = 0.5; list 1: (2 + 2 + 2) / 3 = 2; list 2: padding only -> skipped
    assert ev.novelty(np.array([[0, 1, -1], [2, 3, 3], [-1, -1, -1]]), train) == pytest.approx(1.25)


# -- property tests against plain per-user references ------------------------------------------


def reference_metrics(rec, test_dense, k):
    """Straight from the definitions, one user at a time, with Python sets."""
    out = {m: [] for m in ("precision", "recall", "ndcg", "map", "hit_rate", "mrr")}
    for row, t in zip(rec, test_dense):
        relevant = {i for i in range(len(t)) if t[i] > 0}
        if not relevant:
            for m in out:
                out[m].append(math.nan)
            continue
        seen, hits = set(), []
        for item in row[:k]:
            hits.append(item >= 0 and item in relevant and item not in seen)
            seen.add(item)
        n_hits = sum(hits)
        out["precision"].append(n_hits / k)
        out["recall"].append(n_hits / len(relevant))
        dcg = sum(1 / math.log2(j + 2) for j, h in enumerate(hits) if h)
        idcg = sum(1 / math.log2(j + 2) for j in range(min(k, len(relevant))))
        out["ndcg"].append(dcg / idcg)
        ap, running = 0.0, 0
        for j, h in enumerate(hits):
            if h:
                running += 1
                ap += running / (j + 1)
        out["map"].append(ap / min(k, len(relevant)))
        out["hit_rate"].append(float(n_hits > 0))
        out["mrr"].append(next((1 / (j + 1) for j, h in enumerate(hits) if h), 0.0))
    return out


@st.composite
def ranking_problem(draw):
    n_users = draw(st.integers(1, 12))
    n_items = draw(st.integers(1, 15))
    width = draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    rec = rng.integers(-1, n_items, size=(n_users, width))  # -1 padding and repeats included
    test = rng.choice([0.0, 0.0, 0.0, 1.0, 2.5, -1.0], size=(n_users, n_items))
    test[rng.integers(0, n_users), rng.integers(0, n_items)] = 1.0  # at least one relevant entry
    k = draw(st.integers(1, width))
    return rec, test, k


@settings(max_examples=150, deadline=None)
@given(ranking_problem())
def test_ranking_metrics_match_reference(problem):
    rec, test_dense, k = problem
    test = sp.csr_matrix(test_dense)
    ref = reference_metrics(rec, test_dense, k)
    funcs = {
        "precision": ev.precision_at_k,
        "recall": ev.recall_at_k,
        "ndcg": ev.ndcg_at_k,
        "map": ev.map_at_k,
        "hit_rate": ev.hit_rate_at_k,
        "mrr": ev.mrr_at_k,
    }
    for name, f in funcs.items():
        got = f(rec, test, k=k, per_user=True)
        np.testing.assert_allclose(got, ref[name], rtol=1e-12, atol=1e-12, err_msg=name)
        assert f(rec, test, k=k) == pytest.approx(np.nanmean(ref[name]), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 8), st.integers(2, 12), st.integers(0, 2**32 - 1))
def test_auc_matches_pairwise_reference(n_users, n_items, seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 4, size=(n_users, n_items)).astype(float)  # many ties
    state = rng.choice([0, 1, 2], size=(n_users, n_items), p=[0.5, 0.25, 0.25])  # 0 none, 1 train, 2 test
    state[0, 0] = 2
    train, test = sp.csr_matrix((state == 1) * 1.0), sp.csr_matrix((state == 2) * 1.0)
    ref = []
    for u in range(n_users):
        pos = [scores[u, i] for i in range(n_items) if state[u, i] == 2]
        neg = [scores[u, i] for i in range(n_items) if state[u, i] == 0]
        if not pos or not neg:
            ref.append(math.nan)
            continue
        wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
        ref.append(wins / (len(pos) * len(neg)))
    if all(math.isnan(r) for r in ref):
        with pytest.raises(ValueError, match="no evaluated user"):
            ev.auc(scores, test, train)
        return
    np.testing.assert_allclose(ev.auc(scores, test, train, per_user=True, batch_size=3), ref, atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 10), st.integers(1, 10), st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_beyond_accuracy_match_reference(n_lists, n_items, width, seed):
    rng = np.random.default_rng(seed)
    rec = rng.integers(-1, n_items, size=(n_lists, width))
    rec[0, 0] = rng.integers(0, n_items)
    feats = rng.standard_normal((n_items, 3))
    train = (rng.random((7, n_items)) < 0.4) * 1.0
    train[0, 0] = 1.0  # an empty train matrix is an error
    train = sp.csr_matrix(train)
    assert ev.coverage(rec, n_items) == pytest.approx(len({i for i in rec.ravel() if i >= 0}) / n_items)

    counts = np.asarray((train > 0).sum(axis=0)).ravel()
    per_list = [np.mean([-math.log2(max(counts[i], 1) / 7) for i in row if i >= 0]) for row in rec if (row >= 0).any()]
    assert ev.novelty(rec, train) == pytest.approx(np.mean(per_list))

    ild = []
    for row in rec:
        ids = [i for i in row if i >= 0]
        d = [
            1 - feats[a] @ feats[b] / (np.linalg.norm(feats[a]) * np.linalg.norm(feats[b]))
            for x, a in enumerate(ids)
            for b in ids[x + 1 :]
        ]
        if d:
            ild.append(np.mean(d))
    if ild:
        assert ev.intra_list_diversity(rec, feats, batch_size=3) == pytest.approx(np.mean(ild))
    else:
        with pytest.raises(ValueError, match="at least two"):
            ev.intra_list_diversity(rec, feats)


# -- bad input ---------------------------------------------------------------------------------


def test_bad_input_names_the_argument(case):
    rec, test = case
    with pytest.raises(ValueError, match="k must be >= 1"):
        ev.ndcg_at_k(rec, test, k=0)
    with pytest.raises(TypeError, match="k must be an int"):
        ev.ndcg_at_k(rec, test, k=2.0)
    with pytest.raises(ValueError, match=r"k must be <= the width of recommended_ids \(3\)"):
        ev.ndcg_at_k(rec, test, k=4)
    with pytest.raises(ValueError, match="recommended_ids must hold item ids in"):
        ev.recall_at_k(np.array([[0, 6, 1]] * 5), test)
    with pytest.raises(ValueError, match="recommended_ids must hold item ids in"):
        ev.recall_at_k(np.array([[0, -2, 1]] * 5), test)
    with pytest.raises(TypeError, match="recommended_ids must hold integer"):
        ev.recall_at_k(rec.astype(float), test)
    with pytest.raises(ValueError, match="recommended_ids must be 2-D"):
        ev.recall_at_k(rec[0], test)
    with pytest.raises(ValueError, match="test has 5 rows but recommended_ids has 4"):
        ev.precision_at_k(rec[:4], test)
    with pytest.raises(ValueError, match="users must have one entry per row"):
        ev.precision_at_k(rec, test, users=[0, 1])
    with pytest.raises(ValueError, match="users must be in"):
        ev.precision_at_k(rec, test, users=[0, 1, 2, 3, 9])
    with pytest.raises(ValueError, match="test has no relevant entries"):
        ev.precision_at_k(rec, sp.csr_matrix((5, 6)))
    nan_test = test.copy()
    nan_test.data[0] = np.nan
    with pytest.raises(ValueError, match="test contains NaN"):
        ev.map_at_k(rec, nan_test)
    with pytest.raises(TypeError, match="test must be a scipy.sparse"):
        ev.map_at_k(rec, test.toarray())


def test_bad_input_other_metrics(case):
    rec, test = case
    with pytest.raises(ValueError, match="y_true and y_pred must have the same length"):
        ev.rmse([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="y_pred contains NaN"):
        ev.mae([1, 2], [1, np.nan])
    with pytest.raises(ValueError, match="y_true is empty"):
        ev.rmse([], [])
    with pytest.raises(ValueError, match="y_true must be 1-D"):
        ev.rmse([[1, 2]], [[1, 2]])
    with pytest.raises(ValueError, match="n_items must be finite and > 0"):
        ev.coverage(rec, 0)
    with pytest.raises(ValueError, match="recommended_ids must hold item ids"):
        ev.coverage(rec, 3)
    with pytest.raises(ValueError, match="item_features contains NaN"):
        ev.intra_list_diversity(rec, np.full((6, 2), np.nan))
    with pytest.raises(ValueError, match="item_features must be 2-D"):
        ev.intra_list_diversity(rec, np.ones(6))
    with pytest.raises(ValueError, match="recommended_ids holds only padding"):
        ev.novelty(np.full((2, 2), -1), test)
    with pytest.raises(ValueError, match=r"scores must have shape \(5, 6\)"):
        ev.auc(np.zeros((4, 6)), test)
    with pytest.raises(ValueError, match="scores contains NaN"):
        ev.auc(np.full((5, 6), np.nan), test)
    with pytest.raises(ValueError, match="train and test must have the same shape"):
        ev.auc(np.zeros((5, 6)), test, sp.csr_matrix((5, 7)))
