"""Forgetting users (issue 16): how far ``forget_users`` leaves each model from a refit without them, and its cost.

Data: MovieLens-100K, ratings >= 4 as binary positives (every model but SGDMF; SGDMF: all ratings).
"HybridMF / MLPScorer ... features": the cold-start bench's features (users: gender, occupation, age and an
identity feature each; items: genres and identity), the forgotten users' rows and identity features
removed; the refits get the remaining users' feature rows.
Ten users drawn at random (seed 0) are forgotten. For each model, one thread (repeatable fits):

* ``forget s`` / ``refit s``: wall time of ``forget_users(ten)`` on the fitted model, and of a fit
  on the data without them (a refit is the only other way to forget);
* ``dist forget``: relative Frobenius distance ``|S - S_refit| / |S_refit|`` between the score
  matrices (remaining users x all items) of the model after ``forget_users`` and of the refit
  without the ten users (same parameters and seed);
* ``dist keep``: the same for the fitted model with the ten users' rows merely dropped (no update
  of what the model learnt from them): the distance forgetting starts from;
* ``dist seed``: the refit without them against a second refit with seed + 1: the training noise,
  the floor no approximate forgetting can be asked to beat;
* ``dist forget+5`` / ``+50`` (ALS): ``dist forget`` after 5 / 50 more exact ALS iterations on the
  remaining data from the forgotten model's factors (``partial_fit_users`` / ``partial_fit_items`` of
  every row): whether forgetting then converges to the refit's solution (the "300 it" case: a
  refit run to convergence, so that it is a fixed target);
* ``top10 forget`` / ``top10 seed``: mean overlap (|A ∩ B| / 10) of each remaining user's top 10
  (training items excluded) with the refit's, after ``forget_users`` / for the seed + 1 refit.

``RECFORGE_BENCH_FORGET_MODELS`` (comma-separated, default all of ALS, BPR, SGDMF, HybridMF,
MLPScorer, ItemKNN, EASE, MostPopular) picks the model families to run.

Scores are the ranking scores of ``recommend`` over the whole catalogue (rating models: without the
user bias and global mean, which do not change a user's ranking).
"""

from __future__ import annotations

import time

import numpy as np
from _harness import switch
from bench_coldstart import movielens_100k

N_FORGET = 10
FAMILIES = "ALS,BPR,SGDMF,HybridMF,MLPScorer,ItemKNN,EASE,MostPopular"


def _configs(rf):
    return {
        "ALS cg f=64": (rf.ALS, {"factors": 64, "threads": 1}, "binary"),
        "ALS cholesky f=64": (rf.ALS, {"factors": 64, "solver": "cholesky", "threads": 1}, "binary"),
        "ALS alpha0=0 f=64": (rf.ALS, {"factors": 64, "alpha0": 0.0, "regularization": 5.0, "threads": 1}, "binary"),
        "ALS alpha0=0 f=64 300 it": (
            rf.ALS,
            {"factors": 64, "alpha0": 0.0, "regularization": 5.0, "epochs": 300, "solver": "cholesky", "threads": 1},
            "binary",
        ),  # fmt: skip
        "ALS explicit f=16": (rf.ALS, {"factors": 16, "feedback": "explicit", "threads": 1}, "ratings"),
        "BPR f=64": (rf.BPR, {"factors": 64, "threads": 1}, "binary"),
        "SGDMF": (rf.SGDMF, {"threads": 1}, "ratings"),
        "HybridMF warp f=32": (rf.HybridMF, {"threads": 1}, "binary"),
        "HybridMF warp f=32 features": (rf.HybridMF, {"threads": 1}, "features"),
        "MLPScorer gmf f=16": (rf.MLPScorer, {"factors": 16, "mode": "gmf", "epochs": 5, "threads": 1}, "binary"),
        "MLPScorer gmf f=16 features": (
            rf.MLPScorer,
            {"factors": 16, "mode": "gmf", "epochs": 5, "threads": 1},
            "features",
        ),  # fmt: skip
        "ItemKNN": (rf.ItemKNN, {"threads": 1}, "binary"),
        "EASE": (rf.EASE, {"threads": 1}, "binary"),
        "MostPopular": (rf.MostPopular, {}, "binary"),
    }


