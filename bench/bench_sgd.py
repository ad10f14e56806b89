"""SGD factorisation (CPU): SGDMF vs Surprise ``SVD``, BPR/WARP vs implicit's BPR.

Three parts (issue 4), every library on ``ctx.threads`` threads (Surprise has no threads knob:
it is single-threaded), timings interleaved by ``ctx.timeit_many``:

1. Explicit ratings, cross-validated RMSE and time (fit + predict, summed over the folds).
   - MovieLens-100K: the official folds u1..u5 (``uN.base`` / ``uN.test``).
   - ml-latest-small: 5-fold random CV (folds from a permutation seeded with 0).
   Data through ``rf.datasets.load_movielens`` (the u1..u5 fold files through
   ``_harness.movielens_100k_fold``); an absent set is reported as not measured.
   - MovieLens-1M: only when ``ml-1m/ratings.dat`` exists (it is not in the shared data).
   Surprise ``SVD`` runs at its defaults (random_state=0 for repeatability). Our hyperparameters
   are chosen per fold, honestly: a small grid is scored on a validation split (10 %, seeded)
   carved from the fold's training part, with early stopping giving the number of epochs; the
   chosen model is refit on the whole training part and only then sees the test part. The
   tuning time is reported in its own row (not in the fit + predict comparison).
2. Implicit ranking on MovieLens-100K (ratings >= 4, per-user random 80/20 split, seed 42),
   factors 64, 100 epochs: NDCG@10 (and precision/recall/MAP@10) of recforge ``BPR`` and
   ``loss="warp"`` against implicit's ``BayesianPersonalizedRanking``. Each library's learning
   rate and regularisation come from the same grid, chosen on a validation split (20 % per user)
   of the training part. Both libraries rank through the same top-K kernel (implicit's factors via
   ``rf.topk``, ours via ``recommend``; training items excluded) and the same ``rf.evaluation``
   metrics. Time per epoch = fit time / epochs.
3. Throughput: one BPR epoch over a 12M-interaction ``rf.datasets.synthetic`` set (power-law,
   seed 0; 200K with --quick), f = 64: positives (samples) per second per thread, from each
   library's own per-epoch timing (recforge ``history_``, implicit's epoch callback).

``RECFORGE_BENCH_SGD_CASES`` (comma-separated, default ``ml-100k,ml-latest-small,ml-1m,ranking,throughput``:
the three explicit-rating sets of part 1, then parts 2 and 3) picks what runs.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
from _harness import movielens_100k_fold, switch  # bench/ is on sys.path (run.py, load_benchmark)

SURPRISE_PUBLISHED = {"ml-100k": 0.934, "ml-1m": 0.873}  # Surprise's own README (random 5-fold CV)

# SGDMF grid: the validation split picks one of these per fold; epochs come from early stopping.
# Learning rates decay by 5 % per epoch (lr_schedule="exponential", decay=0.05): on ml-100k's
# validation splits that reached the constant-rate RMSE in about half the epochs.
MF_GRID = {"factors": (32, 64), "lr": (0.02, 0.04), "regularization": (0.08, 0.1, 0.12)}
MF_SCHEDULE = {"lr_schedule": "exponential", "decay": 0.05}
MF_MAX_EPOCHS = 100
MF_PATIENCE = 3
# Among grid points within this validation RMSE of the best, the cheapest (factors x epochs) wins:
# a smaller difference is far below the validation estimate's own noise (~0.005 on ~8K ratings).
MF_TOLERANCE = 0.001
# BPR grid (same for both libraries); WARP has its own scale of steps (rank weights up to ~7).
THROUGHPUT_FULL = (200_000, 50_000, 12_000_000)  # users, items, interactions
THROUGHPUT_QUICK = (20_000, 5_000, 200_000)
BPR_GRID = {"lr": (0.01, 0.05), "reg": (0.001, 0.01)}
WARP_GRID = {"lr": (0.002, 0.005), "reg": (0.5, 1.0, 2.0)}


# -- data ---------------------------------------------------------------------------------------
def _csr(users, items, values, shape):
    import scipy.sparse as sp

    return sp.csr_matrix((np.asarray(values, np.float32), (users, items)), shape=shape)


def explicit_folds(ctx, rf, name):
    """([(train_df, test_df)], shape, rating_scale) with 0-based ``user``, ``item``; None when absent."""
    import pandas as pd

    n_folds = 2 if ctx.quick else 5
    if name == "ml-100k":  # the official folds
        loaded = [ctx.dataset(f"ml-100k u{k}", movielens_100k_fold, k) for k in range(1, n_folds + 1)]
        return None if None in loaded else ([(tr, te) for tr, te, _ in loaded], loaded[0][2], (1.0, 5.0))
    variant = {"ml-latest-small": "latest-small", "ml-1m": "1m"}[name]
    df = ctx.dataset(name, rf.datasets.load_movielens, variant, progress=False)
    if df is None:
        return None
    scale = (float(df.rating.min()), float(df.rating.max()))
    df["user"] = pd.factorize(df.user)[0]
    df["item"] = pd.factorize(df.item)[0]
    parts = np.array_split(np.random.default_rng(0).permutation(len(df)), 5)
    folds = []
    for k in range(n_folds):
        train_idx = np.concatenate([parts[j] for j in range(5) if j != k])
        folds.append((df.iloc[train_idx].reset_index(drop=True), df.iloc[parts[k]].reset_index(drop=True)))
    return folds, (int(df.user.max()) + 1, int(df.item.max()) + 1), scale


def _holdout(rf, csr, fraction, seed):
    """rf.split.random_holdout (per user) on a plain matrix; returns two CSR matrices."""
    train, test = rf.split.random_holdout(rf.Interactions.from_scipy(csr), test_fraction=fraction, seed=seed)
    return train.csr, test.csr


# -- part 1: explicit ratings --------------------------------------------------------------------
def _tune_sgdmf(rf, train, threads, seed):
    """Grid point and epoch count chosen on a validation split of ``train`` (see MF_TOLERANCE)."""
    fit_part, val_part = _holdout(rf, train, 0.1, seed)
    scored = []
    for factors, lr, reg in itertools.product(*MF_GRID.values()):
        m = rf.SGDMF(
            factors=factors, lr=lr, regularization=reg, epochs=MF_MAX_EPOCHS, threads=threads, seed=seed, **MF_SCHEDULE
        )
        m.fit(fit_part, validation=val_part, patience=MF_PATIENCE, progress=False)
        params = {"factors": factors, "lr": lr, "regularization": reg, "epochs": m.best_epoch_ + 1, **MF_SCHEDULE}
        scored.append((m.history_[m.best_epoch_]["val_rmse"], params))
    best = min(r for r, _ in scored)
    near = [(p["factors"] * p["epochs"], r, p) for r, p in scored if r <= best + MF_TOLERANCE]
    return min(near, key=lambda x: x[:2])[2]


def explicit_part(ctx, rf, surprise, name, rows, fixed=None):
    """SGDMF (tuned per fold, or the ``fixed`` parameters) vs Surprise SVD (when installed) over ``name``'s folds."""
    loaded = explicit_folds(ctx, rf, name)
    if loaded is None:
        return
    folds, shape, scale = loaded
    case = f"{name} {len(folds)}-fold CV" + (" one fixed setting" if fixed else "")
    libs = ("recforge", "surprise") if surprise is not None else ("recforge",)
    rmse, times, spreads = ({lib: [] for lib in libs} for _ in range(3))
    tune_s = 0.0
    chosen = []
    for k, (tr, te) in enumerate(folds):
        train = _csr(tr.user.values, tr.item.values, tr.rating.values, shape)
        t0 = time.perf_counter()
        params = {"seed": k, **(fixed or _tune_sgdmf(rf, train, ctx.threads, seed=k))}
        tune_s += time.perf_counter() - t0
        chosen.append(params)
        tu, ti, tr_true = te.user.values, te.item.values, te.rating.values
        out = {}

        def ours(params=params, train=train, tu=tu, ti=ti, out=out):
            m = rf.SGDMF(**params, clip=scale, threads=ctx.threads).fit(train, progress=False)
            out["recforge"] = m.score(tu, ti, unknown="bias")

        fns = {"recforge": ours}
        if surprise is not None:
            strain = surprise.Dataset.load_from_df(
                tr[["user", "item", "rating"]], surprise.Reader(rating_scale=scale)
            ).build_full_trainset()
            stest = list(zip(te.user.values, te.item.values, te.rating.values))

            def peer(strain=strain, stest=stest, out=out):
                algo = surprise.SVD(random_state=0)
                algo.fit(strain)
                out["surprise"] = algo.test(stest)

            fns["surprise"] = peer
        t = ctx.timeit_many(fns)
        if surprise is not None:
            out["surprise"] = np.array([p.est for p in out["surprise"]])
        for lib in libs:
            rmse[lib].append(float(np.sqrt(np.mean((out[lib] - tr_true) ** 2))))
            times[lib].append(t[lib]["median"])
            spreads[lib].append(t[lib]["spread"])
        ctx.log(
            f"{name} fold {k + 1}: {params}; "
            + ", ".join(f"{lib} rmse {rmse[lib][-1]:.4f} s {times[lib][-1]:.3f}" for lib in libs)
        )
    for lib in libs:
        summaries = (  # metric, its value and spread over the folds, the per-fold figures
            ("rmse (mean over folds)", np.mean(rmse[lib]), np.std(rmse[lib]), rmse[lib]),
            ("s fit+predict (sum over folds)", np.sum(times[lib]), np.sum(spreads[lib]), times[lib]),
        )
        rows += [
            {
                "case": case,
                "library": lib,
                "metric": metric,
                "value": float(value),
                "spread": float(spread),
                "better": "lower",
                "per_fold": per_fold,
            }
            for metric, value, spread, per_fold in summaries
        ]
    if not fixed:
        rows.append(
            {
                "case": case,
                "library": "recforge",
                "metric": "s tuning (grid, sum over folds)",
                "value": tune_s,
                "spread": None,
                "better": "lower",
                "chosen": chosen,
            }
        )
    if name in SURPRISE_PUBLISHED:
        ctx.log(f"Surprise publishes SVD RMSE {SURPRISE_PUBLISHED[name]} on {name} (random 5-fold CV)")


