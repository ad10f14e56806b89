"""rf.evaluation.compare: the offline A/B comparison (paired intervals per metric) and its chart."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import scipy.stats

import recforge as rf


@pytest.fixture(scope="module")
def split():
    df = rf.datasets.synthetic(n_users=300, n_items=120, nnz=6000, seed=3, timestamps=False)
    inter = rf.Interactions.from_pandas(df, weight_col="rating")
    return rf.split.random_holdout(inter, test_fraction=0.25, seed=0)


@pytest.fixture(scope="module")
def fitted(split):
    train, _ = split
    return {
        "pop": rf.MostPopular().fit(train),
        "bpr": rf.BPR(factors=8, epochs=20, threads=1).fit(train, progress=False),
        "als": rf.ALS(factors=8, epochs=3).fit(train, progress=False),
    }


def test_values_match_evaluate_and_the_baseline_comes_first(split, fitted):
    train, test = split
    out = rf.evaluation.compare(fitted, train, test, k=5, n_bootstrap=200, progress=False)
    assert list(out["metric"].unique()) == ["ndcg@5", "recall@5", "precision@5"]
    assert out.attrs["baseline"] == "pop" and out.attrs["method"] == "bootstrap"
    for metric, part in out.groupby("metric", sort=False):
        assert list(part["model"]) == ["pop", "bpr", "als"]
        base = part.iloc[0]
        assert base["diff"] == 0 and np.isnan(base["diff_low"]) and not base["significant"]
        for row in part.itertuples(index=False):
            want = rf.evaluation.evaluate(fitted[row.model], train, test, k=5, metrics=[metric.split("@")[0]])
            assert row.value == pytest.approx(want[metric])
            assert row.ci_low <= row.value <= row.ci_high and row.n == want["n_users"]
            assert row.diff == pytest.approx(row.value - base["value"])
            if row.model != "pop":
                assert row.diff_low <= row.diff <= row.diff_high
                assert row.significant == (row.diff_low > 0 or row.diff_high < 0)
                assert 2 / 201 <= row.p_value <= 1


def test_identical_models_differ_by_exactly_zero(split, fitted):
    train, test = split
    twin = rf.BPR(factors=8, epochs=20, threads=1).fit(train, progress=False)  # threads=1: bitwise the same fit
    out = rf.evaluation.compare({"a": fitted["bpr"], "b": twin}, train, test, metrics=["ndcg"], n_bootstrap=100)
    row = out.iloc[1]
    assert row["diff"] == row["diff_low"] == row["diff_high"] == 0 and not row["significant"] and row["p_value"] == 1


def test_the_bootstrap_pairs_the_users(split, fitted):
    # The same resample of users for both models: their per-user values are positively correlated (users
    # differ in difficulty), so the difference's interval is narrower than that of two independent
    # estimates, whose widths would add in quadrature.
    train, test = split
    out = rf.evaluation.compare({"bpr": fitted["bpr"], "als": fitted["als"]}, train, test, metrics=["ndcg"])
    a, b = out.iloc[0], out.iloc[1]
    independent = np.hypot(a["ci_high"] - a["ci_low"], b["ci_high"] - b["ci_low"])
    assert b["diff_high"] - b["diff_low"] < 0.9 * independent


def test_ttest_matches_scipy(split, fitted):
    train, test = split
    out = rf.evaluation.compare(fitted, train, test, metrics=["recall"], method="ttest", confidence=0.9)
    users = np.flatnonzero(np.diff(test.csr.indptr) > 0)
    per_user = {}
    for name, model in fitted.items():
        ids, _ = model.recommend(users, k=10)
        per_user[name] = rf.evaluation.recall_at_k(ids, test, 10, users=users, per_user=True)
    for row in out.iloc[1:].itertuples(index=False):
        d = per_user[row.model] - per_user["pop"]
        res = scipy.stats.ttest_rel(per_user[row.model], per_user["pop"])
        assert row.p_value == pytest.approx(res.pvalue, rel=1e-6)
        low, high = res.confidence_interval(0.9)
        assert (row.diff_low, row.diff_high) == pytest.approx((low, high), rel=1e-6)
        assert row.diff == pytest.approx(d.mean())


def test_rating_models_are_compared_by_rmse_and_mae(split):
    train, test = split
    models = {"sgdmf": rf.SGDMF(threads=1), "als": rf.ALS(feedback="explicit", factors=8, epochs=5)}  # fitted here
    out = rf.evaluation.compare(models, train, test, n_bootstrap=200)
    assert list(out["metric"].unique()) == ["rmse", "mae"] and set(out["better"]) == {"lower"}
    for row in out.itertuples(index=False):
        assert row.value == pytest.approx(rf.evaluation.evaluate(models[row.model], train, test)[row.metric])
    with pytest.raises(ValueError, match="ranking metrics need relevance_threshold"):
        rf.evaluation.compare(models, train, test, metrics=["ndcg"])
    ranked = rf.evaluation.compare(models, train, test, relevance_threshold=4, n_bootstrap=50)
    assert {"rmse", "ndcg@10"} <= set(ranked["metric"])
    with pytest.raises(ValueError, match="ttest.*rmse"):
        rf.evaluation.compare(models, train, test, method="ttest")
    mae = rf.evaluation.compare(models, train, test, metrics=["mae"], method="ttest")
    assert mae["n"].iloc[0] == test.nnz  # the pairs are ratings


def test_compare_fits_unfitted_models_and_checks_its_input(split, fitted):
    train, test = split
    out = rf.evaluation.compare([rf.MostPopular(), rf.MostPopular(weighted=True)], train, test, metrics="ndcg")
    assert list(out["model"]) == ["MostPopular", "MostPopular-2"]
    with pytest.raises(ValueError, match="at least two models"):
        rf.evaluation.compare({"pop": fitted["pop"]}, train, test)
    with pytest.raises(ValueError, match="baseline must be one of"):
        rf.evaluation.compare(fitted, train, test, baseline="svd")
    with pytest.raises(ValueError, match="method must be one of"):
        rf.evaluation.compare(fitted, train, test, method="wilcoxon")
    with pytest.raises(ValueError, match="metrics must be names from"):
        rf.evaluation.compare(fitted, train, test, metrics=["f1"])
    with pytest.raises(ValueError, match="does not predict ratings"):
        rf.evaluation.compare(fitted, train, test, metrics=["rmse"])
    with pytest.raises(ValueError, match="confidence must be in"):
        rf.evaluation.compare(fitted, train, test, confidence=1.0)
    with pytest.raises(TypeError, match="models must be"):
        rf.evaluation.compare(fitted["pop"], train, test)
    small = sp.csr_matrix(train.csr[:, :-1])
    with pytest.raises(ValueError, match="has 120 items but train/test have 119"):
        rf.evaluation.compare(fitted, small, sp.csr_matrix(test.csr[:, :-1]))


def test_chart_is_a_png(split, fitted, tmp_path):
    pytest.importorskip("matplotlib")
    train, test = split
    path = tmp_path / "compare.png"
    out = rf.evaluation.compare(fitted, train, test, n_bootstrap=50, chart=path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = rf.evaluation.plot_comparison(out, tmp_path / "again.png", title="mine")
    assert again.stat().st_size > 1000
    with pytest.raises(ValueError, match="returned by compare"):
        rf.evaluation.plot_comparison(pd.DataFrame({"x": [1]}), tmp_path / "bad.png")


def test_chart_without_matplotlib_says_how_to_get_it(split, fitted, tmp_path, monkeypatch):
    import sys

    train, test = split
    out = rf.evaluation.compare(fitted, train, test, n_bootstrap=20)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(ImportError, match=r"recforge\[plot\]"):
        rf.evaluation.plot_comparison(out, tmp_path / "x.png")
