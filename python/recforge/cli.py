"""The ``recforge`` command: demo, fit, evaluate, compare, recommend, bench (each with --help)."""

from __future__ import annotations

import argparse
import ast
import json
import logging
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

log = logging.getLogger("recforge.cli")

DATASETS = ("ml-100k", "ml-1m", "ml-latest-small", "lastfm-2k", "synthetic")


# ---- shared pieces -----------------------------------------------------------------------------
def _parse_params(items: list[str]) -> dict:
    """``["factors=64", "solver='cg'"]`` -> {"factors": 64, "solver": "cg"} (values as Python literals)."""
    params = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise SystemExit(f"--param must look like name=value, got {item!r}")
        try:
            params[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[key] = value  # a bare word: keep it as a string
    return params


def _make_model(cls, items: list[str] | None):
    """``cls(**params)`` from ``--param`` items; an unknown name is a usage error listing the valid ones."""
    params = _parse_params(items)
    valid = cls._param_names()
    unknown = [name for name in params if name not in valid and name not in cls._aliases]
    if unknown:
        raise SystemExit(f"{cls.__name__} has no parameter {unknown[0]!r}; valid: {', '.join(valid)}")
    return cls(**params)


def _model_classes() -> dict:
    import recforge as rf

    return {cls.__name__.lower(): cls for cls in (rf.ALS, rf.BPR, rf.SGDMF, rf.MLPScorer, rf.MostPopular)}


def _load_dataset(name: str, data_home: str | None, min_rating: float | None, seed: int):
    """DataFrame (user, item[, rating, timestamp]) and a title lookup (or None)."""
    import recforge as rf

    titles = None
    if name == "synthetic":
        return rf.datasets.synthetic(n_users=2000, n_items=1000, nnz=100_000, seed=seed), None
    if name.startswith("ml-"):
        variant = name[3:]
        df = rf.datasets.load_movielens(variant, data_home=data_home)
        try:
            titles = rf.datasets.movielens_titles(variant, data_home=data_home)
        except (FileNotFoundError, ValueError):
            titles = None
    elif name == "lastfm-2k":
        df = rf.datasets.load_lastfm("2k", data_home=data_home)
    else:
        raise SystemExit(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if min_rating is not None and "rating" in df:
        df = df[df["rating"] >= min_rating]
    return df, titles


def _interactions(df, keep_ratings: bool = False):
    """Interactions of ``df``: ratings as they are for a rating model, else each kept rating as one positive."""
    import recforge as rf

    weight = "rating" if "rating" in df else ("weight" if "weight" in df else None)
    if weight == "rating" and not keep_ratings:  # implicit feedback: a kept rating is one positive interaction
        df = df.assign(rating=np.float32(1.0))
    time_col = "timestamp" if "timestamp" in df else None
    return rf.Interactions.from_pandas(df, user_col="user", item_col="item", weight_col=weight, time_col=time_col)


def _predicts_ratings(model) -> bool:
    return bool(getattr(model, "predicts_ratings", False))


def _rating_note(model, args) -> None:
    """Say on stderr how a rating model is evaluated (its ratings are never binarised)."""
    ranking = (
        f"ranking metrics count test ratings >= {args.relevance_threshold:g} as relevant"
        if args.relevance_threshold is not None
        else "pass --relevance-threshold T (e.g. 4) for ranking metrics too"
    )
    print(
        f"note: {type(model).__name__} predicts ratings: it is fitted on the ratings as they are and scored by "
        f"rmse / mae (--min-rating does not apply); {ranking}",
        file=sys.stderr,
    )


def _json_value(v):
    """Metrics for JSON: integers stay integers, other numbers become floats."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    return float(v) if isinstance(v, (float, np.floating)) else v


def _format_table(rows: list[dict], columns: list[str]) -> str:
    cells = [[str(r.get(c, "")) if not isinstance(r.get(c), float) else f"{r[c]:.4f}" for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = lambda vals: "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths)) + " |"  # noqa: E731
    return "\n".join([line(columns), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells)])


# ---- commands ----------------------------------------------------------------------------------
# The candidates of `recforge demo --model auto`, each at its defaults: one is chosen on validation data.
AUTO_CANDIDATES = {"ALS": ("als", {}), "BPR": ("bpr", {}), "WARP": ("bpr", {"loss": "warp"})}
VALIDATION_FRACTION = 0.2  # of each user's training items, for the demo's choice of model


def _demo_candidates(args, classes) -> dict:
    """{display name: unfitted model}: every AUTO_CANDIDATES entry for --model auto, else the one asked for."""
    if args.model == "auto":
        if args.param:
            raise SystemExit("--param needs a --model (with --model auto each candidate runs at its defaults)")
        return {name: classes[key](**params) for name, (key, params) in AUTO_CANDIDATES.items()}
    if args.model not in classes:
        raise SystemExit(f"unknown model {args.model!r}; available: auto, {', '.join(sorted(classes))}")
    return {classes[args.model].__name__: _make_model(classes[args.model], args.param)}


def _select_by_validation(candidates: dict, train, k: int, seed: int) -> tuple[str, dict, float]:
    """(chosen name, {name: validation ndcg@k}, seconds): each candidate fitted on part of ``train``
    and scored on the rest (VALIDATION_FRACTION per user); the test split is never looked at."""
    import recforge as rf

    t = time.perf_counter()
    inner, validation = rf.split.random_holdout(train, test_fraction=VALIDATION_FRACTION, seed=seed + 1)
    scores = {}
    for name, model in candidates.items():
        fitted = rf.model_selection.clone(model).fit(inner, progress=False)
        metric = rf.evaluation.evaluate(fitted, inner, validation, k=k, metrics=["ndcg"], progress=False)
        scores[name] = metric[f"ndcg@{k}"]
    return max(scores, key=scores.get), scores, time.perf_counter() - t


def cmd_demo(args) -> int:
    import recforge as rf

    t0 = time.perf_counter()
    try:
        df, titles = _load_dataset(args.dataset, args.data_home, args.min_rating, args.seed)
        source = args.dataset
    except (FileNotFoundError, ValueError) as exc:
        print(f"notice: {args.dataset} is not available ({exc}); using the synthetic data set instead", file=sys.stderr)
        df, titles = _load_dataset("synthetic", None, None, args.seed)
        source = "synthetic"
    inter = _interactions(df)
    train, test = rf.split.random_holdout(inter, test_fraction=0.2, seed=args.seed)

    classes = _model_classes()
    candidates = _demo_candidates(args, classes)
    if any(_predicts_ratings(m) for m in candidates.values()):
        raise SystemExit("the demo ranks implicit feedback; evaluate a rating model with `recforge evaluate`")
    selection = None
    if len(candidates) > 1:
        chosen, val_scores, select_s = _select_by_validation(candidates, train, args.k, args.seed)
        selection = {
            "metric": f"ndcg@{args.k}",
            "split": f"{VALIDATION_FRACTION:.0%} of each user's training items; the test split is not used",
            "validation": val_scores,
            "chosen": chosen,
            "seconds": round(select_s, 3),
        }
    else:
        chosen = next(iter(candidates))
    models = {chosen: candidates[chosen]}
    if chosen != "MostPopular":
        models["MostPopular"] = classes["mostpopular"]()

    rows = []
    for name, model in models.items():
        t = time.perf_counter()
        model.fit(train, progress=False)
        fit_s = time.perf_counter() - t
        metrics = rf.evaluation.evaluate(model, train, test, k=args.k, protocol="full", progress=False)
        rows.append(
            {
                "model": name,
                "fit_s": round(fit_s, 3),
                **{m: float(v) for m, v in metrics.items() if m.endswith(f"@{args.k}")},
            }
        )
    best = models[chosen]

    if args.json:
        report = {
            "dataset": source,
            "n_users": inter.shape[0],
            "n_items": inter.shape[1],
            "nnz": int(inter.nnz),
            "k": args.k,
            "results": rows,
        }
        if selection is not None:
            report["selection"] = selection
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"recforge {rf.__version__} demo: {source}, {inter.shape[0]} users x {inter.shape[1]} items, "
        f"{inter.nnz} interactions; per-user 80/20 holdout, full-catalogue ranking (train items excluded)\n"
    )
    if selection is not None:
        ranked = sorted(selection["validation"].items(), key=lambda kv: -kv[1])
        print(
            f"Model chosen by {selection['metric']} on a validation split carved from the training data "
            f"({selection['split']}):\n  " + ", ".join(f"{n} {v:.4f}" for n, v in ranked) + f"  -> {chosen}\n"
        )
    columns = ["model", "fit_s"] + [c for c in rows[0] if "@" in c]
    print("Test split (the chosen model and the MostPopular baseline):")
    print(_format_table(rows, columns))
    users = np.arange(min(args.show_users, inter.shape[0]))
    ids, _ = best.recommend(users, k=5)
    print(f"\nTop 5 from {chosen} for the first {len(users)} users:")
    for u, row in zip(users, ids):
        external = inter.item_ids.to_external(row[row >= 0])
        names = [str(titles.get(e, e)) if titles is not None else str(e) for e in external]
        print(f"  user {inter.user_ids.to_external(np.array([u]))[0]}: " + "; ".join(names))
    print(f"\ndone in {time.perf_counter() - t0:.1f} s")
    return 0


def cmd_fit(args) -> int:
    import recforge as rf

    classes = _model_classes()
    if args.model not in classes:
        raise SystemExit(f"unknown model {args.model!r}; available: {', '.join(sorted(classes))}")
    model = _make_model(classes[args.model], args.param)
    rating = _predicts_ratings(model)  # a rating model learns the ratings themselves, never binarised ones
    df, _ = _load_dataset(args.dataset, args.data_home, None if rating else args.min_rating, args.seed)
    inter = _interactions(df, keep_ratings=rating)
    model.fit(rf.transforms.weight(inter, args.weighting), progress=False if args.quiet else None)
    model.save(args.out)
    print(f"saved {type(model).__name__} fitted on {args.dataset} ({inter.shape[0]} x {inter.shape[1]}) to {args.out}")
    return 0


def cmd_evaluate(args) -> int:
    import recforge as rf

    classes = _model_classes()
    if args.model not in classes:
        raise SystemExit(f"unknown model {args.model!r}; available: {', '.join(sorted(classes))}")
    model = _make_model(classes[args.model], args.param)
    rating = _predicts_ratings(model)
    if rating:
        _rating_note(model, args)
    df, _ = _load_dataset(args.dataset, args.data_home, None if rating else args.min_rating, args.seed)
    inter = _interactions(df, keep_ratings=rating)
    train, test = rf.split.random_holdout(inter, test_fraction=args.test_fraction, seed=args.seed)
    model.fit(rf.transforms.weight(train, args.weighting), progress=False if args.quiet else None)
    metrics = rf.evaluation.evaluate(
        model,
        train,
        test,
        k=args.k,
        protocol=args.protocol,
        progress=False if args.quiet else None,
        relevance_threshold=args.relevance_threshold,
    )
    if args.weighting != "none":
        metrics["weighting"] = args.weighting
    print(json.dumps({k: _json_value(v) for k, v in metrics.items()}, indent=2))
    return 0


# Shorthands of `recforge compare --models`: a name that is a configuration of another model.
MODEL_ALIASES = {"warp": ("bpr", {"loss": "warp"})}


def _model_from_spec(spec: str, classes: dict):
    """``"als"``, ``"warp"`` or ``"bpr:factors=32:lr=0.01"`` -> an unfitted model (usage error when unknown)."""
    name, *items = spec.strip().split(":")
    key, preset = MODEL_ALIASES.get(name.lower(), (name.lower(), {}))
    if key not in classes:
        known = sorted([*classes, *MODEL_ALIASES])
        raise SystemExit(f"unknown model {name!r} in --models; available: {', '.join(known)}")
    model = _make_model(classes[key], items)
    return model.set_params(**{p: v for p, v in preset.items() if p not in _parse_params(items)})


def cmd_compare(args) -> int:
    import recforge as rf

    classes = _model_classes()
    specs = [s for s in args.models.split(",") if s.strip()]
    if len(specs) < 2:
        raise SystemExit("--models needs at least two comma-separated models, e.g. --models als,bpr,warp,mostpopular")
    if len(set(specs)) != len(specs):
        raise SystemExit(f"--models lists a model twice: {args.models}")
    models = {spec: _model_from_spec(spec, classes) for spec in specs}
    kinds = {_predicts_ratings(m) for m in models.values()}
    if len(kinds) > 1:
        raise SystemExit(
            "--models mixes rating models (sgdmf, explicit als) with ranking models: they need different data "
            "(ratings vs positives); compare each kind on its own"
        )
    rating = kinds == {True}
    if rating:
        _rating_note(next(iter(models.values())), args)
    df, _ = _load_dataset(args.dataset, args.data_home, None if rating else args.min_rating, args.seed)
    inter = _interactions(df, keep_ratings=rating)
    train, test = rf.split.random_holdout(inter, test_fraction=args.test_fraction, seed=args.seed)
    fit_on = rf.transforms.weight(train, args.weighting)
    seconds = {}
    for name, model in models.items():
        t = time.perf_counter()
        model.fit(fit_on, progress=False if args.quiet else None)
        seconds[name] = time.perf_counter() - t
    metrics = None if args.metrics is None else [m.strip() for m in args.metrics.split(",") if m.strip()]
    result = rf.evaluation.compare(
        models,
        train,
        test,
        k=args.k,
        metrics=metrics,
        baseline=args.baseline or specs[0],
        method=args.method,
        n_bootstrap=args.n_bootstrap,
        seed=args.seed,
        relevance_threshold=args.relevance_threshold,
        chart=args.chart,
        progress=False if args.quiet else None,
    )
    if args.json:
        records = [{k: _json_value(v) for k, v in row.items()} for row in result.to_dict(orient="records")]
        print(json.dumps({"dataset": args.dataset, "baseline": result.attrs["baseline"], "method": args.method,
                          "fit_s": {n: round(s, 3) for n, s in seconds.items()}, "rows": records,
                          "chart": args.chart}, indent=2))  # fmt: skip
        return 0
    print(
        f"{args.dataset}: {inter.shape[0]} users x {inter.shape[1]} items, per-user {1 - args.test_fraction:.0%}/"
        f"{args.test_fraction:.0%} holdout (seed {args.seed}); {result['n'].iloc[0]} test users; "
        f"{result.attrs['confidence']:.0%} intervals, paired {args.method} against {result.attrs['baseline']}\n"
    )
    base = result.attrs["baseline"]
    rows = [
        {
            "metric": r.metric,
            "model": r.model,
            "value": f"{r.value:.4f} [{r.ci_low:.4f}, {r.ci_high:.4f}]",
            "vs baseline": "baseline" if r.model == base else
            f"{r.diff:+.4f} [{r.diff_low:+.4f}, {r.diff_high:+.4f}]{' *' if r.significant else ''}",
            "p": "" if r.model == base else (f"{r.p_value:.3g}" if r.p_value >= 0.001 else "<0.001"),
            "fit_s": f"{seconds[r.model]:.2f}",
        }
        for r in result.itertuples(index=False)
    ]  # fmt: skip
    print(_format_table(rows, ["metric", "model", "value", "vs baseline", "p", "fit_s"]))
    floor = (
        f"; with {args.n_bootstrap} resamples p is at least {2 / (args.n_bootstrap + 1):.2g}"
        if args.method == "bootstrap"
        else ""
    )
    print(f"\n* the difference's interval excludes 0; p two-sided{floor}")
    if args.chart:
        print(f"chart: {args.chart}")
    return 0


def cmd_recommend(args) -> int:
    import recforge as rf

    model = rf.load(args.model_file)
    ids, scores = model.recommend(np.asarray(args.users, dtype=np.int64), k=args.k)
    for u, i, s in zip(args.users, ids, scores):
        print(json.dumps({"user": u, "items": i.tolist(), "scores": [round(float(x), 6) for x in s]}))
    return 0


def cmd_bench(args, extra: list[str]) -> int:
    runner = Path(args.bench_dir) / "run.py"
    if not runner.is_file():
        raise SystemExit(f"no benchmark runner at {runner}: run from a recforge source checkout or pass --bench-dir")
    return subprocess.call([sys.executable, str(runner), *extra])


# ---- parser ------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recforge", description="recforge: fit, evaluate and benchmark recommenders.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO level)")
    sub = p.add_subparsers(dest="command", required=True)

    def data_args(sp, default="ml-100k"):
        sp.add_argument("--dataset", default=default, choices=DATASETS, help=f"data set (default {default})")
        sp.add_argument("--data-home", help="folder holding the data sets (default: $RECFORGE_DATA, ~/.cache/recforge)")
        sp.add_argument(
            "--min-rating", type=float, default=4.0, help="keep ratings >= this as positive interactions (default 4)"
        )
        sp.add_argument("--seed", type=int, default=42, help="seed for splits and models (default 42)")

    def weighting_args(sp):
        sp.add_argument(
            "--weighting",
            default="none",
            choices=("none", "binary", "log", "bm25", "tfidf"),
            help="weight the training values before fitting (rf.transforms.weight): none (default), binary, "
            "log (log(1 + r)), bm25, tfidf. Raw play counts (lastfm-2k) usually rank much better with log or "
            "bm25 in ALS",
        )

    def relevance_args(sp):
        sp.add_argument(
            "--relevance-threshold",
            type=float,
            metavar="T",
            help="rating models (sgdmf, als with feedback=explicit): also rank, counting test ratings >= T as "
            "relevant (without it they get rmse / mae only)",
        )

    def model_args(sp, default):
        sp.add_argument(
            "--model", default=default, help=f"model: als, bpr, sgdmf, mlpscorer, mostpopular (default {default})"
        )
        sp.add_argument(
            "--param",
            action="append",
            metavar="NAME=VALUE",
            help="model hyperparameter by its constructor name, repeatable, e.g. --param factors=64 "
            "--param epochs=10 --param regularization=0.1 (the names are the same in every model)",
        )

    d = sub.add_parser(
        "demo",
        help="the main job: fit the best model on MovieLens-100K, evaluate it, recommend",
        description="Load MovieLens-100K (falls back to synthetic data with a notice), split per "
        "user 80/20, choose a model (--model auto: ALS, BPR or WARP, by ndcg on a validation split carved "
        "from the training part, never the test split), fit it and MostPopular, evaluate both on the "
        "full catalogue, print a metrics table and a few users' recommendations.",
    )
    data_args(d)
    model_args(d, "auto")  # auto: ALS, BPR and WARP at their defaults, one chosen on validation data
    d.add_argument("--k", type=int, default=10, help="cut-off for the metrics (default 10)")
    d.add_argument("--show-users", type=int, default=3, help="users whose recommendations are printed (default 3)")
    d.add_argument("--json", action="store_true", help="print the metrics as JSON only")
    d.set_defaults(func=cmd_demo)

    f = sub.add_parser(
        "fit", help="fit a model on a data set and save it", description="Fit a model and save it (no pickle)."
    )
    data_args(f)
    model_args(f, "als")
    weighting_args(f)
    f.add_argument("--out", required=True, help="path of the model file to write")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.set_defaults(func=cmd_fit)

    e = sub.add_parser(
        "evaluate",
        help="fit on a per-user holdout split and print metrics as JSON",
        description="Fit on a per-user random holdout split and evaluate: ranking metrics for implicit "
        "models, rmse / mae for rating models (sgdmf, als with --param feedback=explicit), which are "
        "fitted on the ratings as they are.",
    )
    data_args(e)
    model_args(e, "als")
    weighting_args(e)
    relevance_args(e)
    e.add_argument("--k", type=int, default=10, help="cut-off (default 10)")
    e.add_argument(
        "--protocol",
        default="full",
        choices=("full", "sampled"),
        help="full-catalogue ranking (default, exact) or the sampled NCF protocol",
    )
    e.add_argument("--test-fraction", type=float, default=0.2, help="per-user test fraction (default 0.2)")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=cmd_evaluate)

    c = sub.add_parser(
        "compare",
        help="fit several models on one split and compare them with paired confidence intervals (and a chart)",
        description="Fit every model of --models on one per-user holdout split, evaluate them on the same "
        "test users and report each metric with its interval and each model's difference to the baseline "
        "with a paired interval (per-user bootstrap or paired t-test): an offline A/B test.",
    )
    data_args(c)
    c.add_argument(
        "--models",
        required=True,
        help="comma-separated models, each NAME or NAME:param=value:... (names: als, bpr, warp = bpr with "
        "loss=warp, sgdmf, mlpscorer, mostpopular), e.g. --models mostpopular,als,bpr,warp",
    )
    c.add_argument("--baseline", help="the model the others are compared with (default: the first of --models)")
    c.add_argument("--metrics", help="comma-separated metrics (default ndcg,recall,precision; rmse,mae for ratings)")
    c.add_argument("--k", type=int, default=10, help="cut-off (default 10)")
    c.add_argument(
        "--method", default="bootstrap", choices=("bootstrap", "ttest"), help="paired test (default bootstrap)"
    )
    c.add_argument("--n-bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    c.add_argument("--test-fraction", type=float, default=0.2, help="per-user test fraction (default 0.2)")
    c.add_argument("--chart", metavar="PNG", help="write a PNG chart there (needs matplotlib: recforge[plot])")
    c.add_argument("--json", action="store_true", help="print the comparison as JSON")
    c.add_argument("--quiet", action="store_true", help="no progress bars")
    weighting_args(c)
    relevance_args(c)
    c.set_defaults(func=cmd_compare)

    r = sub.add_parser(
        "recommend",
        help="top-k items for users from a saved model",
        description="Print top-k item indices and scores (JSON lines) for the given user indices.",
    )
    r.add_argument("model_file", help="a file written by `recforge fit` or model.save()")
    r.add_argument("users", type=int, nargs="+", help="user indices")
    r.add_argument("--k", type=int, default=10, help="items per user (default 10)")
    r.set_defaults(func=cmd_recommend)

    b = sub.add_parser(
        "bench",
        help="run a side-by-side benchmark (bench/run.py) against peer libraries",
        description="Run bench/run.py from a source checkout; every further argument goes to it "
        "(try `recforge bench -- --help`).",
    )
    b.add_argument("--bench-dir", default="bench", help="folder with run.py (default ./bench)")
    b.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "bench":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    with warnings.catch_warnings():  # the library's warnings (raw counts, duplicates) as one plain line each
        warnings.showwarning = lambda message, *_, **__: print(f"recforge: warning: {message}", file=sys.stderr)
        try:
            return args.func(args, extra) if args.command == "bench" else args.func(args)
        except (ValueError, TypeError, FileNotFoundError) as exc:
            print(f"recforge {args.command}: error: {exc}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