# -- part 2: BPR / WARP vs implicit on MovieLens-100K --------------------------------------------
def _ranking_metrics(rf, ids, test, k=10):
    ev = rf.evaluation
    return {
        "ndcg@10": ev.ndcg_at_k(ids, test, k),
        "precision@10": ev.precision_at_k(ids, test, k),
        "recall@10": ev.recall_at_k(ids, test, k),
        "map@10": ev.map_at_k(ids, test, k),
    }


def _top10(rf, lib, model, train):
    """Top-10 ids of every user, ``train`` excluded: implicit's factors through ``rf.topk``, ours through
    ``recommend`` (the same kernel; the model's training matrix is ``train``)."""
    if lib == "implicit":  # implicit's BPR keeps a column of ones / the item bias as the last factor
        user_f, item_f = (np.ascontiguousarray(f, np.float32) for f in (model.user_factors, model.item_factors))
        return rf.topk(user_f, item_f, 10, exclude=train)[0]
    return model.recommend(np.arange(train.shape[0]), k=10)[0]


def _ranking_part(ctx, rf, implicit_bpr, rows):
    df = ctx.dataset("ml-100k", rf.datasets.load_movielens, "100k", progress=False)
    if df is None:
        return
    inter = rf.Interactions.from_pandas(df[df.rating >= 4], user_col="user", item_col="item")
    train_i, test_i = rf.split.random_holdout(inter, test_fraction=0.2, seed=42)
    train, test = train_i.csr, test_i.csr
    fit_part, val_part = _holdout(rf, train, 0.2, 7)
    factors, epochs = 64, (20 if ctx.quick else 100)

    makers = {
        "recforge": lambda lr, reg: rf.BPR(
            factors=factors, lr=lr, regularization=reg, epochs=epochs, threads=ctx.threads
        ),
        "recforge-warp": lambda lr, reg: rf.BPR(
            factors=factors, lr=lr, regularization=reg, epochs=epochs, loss="warp", threads=ctx.threads
        ),
    }
    if implicit_bpr is not None:
        makers["implicit"] = lambda lr, reg: implicit_bpr(
            factors=factors,
            learning_rate=lr,
            regularization=reg,
            iterations=epochs,
            num_threads=ctx.threads,
            random_state=42,
        )

    def fit(lib, model, data):
        if lib == "implicit":
            model.fit(data, show_progress=False)
        else:
            model.fit(data, progress=False)
        return model

    chosen = {}
    for lib, make in makers.items():
        grid = WARP_GRID if lib == "recforge-warp" else BPR_GRID
        scored = []
        for lr, reg in itertools.product(*grid.values()):
            m = fit(lib, make(lr, reg), fit_part)
            ndcg = _ranking_metrics(rf, _top10(rf, lib, m, fit_part), val_part)["ndcg@10"]
            scored.append((ndcg, lr, reg))
        chosen[lib] = max(scored)[1:]
        ctx.log(f"bpr validation {lib}: {sorted(scored, reverse=True)} -> lr, reg = {chosen[lib]}")

    models = {}
    fns = {lib: (lambda lib=lib: models.__setitem__(lib, fit(lib, makers[lib](*chosen[lib]), train))) for lib in makers}
    t = ctx.timeit_many(fns)
    case = f"ml-100k >=4 80/20 f={factors} {epochs} epochs"
    pop = rf.MostPopular().fit(train)
    metrics = {lib: _ranking_metrics(rf, _top10(rf, lib, m, train), test) for lib, m in models.items()}
    metrics["most-popular"] = _ranking_metrics(rf, _top10(rf, "most-popular", pop, train), test)
    for lib, ms in metrics.items():
        for metric, value in ms.items():
            rows.append(
                {
                    "case": case,
                    "library": lib,
                    "metric": metric,
                    "value": float(value),
                    "spread": None,
                    "better": "higher",
                    "lr_reg": chosen.get(lib),
                }
            )
    for lib, tt in t.items():
        rows.append(
            {
                "case": case,
                "library": lib,
                "metric": "s/epoch (fit / epochs)",
                "value": tt["median"] / epochs,
                "spread": tt["spread"] / epochs,
                "better": "lower",
                "lr_reg": chosen[lib],
            }
        )


