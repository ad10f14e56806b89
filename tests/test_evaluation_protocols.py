"""evaluate(): the full and sampled protocols end to end, negative sampling, real data sets."""

from __future__ import annotations

import heapq
import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import data_path

import recforge as rf
from recforge import evaluation as ev

L3 = 1 / math.log2(3)  # discount at rank 2
L4 = 1 / math.log2(4)  # discount at rank 3


def csr(pairs, shape):
    rows, cols = zip(*pairs) if pairs else ((), ())
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=shape)


# -- full protocol -----------------------------------------------------------------------------


@pytest.fixture
def full_case():
    """MostPopular on 5 users x 6 items.

    train: u0 {0, 1}, u1 {0, 2}, u2 {0, 1, 3}, u3 {}, u4 {0}
    popularity: item 0: 4, item 1: 2, items 2 and 3: 1, items 4 and 5: 0 -> order 0 1 2 3 4 5
    (ties to the lower id). Top 2 excluding train items:
      u0 [2, 3]   u1 [1, 3]   u2 [2, 4]   u3 [0, 1]   u4 [1, 2]
    test: u0 {3, 5} (hit at rank 2), u1 {} (skipped), u2 {2} (hit at 1), u3 {4} (miss),
          u4 {2, 3} (hit at 2)
    """
    train = csr([(0, 0), (0, 1), (1, 0), (1, 2), (2, 0), (2, 1), (2, 3), (4, 0)], (5, 6))
    test = csr([(0, 3), (0, 5), (2, 2), (3, 4), (4, 2), (4, 3)], (5, 6))
    return train, test


def test_full_protocol_hand_computed(full_case):
    train, test = full_case
    model = rf.MostPopular().fit(train)
    m = ev.evaluate(model, train, test, k=2, progress=False)
    assert m["protocol"] == "full" and m["n_users"] == 4
    # precision: (1/2 + 1/2 + 0 + 1/2) / 4
    assert m["precision@2"] == pytest.approx(0.375)
    # recall: (1/2 + 1/1 + 0 + 1/2) / 4
    assert m["recall@2"] == pytest.approx(0.5)
    # ndcg: u0 and u4 hit at rank 2 with 2 relevant: (1/log2 3) / (1 + 1/log2 3); u2 1; u3 0
    assert m["ndcg@2"] == pytest.approx((2 * L3 / (1 + L3) + 1) / 4)
    # map: u0 (1/2)(1/2), u2 (1/1)(1), u4 (1/2)(1/2) -> 1.5 / 4
    assert m["map@2"] == pytest.approx(0.375)
    assert m["hit_rate@2"] == pytest.approx(0.75)
    assert m["mrr@2"] == pytest.approx((1 / 2 + 1 + 0 + 1 / 2) / 4)
    # evaluated users' lists cover {0, 1, 2, 3, 4} of 6 items
    assert m["coverage@2"] == pytest.approx(5 / 6)
    # -log2(c_i / 5), c = [4, 2, 1, 1, 0 -> 1, 0 -> 1]: u0 [2,3] log2 5; u2 [2,4] log2 5;
    # u3 [0,1] (log2 5/4 + log2 5/2)/2; u4 [1,2] (log2 5/2 + log2 5)/2
    lg = math.log2
    expected = (lg(5) + lg(5) + (lg(5 / 4) + lg(5 / 2)) / 2 + (lg(5 / 2) + lg(5)) / 2) / 4
    assert m["novelty@2"] == pytest.approx(expected)


def test_full_protocol_users_metrics_and_batches(full_case):
    train, test = full_case
    model = rf.MostPopular().fit(train)
    # users 0..2: only u0 and u2 have test items
    m = ev.evaluate(model, train, test, k=2, users=[0, 1, 2], metrics=["precision", "mrr"], progress=False)
    assert set(m) == {"protocol", "precision@2", "mrr@2", "n_users"}
    assert m["n_users"] == 2 and m["precision@2"] == pytest.approx(0.5) and m["mrr@2"] == pytest.approx(0.75)
    whole = ev.evaluate(model, train, test, k=3, progress=False)
    assert ev.evaluate(model, train, test, k=3, batch_size=1, progress=True) == whole


