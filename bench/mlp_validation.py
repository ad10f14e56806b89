"""How the MLPScorer defaults were chosen: NeuMF recipes compared on VALIDATION splits carved from
the training data only (the test files are never read), so the choice is not fitted to the test.

For each DeepCF set (lastfm, AMusic, AToy) one random training positive per user with at least two
is held out; for MovieLens-100K the last training interaction per user (after the benchmark's own
leave-last-out). Each holdout is ranked against 99 sampled negatives (seed 0). NeuMF as in
bench_mlp.py (embedding_dim 32, layers (64, 32, 16), 4 negatives, batch 256, lr 1e-3, 5 epochs),
optimizer "adam" vs "lazy_adam", cold start vs GMF warm-started from ALS (factors 32, 15
iterations), mean ± std over seeds 42-46. recforge only (the recipes, not the implementations, are
compared here; bench_mlp.py compares against PyTorch).

Run: python bench/mlp_validation.py   ($RECFORGE_DATA or ../shared/data; about 2 minutes on 2 cores)
"""
import os
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

import recforge as rf
from recforge.evaluation import evaluate

DATA = Path(os.environ.get("RECFORGE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SEEDS = range(42, 47)
DEEPCF_SETS = ("lastfm", "AMusic", "AToy")


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


def validation_sets():
    for name in DEEPCF_SETS:
        tr, te, neg = rf.datasets.load_ncf_format(f"deepcf/{name}", data_home=DATA)
        shape = (int(max(tr.user.max(), te.user.max())) + 1, int(max(tr.item.max(), te.item.max(), neg.max())) + 1)
        train = sp.csr_matrix((np.ones(len(tr), np.float32), (tr.user, tr.item)), shape=shape)
        yield name, *hold_out_one(train)
    df = rf.datasets.load_movielens("100k", data_home=DATA)
    inter = rf.Interactions.from_pandas(df, user_col="user", item_col="item", time_col="timestamp")
    train, _ = rf.split.leave_last_out(inter)  # the benchmark's train part; its test is not used
    rest, held = rf.split.leave_last_out(train)
    yield "ml-100k", rest.csr, held.csr


def main():
    print("| set | optimizer | start | HR@10 | NDCG@10 | seconds |")
    print("|---|---|---|---:|---:|---:|")
    for name, train, held in validation_sets():
        for optimizer in ("lazy_adam", "adam"):
            for warm in (False, True):
                hr, ndcg = [], []
                t0 = time.perf_counter()
                for seed in SEEDS:
                    extra = {}
                    if warm:
                        extra["init_from"] = rf.ALS(factors=32, iterations=15, threads=2, seed=seed).fit(train, progress=False)
                    model = rf.MLPScorer(embedding_dim=32, layers=(64, 32, 16), epochs=5, optimizer=optimizer,
                                         threads=2, seed=seed).fit(train, progress=False, **extra)
                    res = evaluate(model, train, held, k=10, protocol="sampled", n_negatives=99, seed=0, progress=False)
                    hr.append(res["hit_rate@10"])
                    ndcg.append(res["ndcg@10"])
                print(f"| {name} | {optimizer} | {'ALS warm' if warm else 'cold'} | {np.mean(hr):.4f} ± {np.std(hr):.4f} "
                      f"| {np.mean(ndcg):.4f} ± {np.std(ndcg):.4f} | {time.perf_counter() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    main()
