"""Defaults that win (issue 11): every model at its defaults, no tuning, against the peers at theirs.

1. Ratings: ``rf.SGDMF()`` vs Surprise ``SVD()`` (``random_state=0``), MovieLens-100K official folds
   u1..u5 (2 with ``--quick``): RMSE averaged over the folds, fit + predict time summed over them
   (interleaved, median of ``--repeat``). Only ``threads`` is passed to ours (Surprise has one thread).
2. Ranking: ``rf.BPR(loss="warp")`` vs ``rf.BPR()`` vs ``rf.MostPopular()``, per-user random 80/20
   split (seed 42), full-catalogue NDCG@10 and recall@10 (training items excluded), on
   MovieLens-100K (ratings >= 4) and Last.fm-2K (5-core: users and items with >= 5 interactions).
3. Stability: the same three on every other set in the shared data folder (``RECFORGE_DATA``):
   ml-latest-small (ratings >= 4), the DeepCF files (AMusic, AToy, lastfm: train and test joined),
   citeulike-a, the S3-Rec sequences (Beauty, LastFM, Sports, Toys, Yelp) and SASRec's Amazon
   Video Games. A WARP divergence (the training loss turning NaN/inf) fails the benchmark.

4. ``warp-grid`` (only on request): how WARP's defaults were chosen. On MovieLens-100K and Last.fm-2K
   (as in part 2), each point of WARP_GRID is fitted on 80 % of each user's training part (seed 7)
   and scored by NDCG@10 on the rest, beside BPR at its defaults; the test part is not used.

Ratios: SGDMF rows "recforge" vs "surprise"; ranking rows "recforge" is WARP, vs "recforge-bpr" and
"most-popular" (> 1: WARP ranks better). ``RECFORGE_BENCH_DEFAULTS_CASES`` (comma-separated, default
``ratings,ranking,stability``; ``warp-grid`` on request) picks the parts.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from _harness import movielens_100k_fold, switch  # bench/ is on sys.path (run.py, load_benchmark)

SPLIT_SEED = 42
VALIDATION_SEED = 7
K = 10
WARP_GRID = {"lr": (0.002, 0.005, 0.01), "regularization": (0.25, 0.5, 1.0, 2.0)}


# -- data -----------------------------------------------------------------------------------------
def _find(data_home, rel: str) -> Path:
    import recforge as rf

    looked = [base / rel for base in rf.datasets.data_home_candidates(data_home)]
    path = next((p for p in looked if p.is_file()), None)
    if path is None:
        raise FileNotFoundError(f"{rel} not found. Looked for: {', '.join(map(str, looked))}")
    return path


def _pairs(users, items):
    import pandas as pd

    return pd.DataFrame({"user": np.asarray(users), "item": np.asarray(items)})


def _sequences(data_home, rel: str, skip_count: bool = False):
    """One line per user: ``user item item ...`` (S3-Rec) or ``count item item ...`` (citeulike-a)."""
    users, items = [], []
    with open(_find(data_home, rel)) as f:
        for row, line in enumerate(f):
            fields = line.split()
            if not fields:
                continue
            user, rest = (row, fields[1:]) if skip_count else (fields[0], fields[1:])
            users += [user] * len(rest)
            items += rest
    return _pairs(users, items)


def _ncf_joined(data_home, name: str):
    import pandas as pd

    import recforge as rf

    train, test, _ = rf.datasets.load_ncf_format(f"deepcf/{name}", data_home=data_home)
    return pd.concat([train, test])[["user", "item"]]


def _movielens_positive(data_home, variant: str):
    import recforge as rf

    df = rf.datasets.load_movielens(variant, data_home=data_home, progress=False)
    return df[df.rating >= 4][["user", "item"]]


def _lastfm_5core(data_home):
    import recforge as rf

    return rf.datasets.load_lastfm("2k", data_home=data_home, progress=False)[["user", "item"]], 5


RANKING_SETS = {
    "ml-100k >=4": lambda data_home: (_movielens_positive(data_home, "100k"), 1),
    "lastfm-2k 5-core": _lastfm_5core,
}
STABILITY_SETS = {
    "ml-latest-small >=4": lambda data_home: (_movielens_positive(data_home, "latest-small"), 1),
    "deepcf AMusic": lambda data_home: (_ncf_joined(data_home, "AMusic"), 1),
    "deepcf AToy": lambda data_home: (_ncf_joined(data_home, "AToy"), 1),
    "deepcf lastfm": lambda data_home: (_ncf_joined(data_home, "lastfm"), 1),
    "citeulike-a": lambda data_home: (_sequences(data_home, "citeulike-a/users.dat", skip_count=True), 1),
    **{
        f"s3rec {name}": (lambda data_home, name=name: (_sequences(data_home, f"s3rec-sequential/{name}.txt"), 1))
        for name in ("Beauty", "LastFM", "Sports_and_Outdoors", "Toys_and_Games", "Yelp")
    },
    "sasrec video-games": lambda data_home: (_video_games(data_home), 1),
}


def _video_games(data_home):
    import recforge as rf

    return rf.datasets.load_sasrec("video-games", data_home=data_home)[["user", "item"]]


# -- part 1: SGDMF vs Surprise SVD, both at their defaults ----------------------------------------
def ratings_part(ctx, rf, surprise, rows):
    n_folds = 2 if ctx.quick else 5
    folds = [ctx.dataset(f"ml-100k u{k}", movielens_100k_fold, k) for k in range(1, n_folds + 1)]
    if None in folds:
        return
    import scipy.sparse as sp

    libs = ("recforge", "surprise") if surprise is not None else ("recforge",)
    rmse = {lib: [] for lib in libs}
    seconds = {lib: [] for lib in libs}
    for k, (tr, te, shape) in enumerate(folds):
        train = sp.csr_matrix((tr.rating.to_numpy(np.float32), (tr.user, tr.item)), shape=shape)
        tu, ti, truth = te.user.to_numpy(), te.item.to_numpy(), te.rating.to_numpy(np.float64)
        out = {}

        def ours(train=train, tu=tu, ti=ti, out=out):
            model = rf.SGDMF(threads=ctx.threads).fit(train, progress=False)  # every parameter at its default
            out["recforge"] = model.score(tu, ti)

        fns = {"recforge": ours}
        if surprise is not None:
            strain = surprise.Dataset.load_from_df(
                tr[["user", "item", "rating"]], surprise.Reader(rating_scale=(1, 5))
            ).build_full_trainset()
            stest = list(zip(tu, ti, truth))

            def peer(strain=strain, stest=stest, out=out):
                algo = surprise.SVD(random_state=0)  # its defaults
                algo.fit(strain)
                out["surprise"] = np.array([p.est for p in algo.test(stest)])

            fns["surprise"] = peer
        timing = ctx.timeit_many(fns)
        for lib in libs:
            rmse[lib].append(float(np.sqrt(np.mean((out[lib] - truth) ** 2))))
            seconds[lib].append(timing[lib]["median"])
        ctx.log(f"ml-100k fold {k + 1}: " + ", ".join(f"{lib} rmse {rmse[lib][-1]:.4f}" for lib in libs))
    case = f"ml-100k {n_folds}-fold CV, defaults"
    for lib in libs:
        rows.append(_row(case, lib, "rmse (mean over folds)", np.mean(rmse[lib]), "lower", np.std(rmse[lib]),
                         per_fold=rmse[lib]))  # fmt: skip
        rows.append(_row(case, lib, "s fit+predict (sum over folds)", np.sum(seconds[lib]), "lower",
                         per_fold=seconds[lib]))  # fmt: skip


# -- parts 2 and 3: WARP vs BPR vs MostPopular, all at their defaults -----------------------------
def ranking_part(ctx, rf, sets, rows):
    for name, load in sets.items():
        loaded = ctx.dataset(name, load)
        if loaded is None:
            continue
        df, core = loaded
        if ctx.quick:  # a smoke run: the first 500 users
            df = df[df.user.isin(df.user.unique()[:500])]
        inter = rf.Interactions.from_pandas(df, duplicates="sum")  # repeated events: one positive
        if core > 1:
            inter = inter.filter(min_user_interactions=core, min_item_interactions=core)
        train, test = rf.split.random_holdout(inter, test_fraction=0.2, seed=SPLIT_SEED)
        case = f"{name} ({inter.n_users} x {inter.n_items}, {inter.nnz} interactions), 80/20"
        models = {
            "recforge": rf.BPR(loss="warp", threads=ctx.threads),
            "recforge-bpr": rf.BPR(threads=ctx.threads),
            "most-popular": rf.MostPopular(),
        }
        for lib, model in models.items():
            t0 = time.perf_counter()
            model.fit(train, progress=False)  # a divergence raises FloatingPointError: the run fails
            fit_s = time.perf_counter() - t0
            metrics = rf.evaluation.evaluate(
                model, train, test, k=K, metrics=["ndcg", "recall"], threads=ctx.threads, progress=False
            )
            for metric in (f"ndcg@{K}", f"recall@{K}"):
                rows.append(_row(case, lib, metric, metrics[metric], "higher"))
            epochs = len(getattr(model, "history_", []))
            ctx.log(f"{name}: {lib} ndcg@{K} {metrics[f'ndcg@{K}']:.4f} ({fit_s:.1f} s, {epochs} epochs)")


def warp_grid_part(ctx, rf, rows):
    """Validation NDCG@10 of every WARP_GRID point (and of BPR's defaults) on part 2's sets."""
    import itertools

    for name, load in RANKING_SETS.items():
        loaded = ctx.dataset(name, load)
        if loaded is None:
            continue
        df, core = loaded
        inter = rf.Interactions.from_pandas(df, duplicates="sum")
        if core > 1:
            inter = inter.filter(min_user_interactions=core, min_item_interactions=core)
        train, _ = rf.split.random_holdout(inter, test_fraction=0.2, seed=SPLIT_SEED)  # the test part stays out
        inner, validation = rf.split.random_holdout(train, test_fraction=0.2, seed=VALIDATION_SEED)
        case = f"{name} validation ndcg@{K} (WARP grid)"
        points = {"recforge-bpr": rf.BPR(threads=ctx.threads)}
        for lr, reg in itertools.product(*WARP_GRID.values()):
            points[f"warp lr={lr} reg={reg}"] = rf.BPR(loss="warp", lr=lr, regularization=reg, threads=ctx.threads)
        for lib, model in points.items():
            try:
                model.fit(inner, progress=False)
            except FloatingPointError as exc:  # a diverging grid point is a result here, not a failure
                ctx.log(f"{name}: {lib} diverged ({exc})")
                continue
            value = rf.evaluation.evaluate(model, inner, validation, k=K, metrics=["ndcg"], progress=False)
            rows.append(_row(case, lib, f"ndcg@{K}", value[f"ndcg@{K}"], "higher"))
            ctx.log(f"{name}: {lib} validation ndcg@{K} {value[f'ndcg@{K}']:.4f}")


def _row(case, library, metric, value, better, spread=None, **extra):
    return {"case": case, "library": library, "metric": metric, "value": float(value),
            "spread": None if spread is None else float(spread), "better": better, **extra}  # fmt: skip


def run(ctx):
    import recforge as rf

    parts = switch("RECFORGE_BENCH_DEFAULTS_CASES", "ratings,ranking,stability", "ratings,ranking,stability,warp-grid")
    rows = []
    if "ratings" in parts:
        ratings_part(ctx, rf, ctx.peer("surprise"), rows)
    if "ranking" in parts:
        ranking_part(ctx, rf, RANKING_SETS, rows)
    if "stability" in parts:
        ranking_part(ctx, rf, STABILITY_SETS, rows)
    if "warp-grid" in parts:
        warp_grid_part(ctx, rf, rows)
    return rows