class DuckModel:
    """Not a recforge model: only recommend (without threads=) and score, for duck typing."""

    def __init__(self, scores):
        self.scores = scores  # (n_users, n_items) dense
        self.calls = []

    def recommend(self, users, k, exclude_seen=True):
        s = self.scores[users].copy()
        ids = np.argsort(-s, axis=1, kind="stable")[:, :k]
        return ids, np.take_along_axis(s, ids, axis=1)

    def score(self, users, items):
        self.calls.append(len(users))
        return self.scores[users, items]


def test_full_protocol_matches_the_metric_functions(rng):
    n_users, n_items = 40, 30
    dense = rng.random((n_users, n_items))
    train = sp.csr_matrix((rng.random((n_users, n_items)) < 0.1) * 1.0)
    test = sp.csr_matrix((rng.random((n_users, n_items)) < 0.15) * 1.0 - train.toarray() * 2)
    test.data = np.maximum(test.data, 0)
    test.eliminate_zeros()
    model = DuckModel(dense)  # no exclusion of its own: exclude_seen is the model's business
    m = ev.evaluate(model, train, test, k=5, metrics=list(ev.protocols.FULL_METRICS), progress=False)
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    ids, _ = model.recommend(users, 5)
    assert m["n_users"] == users.size
    for name, f in [
        ("precision", ev.precision_at_k),
        ("recall", ev.recall_at_k),
        ("ndcg", ev.ndcg_at_k),
        ("map", ev.map_at_k),
        ("hit_rate", ev.hit_rate_at_k),
        ("mrr", ev.mrr_at_k),
    ]:
        assert m[f"{name}@5"] == pytest.approx(f(ids, test, users=users)), name
    assert m["coverage@5"] == pytest.approx(ev.coverage(ids, n_items))
    assert m["novelty@5"] == pytest.approx(ev.novelty(ids, train))
    assert m["auc"] == pytest.approx(ev.auc(dense[users], test, train, users=users))


# -- sampled protocol --------------------------------------------------------------------------


@pytest.fixture
def sampled_case():
    """MostPopular on 5 users x 6 items with fixed negatives (3 per test pair).

    train: u0 {0, 1}, u1 {0, 3}, u2 {0, 2}, u3 {1, 2}
    popularity (= MostPopular score): item 0: 3, items 1 and 2: 2, item 3: 1, items 4 and 5: 0
    pair (u0, 3), score 1, negatives [4, 5, 2] (0, 0, 2): 1 higher, 0 equal  -> rank 2
    pair (u1, 1), score 2, negatives [2, 4, 5] (2, 0, 0): 0 higher, 1 equal  -> rank 2 / 1
    pair (u2, 4), score 0, negatives [5, 3, 1] (0, 1, 2): 2 higher, 1 equal  -> rank 4 / 3
    (pessimistic / optimistic)
    """
    train = csr([(0, 0), (0, 1), (1, 0), (1, 3), (2, 0), (2, 2), (3, 1), (3, 2)], (5, 6))
    test = csr([(0, 3), (1, 1), (2, 4)], (5, 6))
    negatives = np.array([[4, 5, 2], [2, 4, 5], [5, 3, 1]])
    return train, test, negatives


