"""The ``recforge`` command: demo, fit, evaluate, compare, recommend, bench (each with --help).

Exit status: 0 success, 2 a usage error (a bad option, value or --param: the command line must
change), 1 a failure while running (a missing file, bad data, an unknown user id).
"""

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
from typing import NamedTuple

import numpy as np

log = logging.getLogger("recforge.cli")

EXIT_FAILURE, EXIT_USAGE = 1, 2
MODELS = ("als", "bpr", "sgdmf", "mlpscorer", "mostpopular")
SPLITS = ("random", "last", "temporal", "users")


class UsageError(Exception):
    """A bad command line (exit status 2), as opposed to a failure while running (1)."""


# ---- shared pieces -----------------------------------------------------------------------------
def _dataset_names() -> list[str]:
    from . import datasets

    return datasets.names()


def _parse_params(items: list[str]) -> dict:
    """``["factors=64", "solver='cg'"]`` -> {"factors": 64, "solver": "cg"} (values as Python literals)."""
    params = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"--param must look like name=value, got {item!r}")
        try:
            params[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[key] = value  # a bare word: keep it as a string
    return params


def _make_model(cls, items: list[str] | None):
    """``cls(**params)`` from ``--param`` items, validated now: a bad name or value is a usage error."""
    params = _parse_params(items)
    valid = cls._param_names()
    unknown = [name for name in params if name not in valid and name not in cls._aliases]
    if unknown:
        raise UsageError(f"{cls.__name__} has no parameter {unknown[0]!r}; valid: {', '.join(valid)}")
    model = cls(**params)
    try:
        model._validate_params()
    except (ValueError, TypeError) as exc:
        raise UsageError(f"--param: {exc}") from None
    return model


def _model_classes() -> dict:
    import recforge as rf

    return {cls.__name__.lower(): cls for cls in (rf.ALS, rf.BPR, rf.SGDMF, rf.MLPScorer, rf.MostPopular)}


class Data(NamedTuple):
    """What ``_load_data`` gives every command."""

    interactions: object  # recforge.Interactions (external ids in its id maps)
    names: object  # pandas Series of readable item names by external item id, or None
    source: str  # the data set's name or the file's path, for messages
    feedback: str  # "ratings", "counts" or "implicit" (what the values were before _implicit)


def _load_data(args, keep_ratings: bool = False) -> Data:
    """The one data path of every command: ``--dataset NAME`` or ``--data PATH`` with its column
    options, then ``--min-rating`` (ratings, unless ``keep_ratings``: a rating model learns them as
    they are), ``--min-user`` / ``--min-item`` (k-core)."""
    import recforge as rf

    if args.data is not None:
        df, feedback = _read_own_data(args)
        names, source = _read_names(args), args.data
    else:
        df = rf.datasets.load(args.dataset, data_home=args.data_home, download=args.download)
        feedback, source = rf.datasets.info(args.dataset).feedback, args.dataset
        names = rf.datasets.item_names(args.dataset, data_home=args.data_home, download=args.download)
    inter = _implicit(df, feedback, args, keep_ratings)
    if args.min_user > 1 or args.min_item > 1:
        inter = inter.filter(min_user_interactions=args.min_user, min_item_interactions=args.min_item)
        if inter.nnz == 0:
            raise ValueError(f"no interactions left after --min-user {args.min_user} --min-item {args.min_item}")
    return Data(inter, names, source, feedback)


def _read_own_data(args):
    """DataFrame (user, item[, rating | weight][, timestamp]) of ``--data PATH`` and its feedback kind."""
    import recforge as rf

    if args.rating_col is not None and args.weight_col is not None:
        raise UsageError("give at most one of --rating-col and --weight-col")
    path = Path(args.data)
    value_col = args.rating_col or args.weight_col
    cols = dict(user_col=args.user_col, item_col=args.item_col, weight_col=value_col, time_col=args.time_col)
    if path.suffix.lower() in (".parquet", ".pq"):
        df = rf.datasets.load_parquet(path, **cols)
    else:
        sep = args.sep or ("\t" if path.suffix.lower() in (".tsv", ".tab") else ",")
        df = rf.datasets.load_csv(path, sep=sep, **cols)
    if args.rating_col is not None:
        return df.rename(columns={"weight": "rating"}), "ratings"
    return df, "counts" if args.weight_col is not None else "implicit"


def _read_names(args):
    """``--item-names PATH``: a Series of names by item id (its --item-col and its --name-col), or None."""
    if args.item_names is None:
        return None
    import pandas as pd

    path = Path(args.item_names)
    if not path.is_file():
        raise FileNotFoundError(f"--item-names: no such file: {path}")
    df = pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(path)
    for col, option in ((args.item_col, "--item-col"), (args.name_col, "--name-col")):
        if col not in df.columns:
            raise ValueError(f"{path}: no column {col!r} ({option}); columns: {list(df.columns)}")
    return pd.Series(df[args.name_col].astype(str).to_numpy(), index=df[args.item_col], name=args.name_col)


def _implicit(df, feedback: str, args, keep_ratings: bool = False):
    """Interactions for the ranking models: ratings >= --min-rating become positives of weight 1
    (``keep_ratings``: the ratings as they are, for a rating model)."""
    import recforge as rf

    weight = {"ratings": "rating", "counts": "weight"}.get(feedback)
    if weight == "rating" and not keep_ratings:
        if args.min_rating is not None:
            df = df[df["rating"] >= args.min_rating]
        df = df.assign(rating=np.float32(1.0))  # implicit feedback: a kept rating is one positive interaction
    if len(df) == 0:
        raise ValueError(f"no interactions left after --min-rating {args.min_rating}")
    time_col = "timestamp" if "timestamp" in df else None
    return rf.Interactions.from_pandas(df, user_col="user", item_col="item", weight_col=weight, time_col=time_col)


class Split(NamedTuple):
    train: object  # Interactions the model is fitted on
    test: object  # Interactions to predict
    fold_in: object  # --split users: the held-out users' visible part (folded in after fit), else None


def _split(inter, args) -> Split:
    """``--split``: random (per user), last (each user's latest), temporal (global cutoff), users (held-out users)."""
    import recforge as rf

    if args.split == "random":
        return Split(*rf.split.random_holdout(inter, test_fraction=args.test_fraction, seed=args.seed), None)
    if args.split == "last":
        return Split(*rf.split.leave_last_out(inter), None)
    if args.split == "temporal":
        return Split(*rf.split.temporal(inter, test_fraction=args.test_fraction), None)
    s = rf.split.strong_generalization(inter, test_users_fraction=args.test_fraction, seed=args.seed)
    return Split(s.train, s.test, s.fold_in)


def _fit_split(model, split: Split, weighting: str, progress):
    """Fit on the split's training part (weighted by --weighting); with held-out users, fold them in.
    Returns the exclusion matrix (what the model has seen)."""
    import recforge as rf

    model.fit(rf.transforms.weight(split.train, weighting), progress=progress)
    if split.fold_in is None:
        return split.train
    users = np.flatnonzero(np.diff(split.fold_in.csr.indptr))
    model.partial_fit_users(users, rf.transforms.weight(split.fold_in, weighting).csr[users])
    return split.train.csr + split.fold_in.csr


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


def _json_value(value):
    """JSON-ready ``value``: NumPy numbers as Python ints / floats (an int stays an int)."""
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    return value


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
            raise UsageError("--param needs a --model (with --model auto each candidate runs at its defaults)")
        return {name: classes[key](**params) for name, (key, params) in AUTO_CANDIDATES.items()}
    if args.model not in classes:
        raise UsageError(f"unknown model {args.model!r}; available: auto, {', '.join(sorted(classes))}")
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
        data = _load_data(args)
    except (FileNotFoundError, ValueError) as exc:
        if args.data is not None:  # the user's own file: no silent substitute
            raise
        print(f"notice: {args.dataset} is not available ({exc}); using the synthetic data set instead", file=sys.stderr)
        args.dataset = "synthetic"
        data = _load_data(args)
    inter, titles, source = data.interactions, data.names, data.source
    train, test = rf.split.random_holdout(inter, test_fraction=0.2, seed=args.seed)

    classes = _model_classes()
    candidates = _demo_candidates(args, classes)
    if any(_predicts_ratings(m) for m in candidates.values()):
        raise UsageError("the demo ranks implicit feedback; evaluate a rating model with `recforge evaluate`")
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
        print(json.dumps(_json_value(report), indent=2))
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
        print(f"  user {inter.user_ids.to_external(u)}: " + "; ".join(_titled(external, titles)))
    print(f"\ndone in {time.perf_counter() - t0:.1f} s")
    return 0


def cmd_fit(args) -> int:
    import recforge as rf

    model = _make_model(_model_classes()[args.model], args.param)
    rating = _predicts_ratings(model)  # a rating model learns the ratings themselves, never binarised ones
    data = _load_data(args, keep_ratings=rating)
    model.fit(rf.transforms.weight(data.interactions, args.weighting), progress=False if args.quiet else None)
    model.dataset_ = None if args.data is not None else args.dataset  # recommend finds its item names by it
    model.save(args.out)
    n_users, n_items = data.interactions.shape
    print(f"saved {type(model).__name__} fitted on {data.source} ({n_users} users x {n_items} items) to {args.out}")
    return 0


def cmd_evaluate(args) -> int:
    import recforge as rf

    model = _make_model(_model_classes()[args.model], args.param)
    if args.rerank and not (0 <= args.tradeoff <= 1 and args.candidates >= 1):
        raise UsageError(f"--tradeoff must be in [0, 1] and --candidates >= 1, got {args.tradeoff}, {args.candidates}")
    rating = _predicts_ratings(model)
    if rating:
        _rating_note(model, args)
    data = _load_data(args, keep_ratings=rating)
    genres = _movielens_genres(args, data.interactions) if args.genres or args.rerank == "calibration" else None
    groups = _movielens_groups(args, data.interactions) if args.group_by else None
    split = _split(data.interactions, args)
    progress = False if args.quiet else None
    seen = _fit_split(model, split, args.weighting, progress)
    evaluated = _reranked(model, args, seen, genres) if args.rerank else model
    common = dict(k=args.k, progress=progress, relevance_threshold=args.relevance_threshold)
    metrics = rf.evaluation.evaluate(
        evaluated,
        seen,
        split.test,
        protocol=args.protocol,
        metrics=args.metrics.split(",") if args.metrics else None,
        item_features=genres if args.protocol == "full" else None,
        item_genres=genres if args.protocol == "full" else None,
        **common,
    )
    if args.weighting != "none":
        metrics["weighting"] = args.weighting
    if args.rerank:
        metrics["rerank"] = {"method": args.rerank, "tradeoff": args.tradeoff, "candidates": args.candidates}
    if groups is not None:
        table = rf.evaluation.evaluate_groups(evaluated, seen, split.test, groups, **common)
        metrics[f"by {args.group_by}"] = {
            str(g): {"n_users": int(row["n_users"]), **row.drop("n_users").to_dict()} for g, row in table.iterrows()
        }
    print(json.dumps(_json_value(metrics), indent=2))
    return 0


def _movielens_variant(args, option: str, variants=None) -> str:
    """The MovieLens variant of ``--dataset`` ("ml-100k" -> "100k"); a usage error for other data."""
    variant = None if args.data is not None else args.dataset.removeprefix("ml-")
    if variant is None or not args.dataset.startswith("ml-") or (variants and variant not in variants):
        wanted = ", ".join(f"ml-{v}" for v in variants) if variants else "a MovieLens set (ml-...)"
        raise UsageError(f"{option} needs --dataset {wanted}")
    return variant


def _movielens_genres(args, inter) -> np.ndarray:
    """(n_items, G) genre flags of the data set's items (``--genres``, ``--rerank calibration``)."""
    import recforge as rf

    variant = _movielens_variant(args, "--genres / --rerank calibration")
    genres = rf.datasets.movielens_genres(variant, data_home=args.data_home, download=args.download)
    return genres.reindex(inter.item_ids.index).fillna(0).to_numpy()


AGE_BANDS = ([0, 25, 35, 50, 200], ["<25", "25-34", "35-49", "50+"])


def _movielens_groups(args, inter) -> np.ndarray:
    """``--group-by``: each user's gender, age band or occupation (None for users without a record)."""
    import pandas as pd

    import recforge as rf

    variant = _movielens_variant(args, "--group-by", ("100k", "1m"))
    users = rf.datasets.movielens_users(variant, data_home=args.data_home, download=args.download)
    if args.group_by == "age":
        labels = pd.cut(users["age"], AGE_BANDS[0], right=False, labels=AGE_BANDS[1]).astype(object)
    else:
        labels = users[args.group_by]
    return labels.reindex(inter.user_ids.index).to_numpy(dtype=object)


def _reranked(model, args, seen, genres):
    """``--rerank``: the model's top ``--candidates`` re-ranked (MMR over genres with --genres, else over
    the training data's item co-occurrence; calibration to the genres of each user's history)."""
    import recforge as rf

    if genres is None:  # mmr without --genres: an item is its column of training users (co-occurrence)
        genres = (seen.csr if hasattr(seen, "csr") else seen).T.tocsr()
    return rf.rerank.Reranked(model, args.rerank, item_features=genres, tradeoff=args.tradeoff,
                              candidates=args.candidates)  # fmt: skip


# Shorthands of `recforge compare --models`: a name that is a configuration of another model.
MODEL_ALIASES = {"warp": ("bpr", {"loss": "warp"})}


def _model_from_spec(spec: str, classes: dict):
    """``"als"``, ``"warp"`` or ``"bpr:factors=32:lr=0.01"`` -> an unfitted model (usage error when unknown)."""
    name, *items = spec.strip().split(":")
    key, preset = MODEL_ALIASES.get(name.lower(), (name.lower(), {}))
    if key not in classes:
        known = sorted([*classes, *MODEL_ALIASES])
        raise UsageError(f"unknown model {name!r} in --models; available: {', '.join(known)}")
    model = _make_model(classes[key], items)
    return model.set_params(**{p: v for p, v in preset.items() if p not in _parse_params(items)})


def cmd_compare(args) -> int:
    import recforge as rf

    classes = _model_classes()
    specs = [s for s in args.models.split(",") if s.strip()]
    if len(specs) < 2:
        raise UsageError("--models needs at least two comma-separated models, e.g. --models als,bpr,warp,mostpopular")
    if len(set(specs)) != len(specs):
        raise UsageError(f"--models lists a model twice: {args.models}")
    models = {spec: _model_from_spec(spec, classes) for spec in specs}
    kinds = {_predicts_ratings(m) for m in models.values()}
    if len(kinds) > 1:
        raise UsageError(
            "--models mixes rating models (sgdmf, explicit als) with ranking models: they need different data "
            "(ratings vs positives); compare each kind on its own"
        )
    rating = kinds == {True}
    if rating:
        _rating_note(next(iter(models.values())), args)
    data = _load_data(args, keep_ratings=rating)
    inter = data.interactions
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
        records = _json_value(result.to_dict(orient="records"))
        print(json.dumps({"dataset": data.source, "baseline": result.attrs["baseline"], "method": args.method,
                          "fit_s": {n: round(s, 3) for n, s in seconds.items()}, "rows": records,
                          "chart": args.chart}, indent=2))  # fmt: skip
        return 0
    print(
        f"{data.source}: {inter.shape[0]} users x {inter.shape[1]} items, per-user {1 - args.test_fraction:.0%}/"
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


def _titled(external_ids, names) -> list[str]:
    """``id`` or ``id (name)`` for each external item id, with names from the data set when it has them."""
    if names is None:
        return [str(e) for e in external_ids]
    return [f"{e} ({names[e]})" if e in names.index else str(e) for e in external_ids]


def _typed_ids(values: list[str], id_map) -> list:
    """Command-line ids in the type of the model's ids (the file's ints stay ints)."""
    kind = id_map.values.dtype.kind
    out = []
    for v in values:
        try:
            out.append(int(v) if kind in "iu" else float(v) if kind == "f" else v)
        except ValueError:
            out.append(v)  # not a number: unknown to a numeric map, reported as such
    return out


def _item_names(args, model):
    """Item names by external id: --item-names, else the data set's (--dataset, or the one `recforge fit` was given)."""
    import recforge as rf

    names = _read_names(args)
    dataset = args.dataset or model.dataset_
    if names is None and dataset is not None:
        names = rf.datasets.item_names(dataset, data_home=args.data_home)
    return names


def cmd_explain(args) -> int:
    import recforge as rf

    if args.top < 1:
        raise UsageError(f"--top must be >= 1, got {args.top}")
    model = rf.load(args.model_file)
    names = _item_names(args, model)
    user = _typed_ids([args.user], model._id_map("user"))[0]
    item = _typed_ids([args.item], model._id_map("item"))[0]
    e = model.explain_external(user, item)
    top = e.top(args.top)
    if args.json:
        line = {"user": e.user, "item": e.item, "score": e.score, "model_score": e.model_score, "base": e.base,
                "method": e.method, "history": top["item"].tolist(), "contributions": top["contribution"].tolist(),
                "shares": top["share"].tolist()}  # fmt: skip
        if names is not None:
            line["names"] = [str(names[x]) if x in names.index else None for x in line["history"]]
        print(json.dumps(_json_value(line)))
        return 0
    print(f"user {e.user}, item {_titled([e.item], names)[0]}: score {e.score:.4f} ({e.method}; model score "
          f"{e.model_score:.4f}, base {e.base:.4f})")  # fmt: skip
    for label, contribution, share in zip(_titled(top["item"], names), top["contribution"], top["share"]):
        print(f"  {contribution:+.4f}  {share:7.1%}  {label}")
    if len(e.contributions) > len(top):
        print(f"  ... {len(e.contributions) - len(top)} more history items")
    return 0


def cmd_forget(args) -> int:
    import recforge as rf

    if not args.users and not args.items:
        raise UsageError("give user ids to forget, or --items (or both)")
    model = rf.load(args.model_file)
    if args.users:
        model.forget_users(_typed_ids(args.users, model._id_map("user")))
    if args.items:
        model.forget_items(_typed_ids(args.items, model._id_map("item")))
    out = args.out or args.model_file
    model.save(out)  # atomic: the old file stays whole until the new one is complete
    print(f"forgot {len(args.users)} user(s) and {len(args.items or [])} item(s); wrote {out}")
    return 0


def cmd_recommend(args) -> int:
    import pandas as pd

    import recforge as rf

    if not args.users and args.items is None:
        raise UsageError("give user ids, or --items for a new user (or both)")
    model = rf.load(args.model_file)
    names = _item_names(args, model)
    frames = []
    if args.users:
        users = _typed_ids(args.users, model._id_map("user"))
        frames.append(model.recommend_external(users, k=args.k, exclude_seen=not args.include_seen,
                                               fallback=args.fallback))  # fmt: skip
    if args.items is not None:
        items = _typed_ids(args.items, model._id_map("item"))
        rows = model.rows_from_items([items], unknown="ignore" if args.fallback else "error")
        ids, scores = model.recommend_for_rows(rows, k=args.k, exclude_seen=not args.include_seen,
                                               fallback=args.fallback)  # fmt: skip
        frames.append(model._external_frame(["(new user)"], ids, scores))
    recs = pd.concat(frames, ignore_index=True)
    for user, group in recs.groupby("user", sort=False):
        items, scores = group["item"].tolist(), group["score"].tolist()
        if args.json:
            line = {"user": user, "items": items, "scores": [round(float(x), 6) for x in scores]}
            if names is not None:
                line["names"] = [str(names[e]) if e in names.index else None for e in items]
            print(json.dumps(_json_value(line)))
            continue
        print(f"user {user}:")
        for rank, (label, score) in enumerate(zip(_titled(items, names), scores), 1):
            print(f"  {rank:>3}. {label}  [{score:.4f}]")
    return 0


def _bench_runner(bench_dir: str | None) -> Path:
    """bench/run.py: from --bench-dir, the current folder, or the source checkout recforge runs from."""
    candidates = [Path(bench_dir)] if bench_dir else [Path("bench"), Path(__file__).resolve().parents[2] / "bench"]
    for folder in candidates:
        if (folder / "run.py").is_file():
            return folder / "run.py"
    where = ", ".join(str(c / "run.py") for c in candidates)
    raise FileNotFoundError(
        f"recforge bench runs the benchmarks of a source checkout (bench/run.py), and there is none here "
        f"(looked for {where}); clone the recforge repository and run it there, or pass --bench-dir"
    )


def cmd_bench(args, extra: list[str]) -> int:
    runner = _bench_runner(args.bench_dir)
    argv = [*([args.name] if args.name else []), *extra, *(["--help"] if args.bench_help else [])]
    return subprocess.call([sys.executable, str(runner), *argv])


# ---- parser ------------------------------------------------------------------------------------
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("recforge")
    except PackageNotFoundError:  # run from a source tree without installing
        from recforge import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recforge", description="recforge: fit, evaluate and benchmark recommenders.",
                                epilog="Exit status: 0 success, 2 usage error, 1 failure.")  # fmt: skip
    p.add_argument("--version", action="version", version=f"recforge {_version()}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO level)")
    sub = p.add_subparsers(dest="command", required=True)

    def data_args(sp, default="ml-100k"):
        g = sp.add_argument_group("data (a registered data set, or your own file with --data)")
        src = g.add_mutually_exclusive_group()
        src.add_argument("--dataset", default=default, choices=_dataset_names(), metavar="NAME",
                         help=f"registered data set (default {default}): {', '.join(_dataset_names())}")  # fmt: skip
        src.add_argument("--data", metavar="PATH", help="your own interactions: a .csv (.tsv) or .parquet file")
        g.add_argument("--user-col", default="user", help="--data: column of user ids (default user)")
        g.add_argument("--item-col", default="item", help="--data / --item-names: column of item ids (default item)")
        g.add_argument("--rating-col", help="--data: column of explicit ratings")
        g.add_argument("--weight-col", help="--data: column of implicit weights (play counts, ...)")
        g.add_argument("--time-col", help="--data: column of timestamps (for --split last / temporal)")
        g.add_argument("--sep", help="--data: CSV field separator (default ',' or a tab for .tsv)")
        g.add_argument(
            "--item-names", metavar="PATH", help="CSV/parquet of readable item names (--item-col, --name-col)"
        )
        g.add_argument("--name-col", default="title", help="--item-names: column of names (default title)")
        g.add_argument("--data-home", help="folder holding the data sets (default: $RECFORGE_DATA, ~/.cache/recforge)")
        g.add_argument("--download", action="store_true", help="download the data set from its provider when absent")
        g.add_argument("--min-rating", type=float, default=4.0,
                       help="ratings: keep ratings >= this as positive interactions (default 4)")  # fmt: skip
        g.add_argument("--min-user", type=int, default=1, help="keep users with >= this many interactions (k-core)")
        g.add_argument("--min-item", type=int, default=1, help="keep items with >= this many interactions (k-core)")
        g.add_argument("--seed", type=int, default=42, help="seed for splits and models (default 42)")

    def split_args(sp):
        sp.add_argument("--split", default="random", choices=SPLITS,
                        help="random: per-user holdout (default); last: each user's latest interaction; temporal: "
                             "a global time cutoff; users: held-out users, folded in after fit")  # fmt: skip
        sp.add_argument("--test-fraction", type=float, default=0.2,
                        help="test share (per user, of time, or of users for --split users; default 0.2)")  # fmt: skip

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

    def model_args(sp, default, extra=()):
        sp.add_argument("--model", default=default, choices=(*extra, *MODELS),
                        help=f"model: {', '.join((*extra, *MODELS))} (default {default})")  # fmt: skip
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
    model_args(d, "auto", extra=("auto",))  # auto: ALS, BPR and WARP at their defaults, one chosen on validation data
    d.add_argument("--k", type=int, default=10, help="cut-off for the metrics (default 10)")
    d.add_argument("--show-users", type=int, default=3, help="users whose recommendations are printed (default 3)")
    d.add_argument("--json", action="store_true", help="print the metrics as JSON only")
    d.set_defaults(func=cmd_demo)

    f = sub.add_parser(
        "fit",
        help="fit a model on a data set and save it",
        description="Fit a model on a registered data set or your own file and save it (no pickle); the "
        "file keeps the data's user and item ids, so `recforge recommend` takes and prints them.",
    )
    data_args(f)
    model_args(f, "als")
    weighting_args(f)
    f.add_argument("--out", required=True, help="path of the model file to write")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.set_defaults(func=cmd_fit)

    e = sub.add_parser(
        "evaluate",
        help="fit on a train/test split and print metrics as JSON",
        description="Split the data (--split), fit on the training part and evaluate on the test part: ranking "
        "metrics for implicit models, rmse / mae for rating models (sgdmf, als with --param feedback=explicit), "
        "which are fitted on the ratings as they are.",
    )
    data_args(e)
    split_args(e)
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
    e.add_argument(
        "--metrics",
        metavar="NAMES",
        help="comma-separated metrics (default: the protocol's set), e.g. ndcg,recall,coverage,gini,long_tail,"
        "popularity,novelty; diversity and miscalibration with --genres; a name may carry its cut-off (ndcg@20)",
    )
    b = e.add_argument_group("beyond accuracy (MovieLens side data)")
    b.add_argument("--genres", action="store_true",
                   help="MovieLens: also report diversity@k (intra-list genre distance) and miscalibration@k "
                   "(Steck's C_KL to the genres of each user's history)")  # fmt: skip
    b.add_argument("--group-by", choices=("gender", "age", "occupation"),
                   help="ml-100k / ml-1m: the ranking metrics per group of users (age: <25, 25-34, 35-49, 50+), "
                   "with each group's difference to all users: who is served worse")  # fmt: skip
    b.add_argument("--rerank", choices=("mmr", "calibration"),
                   help="evaluate the model's top --candidates re-ranked: mmr (diversity; over genres with "
                   "--genres, else over the training data's item co-occurrence) or calibration (to the history's "
                   "genres)")  # fmt: skip
    b.add_argument("--tradeoff", type=float, default=0.5,
                   help="--rerank: 0 keeps the model's order, 1 ignores relevance (default 0.5)")  # fmt: skip
    b.add_argument("--candidates", type=int, default=100,
                   help="--rerank: the model's items per user that are re-ranked (default 100)")  # fmt: skip
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
        help="top-k items for users from a saved model, in the data's own ids (with titles)",
        description="Print the top-k items for users given by their ids in the data (as in the file the "
        "model was fitted on), or for a new user given by --items; with item names where the data set "
        "has them (MovieLens titles, Last.fm artists: --dataset NAME) or --item-names PATH.",
    )
    r.add_argument("model_file", help="a file written by `recforge fit` or model.save()")
    r.add_argument("users", nargs="*", help="user ids, as in the data")
    r.add_argument("--items", nargs="+", metavar="ITEM", help="a new user's items (ids as in the data): fold it in")
    r.add_argument("--k", type=int, default=10, help="items per user (default 10)")
    r.add_argument(
        "--fallback",
        choices=("popular",),
        help="unknown users get the most popular items (default: an error); unknown --items are skipped",
    )
    r.add_argument("--include-seen", action="store_true", help="keep the items a user already has")
    _add_name_arguments(r)
    r.add_argument("--json", action="store_true", help="JSON lines: user, items, scores[, names]")
    r.set_defaults(func=cmd_recommend)

    x = sub.add_parser(
        "explain",
        help="why a saved model scores an item for a user: its history items' contributions",
        description="Print the score of ITEM for USER (ids as in the data) and the user's history items "
        "that contribute most to it (model.explain_external: exact contributions for ALS, ItemKNN and "
        "EASE, shares by item similarity for the SGD-trained models), with item names where known.",
    )
    x.add_argument("model_file", help="a file written by `recforge fit` or model.save()")
    x.add_argument("user", help="user id, as in the data")
    x.add_argument("item", help="item id, as in the data")
    x.add_argument("--top", type=int, default=10, help="history items to show (default 10)")
    _add_name_arguments(x)
    x.add_argument("--json", action="store_true",
                   help="one JSON line: user, item, score, model_score, base, method, history, contributions, "
                   "shares[, names]")  # fmt: skip
    x.set_defaults(func=cmd_explain)

    g = sub.add_parser(
        "forget",
        help="remove users (or items) and what a saved model stores of them (privacy)",
        description="Load a saved model, forget the given users (ids as in the data) and --items "
        "(model.forget_users / forget_items: their rows, ids and per-row parameters leave the model; "
        "ALS re-solves the other side exactly, ItemKNN / EASE / MostPopular recompute exactly, the SGD "
        "models are approximate) and save it, over the same file unless --out is given.",
    )
    g.add_argument("model_file", help="a file written by `recforge fit` or model.save()")
    g.add_argument("users", nargs="*", help="user ids to forget, as in the data")
    g.add_argument("--items", nargs="+", metavar="ITEM", help="item ids to forget, as in the data")
    g.add_argument("--out", help="write the model here (default: replace model_file, atomically)")
    g.set_defaults(func=cmd_forget)

    b = sub.add_parser(
        "bench",
        add_help=False,
        help="run a side-by-side benchmark (bench/run.py, source checkout only) against peer libraries",
        description="Run bench/run.py of a source checkout: `recforge bench NAME [options]`; every option "
        "after NAME goes to it (--threads, --repeat, --quick, --out). `recforge bench NAME --help` shows "
        "the benchmark's own options and switches; `recforge bench --list` lists the benchmarks.",
    )
    b.add_argument("name", nargs="?", help="benchmark name (bench/bench_<name>.py)")
    b.add_argument("-h", "--help", dest="bench_help", action="store_true", help="this help, or NAME's own")
    b.add_argument("--bench-dir", help="folder with run.py (default: ./bench, else the checkout recforge runs from)")
    b.set_defaults(func=cmd_bench, parser=b)
    return p