# -- part 3: throughput --------------------------------------------------------------------------
def _throughput_part(ctx, rf, implicit_bpr, rows):
    n_users, n_items, nnz = THROUGHPUT_QUICK if ctx.quick else THROUGHPUT_FULL
    df = rf.datasets.synthetic(n_users=n_users, n_items=n_items, nnz=nnz, seed=0)
    data = rf.Interactions.from_pandas(df, user_col="user", item_col="item").csr
    case = f"synthetic {data.nnz / 1e6:.1f}M interactions f=64"
    ctx.log(f"throughput: {case}, {n_users:,} users x {n_items:,} items")
    epochs = 3
    per_epoch = {"recforge": [], "implicit": []}

    def ours():
        m = rf.BPR(factors=64, lr=0.05, regularization=0.01, epochs=epochs, threads=ctx.threads)
        m.fit(data, progress=False)
        per_epoch["recforge"] += [h["seconds"] for h in m.history_]

    fns = {"recforge": ours}
    if implicit_bpr is not None:

        def peer():
            m = implicit_bpr(
                factors=64,
                learning_rate=0.05,
                regularization=0.01,
                iterations=epochs,
                num_threads=ctx.threads,
                random_state=0,
            )
            m.fit(data, show_progress=False, callback=lambda e, elapsed, *a: per_epoch["implicit"].append(elapsed))

        fns["implicit"] = peer
    fit_t = ctx.timeit_many(fns)
    for lib, secs in per_epoch.items():
        if not secs:
            continue
        med = float(np.median(secs))
        rows.append(
            {
                "case": case,
                "library": lib,
                "metric": "M samples/s/thread (epoch)",
                "value": data.nnz / med / ctx.threads / 1e6,
                "spread": float((np.max(secs) - np.min(secs)) / 2 * data.nnz / med**2 / ctx.threads / 1e6),
                "better": "higher",
            }
        )
        rows.append(
            {
                "case": case,
                "library": lib,
                "metric": f"s fit ({epochs} epochs)",
                "value": fit_t[lib]["median"],
                "spread": fit_t[lib]["spread"],
                "better": "lower",
            }
        )


def run(ctx):
    import recforge as rf

    cases = switch("RECFORGE_BENCH_SGD_CASES", "ml-100k,ml-latest-small,ml-1m,ranking,throughput")

    surprise = ctx.peer("surprise")
    implicit_bpr_mod = ctx.peer("implicit.cpu.bpr")
    implicit_bpr = None if implicit_bpr_mod is None else implicit_bpr_mod.BayesianPersonalizedRanking
    rows = []
    for name in ("ml-100k",) if ctx.quick else ("ml-100k", "ml-latest-small", "ml-1m"):
        if name in cases:
            explicit_part(ctx, rf, surprise, name, rows)
    if "ranking" in cases:
        _ranking_part(ctx, rf, implicit_bpr, rows)
    if "throughput" in cases:
        _throughput_part(ctx, rf, implicit_bpr, rows)
    return rows