def test_sampled_protocol_hand_computed(sampled_case):
    train, test, neg = sampled_case
    model = rf.MostPopular().fit(train)
    kw = dict(protocol="sampled", negatives=neg, metrics=["hit_rate", "ndcg", "mrr"], progress=False)
    # k = 2, pessimistic ranks [2, 2, 4]
    m = ev.evaluate(model, train, test, k=2, **kw)
    assert m["protocol"] == "sampled(1+3)" and m["n_pairs"] == 3 and m["n_users"] == 3
    assert m["ties"] == "pessimistic"
    assert m["hit_rate@2"] == pytest.approx(2 / 3)
    assert m["ndcg@2"] == pytest.approx((L3 + L3 + 0) / 3)
    assert m["mrr@2"] == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)
    # optimistic ranks [2, 1, 3]
    m = ev.evaluate(model, train, test, k=2, ties="optimistic", **kw)
    assert m["ndcg@2"] == pytest.approx((L3 + 1 + 0) / 3)
    assert m["mrr@2"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    # expected: u0 rank 2; u1 rank 1 or 2; u2 rank 3 or 4 (each with probability 1/2)
    m = ev.evaluate(model, train, test, k=2, ties="expected", **kw)
    assert m["hit_rate@2"] == pytest.approx(2 / 3)
    assert m["ndcg@2"] == pytest.approx((L3 + (1 + L3) / 2 + 0) / 3)
    assert m["mrr@2"] == pytest.approx((1 / 2 + (1 + 1 / 2) / 2 + 0) / 3)
    # k = 3: u2's tie window {3, 4} is half inside
    m = ev.evaluate(model, train, test, k=3, ties="expected", **kw)
    assert m["hit_rate@3"] == pytest.approx((1 + 1 + 1 / 2) / 3)
    assert m["ndcg@3"] == pytest.approx((L3 + (1 + L3) / 2 + L4 / 2) / 3)
    m = ev.evaluate(model, train, test, k=3, **kw)
    assert m["hit_rate@3"] == pytest.approx(2 / 3)


def test_sampled_protocol_ignores_a_negative_equal_to_its_positive(sampled_case):
    train, test, neg = sampled_case
    model = rf.MostPopular().fit(train)
    # pair (u2, 4) gets its own item 4 among its negatives: it must not count as a tie
    neg2 = neg.copy()
    neg2[2] = [5, 4, 1]  # competitors 5 (0, tie) and 1 (2, higher): pessimistic rank 3
    m = ev.evaluate(model, train, test, k=3, protocol="sampled", negatives=neg2, progress=False)
    assert m["hit_rate@3"] == pytest.approx(1.0)
    assert m["ndcg@3"] == pytest.approx((L3 + L3 + L4) / 3)


def test_sampled_protocol_batches_model_calls(sampled_case):
    train, test, neg = sampled_case
    dense = np.tile(rf.MostPopular().fit(train).item_popularity, (5, 1))
    model = DuckModel(dense)
    kw = dict(protocol="sampled", negatives=neg, progress=False)
    whole = ev.evaluate(model, train, test, k=2, batch_size=100, **kw)
    assert model.calls == [12]  # 3 pairs x (1 + 3) items in one call
    model.calls.clear()
    assert ev.evaluate(model, train, test, k=2, batch_size=2, **kw) == whole
    assert model.calls == [8, 4]
    assert whole["ndcg@2"] == pytest.approx((L3 + L3) / 3)  # the same numbers as MostPopular itself


def test_sampled_protocol_users_select_rows_of_negatives(sampled_case):
    train, test, neg = sampled_case
    model = rf.MostPopular().fit(train)
    # only u1 and u2: pessimistic ranks 2 and 4
    m = ev.evaluate(model, train, test, k=2, protocol="sampled", negatives=neg, users=[1, 2], progress=False)
    assert m["n_pairs"] == 2 and m["hit_rate@2"] == pytest.approx(0.5) and m["ndcg@2"] == pytest.approx(L3 / 2)


def test_test_pairs_order_is_by_user_then_item():
    test = sp.coo_matrix((np.ones(5, np.float32), ([2, 0, 2, 1, 0], [1, 4, 0, 3, 2])), shape=(3, 5))
    u, i = ev.test_pairs(test)
    np.testing.assert_array_equal(u, [0, 0, 1, 2, 2])
    np.testing.assert_array_equal(i, [2, 4, 3, 0, 1])
    u, i = ev.test_pairs(test, users=[2, 0])
    np.testing.assert_array_equal(u, [0, 0, 2, 2])
    np.testing.assert_array_equal(i, [2, 4, 0, 1])


def test_sample_negatives_are_unseen_distinct_and_seeded(rng):
    n_users, n_items = 300, 40
    seen = rng.random((n_users, n_items)) < rng.uniform(0, 0.8, size=(n_users, 1))  # some users dense
    split = rng.random((n_users, n_items)) < 0.3
    train = sp.csr_matrix((seen & ~split) * 1.0)
    test = sp.csr_matrix((seen & split) * 1.0)
    n_neg = 8
    keep = n_items - seen.sum(axis=1) >= n_neg
    users = np.flatnonzero(keep & (np.diff(test.indptr) > 0))
    neg = ev.sample_negatives(train, test, n_neg, seed=3, users=users)
    pu, _ = ev.test_pairs(test, users=users)
    assert neg.shape == (pu.size, n_neg) and neg.dtype == np.int64
    assert not seen[pu[:, None], neg].any()  # never an item of the user's train or test
    assert all(len(set(row)) == n_neg for row in neg)  # distinct within a row
    np.testing.assert_array_equal(neg, ev.sample_negatives(train, test, n_neg, seed=3, users=users))
    assert not np.array_equal(neg, ev.sample_negatives(train, test, n_neg, seed=4, users=users))
    # a user with exactly n_neg unseen items gets all of them
    exact = np.flatnonzero(n_items - seen.sum(axis=1) == n_neg)
    exact = exact[np.diff(test.indptr)[exact] > 0]
    if exact.size:
        out = ev.sample_negatives(train, test, n_neg, seed=0, users=exact[:1])
        np.testing.assert_array_equal(np.sort(out, axis=1)[0], np.flatnonzero(~seen[exact[0]]))
    with pytest.raises(ValueError, match="items outside train and test"):
        ev.sample_negatives(train, test, n_items, seed=0)


def test_sample_negatives_are_uniform():
    # 4000 users who saw items 0..4 of 20 (test item 0): each of the 15 others is drawn with
    # probability 3/15 per pair, so ~800 times; a 4-sigma band (sigma ~ 25) catches a biased sampler
    n_users, n_items = 4000, 20
    train = sp.csr_matrix(np.tile(np.r_[np.zeros(1), np.ones(4), np.zeros(15)], (n_users, 1)))
    test = sp.csr_matrix(np.tile(np.r_[np.ones(1), np.zeros(19)], (n_users, 1)))
    counts = np.bincount(ev.sample_negatives(train, test, 3, seed=0).ravel(), minlength=n_items)
    assert counts[:5].sum() == 0
    assert np.abs(counts[5:] - 800).max() < 100
    # 12 of the 15 (the exact path for crowded rows): 3200 each, sigma = sqrt(4000 * 0.8 * 0.2) ~ 25
    counts = np.bincount(ev.sample_negatives(train, test, 12, seed=0).ravel(), minlength=n_items)
    assert counts[:5].sum() == 0
    assert np.abs(counts[5:] - 3200).max() < 100


def test_sampled_protocol_with_sampled_negatives_is_seeded(sampled_case):
    train, test, _ = sampled_case
    model = rf.MostPopular().fit(train)
    kw = dict(protocol="sampled", n_negatives=2, progress=False)
    a = ev.evaluate(model, train, test, k=2, seed=7, **kw)
    assert a == ev.evaluate(model, train, test, k=2, seed=7, **kw)
    neg = ev.sample_negatives(train, test, 2, seed=7)
    assert a == ev.evaluate(model, train, test, k=2, protocol="sampled", negatives=neg, progress=False)
    assert a["protocol"] == "sampled(1+2)"


# -- bad input ---------------------------------------------------------------------------------


def test_evaluate_bad_input(sampled_case):
    train, test, neg = sampled_case
    model = rf.MostPopular().fit(train)
    with pytest.raises(ValueError, match="k must be >= 1"):
        ev.evaluate(model, train, test, k=0)
    with pytest.raises(ValueError, match="protocol must be 'full' or 'sampled'"):
        ev.evaluate(model, train, test, protocol="loo")
    with pytest.raises(ValueError, match="metrics must be names from"):
        ev.evaluate(model, train, test, metrics=["ndcg", "f1"])
    with pytest.raises(ValueError, match="metrics must be names from"):
        ev.evaluate(model, train, test, protocol="sampled", negatives=neg, metrics=["recall"], k=2)
    with pytest.raises(ValueError, match="train and test must have the same shape"):
        ev.evaluate(model, train, test[:4])
    with pytest.raises(ValueError, match="model has 6 items but train/test have 7"):
        ev.evaluate(model, sp.hstack([train, train[:, :1]]).tocsr(), sp.hstack([test, test[:, :1]]).tocsr())
    with pytest.raises(ValueError, match="test is empty"):
        ev.evaluate(model, train, sp.csr_matrix((5, 6)))
    with pytest.raises(ValueError, match="none of users has a test item"):
        ev.evaluate(model, train, test, users=[3, 4])
    with pytest.raises(ValueError, match="users must be in"):
        ev.evaluate(model, train, test, users=[7])
    with pytest.raises(ValueError, match="ties must be one of"):
        ev.evaluate(model, train, test, protocol="sampled", negatives=neg, ties="random", k=2)
    with pytest.raises(ValueError, match=r"negatives must have shape \(3, n_neg\)"):
        ev.evaluate(model, train, test, protocol="sampled", negatives=neg[:2], k=2)
    with pytest.raises(ValueError, match=r"negatives must be item ids in \[0, 6\)"):
        ev.evaluate(model, train, test, protocol="sampled", negatives=neg + 3, k=2)
    with pytest.raises(TypeError, match="negatives must hold integer"):
        ev.evaluate(model, train, test, protocol="sampled", negatives=neg * 1.0, k=2)
    with pytest.raises(ValueError, match=r"k must be <= 1 \+ the number of negatives \(4\)"):
        ev.evaluate(model, train, test, protocol="sampled", negatives=neg, k=5)
    with pytest.raises(ValueError, match="n_negatives=4 but user"):
        ev.evaluate(model, train, test, protocol="sampled", n_negatives=4, k=2)
    with pytest.raises(ValueError, match="n_negatives must be finite and > 0"):
        ev.evaluate(model, train, test, protocol="sampled", n_negatives=0, k=2)
    with pytest.raises(ValueError, match="batch_size must be finite and > 0"):
        ev.evaluate(model, train, test, batch_size=0)
    nan_model = DuckModel(np.full((5, 6), np.nan))
    with pytest.raises(ValueError, match="model.score returned NaN"):
        ev.evaluate(nan_model, train, test, protocol="sampled", negatives=neg, k=2)


# -- real data ---------------------------------------------------------------------------------


def _movielens_100k_holdout(seed=0):
    """MovieLens-100K as CSR with a per-user random 80/20 holdout (read with pandas directly)."""
    df = pd.read_csv(data_path("ml-100k", "u.data"), sep="\t", header=None, names=["user", "item", "rating", "ts"])
    u, i = df["user"].to_numpy() - 1, df["item"].to_numpy() - 1
    shape = (u.max() + 1, i.max() + 1)
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(u.size), u))  # by user, random within user
    counts = np.bincount(u, minlength=shape[0])
    pos = np.arange(u.size) - np.repeat(np.cumsum(counts) - counts, counts)
    is_test = np.empty(u.size, dtype=bool)
    is_test[order] = pos < np.round(0.2 * counts)[u[order]]

    def part(mask):
        return sp.csr_matrix((np.ones(mask.sum(), np.float32), (u[mask], i[mask])), shape=shape)

    return part(~is_test), part(is_test)