def _add_name_arguments(parser) -> None:
    """The options naming items (``_item_names``) shared by recommend and explain."""
    parser.add_argument(
        "--dataset",
        choices=_dataset_names(),
        metavar="NAME",
        help="take item names from this data set (default: the one `recforge fit` was given)",
    )
    parser.add_argument("--data-home", help="folder holding the data sets (for --dataset)")
    parser.add_argument("--item-names", metavar="PATH", help="CSV/parquet of item names (--item-col, --name-col)")
    parser.add_argument("--item-col", default="item", help="--item-names: column of item ids (default item)")
    parser.add_argument("--name-col", default="title", help="--item-names: column of names (default title)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "bench":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")  # exits with status 2
    if args.command == "bench" and args.bench_help and not args.name:
        args.parser.print_help()
        raise SystemExit(0)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    with warnings.catch_warnings():  # the library's warnings (raw counts, duplicates) as one plain line each
        warnings.showwarning = lambda message, *_, **__: print(f"recforge: warning: {message}", file=sys.stderr)
        return _run(args, extra)


def _run(args, extra) -> int:
    """The command, with its failures turned into exit statuses (2 usage, 1 failure)."""
    try:
        return args.func(args, extra) if args.command == "bench" else args.func(args)
    except BrokenPipeError:  # the reader went away (`recforge ... | head`): nothing left to say
        sys.stdout = None
        return EXIT_FAILURE
    except UsageError as exc:
        print(f"recforge {args.command}: usage error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, TypeError, KeyError, OSError, FloatingPointError) as exc:  # OSError: missing files too
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"recforge {args.command}: error: {message}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
