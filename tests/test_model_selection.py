"""rf.split.kfold and rf.model_selection: cross-validation and searches on validation data only."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

import recforge as rf


@pytest.fixture(scope="module")
def inter():
    df = rf.datasets.synthetic(n_users=150, n_items=80, nnz=3000, seed=1, timestamps=False)
    return rf.Interactions.from_pandas(df, weight_col="rating")


def keys(part):
    coo = part.csr.tocoo()
    return set(zip(coo.row.tolist(), coo.col.tolist()))


def test_kfold_holds_every_interaction_out_once_and_balances_each_user(inter):
    folds = list(rf.split.kfold(inter, n_folds=4, seed=0))
    assert len(folds) == 4
    everything = keys(inter)
    tests = [keys(test) for _, test in folds]
    assert set().union(*tests) == everything and sum(map(len, tests)) == len(everything)
    for (train, _), held in zip(folds, tests):
        assert keys(train) == everything - held and train.user_ids is inter.user_ids
    per_user = np.array([np.diff(test.csr.indptr) for _, test in folds])  # (folds, users)
    assert (per_user.max(axis=0) - per_user.min(axis=0) <= 1).all()  # dealt in turn
    again = [keys(t) for _, t in rf.split.kfold(inter, n_folds=4, seed=0)]
    assert again == tests and [keys(t) for _, t in rf.split.kfold(inter, n_folds=4, seed=1)] != tests
    with pytest.raises(ValueError, match="n_folds must be >= 2"):
        rf.split.kfold(inter, n_folds=1)  # checked at the call, not at the first iteration
    with pytest.raises(TypeError, match="n_folds"):
        rf.split.kfold(inter, n_folds=2.5)


def test_cross_validate_kfold_and_repeated_holdout(inter):
    model = rf.SGDMF(factors=4, epochs=3, threads=1)
    cv = rf.model_selection.cross_validate(model, inter, folds=3, seed=5)
    assert list(cv["fold"]) == [0, 1, 2] and {"rmse", "mae", "fit_s", "n_ratings"} <= set(cv.columns)
    assert cv["n_ratings"].sum() == inter.nnz and not model.is_fitted  # copies were fitted, not the model
    for f, (train, test) in enumerate(rf.split.kfold(inter, n_folds=3, seed=5)):
        fitted = rf.SGDMF(factors=4, epochs=3, threads=1).fit(train, progress=False)
        assert cv["rmse"][f] == pytest.approx(rf.evaluation.evaluate(fitted, train, test)["rmse"])
    hold = rf.model_selection.cross_validate(rf.MostPopular(), inter, folds=2, scheme="holdout", k=5)
    assert len(hold) == 2 and "ndcg@5" in hold and hold.attrs["scheme"] == "holdout"
    _, test = rf.split.random_holdout(inter, test_fraction=0.2, seed=43)  # repeat f uses seed + f
    assert hold["n_users"][1] == np.count_nonzero(np.diff(test.csr.indptr))
    with pytest.raises(ValueError, match="scheme must be one of"):
        rf.model_selection.cross_validate(model, inter, scheme="loo")


def test_grid_search_scores_on_a_validation_split_of_train_only(inter):
    train, test = rf.split.random_holdout(inter, test_fraction=0.2, seed=0)
    grid = {"factors": [2, 8], "regularization": [0.01, 0.1]}
    res = rf.model_selection.grid_search(rf.ALS(epochs=2), grid, train, k=5, seed=3)
    assert len(res.results) == 4 and res.metric == "ndcg@5" and res.higher_is_better
    assert res.best_score == res.results["score"].max() and res.results["rank"].min() == 1
    inner, validation = rf.split.random_holdout(train, test_fraction=0.2, seed=3)
    for row in res.results.itertuples(index=False):
        model = rf.ALS(epochs=2, factors=row.factors, regularization=row.regularization).fit(inner, progress=False)
        assert row.score == pytest.approx(rf.evaluation.evaluate(model, inner, validation, k=5)["ndcg@5"])
    best = res.best_model
    assert best.seen_.nnz == train.nnz  # refit on all of train, the test part never seen
    assert {p: best.get_params()[p] for p in grid} == res.best_params and best.epochs == 2
    assert rf.model_selection.grid_search(rf.ALS(epochs=1), {"factors": [2]}, train, refit=False).best_model is None
    with pytest.raises(ValueError, match="ALS has no parameter 'depth'"):
        rf.model_selection.grid_search(rf.ALS(), {"depth": [1]}, train)
    with pytest.raises(ValueError, match="non-empty list"):
        rf.model_selection.grid_search(rf.ALS(), {"factors": []}, train)


def test_random_search_minimises_rating_error_and_draws_reproducibly(inter):
    train, _ = rf.split.random_holdout(inter, test_fraction=0.2, seed=0)
    space = {
        "regularization": scipy.stats.uniform(0.01, 0.2),  # rvs(random_state=)
        "factors": [2, 4, 8],  # a list: uniform choice
        "lr": lambda rng: float(rng.choice([0.01, 0.02])),  # a callable of the generator
    }
    res = rf.model_selection.random_search(rf.SGDMF(epochs=3, threads=1), space, train, n_iter=4, seed=9)
    assert res.metric == "rmse" and not res.higher_is_better and res.best_score == res.results["score"].min()
    assert len(res.results) == 4 and res.results["factors"].isin([2, 4, 8]).all()
    assert isinstance(res.best_params["factors"], int) and 0.01 <= res.best_params["regularization"] <= 0.21
    again = rf.model_selection.random_search(rf.SGDMF(epochs=3, threads=1), space, train, n_iter=4, seed=9)
    assert again.results[["regularization", "factors", "lr"]].equals(res.results[["regularization", "factors", "lr"]])
    with pytest.raises(ValueError, match="must be a non-empty list"):
        rf.model_selection.random_search(rf.SGDMF(), {"factors": 3}, train)