def test_movielens_100k_most_popular_full_protocol():
    train, test = _movielens_100k_holdout()
    model = rf.MostPopular().fit(train)
    m = ev.evaluate(model, train, test, k=10, progress=False)
    assert m["n_users"] == 943
    # A popularity ranking on ML-100K (~21 held-out items per user among ~1,600 unseen) lands
    # near 0.2 precision@10; a random ranking gets about 21/1600 * 10 / 10 ~ 0.013.
    assert 0.12 < m["precision@10"] < 0.30
    assert 0.15 < m["ndcg@10"] < 0.35 and 0.6 < m["hit_rate@10"] < 0.95
    assert m["coverage@10"] < 0.1  # popularity recommends the same few items to everyone
    assert m == ev.evaluate(model, train, test, k=10, batch_size=100, progress=False)  # deterministic
    # a ranking that ignores the data must do far worse under the same protocol
    rng = np.random.default_rng(0)
    random_model = DuckModel(rng.random(train.shape) - train.toarray() * 10)
    r = ev.evaluate(random_model, train, test, k=10, progress=False)
    assert r["precision@10"] < m["precision@10"] / 5
    assert r["coverage@10"] > 0.9


def _deepcf(name):
    read = lambda f: pd.read_csv(data_path("deepcf", f), sep="\t", header=None)  # noqa: E731
    tr, te = read(f"{name}.train.rating"), read(f"{name}.test.rating")
    neg = read(f"{name}.test.negative").iloc[:, 1:].to_numpy()
    shape = (max(tr[0].max(), te[0].max()) + 1, max(tr[1].max(), te[1].max(), neg.max()) + 1)
    train = sp.csr_matrix((np.ones(len(tr), np.float32), (tr[0], tr[1])), shape=shape)
    test = sp.csr_matrix((np.ones(len(te), np.float32), (te[0], te[1])), shape=shape)
    assert (np.diff(te[0].to_numpy()) > 0).all()  # one test pair per user, by user: the file's order
    return train, test, neg


