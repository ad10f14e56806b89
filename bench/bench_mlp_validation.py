"""How the MLPScorer defaults were chosen: NeuMF recipes compared on VALIDATION splits carved from
the training data only (the test files are never read), so the choice is not fitted to the test.

For each DeepCF set (lastfm, AMusic, AToy) one random training positive per user with at least two
is held out; for MovieLens-100K the last training interaction per user (after bench_mlp.py's own
leave-last-out). Each holdout is ranked against 99 sampled negatives (seed 0). NeuMF as in
bench_mlp.py (factors 32, layers (64, 32, 16), 4 negatives, batch 256, lr 1e-3, 5 epochs),
optimizer "adam" vs "lazy_adam", cold start vs GMF warm-started from ALS (factors 32, 15
iterations), mean over seeds 42-46 (spread: their standard deviation). recforge only: the recipes,
not the implementations, are compared (bench_mlp.py compares against PyTorch). Rows: library
"recforge" is the default optimizer (adam), so the ratio column reads adam / lazy_adam (> 1: the
default is better). ``--quick``: the first set found, 1 seed, 1 epoch. About 5 minutes on 2 cores.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import scipy.sparse as sp
from bench_mlp import DEEPCF_SETS, DIM, LAYERS, SEEDS

EPOCHS = 5
OPTIMIZERS = {"adam": "recforge", "lazy_adam": "recforge:lazy_adam"}  # optimizer -> library column


def hold_out_one(train: sp.csr_matrix, seed: int = 0):
    """(train without one random positive per user that has >= 2, those positives)."""
    rng = np.random.default_rng(seed)
    keep = np.ones(train.nnz, bool)
    users, items = [], []
    for u in range(train.shape[0]):
        start, end = train.indptr[u], train.indptr[u + 1]
        if end - start >= 2:
            j = rng.integers(start, end)
            keep[j] = False
            users.append(u)
            items.append(train.indices[j])
    coo = train.tocoo()
    rest = sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=train.shape)
    held = sp.csr_matrix((np.ones(len(users), np.float32), (users, items)), shape=train.shape)
    return rest, held


def validation_sets(ctx, rf):
    """(name, train part, held-out part) of every set found; absent sets are reported as not measured."""
    from _harness import ncf_matrices

    for name in DEEPCF_SETS:
        loaded = ctx.dataset(name, ncf_matrices, f"deepcf/{name}")
        if loaded is not None:
            yield name, *hold_out_one(loaded[0])
    df = ctx.dataset("ml-100k", rf.datasets.load_movielens, "100k", progress=False)
    if df is not None:
        inter = rf.Interactions.from_pandas(df, user_col="user", item_col="item", time_col="timestamp")
        train, _ = rf.split.leave_last_out(inter)  # bench_mlp's train part; its test is not used
        rest, held = rf.split.leave_last_out(train)
        yield "ml-100k", rest.csr, held.csr


def run(ctx):
    import recforge as rf
    from recforge.evaluation import evaluate

    seeds, epochs = (SEEDS[:1], 1) if ctx.quick else (SEEDS, EPOCHS)
    rows = []
    for name, train, held in itertools.islice(validation_sets(ctx, rf), 1 if ctx.quick else None):
        for warm in (False, True):
            case = f"{name} validation 1+99, {'GMF warm-started from ALS' if warm else 'cold start'}"
            for optimizer, library in OPTIMIZERS.items():
                ctx.log(f"{case}: {optimizer}")
                scores = {"hr@10": [], "ndcg@10": []}
                t0 = time.perf_counter()
                for seed in seeds:
                    extra = {}
                    if warm:
                        extra["init_from"] = rf.ALS(factors=DIM, epochs=15, threads=ctx.threads, seed=seed).fit(
                            train, progress=False
                        )
                    model = rf.MLPScorer(
                        factors=DIM, layers=LAYERS, epochs=epochs, optimizer=optimizer, threads=ctx.threads, seed=seed
                    ).fit(train, progress=False, **extra)
                    res = evaluate(model, train, held, k=10, protocol="sampled", n_negatives=99, seed=0, progress=False)
                    scores["hr@10"].append(float(res["hit_rate@10"]))
                    scores["ndcg@10"].append(float(res["ndcg@10"]))
                seconds = time.perf_counter() - t0
                for metric, values in scores.items():
                    rows.append(
                        {
                            "case": case,
                            "library": library,
                            "metric": metric,
                            "value": float(np.mean(values)),
                            "spread": float(np.std(values)) if len(values) > 1 else None,
                            "better": "higher",
                            "runs": values,
                        }
                    )
                rows.append(
                    {
                        "case": case,
                        "library": library,
                        "metric": f"s ({len(seeds)} seeds: fits + evaluation)",
                        "value": seconds,
                        "spread": None,
                        "better": "lower",
                    }
                )
    return rows
