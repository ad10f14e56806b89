"""SGD factorisation (CPU): SGDMF vs Surprise ``SVD``, BPR/WARP vs implicit's BPR.

Three parts (issue 4), every library on ``ctx.threads`` threads (Surprise has no threads knob:
it is single-threaded), timings interleaved by ``ctx.timeit_many``:

1. Explicit ratings, cross-validated RMSE and time (fit + predict, summed over the folds).
   - MovieLens-100K: the official folds u1..u5 (``uN.base`` / ``uN.test``).
   - ml-latest-small: 5-fold random CV (folds from a permutation seeded with 0).
   Data through ``rf.datasets.load_movielens`` (the u1..u5 fold files read directly).
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
   of the training part. Both libraries' factors go through the same ``rf.topk`` (training items
   excluded) and the same ``rf.evaluation`` metrics. Time per epoch = fit time / epochs.
3. Throughput: one BPR epoch over a 12M-interaction ``rf.datasets.synthetic`` set (power-law,
   seed 0; 200K with --quick), f = 64: positives (samples) per second per thread, from each
   library's own per-epoch timing (recforge ``history_``, implicit's epoch callback).
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np

FOLDS_100K = [(f"u{k}.base", f"u{k}.test") for k in range(1, 6)]
SURPRISE_PUBLISHED = {"ml-100k": 0.934, "ml-1m": 0.873}  # Surprise's own README (random 5-fold CV)

# SGDMF grid: the validation split picks one of these per fold; epochs come from early stopping.
# Learning rates decay by 5 % per epoch (lr_schedule="exponential", decay=0.05): on ml-100k's
# validation splits that reached the constant-rate RMSE in about half the epochs.
MF_GRID = {"factors": (32, 64), "lr": (0.02, 0.04), "reg": (0.08, 0.1, 0.12)}
MF_SCHEDULE = {"lr_schedule": "exponential", "decay": 0.05}
MF_MAX_EPOCHS = 100
MF_PATIENCE = 3
# Among grid points within this validation RMSE of the best, the cheapest (factors x epochs) wins:
# a smaller difference is far below the validation estimate's own noise (~0.005 on ~8K ratings).
MF_TOLERANCE = 0.001
# BPR grid (same for both libraries); WARP has its own scale of steps (rank weights up to ~7).
BPR_GRID = {"lr": (0.01, 0.05), "reg": (0.001, 0.01)}
WARP_GRID = {"lr": (0.002, 0.005), "reg": (0.5, 1.0, 2.0)}


# -- data ---------------------------------------------------------------------------------------
def _read_100k(path: Path):
    import pandas as pd

    return pd.read_csv(path, sep="\t", names=["user", "item", "rating", "timestamp"])


def _csr(users, items, values, shape):
    import scipy.sparse as sp

    return sp.csr_matrix((np.asarray(values, np.float32), (users, items)), shape=shape)


def _explicit_folds(ctx, rf, name):
    """[(train_df, test_df)], n_users, n_items, rating_scale; dense 0-based ids in 'u', 'i'."""
    import pandas as pd

    n_folds = 2 if ctx.quick else 5
    if name == "ml-100k":  # the official folds; ids are 1..n in this set
        full = rf.datasets.load_movielens("100k", data_home=ctx.data_dir, progress=False)
        n_users, n_items = int(full.user.max()), int(full.item.max())
        folds = []
        for base, test in FOLDS_100K[:n_folds]:
            parts = [_read_100k(ctx.data_dir / "ml-100k" / f) for f in (base, test)]
            for p in parts:
                p["u"], p["i"] = p.user.values - 1, p.item.values - 1
            folds.append(tuple(parts))
        return folds, n_users, n_items, (1.0, 5.0)
    variant = {"ml-latest-small": "latest-small", "ml-1m": "1m"}[name]
    df = rf.datasets.load_movielens(variant, data_home=ctx.data_dir, progress=False)
    scale = (float(df.rating.min()), float(df.rating.max()))
    df["u"] = pd.factorize(df.user)[0]
    df["i"] = pd.factorize(df.item)[0]
    parts = np.array_split(np.random.default_rng(0).permutation(len(df)), 5)
    folds = []
    for k in range(n_folds):
        train_idx = np.concatenate([parts[j] for j in range(5) if j != k])
        folds.append((df.iloc[train_idx].reset_index(drop=True), df.iloc[parts[k]].reset_index(drop=True)))
    return folds, int(df.u.max()) + 1, int(df.i.max()) + 1, scale


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
        m = rf.SGDMF(factors=factors, lr=lr, reg=reg, epochs=MF_MAX_EPOCHS, threads=threads, seed=seed,
                     **MF_SCHEDULE)
        m.fit(fit_part, validation=val_part, patience=MF_PATIENCE, progress=False)
        params = {"factors": factors, "lr": lr, "reg": reg, "epochs": m.best_epoch_ + 1, **MF_SCHEDULE}
        scored.append((m.history_[m.best_epoch_]["val_rmse"], params))
    best = min(r for r, _ in scored)
    near = [(p["factors"] * p["epochs"], r, p) for r, p in scored if r <= best + MF_TOLERANCE]
    return min(near, key=lambda x: x[:2])[2]


def _explicit_part(ctx, rf, surprise, name, rows):
    from surprise import SVD, Dataset, Reader, accuracy

    folds, n_users, n_items, scale = _explicit_folds(ctx, rf, name)
    case = f"{name} {len(folds)}-fold CV"
    rmse = {"recforge": [], "surprise": []}
    times = {"recforge": [], "surprise": []}
    spreads = {"recforge": [], "surprise": []}
    tune_s = 0.0
    chosen = []
    for k, (tr, te) in enumerate(folds):
        train = _csr(tr.u.values, tr.i.values, tr.rating.values, (n_users, n_items))
        t0 = time.perf_counter()
        params = _tune_sgdmf(rf, train, ctx.threads, seed=k)
        tune_s += time.perf_counter() - t0
        chosen.append(params)
        tu, ti, tr_true = te.u.values, te.i.values, te.rating.values

        reader = Reader(rating_scale=scale)
        strain = Dataset.load_from_df(tr[["user", "item", "rating"]], reader).build_full_trainset()
        stest = list(zip(te.user.values, te.item.values, te.rating.values))
        out = {}

        def ours():
            m = rf.SGDMF(**params, clip=scale, threads=ctx.threads, seed=k).fit(train, progress=False)
            out["recforge"] = m.score(tu, ti, unknown="bias")

        def peer():
            algo = SVD(random_state=0)
            algo.fit(strain)
            out["surprise"] = algo.test(stest)

        t = ctx.timeit_many({"recforge": ours, "surprise": peer})
        rmse["recforge"].append(float(np.sqrt(np.mean((out["recforge"] - tr_true) ** 2))))
        rmse["surprise"].append(float(accuracy.rmse(out["surprise"], verbose=False)))
        for lib in times:
            times[lib].append(t[lib]["median"])
            spreads[lib].append(t[lib]["spread"])
        ctx.log(f"{name} fold {k + 1}: {params} rmse ours {rmse['recforge'][-1]:.4f} "
                f"surprise {rmse['surprise'][-1]:.4f}; s ours {times['recforge'][-1]:.3f} "
                f"surprise {times['surprise'][-1]:.3f}")
    for lib in ("recforge", "surprise"):
        rows.append({"case": case, "library": lib, "metric": "rmse (mean over folds)",
                     "value": float(np.mean(rmse[lib])), "spread": float(np.std(rmse[lib])), "better": "lower",
                     "per_fold": rmse[lib]})
        rows.append({"case": case, "library": lib, "metric": "s fit+predict (sum over folds)",
                     "value": float(np.sum(times[lib])), "spread": float(np.sum(spreads[lib])), "better": "lower",
                     "per_fold": times[lib]})
    rows.append({"case": case, "library": "recforge", "metric": "s tuning (grid, sum over folds)",
                 "value": tune_s, "spread": None, "better": "lower", "chosen": chosen})
    if name in SURPRISE_PUBLISHED:
        ctx.log(f"Surprise publishes SVD RMSE {SURPRISE_PUBLISHED[name]} on {name} (random 5-fold CV)")


# -- part 2: BPR / WARP vs implicit on MovieLens-100K --------------------------------------------
def _ranking_metrics(rf, user_f, item_f, train, test, k=10):
    ids, _ = rf.topk(np.ascontiguousarray(user_f, np.float32), np.ascontiguousarray(item_f, np.float32), k,
                     exclude=train)
    ev = rf.evaluation
    return {"ndcg@10": ev.ndcg_at_k(ids, test, k), "precision@10": ev.precision_at_k(ids, test, k),
            "recall@10": ev.recall_at_k(ids, test, k), "map@10": ev.map_at_k(ids, test, k)}


def _vectors(lib, model, n_users):
    if lib == "implicit":  # implicit's BPR keeps a column of ones / the item bias as the last factor
        return np.asarray(model.user_factors), np.asarray(model.item_factors)
    return model._ranking_vectors(np.arange(n_users))


def _ranking_part(ctx, rf, implicit_bpr, rows):
    df = rf.datasets.load_movielens("100k", data_home=ctx.data_dir, progress=False)
    inter = rf.Interactions.from_pandas(df[df.rating >= 4], user_col="user", item_col="item")
    train_i, test_i = rf.split.random_holdout(inter, test_fraction=0.2, seed=42)
    train, test = train_i.csr, test_i.csr
    shape = train.shape
    fit_part, val_part = _holdout(rf, train, 0.2, 7)
    factors, epochs = 64, (20 if ctx.quick else 100)

    makers = {
        "recforge": lambda lr, reg: rf.BPR(factors=factors, lr=lr, reg=reg, epochs=epochs, threads=ctx.threads),
        "recforge-warp": lambda lr, reg: rf.BPR(factors=factors, lr=lr, reg=reg, epochs=epochs, loss="warp",
                                                threads=ctx.threads),
    }
    if implicit_bpr is not None:
        makers["implicit"] = lambda lr, reg: implicit_bpr(factors=factors, learning_rate=lr, regularization=reg,
                                                          iterations=epochs, num_threads=ctx.threads,
                                                          random_state=42)

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
            ndcg = _ranking_metrics(rf, *_vectors(lib, m, shape[0]), fit_part, val_part)["ndcg@10"]
            scored.append((ndcg, lr, reg))
        chosen[lib] = max(scored)[1:]
        ctx.log(f"bpr validation {lib}: {sorted(scored, reverse=True)} -> lr, reg = {chosen[lib]}")

    models = {}
    fns = {lib: (lambda lib=lib: models.__setitem__(lib, fit(lib, makers[lib](*chosen[lib]), train)))
           for lib in makers}
    t = ctx.timeit_many(fns)
    case = f"ml-100k >=4 80/20 f={factors} {epochs} epochs"
    pop = rf.MostPopular().fit(train)
    metrics = {lib: _ranking_metrics(rf, *_vectors(lib, m, shape[0]), train, test) for lib, m in models.items()}
    metrics["most-popular"] = _ranking_metrics(rf, *pop._ranking_vectors(np.arange(shape[0])), train, test)
    for lib, ms in metrics.items():
        for metric, value in ms.items():
            rows.append({"case": case, "library": lib, "metric": metric, "value": float(value), "spread": None,
                         "better": "higher", "lr_reg": chosen.get(lib)})
    for lib, tt in t.items():
        rows.append({"case": case, "library": lib, "metric": "s/epoch (fit / epochs)", "value": tt["median"] / epochs,
                     "spread": tt["spread"] / epochs, "better": "lower", "lr_reg": chosen[lib]})


# -- part 3: throughput --------------------------------------------------------------------------
def _throughput_part(ctx, rf, implicit_bpr, rows):
    n_users, n_items, nnz = (20_000, 5_000, 200_000) if ctx.quick else (200_000, 50_000, 12_000_000)
    df = rf.datasets.synthetic(n_users=n_users, n_items=n_items, nnz=nnz, seed=0)
    data = rf.Interactions.from_pandas(df, user_col="user", item_col="item").csr
    case = f"synthetic {data.nnz / 1e6:.1f}M interactions f=64"
    ctx.log(f"throughput: {case}, {n_users:,} users x {n_items:,} items")
    epochs = 3
    per_epoch = {"recforge": [], "implicit": []}

    def ours():
        m = rf.BPR(factors=64, lr=0.05, reg=0.01, epochs=epochs, threads=ctx.threads).fit(data, progress=False)
        per_epoch["recforge"] += [h["seconds"] for h in m.history_]

    fns = {"recforge": ours}
    if implicit_bpr is not None:
        def peer():
            m = implicit_bpr(factors=64, learning_rate=0.05, regularization=0.01, iterations=epochs,
                             num_threads=ctx.threads, random_state=0)
            m.fit(data, show_progress=False, callback=lambda e, elapsed, *a: per_epoch["implicit"].append(elapsed))
        fns["implicit"] = peer
    fit_t = ctx.timeit_many(fns)
    for lib, secs in per_epoch.items():
        if not secs:
            continue
        med = float(np.median(secs))
        rows.append({"case": case, "library": lib, "metric": "M samples/s/thread (epoch)",
                     "value": data.nnz / med / ctx.threads / 1e6,
                     "spread": float((np.max(secs) - np.min(secs)) / 2 * data.nnz / med**2 / ctx.threads / 1e6),
                     "better": "higher"})
        rows.append({"case": case, "library": lib, "metric": f"s fit ({epochs} epochs)",
                     "value": fit_t[lib]["median"], "spread": fit_t[lib]["spread"], "better": "lower"})


def run(ctx):
    import recforge as rf

    surprise = ctx.peer("surprise")
    implicit_bpr_mod = ctx.peer("implicit.cpu.bpr")
    implicit_bpr = None if implicit_bpr_mod is None else implicit_bpr_mod.BayesianPersonalizedRanking
    rows = []
    if surprise is not None:
        for name in ("ml-100k", "ml-latest-small", "ml-1m"):
            needed = {"ml-100k": "ml-100k/u1.base", "ml-latest-small": "ml-latest-small/ratings.csv",
                      "ml-1m": "ml-1m/ratings.dat"}[name]
            if not (ctx.data_dir / needed).exists():
                ctx.log(f"{name}: not available ({ctx.data_dir / needed} is absent); skipped")
                continue
            if ctx.quick and name != "ml-100k":
                continue
            _explicit_part(ctx, rf, surprise, name, rows)
    _ranking_part(ctx, rf, implicit_bpr, rows)
    _throughput_part(ctx, rf, implicit_bpr, rows)
    return rows