def test_deepcf_lastfm_sampled_protocol_matches_ncf_reference():
    train, test, neg = _deepcf("lastfm")
    model = rf.MostPopular().fit(train)
    res = {
        t: ev.evaluate(model, train, test, k=10, protocol="sampled", negatives=neg, ties=t, progress=False)
        for t in ("pessimistic", "expected", "optimistic")
    }
    assert res["pessimistic"]["protocol"] == "sampled(1+99)" and res["pessimistic"]["n_pairs"] == 1741
    hr = [res[t]["hit_rate@10"] for t in ("pessimistic", "expected", "optimistic")]
    assert hr[0] <= hr[1] <= hr[2]
    # popularity is a strong baseline under the sampled protocol; random would give 10/100
    assert 0.4 < hr[0] < 0.9

    # The NCF reference procedure (He et al.'s evaluate.py), one user at a time: score the
    # negatives then the positive into a dict keyed by item, take heapq.nlargest(10) (a stable
    # sort, so the positive, inserted last, loses ties), HR = positive in the list, NDCG =
    # 1 / log2(position + 2).
    pop = model.item_popularity
    pos_items = test.indices
    hits, gains = [], []
    for u in range(test.shape[0]):
        scores = {int(i): pop[i] for i in neg[u]}
        scores.setdefault(int(pos_items[u]), pop[pos_items[u]])
        top = heapq.nlargest(10, scores, key=scores.get)
        hits.append(pos_items[u] in top)
        gains.append(1 / math.log2(top.index(pos_items[u]) + 2) if pos_items[u] in top else 0.0)
    # rows whose negatives contain the positive put it earlier in the dict (not last), so compare
    # on the other rows exactly and on all rows within their share
    clean = ~(neg == pos_items[:, None]).any(axis=1)
    assert 0 < (~clean).sum() < 100  # 86 rows of this file list the positive among the negatives
    sub = ev.evaluate(
        model, train, test, k=10, protocol="sampled", negatives=neg, users=np.flatnonzero(clean), progress=False
    )
    assert sub["hit_rate@10"] == pytest.approx(np.mean(np.array(hits)[clean]))
    assert sub["ndcg@10"] == pytest.approx(np.mean(np.array(gains)[clean]))
    assert abs(res["pessimistic"]["hit_rate@10"] - np.mean(hits)) <= (~clean).mean()

    # the sampled protocol flatters: the honest full-catalogue hit rate is far lower
    full = ev.evaluate(model, train, test, k=10, metrics=["hit_rate"], progress=False)
    assert full["hit_rate@10"] < hr[0] / 2


