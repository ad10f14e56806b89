"""Popularity bias, exposure, long tail, calibration and per-group accuracy: hand-computed values,
properties, evaluate() / evaluate_groups() and bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import data_path
from hypothesis import given, settings
from hypothesis import strategies as st

import recforge as rf
import recforge.evaluation as ev
import recforge.evaluation._common as common
from recforge.cli import main

# item popularity (users per item) in TRAIN: [3, 1, 2, 0, 1]
TRAIN = sp.csr_matrix(np.array([
    [1, 1, 1, 0, 0],
    [1, 0, 1, 0, 0],
    [1, 0, 0, 0, 1],
], dtype=np.float32))  # fmt: skip
REC = np.array([[0]])


# -- hand-computed values ---------------------------------------------------------------------------
def test_gini_of_known_vectors():
    assert ev.gini([0, 0, 0, 1]) == pytest.approx(0.75)  # one item holds everything: (n - 1) / n
    assert ev.gini([5, 5, 5, 5]) == pytest.approx(0.0)
    assert ev.gini([1, 2, 3]) == pytest.approx(4 / 18)  # (-2 * 1 + 0 * 2 + 2 * 3) / (3 * 6)
    assert ev.gini(np.array([3, 1, 2])) == pytest.approx(4 / 18)  # order does not matter


def test_gini_exposure_counts_every_catalogue_item():
    # counts [2, 1, 1, 0] -> sorted [0, 1, 1, 2]: (-3 * 0 - 1 * 1 + 1 * 1 + 3 * 2) / (4 * 4) = 6 / 16
    assert ev.gini_exposure(np.array([[0, 1], [0, 2]]), n_items=4) == pytest.approx(0.375)
    assert ev.gini_exposure(np.array([[0, 1, -1], [0, 2, -1]]), n_items=4) == pytest.approx(0.375)  # padding
    assert ev.gini_exposure(np.array([[0, 1], [0, 2]]), n_items=4, k=1) == pytest.approx(0.75)  # [2, 0, 0, 0]


def test_average_popularity():
    # lists: [0, 1] -> (3 + 1) / 2 = 2; [2, 3] -> (2 + 0) / 2 = 1; [4, -1] -> 1 / 1 = 1; mean 4 / 3
    rec = np.array([[0, 1], [2, 3], [4, -1]])
    assert ev.average_popularity(rec, TRAIN) == pytest.approx(4 / 3)
    assert ev.average_popularity(rec, TRAIN, k=1) == pytest.approx((3 + 2 + 1) / 3)


def test_long_tail_share():
    # head_fraction 0.2 of 5 items -> the single most popular item (0) is the head; 0.4 -> items 0, 2
    rec = np.array([[0, 1], [2, 3], [4, -1]])
    assert ev.long_tail_share(rec, TRAIN) == pytest.approx((0.5 + 1 + 1) / 3)
    assert ev.long_tail_share(rec, TRAIN, head_fraction=0.4) == pytest.approx((0.5 + 0.5 + 1) / 3)
    # ties in popularity go to the lower item index: items 1 and 4 (1 user each) -> 1 is in a head of 3
    tail = ev.beyond.long_tail_items(TRAIN, head_fraction=0.6)
    assert tail.tolist() == [False, False, False, True, True]


def test_genre_distribution_weights_and_items_without_genres():
    genres = np.array([[1, 1], [0, 1], [0, 0]], dtype=float)  # item 0: half A, half B; item 2: no genre
    rows = sp.csr_matrix(np.array([[2.0, 1.0, 5.0], [0, 0, 1.0]]))
    # row 0: 2 * (1/2, 1/2) + 1 * (0, 1) = (1, 2) -> (1/3, 2/3); row 1: nothing -> zeros
    np.testing.assert_allclose(ev.genre_distribution(rows, genres), [[1 / 3, 2 / 3], [0, 0]])


# -- properties -------------------------------------------------------------------------------------
vectors = st.lists(st.integers(0, 50), min_size=1, max_size=30).filter(lambda v: sum(v) > 0)


@settings(max_examples=100, deadline=None)
@given(vectors, st.integers(1, 7), st.randoms(use_true_random=False))
def test_gini_properties(v, scale, rnd):
    g = ev.gini(v)
    n = len(v)
    assert -1e-12 <= g <= (n - 1) / n + 1e-12
    shuffled = list(v)
    rnd.shuffle(shuffled)
    assert ev.gini(shuffled) == pytest.approx(g, abs=1e-12)  # permutation invariant
    assert ev.gini([x * scale for x in v]) == pytest.approx(g, abs=1e-12)  # scale invariant
    # the textbook mean absolute difference form: sum_ij |x_i - x_j| / (2 n^2 mean)
    x = np.asarray(v, float)
    assert g == pytest.approx(np.abs(x[:, None] - x[None, :]).sum() / (2 * n * n * x.mean()), abs=1e-12)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.001, 0.5))
def test_miscalibration_is_zero_only_for_matching_lists_and_bounded(seed, alpha):
    r = np.random.default_rng(seed)
    genres = (r.random((8, 3)) < 0.5).astype(float)
    genres[np.arange(8), r.integers(0, 3, 8)] = 1  # every item has a genre, so the list's history has some
    genres[0] = [1, 0, 0]
    rec = r.permutation(8)[None, :3]
    rows = sp.csr_matrix((np.ones(3), (np.zeros(3, int), rec[0])), shape=(1, 8))  # history = the list
    assert ev.miscalibration(rec, rows, genres, alpha=alpha) == pytest.approx(0.0, abs=1e-12)
    p = ev.genre_distribution(rows, genres)
    q = np.array([[1.0, 0, 0]])
    kl = ev.kl_miscalibration(p, q, alpha)
    assert 0 <= kl[0] <= np.log(1 / alpha) + 1e-12


# -- evaluate() and the CLI -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def split():
    df = rf.datasets.synthetic(n_users=120, n_items=80, nnz=3000, seed=2)
    return rf.split.random_holdout(rf.Interactions.from_pandas(df), test_fraction=0.2, seed=0)


def test_evaluate_reports_the_beyond_accuracy_metrics(split):
    train, test = split
    model = rf.ALS(factors=6, epochs=3, seed=0).fit(train, progress=False)
    genres = (np.random.default_rng(0).random((train.n_items, 5)) < 0.3).astype(float)
    m = ev.evaluate(model, train, test, k=5, item_features=model.item_factors, item_genres=genres, progress=False)
    users = np.flatnonzero(np.diff(test.csr.indptr))
    ids, _ = model.recommend(users, k=5)
    assert m["popularity@5"] == pytest.approx(ev.average_popularity(ids, train))
    assert m["gini@5"] == pytest.approx(ev.gini_exposure(ids, train.n_items))
    assert m["long_tail@5"] == pytest.approx(ev.long_tail_share(ids, train))
    assert m["diversity@5"] == pytest.approx(ev.intra_list_diversity(ids, model.item_factors))
    assert m["miscalibration@5"] == pytest.approx(ev.miscalibration(ids, train, genres, users=users))
    plain = ev.evaluate(model, train, test, k=5, progress=False)
    assert "diversity@5" not in plain and "miscalibration@5" not in plain and "gini@5" in plain
    only = ev.evaluate(model, train, test, k=5, metrics=["gini", "diversity@3"], item_features=genres, progress=False)
    assert set(only) == {"protocol", "gini@5", "diversity@3", "n_users"}


def test_evaluate_feature_metrics_bad_input(split):
    train, test = split
    model = rf.MostPopular().fit(train)
    with pytest.raises(ValueError, match="metric 'diversity' needs item_features="):
        ev.evaluate(model, train, test, metrics=["diversity"], progress=False)
    with pytest.raises(ValueError, match="metric 'miscalibration' needs item_genres="):
        ev.evaluate(model, train, test, metrics=["ndcg", "miscalibration"], progress=False)
    with pytest.raises(ValueError, match="item_features has 3 rows but train/test have 80 items"):
        ev.evaluate(model, train, test, item_features=np.ones((3, 2)), progress=False)
    with pytest.raises(ValueError, match="item_genres contains negative values"):
        ev.evaluate(model, train, test, item_genres=-np.ones((80, 2)), progress=False)
    with pytest.raises(ValueError, match="item_features is for the full protocol"):
        ev.evaluate(model, train, test, protocol="sampled", item_features=np.ones((80, 2)), progress=False)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: ev.gini([]), ValueError, "values must be a non-empty 1-D array"),
        (lambda: ev.gini([1, -1]), ValueError, "values must be finite and >= 0"),
        (lambda: ev.gini([0, 0]), ValueError, "all zero"),
        (lambda: ev.gini(["a"]), TypeError, "values must hold real numbers"),
        (lambda: ev.gini_exposure(np.array([[-1, -1]]), 3), ValueError, "only padding"),
        (lambda: ev.gini_exposure(np.array([[0, 3]]), 3), ValueError, r"item ids in \[0, 3\)"),
        (lambda: ev.average_popularity(np.array([[0.5]]), TRAIN), TypeError, "integer item ids"),
        (lambda: ev.long_tail_share(REC, TRAIN, head_fraction=1.0), ValueError, r"head_fraction must be in \(0, 1\)"),
        (lambda: ev.miscalibration(REC, TRAIN, np.eye(5)), ValueError, "pass users="),
        (lambda: ev.miscalibration(REC, TRAIN, np.eye(4), users=[0]), ValueError, "item_genres has 4 rows"),
        (lambda: ev.miscalibration(REC, TRAIN, np.eye(5), users=[0], alpha=2), ValueError, "alpha must be in"),
        (lambda: ev.miscalibration(REC, TRAIN, np.zeros((5, 2)), users=[0]), ValueError, "no list has both"),
    ],
)  # fmt: skip
def test_beyond_metrics_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


# -- per-group accuracy ---------------------------------------------------------------------------
def test_evaluate_groups_matches_evaluate_on_each_group(split):
    train, test = split
    model = rf.ALS(factors=6, epochs=3, seed=0).fit(train, progress=False)
    labels = np.where(np.arange(train.n_users) % 3 == 0, "a", "b").astype(object)
    labels[5] = None  # no group: counted in "all" only
    table = ev.evaluate_groups(model, train, test, labels, k=5, metrics=["ndcg", "recall"], progress=False)
    assert list(table.index) == ["a", "b", "all"]
    overall = ev.evaluate(model, train, test, k=5, metrics=["ndcg", "recall"], progress=False)
    assert table.loc["all", "ndcg@5"] == pytest.approx(overall["ndcg@5"])
    assert table.loc["all", "n_users"] == overall["n_users"]
    for g in ("a", "b"):
        part = ev.evaluate(model, train, test, k=5, metrics=["ndcg", "recall"], users=np.flatnonzero(labels == g),
                           progress=False)  # fmt: skip
        assert table.loc[g, "ndcg@5"] == pytest.approx(part["ndcg@5"])
        assert table.loc[g, "recall@5"] == pytest.approx(part["recall@5"])
        assert table.loc[g, "n_users"] == part["n_users"]
        assert table.loc[g, "ndcg@5 vs all"] == pytest.approx(part["ndcg@5"] - overall["ndcg@5"])


def test_evaluate_groups_aligns_a_series_by_external_user_id():
    ids = {"user_ids": rf.IdMap(["x", "y", "z"]), "item_ids": rf.IdMap([1, 2, 3])}
    train = rf.Interactions.from_pandas(pd.DataFrame({"user": ["x", "y", "z", "z"], "item": [1, 1, 2, 1]}), **ids)
    test = rf.Interactions.from_pandas(pd.DataFrame({"user": ["x", "y", "z"], "item": [2, 3, 3]}), **ids)
    model = rf.MostPopular().fit(train)
    groups = pd.Series({"z": "old", "x": "young", "y": "old", "nobody": "young"})
    table = ev.evaluate_groups(model, train, test, groups, k=1, metrics="hit_rate", progress=False)
    assert table.loc["old", "n_users"] == 2 and table.loc["young", "n_users"] == 1


def test_evaluate_groups_bad_input(split):
    train, test = split
    model = rf.MostPopular().fit(train)
    with pytest.raises(ValueError, match=r"groups must have one label per user \(120\), got 3"):
        ev.evaluate_groups(model, train, test, ["a", "b", "c"])
    with pytest.raises(TypeError, match="groups must be a sequence of labels or a pandas Series"):
        ev.evaluate_groups(model, train, test, 5)
    with pytest.raises(ValueError, match="metrics must be ranking metric names"):
        ev.evaluate_groups(model, train, test, np.zeros(120), metrics=["coverage"])
    with pytest.raises(ValueError, match="repeated user id"):
        ev.evaluate_groups(model, train, test, pd.Series([1, 2], index=[0, 0]))


# -- MovieLens-100K: genres and demographics -----------------------------------------------------------
def test_movielens_genres_and_users(data_dir):
    data_path("ml-100k", "u.user")
    genres = rf.datasets.movielens_genres("100k", data_home=data_dir)
    users = rf.datasets.movielens_users("100k", data_home=data_dir)
    assert genres.shape == (1682, 19) and genres.index.name == "item" and genres.columns[1] == "Action"
    assert genres.loc[1, ["Animation", "Children's", "Comedy"]].tolist() == [1, 1, 1]  # Toy Story
    assert users.shape == (943, 4) and set(users["gender"]) == {"F", "M"}
    assert users.loc[1].tolist() == [24, "M", "technician", "85711"]
    with pytest.raises(ValueError, match="variant"):
        rf.datasets.movielens_users("latest-small", data_home=data_dir)


def test_who_is_served_worse_on_movielens_100k(data_dir):
    data_path("ml-100k", "u.user")
    df = rf.datasets.load_movielens("100k", data_home=data_dir)
    inter = rf.Interactions.from_pandas(df[df.rating >= 4], user_col="user", item_col="item")
    train, test = rf.split.random_holdout(inter, test_fraction=0.2, seed=0)
    model = rf.ALS(factors=32, epochs=8, seed=0).fit(train, progress=False)
    users = rf.datasets.movielens_users("100k", data_home=data_dir)
    table = ev.evaluate_groups(model, train, test, users["gender"], k=10, progress=False)
    assert set(table.index) == {"F", "M", "all"}
    assert table.loc["F", "n_users"] + table.loc["M", "n_users"] == table.loc["all", "n_users"]
    genres = rf.datasets.movielens_genres("100k", data_home=data_dir)
    m = ev.evaluate(model, train, test, k=10, item_genres=genres, progress=False)  # aligned by movie id
    assert 0 < m["miscalibration@10"] < np.log(100)


# -- the CLI: recforge evaluate --genres --group-by --rerank ------------------------------------------
def test_cli_evaluate_beyond_accuracy_groups_and_rerank(data_dir, capsys):
    data_path("ml-100k", "u.user")
    base = ["evaluate", "--dataset", "ml-100k", "--data-home", str(data_dir), "--model", "als", "--param", "epochs=3",
            "--quiet", "--k", "5"]  # fmt: skip
    assert main([*base, "--genres", "--group-by", "gender"]) == 0
    plain = json.loads(capsys.readouterr().out)
    for key in ("gini@5", "long_tail@5", "popularity@5", "diversity@5", "miscalibration@5"):
        assert np.isfinite(plain[key]), key
    by = plain["by gender"]
    assert set(by) == {"F", "M", "all"} and by["F"]["n_users"] + by["M"]["n_users"] == plain["n_users"]
    assert by["all"]["ndcg@5"] == pytest.approx(plain["ndcg@5"])
    assert (
        main([*base, "--genres", "--rerank", "calibration", "--tradeoff", "0.9", "--metrics", "ndcg,miscalibration"])
        == 0
    )
    calibrated = json.loads(capsys.readouterr().out)
    assert calibrated["rerank"]["method"] == "calibration" and set(calibrated) >= {"ndcg@5", "miscalibration@5"}
    assert calibrated["miscalibration@5"] < plain["miscalibration@5"]
    assert main([*base, "--rerank", "mmr", "--tradeoff", "0.0", "--metrics", "ndcg"]) == 0  # co-occurrence MMR at 0
    assert json.loads(capsys.readouterr().out)["ndcg@5"] == pytest.approx(plain["ndcg@5"])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--dataset", "synthetic", "--genres"], "--genres / --rerank calibration needs --dataset a MovieLens set"),
        (["--dataset", "synthetic", "--group-by", "age"], "--group-by needs --dataset ml-100k, ml-1m"),
        (["--dataset", "synthetic", "--rerank", "calibration"], "needs --dataset a MovieLens set"),
        (["--dataset", "synthetic", "--rerank", "mmr", "--tradeoff", "2"], "--tradeoff must be in"),
    ],
)
def test_cli_evaluate_beyond_accuracy_usage_errors(extra, message, capsys):
    assert main(["evaluate", "--model", "mostpopular", "--quiet", *extra]) == 2
    assert message in capsys.readouterr().err


def test_intra_list_diversity_is_the_same_through_the_wide_sparse_path(rng, monkeypatch):
    # co-occurrence (items as their users' columns) is wider than the dense-gather limit: the sparse
    # item-item product path must give the dense path's value
    train = sp.csr_matrix((rng.random((400, 30)) < 0.2).astype(np.float32))
    rec = np.stack([rng.permutation(30)[:6] for _ in range(20)])
    rec[3, 4:] = -1
    dense = ev.intra_list_diversity(rec, train.T.toarray())
    assert ev.intra_list_diversity(rec, train.T.tocsr()) == pytest.approx(dense, rel=1e-10)
    monkeypatch.setattr(common, "FULL_PRODUCT_MAX_ITEMS", 0)  # a catalogue too large for a dense product
    assert ev.intra_list_diversity(rec, train.T.tocsr()) == pytest.approx(dense, rel=1e-10)