def _scores(model) -> np.ndarray:
    """(n_users, n_items) ranking scores from ``recommend`` over the whole catalogue (0 where an item-item
    model pads: no history item points at the item)."""
    ids, scores = model.recommend(np.arange(model.n_users), k=model.n_items, exclude_seen=False)
    out = np.zeros((model.n_users, model.n_items))
    rows = np.repeat(np.arange(model.n_users), ids.shape[1]).reshape(ids.shape)
    valid = ids >= 0
    out[rows[valid], ids[valid]] = scores[valid]
    return out


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _overlap(a, b) -> float:
    ids_a, ids_b = a.recommend(np.arange(a.n_users), k=10)[0], b.recommend(np.arange(b.n_users), k=10)[0]
    return float(np.mean([len(set(x) & set(y)) / 10 for x, y in zip(ids_a, ids_b)]))


def run(ctx) -> list[dict]:
    import recforge as rf

    df = ctx.dataset("ml-100k", rf.datasets.load_movielens, "100k", progress=False)
    if df is None:
        return []
    ratings = rf.Interactions.from_pandas(df, user_col="user", item_col="item", weight_col="rating").csr
    binary = ratings.copy()
    binary.data = (binary.data >= 4).astype(np.float32)
    binary.eliminate_zeros()
    data = {"binary": binary, "ratings": ratings}
    no_features = lambda rows: {}  # noqa: E731
    fit_kwargs = dict.fromkeys(data, no_features)
    with_features = movielens_100k(ctx)  # (positives, user Features, item Features), same users and items
    if with_features is not None:
        positives, user_features, item_features = with_features
        data["features"] = positives.csr
        # all users: the Features (identity names to remove); a subset: their rows (a refit without them)
        fit_kwargs["features"] = lambda rows: {"item_features": item_features, "user_features": user_features
                                               if rows is None else user_features.matrix[rows]}  # fmt: skip
    gone = np.random.default_rng(0).choice(ratings.shape[0], N_FORGET, replace=False)
    keep = np.setdiff1d(np.arange(ratings.shape[0]), gone)
    families = set(switch("RECFORGE_BENCH_FORGET_MODELS", FAMILIES))
    configs = {case: config for case, config in _configs(rf).items() if case.split()[0] in families}
    if ctx.quick:
        configs = {k: v for k, v in configs.items() if not k.startswith(("MLP", "ALS cholesky"))}
    out = []
    for case, (cls, params, kind) in configs.items():
        if kind not in data:
            continue
        m, fit_on = data[kind], fit_kwargs[kind]
        ctx.log(f"forget: {case}")
        model = cls(**params).fit(m, progress=False, **fit_on(None))
        kept = _scores(model)[keep]
        t0 = time.perf_counter()
        model.forget_users(gone)
        forget_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        refit = cls(**params).fit(m[keep], progress=False, **fit_on(keep))
        refit_s = time.perf_counter() - t0
        other_seed = cls(**{**params, "seed": 43}) if "seed" in cls._param_names() else cls(**params)
        other_seed.fit(m[keep], progress=False, **fit_on(keep))
        target = _scores(refit)
        figures = {
            "forget s": (forget_s, "lower"),
            "refit s": (refit_s, "lower"),
            "dist forget": (_distance(_scores(model), target), "lower"),
            "dist keep": (_distance(kept, target), "lower"),
            "dist seed": (_distance(_scores(other_seed), target), "lower"),
            "top10 forget": (_overlap(model, refit), "higher"),
            "top10 seed": (_overlap(other_seed, refit), "higher"),
        }
        if cls is rf.ALS:
            for extra in range(1, 51):
                model.partial_fit_users(np.arange(model.n_users), model.seen_)
                model.partial_fit_items(np.arange(model.n_items), model.seen_.T.tocsr())
                if extra in (5, 50):
                    figures[f"dist forget+{extra}"] = (_distance(_scores(model), target), "lower")
        out += [{"case": f"ml-100k {case}", "library": "recforge", "metric": metric, "value": value,
                 "spread": None, "better": better} for metric, (value, better) in figures.items()]  # fmt: skip
        ctx.log("  " + ", ".join(f"{k} {v:.4g}" for k, (v, _) in figures.items()))
    return out
