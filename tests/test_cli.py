"""The `recforge` command: every subcommand has --help; demo, fit, recommend and evaluate run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recforge.cli import build_parser, main

COMMANDS = ["demo", "fit", "evaluate", "compare", "recommend", "explain", "forget", "bench"]


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
    assert main(["recommend", str(path), "0", "5", "--k", "4", "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["user"] for x in lines] == [0, 5]  # the data's ids, typed as in the data (ints here)
    assert all(len(x["items"]) == 4 and x["scores"] == sorted(x["scores"], reverse=True) for x in lines)


def test_evaluate_prints_metrics(capsys):
    assert main(["evaluate", "--dataset", "synthetic", "--model", "mostpopular", "--k", "5", "--quiet"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert np.isfinite(metrics["ndcg@5"]) and metrics["protocol"] == "full"


def test_exit_codes_usage_2_failure_1(tmp_path, capsys):
    fit = ["fit", "--dataset", "synthetic", "--model", "mostpopular", "--out", str(tmp_path / "m.rf"), "--quiet"]
    # Usage errors (the command line must change): 2, from argparse or from recforge's own checks.
    for argv in (
        [*fit, "--no-such-option"],
        ["fit", "--dataset", "movielens-100k", "--out", "x.rf"],  # not a registered spelling
        ["fit", "--model", "svd", "--out", "x.rf"],
        [*fit, "--param", "not-a-pair"],
        [*fit, "--param", "colour=3"],
        ["fit", "--dataset", "synthetic", "--model", "als", "--param", "factors=-1", "--out", "x.rf"],
    ):
        with pytest.raises(SystemExit) if "--no-such-option" in argv or "svd" in argv or "movielens-100k" in argv \
                else _returns(2):  # fmt: skip
            assert main(argv) == 2
    # Failures while running: 1 with a clear message.
    assert main(["recommend", str(tmp_path / "missing.rf"), "0"]) == 1
    assert "no model file" in capsys.readouterr().err
    assert main(fit) == 0
    capsys.readouterr()
    assert main(["recommend", str(tmp_path / "m.rf"), "0", "999999"]) == 1
    assert "999999" in capsys.readouterr().err
    assert main(["fit", "--data", str(tmp_path / "none.csv"), "--out", "x.rf"]) == 1
    assert main(["recommend", str(tmp_path / "m.rf")]) == 2  # neither users nor --items


class _returns:
    """Context manager standing in for pytest.raises where main() returns the status instead."""

    def __init__(self, code):
        self.code = code

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("recforge ")


@pytest.fixture
def own_csv(tmp_path):
    """A user's own ratings CSV with string ids and a titles file (the README's end-to-end walk)."""
    rng = np.random.default_rng(0)
    users = [f"user-{u}" for u in range(40)]
    films = [f"film-{i:02d}" for i in range(30)]
    rows = [(u, f, int(rng.integers(3, 6)), t) for t, u in enumerate(users)
            for f in rng.choice(films, size=8, replace=False)]  # fmt: skip
    import pandas as pd

    path = tmp_path / "ratings.csv"
    pd.DataFrame(rows, columns=["who", "what", "stars", "when"]).to_csv(path, index=False)
    titles = tmp_path / "films.csv"
    pd.DataFrame({"what": films, "title": [f"Title {i}" for i in range(30)]}).to_csv(titles, index=False)
    return path, titles


def test_own_data_end_to_end(own_csv, tmp_path, capsys):
    data, titles = own_csv
    model = tmp_path / "als.rf"
    cols = ["--data", str(data), "--user-col", "who", "--item-col", "what", "--rating-col", "stars",
            "--time-col", "when"]  # fmt: skip
    assert main(["fit", *cols, "--model", "als", "--param", "factors=8", "--out", str(model), "--quiet"]) == 0
    assert "40 users x 30 items" in capsys.readouterr().out
    names = ["--item-names", str(titles), "--item-col", "what"]
    assert main(["recommend", str(model), "user-3", "--k", "3", *names]) == 0
    out = capsys.readouterr().out
    assert out.startswith("user user-3:") and out.count("(Title ") == 3 and "film-" in out
    # A brand-new user with three items, and an unknown user with the popularity fallback.
    assert main(["recommend", str(model), "nobody", "--items", "film-01", "film-02", "film-03", "--k", "5",
                 "--fallback", "popular", "--json", *names]) == 0  # fmt: skip
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["user"] for x in lines] == ["nobody", "(new user)"]
    new = lines[1]
    assert len(new["items"]) == 5 and not {"film-01", "film-02", "film-03"} & set(new["items"])
    assert new["names"] == [f"Title {int(i[-2:])}" for i in new["items"]]
    assert main(["recommend", str(model), "nobody"]) == 1  # without --fallback: an error naming the id
    assert "'nobody'" in capsys.readouterr().err


def test_own_data_options(own_csv, tmp_path, capsys):
    data, _ = own_csv
    cols = ["--data", str(data), "--user-col", "who", "--item-col", "what", "--time-col", "when"]
    for split in ("random", "last", "temporal", "users"):
        assert main(["evaluate", *cols, "--model", "mostpopular", "--split", split, "--quiet"]) == 0, split
        metrics = json.loads(capsys.readouterr().out)
        assert 0.0 <= metrics["ndcg@10"] <= 1.0
    assert main(["fit", *cols, "--min-user", "9", "--model", "mostpopular", "--out", str(tmp_path / "m.rf")]) == 1
    assert "no interactions left" in capsys.readouterr().err  # every user has 8
    assert main(["fit", *cols, "--min-item", "5", "--model", "mostpopular", "--out", str(tmp_path / "m.rf")]) == 0
    assert main(["fit", "--data", str(data), "--out", str(tmp_path / "m.rf")]) == 1  # no column "user"
    assert "column(s) ['user', 'item'] not found" in capsys.readouterr().err


def test_own_parquet(own_csv, tmp_path, capsys):
    pytest.importorskip("pyarrow", reason="reading parquet needs pyarrow")
    import pandas as pd

    data, _ = own_csv
    pq = tmp_path / "ratings.parquet"
    pd.read_csv(data).to_parquet(pq)
    argv = ["fit", "--data", str(pq), "--user-col", "who", "--item-col", "what", "--model", "mostpopular"]
    assert main([*argv, "--out", str(tmp_path / "m.rf")]) == 0


def test_json_keeps_integers_integers(capsys):
    assert main(["evaluate", "--dataset", "synthetic", "--model", "mostpopular", "--quiet"]) == 0
    out = capsys.readouterr().out
    metrics = json.loads(out)
    ints = [k for k, v in metrics.items() if isinstance(v, int) and not isinstance(v, bool)]
    assert all(f'"{k}": {metrics[k]},' in out or f'"{k}": {metrics[k]}\n' in out for k in ints)
    assert not any(isinstance(v, float) and v.is_integer() and k.startswith("n_") for k, v in metrics.items())


def test_recommend_with_dataset_titles(tmp_path, capsys):
    from conftest import data_path

    data_path("ml-100k", "u.item")
    model = tmp_path / "pop.rf"
    assert main(["fit", "--dataset", "ml-100k", "--model", "mostpopular", "--out", str(model), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["recommend", str(model), "196", "--k", "3"]) == 0  # the file knows its data set
    out = capsys.readouterr().out
    assert out.startswith("user 196:") and "50 (Star Wars (1977))" in out  # the most rated positive


def test_bench_help_and_outside_a_checkout(tmp_path, capsys):
    import subprocess
    import sys

    assert main(["bench", "--bench-dir", str(tmp_path), "topk"]) == 1
    assert "source checkout" in capsys.readouterr().err
    # From anywhere, given the checkout's bench folder (an installed, non-editable recforge has none of its own).
    bench_dir = str(Path(__file__).resolve().parents[1] / "bench")
    out = subprocess.run([sys.executable, "-m", "recforge.cli", "bench", "--bench-dir", bench_dir, "topk", "--help"],
                         capture_output=True, text=True, cwd=tmp_path, check=True).stdout  # fmt: skip
    assert "--threads" in out and "RECFORGE_BENCH_TOPK_PEERS" in out  # run.py's options and the benchmark's own


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
    # The table says which split chose the model.
    assert main(["demo", "--dataset", "synthetic", "--show-users", "1"]) == 0
    out = capsys.readouterr().out
    assert "validation split carved from the training data" in out and "the test split is not used" in out
    assert f"-> {selection['chosen']}" in out
    # The choice saw the training part only: exactly the demo's training split, no test entry.
    inter = cli._load_data(build_parser().parse_args(["demo", "--dataset", "synthetic"])).interactions
    train, _ = rf.split.random_holdout(inter, test_fraction=0.2, seed=42)
    given = seen[0]  # the first demo run (the table check above ran a second)
    assert given.nnz == train.nnz < report["nnz"] and (given.csr != train.csr).nnz == 0


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
    for models, message in (("als", "at least two"), ("als,svd", "unknown model 'svd'"), ("als,sgdmf", "mixes rating")):
        assert main(["compare", "--dataset", "synthetic", "--models", models]) == 2  # usage errors
        assert message in capsys.readouterr().err
    assert main(["compare", "--dataset", "synthetic", "--models", "sgdmf,als:feedback=explicit", "--json"]) == 0
    captured = capsys.readouterr()
    assert {r["metric"] for r in json.loads(captured.out)["rows"]} == {"rmse", "mae"}


def test_explain_prints_the_history_items_behind_a_score(tmp_path, capsys):
    path = tmp_path / "als.rf"
    assert main(["fit", "--dataset", "synthetic", "--model", "als", "--param", "epochs=2", "--out", str(path),
                 "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["explain", str(path), "3", "7", "--top", "4", "--json"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert (line["user"], line["item"], line["method"]) == (3, 7, "exact")
    assert len(line["history"]) == len(line["contributions"]) <= 4
    assert line["contributions"] == sorted(line["contributions"], key=abs, reverse=True)
    assert main(["explain", str(path), "3", "7"]) == 0
    assert "score" in capsys.readouterr().out
    assert main(["explain", str(path), "3", "no-such-item"]) == 1  # an error naming the id
    assert "no-such-item" in capsys.readouterr().err


def test_forget_removes_users_from_a_saved_model(tmp_path, capsys):
    import recforge as rf

    path, out = tmp_path / "als.rf", tmp_path / "forgot.rf"
    assert main(["fit", "--dataset", "synthetic", "--model", "als", "--param", "epochs=2", "--out", str(path),
                 "--quiet"]) == 0  # fmt: skip
    before = rf.load(path)
    assert main(["forget", str(path), "3", "7", "--items", "5", "--out", str(out)]) == 0
    assert "forgot 2 user(s) and 1 item(s)" in capsys.readouterr().out
    model = rf.load(out)
    assert model.n_users == before.n_users - 2 and model.n_items == before.n_items - 1
    assert 3 not in model.user_ids_ and 7 not in model.user_ids_ and 5 not in model.item_ids_
    assert main(["forget", str(out), "3"]) == 1  # already gone: an error naming the id
    assert "3" in capsys.readouterr().err
    assert main(["forget", str(out)]) == 2  # nothing to forget