def test_sample_negatives_treat_stored_zeros_as_interactions():
    # user 0 stores item 1 with value 0 in train and item 2 with value 0 in test: both are
    # interactions, so with 4 items and test item 0 the only possible negative is item 3
    train = sp.csr_matrix((np.array([0.0], np.float32), ([0], [1])), shape=(1, 4))
    test = sp.csr_matrix((np.array([1.0, 0.0], np.float32), ([0, 0], [0, 2])), shape=(1, 4))
    assert train.nnz == 1 and test.nnz == 2
    np.testing.assert_array_equal(ev.sample_negatives(train, test, 1, seed=0), [[3]])
    with pytest.raises(ValueError, match="has only 1 items outside train and test"):
        ev.sample_negatives(train, test, 2)


def test_full_protocol_forwards_threads_when_recommend_accepts_it(full_case):
    train, test = full_case
    base = rf.MostPopular().fit(train)
    seen_threads = []

    class WithThreads:
        n_items, n_users = 6, 5

        def recommend(self, users, k=10, exclude_seen=True, threads=0):
            seen_threads.append(threads)
            return base.recommend(users, k=k, exclude_seen=exclude_seen)

    m = ev.evaluate(WithThreads(), train, test, k=2, threads=3, batch_size=2, progress=False)
    assert seen_threads == [3, 3]  # 4 evaluated users in batches of 2
    assert m == ev.evaluate(base, train, test, k=2, progress=False)


