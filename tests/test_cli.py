"""The `recforge` command: every subcommand has --help; demo, fit, recommend and evaluate run end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recforge.cli import build_parser, main

COMMANDS = ["demo", "fit", "evaluate", "compare", "recommend", "bench"]


@pytest.mark.parametrize("command", [[], *[[c] for c in COMMANDS]])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: recforge" in out and "--help" in out


def test_parser_knows_every_command():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert sorted(sub.choices) == sorted(COMMANDS)


def test_demo_json_on_synthetic(capsys):
    assert main(["demo", "--dataset", "synthetic", "--json", "--model", "mostpopular"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dataset"] == "synthetic" and report["k"] == 10
    (row,) = report["results"]
    assert row["model"] == "MostPopular"
    assert 0.0 < row["ndcg@10"] <= 1.0 and 0.0 < row["precision@10"] <= 1.0


def test_demo_falls_back_to_synthetic_with_a_notice(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RECFORGE_DATA", str(tmp_path / "empty"))  # no data set anywhere it looks
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["demo", "--json", "--model", "mostpopular"]) == 0
    captured = capsys.readouterr()
    assert "notice" in captured.err and "synthetic" in captured.err
    assert json.loads(captured.out)["dataset"] == "synthetic"


def test_fit_then_recommend_round_trip(tmp_path, capsys):
    path = tmp_path / "pop.rf"
    assert main(["fit", "--dataset", "synthetic", "--model", "mostpopular", "--out", str(path), "--quiet"]) == 0
    assert path.is_file()
    capsys.readouterr()
    assert main(["recommend", str(path), "0", "5", "--k", "4"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["user"] for x in lines] == [0, 5]
    assert all(len(x["items"]) == 4 and x["scores"] == sorted(x["scores"], reverse=True) for x in lines)


def test_evaluate_prints_metrics(capsys):
    assert main(["evaluate", "--dataset", "synthetic", "--model", "mostpopular", "--k", "5", "--quiet"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert np.isfinite(metrics["ndcg@5"]) and metrics["protocol"] == "full"


def test_bad_input_is_a_clear_error(tmp_path, capsys):
    assert main(["recommend", str(tmp_path / "missing.rf"), "0"]) == 2
    assert "no model file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(
            [
                "fit",
                "--dataset",
                "synthetic",
                "--model",
                "mostpopular",
                "--out",
                str(tmp_path / "m.rf"),
                "--param",
                "not-a-pair",
            ]
        )


# -- ratings, weighting, the demo's choice of model (issue 11) --------------------------------------
def test_evaluate_a_rating_model_reports_rating_metrics_on_the_ratings(capsys):
    # SGDMF is fitted on the synthetic ratings as they are (never binarised) and scored by rmse / mae.
    assert main(["evaluate", "--dataset", "synthetic", "--model", "sgdmf", "--quiet"]) == 0
    captured = capsys.readouterr()
    metrics = json.loads(captured.out)
    assert "predicts ratings" in captured.err
    assert set(metrics) == {"rmse", "mae", "n_ratings", "n_users"}
    assert 0 < metrics["rmse"] < 1.5 and isinstance(metrics["n_ratings"], int)  # on binarised data it would be ~0
    args = ["evaluate", "--dataset", "synthetic", "--model", "sgdmf", "--quiet", "--relevance-threshold", "4"]
    assert main(args) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert "rmse" in metrics and 0 <= metrics["ndcg@10"] <= 1
    assert (
        main(["evaluate", "--dataset", "synthetic", "--model", "als", "--param", "feedback='explicit'", "--quiet"]) == 0
    )
    assert "rmse" in json.loads(capsys.readouterr().out)


def test_weighting_option_matches_the_transforms(capsys):
    import recforge as rf

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    weighting = next(a for a in sub.choices["evaluate"]._actions if a.dest == "weighting")
    assert set(weighting.choices) == set(rf.transforms.WEIGHTINGS) and weighting.default == "none"
    base = ["evaluate", "--dataset", "synthetic", "--model", "als", "--quiet", "--param", "epochs=2"]
    assert main(base) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main([*base, "--weighting", "bm25"]) == 0
    weighted = json.loads(capsys.readouterr().out)
    assert weighted["weighting"] == "bm25" and "weighting" not in plain
    assert weighted["ndcg@10"] != plain["ndcg@10"]  # the fit saw other values
    with pytest.raises(SystemExit):
        main([*base, "--weighting", "sqrt"])


def test_demo_chooses_its_model_on_validation_data(capsys, monkeypatch):
    import recforge as rf
    import recforge.cli as cli

    seen = []
    real = cli._select_by_validation

    def spy(candidates, train, k, seed):
        seen.append(train)
        return real(candidates, train, k, seed)

    monkeypatch.setattr(cli, "_select_by_validation", spy)
    monkeypatch.setattr(cli, "AUTO_CANDIDATES", {"ALS": ("als", {"epochs": 2}), "BPR": ("bpr", {"epochs": 2})})
    assert main(["demo", "--dataset", "synthetic", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    selection = report["selection"]
    assert set(selection["validation"]) == {"ALS", "BPR"}
    assert selection["chosen"] == max(selection["validation"], key=selection["validation"].get)
    assert [r["model"] for r in report["results"]] == [selection["chosen"], "MostPopular"]
    # The choice saw the training part only: exactly the demo's training split, no test entry.
    df, _ = cli._load_dataset("synthetic", None, None, 42)
    train, _ = rf.split.random_holdout(cli._interactions(df), test_fraction=0.2, seed=42)
    (given,) = seen
    assert given.nnz == train.nnz < report["nnz"] and (given.csr != train.csr).nnz == 0
    # The table says which split chose the model.
    assert main(["demo", "--dataset", "synthetic", "--show-users", "1"]) == 0
    out = capsys.readouterr().out
    assert "validation split carved from the training data" in out and "the test split is not used" in out
    assert f"-> {selection['chosen']}" in out


def test_compare_four_models_with_a_chart(tmp_path, capsys):
    chart = tmp_path / "compare.png"
    models = "mostpopular,als:epochs=2,bpr:epochs=5,warp:epochs=5:factors=16"
    args = ["compare", "--dataset", "synthetic", "--models", models, "--quiet", "--n-bootstrap", "100"]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["baseline"] == "mostpopular" and set(report["fit_s"]) == set(models.split(","))
    rows = report["rows"]
    assert [r["model"] for r in rows[:4]] == models.split(",") and {r["metric"] for r in rows} == {
        "ndcg@10",
        "recall@10",
        "precision@10",
    }
    assert all(isinstance(r["n"], int) for r in rows)
    pytest.importorskip("matplotlib")  # the chart part (the JSON above needs no matplotlib)
    assert main([*args, "--chart", str(chart), "--baseline", "als:epochs=2"]) == 0
    out = capsys.readouterr().out
    assert f"chart: {chart}" in out and "paired bootstrap against als:epochs=2" in out
    assert chart.read_bytes()[:4] == b"\x89PNG"


def test_compare_usage_errors(capsys):
    with pytest.raises(SystemExit, match="at least two"):
        main(["compare", "--dataset", "synthetic", "--models", "als"])
    with pytest.raises(SystemExit, match="unknown model 'svd'"):
        main(["compare", "--dataset", "synthetic", "--models", "als,svd"])
    with pytest.raises(SystemExit, match="mixes rating models"):
        main(["compare", "--dataset", "synthetic", "--models", "als,sgdmf"])
    assert main(["compare", "--dataset", "synthetic", "--models", "sgdmf,als:feedback=explicit", "--json"]) == 0
    captured = capsys.readouterr()
    assert {r["metric"] for r in json.loads(captured.out)["rows"]} == {"rmse", "mae"}