def test_full_protocol_with_k_past_the_catalogue():
    """recommend clips k to the catalogue; evaluate pads the lists back (the extra positions are misses)."""
    df = rf.datasets.synthetic(n_users=50, n_items=8, nnz=200, seed=0)
    train, test = rf.split.random_holdout(rf.Interactions.from_pandas(df), 0.2)
    model = rf.MostPopular().fit(train)
    wide = rf.evaluation.evaluate(model, train, test, k=20)
    exact = rf.evaluation.evaluate(model, train, test, k=8)
    assert wide["recall@20"] == exact["recall@8"]
    assert wide["precision@20"] == pytest.approx(exact["precision@8"] * 8 / 20)


def test_several_cutoffs_and_metric_names_with_a_cutoff():
    df = rf.datasets.synthetic(n_users=200, n_items=100, nnz=4000, seed=0)
    train, test = rf.split.random_holdout(rf.Interactions.from_pandas(df), test_fraction=0.2, seed=0)
    model = rf.MostPopular().fit(train)
    both = rf.evaluation.evaluate(model, train, test, k=[5, 10])
    for k in (5, 10):  # each cut-off as a separate evaluation gives
        alone = rf.evaluation.evaluate(model, train, test, k=k)
        assert {key: v for key, v in both.items() if key.endswith(f"@{k}")} == {
            key: v for key, v in alone.items() if key.endswith(f"@{k}")
        }
    assert list(both)[0] == "protocol" and list(both)[-1] == "n_users"
    named = rf.evaluation.evaluate(model, train, test, metrics=["ndcg@10", "recall", "recall@20", "auc"], k=5)
    assert sorted(named) == ["auc", "n_users", "ndcg@10", "protocol", "recall@20", "recall@5"]
    assert named["ndcg@10"] == both["ndcg@10"] and named["recall@5"] == both["recall@5"]
    assert rf.evaluation.evaluate(model, train, test, metrics="ndcg")["ndcg@10"] == both["ndcg@10"]
    sampled = rf.evaluation.evaluate(model, train, test, k=[1, 5], protocol="sampled", n_negatives=20)
    assert {"hit_rate@1", "hit_rate@5", "ndcg@1", "ndcg@5"} <= set(sampled)
    for bad in (["ndcg@0"], ["auc@5"], ["nope"], ["ndcg@x"]):
        with pytest.raises(ValueError, match="optionally with a cut-off"):
            rf.evaluation.evaluate(model, train, test, metrics=bad)
    with pytest.raises(ValueError, match="non-empty"):
        rf.evaluation.evaluate(model, train, test, k=[])
    with pytest.raises(TypeError, match="k must be an int"):
        rf.evaluation.evaluate(model, train, test, k=[5, 2.5])
