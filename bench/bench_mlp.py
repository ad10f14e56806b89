"""MLP scorer (NCF: GMF / MLP / NeuMF) against a PyTorch NeuMF trained in the same run.

Accuracy (issue 5), mean over SEEDS (the seed sets the initialisation and the sampled negatives):
- NCF protocol on the DeepCF sets (lastfm, AMusic, AToy): their train file, test file and 99 fixed
  negatives per test pair; HR@10 and NDCG@10 (pessimistic ties).
- MovieLens-100K leave-last-out by timestamp: the same with 99 sampled negatives (seed 0), and the
  full-catalogue protocol (every item the user has not trained on is a candidate).
Each protocol is reported three ways:
- cold start (the NCF initialisation): recforge NeuMF (optimizer="adam", the default: Adam over
  every parameter) against the PyTorch NeuMF with torch.optim.Adam over every parameter ("torch",
  the NCF reference code's optimiser); recforge NeuMF with optimizer="lazy_adam" beside the PyTorch
  NeuMF with SparseAdam on the embeddings + Adam on the dense layers ("torch:sparse-adam", the same
  update rule); and recforge GMF, MLP, ALS, BPR and MostPopular;
- GMF warm-started from ALS (``MLPScorer.fit(init_from=als)``, the ALS of the same seed): recforge
  against the PyTorch NeuMF given the same warm start, and against the cold-start PyTorch NeuMF;
- the paired per-seed differences recforge - torch of the cold-start NeuMFs with their 95%
  t-intervals, for each optimiser (the two compute the same function with the same update rule
  from different random initial draws, so this measures whether our arithmetic loses anything).
- Re-ranking ALS's top-200 with NeuMF on MovieLens-100K: full-catalogue NDCG@10 before and after
  (the cold-start NeuMF, and the one warm-started from that ALS).
Speed:
- Training throughput (samples/s) of NeuMF, recforge vs PyTorch, same samples, batch size and
  threads (1 and ctx.threads), for each optimiser against PyTorch's with the same update rule
  (adam vs torch.optim.Adam; lazy_adam vs SparseAdam + Adam).
- Scoring throughput (pairs/s): random (user, item) pairs, and every user against the catalogue.

Settings (equal for every NeuMF; modest so the run takes minutes on 2 cores): factors 32 per branch,
layers (64, 32, 16), 4 negatives per positive, batch 256, Adam lr 1e-3, no L2, EPOCHS epochs
(1 with --quick), the same initialisation scheme (N(0, 0.01) embeddings, Xavier-uniform hidden
layers, LeCun-uniform output layer, zero biases; warm start: ALS factors in the GMF half and unit
GMF output weights), and the *same training samples*: every library draws each epoch's negatives
with ``recforge.models.mlp.sample_epoch`` (same seed). ALS: factors 32, 15 iterations, defaults
otherwise; BPR: factors 32, defaults. PyTorch is a benchmark-only dependency; it is never imported
by recforge.
"""

from __future__ import annotations

import os

import numpy as np
from _harness import ncf_matrices, switch  # bench/ is on sys.path (run.py, load_benchmark)

EPOCHS = int(os.environ.get("RECFORGE_BENCH_MLP_EPOCHS", 5))
DIM, LAYERS, NEGATIVES, BATCH, LR, SEED = 32, (64, 32, 16), 4, 256, 1e-3, 42
SEEDS = (42, 43, 44, 45, 46)  # accuracy: mean over seeds (initialisation and sampled negatives), 1 with --quick
K = 10
DEEPCF_SETS = ("lastfm", "AMusic", "AToy")
# RECFORGE_BENCH_MLP_SETS (comma-separated, default all) picks the data sets: DeepCF names, "ml-100k"
# (which carries the re-ranking and throughput sections) and "ml-1m"; RECFORGE_BENCH_MLP_EPOCHS
# overrides EPOCHS, e.g. RECFORGE_BENCH_MLP_EPOCHS=20 RECFORGE_BENCH_MLP_SETS=AMusic for the API's
# default training length on one set. RECFORGE_BENCH_MLP_PARTS (default "accuracy,throughput")
# picks the sections: "accuracy" (with the re-ranking) and "throughput" (ml-100k's training and
# scoring speed), e.g. RECFORGE_BENCH_MLP_SETS=ml-100k RECFORGE_BENCH_MLP_PARTS=throughput.
MOVIELENS_SETS = ("ml-100k", "ml-1m")  # ml-1m runs only when ml-1m/ratings.dat is found
THROUGHPUT_SAMPLES = 50_000  # samples per timed training run (about 200 mini-batches)
SCORE_PAIRS = 1_000_000
# PyTorch fits for the accuracy tables run on one intra-op thread: the thread count does not change
# what is computed, and on the shared 2-core machine 2 torch threads ran 20x slower (spinning OpenMP
# workers); the throughput section compares equal thread counts.
ACCURACY_TORCH_THREADS = 1


# ---- PyTorch reference ------------------------------------------------------------------------
def _torch_model(torch, n_users, n_items, mode, sparse, seed=SEED):
    """NeuMF in PyTorch with recforge's architecture, loss and initialisation scheme."""
    nn = torch.nn
    torch.manual_seed(seed)
    dg = DIM if mode != "mlp" else 0
    dm = DIM if mode != "gmf" else 0

    class NCF(nn.Module):
        def __init__(self):
            super().__init__()
            self.user = nn.Embedding(n_users, dg + dm, sparse=sparse)  # [GMF | MLP] like recforge
            self.item = nn.Embedding(n_items, dg + dm, sparse=sparse)
            mods, width = [], 2 * dm
            for w in LAYERS if dm else ():
                mods += [nn.Linear(width, w), nn.ReLU()]
                width = w
            self.mlp = nn.Sequential(*mods)
            self.out = nn.Linear(dg + (width if dm else 0), 1)
            nn.init.normal_(self.user.weight, std=0.01)
            nn.init.normal_(self.item.weight, std=0.01)
            for m in self.mlp:
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
                    nn.init.zeros_(m.bias)
            nn.init.kaiming_uniform_(self.out.weight, a=1, nonlinearity="sigmoid")  # LeCun uniform
            nn.init.zeros_(self.out.bias)

        def forward(self, u, i):
            eu, ei = self.user(u), self.item(i)
            parts = []
            if dg:
                parts.append(eu[:, :dg] * ei[:, :dg])
            if dm:
                parts.append(self.mlp(torch.cat([eu[:, dg:], ei[:, dg:]], dim=1)))
            return self.out(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]).squeeze(1)

    model = NCF()
    emb = [model.user.weight, model.item.weight]
    dense = [p for name, p in model.named_parameters() if not name.startswith(("user", "item"))]
    if sparse:  # recforge's lazy_adam: SparseAdam on embedding rows, Adam on dense layers
        opts = [torch.optim.SparseAdam(emb, lr=LR), torch.optim.Adam(dense, lr=LR)]
    else:  # recforge's adam and the NCF reference code: Adam on everything (every row, every step)
        opts = [torch.optim.Adam(model.parameters(), lr=LR)]
    return model, opts


def _torch_epoch(torch, model, opts, users, items, labels):
    u, i, y = torch.from_numpy(users), torch.from_numpy(items), torch.from_numpy(labels)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    for s in range(0, len(u), BATCH):
        for o in opts:
            o.zero_grad()
        loss = loss_fn(model(u[s : s + BATCH], i[s : s + BATCH]), y[s : s + BATCH])
        loss.backward()
        for o in opts:
            o.step()


class _TorchScorer:
    """The duck-typed model interface recforge.evaluation needs (score, recommend)."""

    def __init__(self, torch, model, train):
        self.torch, self.model, self.train = torch, model, train
        self.n_users, self.n_items = train.shape

    def score(self, users, items):
        t = self.torch
        self.model.eval()
        out = np.empty(len(users), np.float32)
        with t.no_grad():
            for s in range(0, len(users), 1 << 18):
                u = t.from_numpy(np.asarray(users[s : s + (1 << 18)], np.int64))
                i = t.from_numpy(np.asarray(items[s : s + (1 << 18)], np.int64))
                out[s : s + len(u)] = self.model(u, i).numpy()
        return out

    def recommend(self, users, k=10, exclude_seen=True):
        users = np.asarray(users, np.int64)
        scores = self.score(np.repeat(users, self.n_items), np.tile(np.arange(self.n_items), len(users)))
        scores = scores.reshape(len(users), self.n_items)
        if exclude_seen:
            seen = self.train[users]
            scores[np.repeat(np.arange(len(users)), np.diff(seen.indptr)), seen.indices] = -np.inf
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
        ids = np.take_along_axis(part, order, axis=1)
        return ids, np.take_along_axis(scores, ids, axis=1)


def _fit_torch(torch, train, mode, epochs, threads, sparse=True, seed=SEED, init_from=None):
    """Train the PyTorch NeuMF; ``init_from`` (a fitted factor model) warm-starts the GMF embeddings
    exactly as ``MLPScorer.fit(init_from=...)`` does: factors copied in, unit GMF output weights."""
    from recforge.models.mlp import sample_epoch

    model, opts = _torch_model(torch, *train.shape, mode, sparse, seed)
    if init_from is not None:
        with torch.no_grad():
            model.user.weight[:, :DIM] = torch.from_numpy(np.asarray(init_from.user_factors))
            model.item.weight[:, :DIM] = torch.from_numpy(np.asarray(init_from.item_factors))
            model.out.weight[0, :DIM] = 1.0
    torch.set_num_threads(threads)
    for epoch in range(epochs):
        _torch_epoch(torch, model, opts, *sample_epoch(train, NEGATIVES, seed, epoch, threads))
    return _TorchScorer(torch, model, train)


# ---- models under test ------------------------------------------------------------------------
def _our_models(rf, ctx, epochs, seed):
    kw = dict(
        factors=DIM,
        layers=LAYERS,
        negatives=NEGATIVES,
        epochs=epochs,
        batch_size=BATCH,
        lr=LR,
        threads=ctx.threads,
        seed=seed,
    )
    models = {f"recforge{'' if m == 'neumf' else ':' + m}": rf.MLPScorer(mode=m, **kw) for m in ("neumf", "gmf", "mlp")}
    models["recforge:lazy-adam"] = rf.MLPScorer(optimizer="lazy_adam", **kw)
    return models


def _fit_all(rf, torch, ctx, train, epochs, seed):
    """Every model of one seed: name -> fitted model.

    Cold start (the NCF initialisation): recforge GMF / MLP / NeuMF (Adam over every parameter, the
    default) and NeuMF with lazy Adam; the PyTorch NeuMF with torch.optim.Adam over every parameter
    ("torch", the NCF reference code) and with SparseAdam on the embeddings ("torch:sparse-adam");
    ALS, BPR. Warm start: recforge NeuMF and PyTorch NeuMF (both Adam) whose GMF embeddings start
    from that ALS's factors (names ending in "+als").
    """
    models = {}
    fits = {
        **_our_models(rf, ctx, epochs, seed),
        "recforge:als": rf.ALS(factors=DIM, epochs=15, threads=ctx.threads, seed=seed),
        "recforge:bpr": rf.BPR(factors=DIM, threads=ctx.threads, seed=seed),
    }
    for name, m in fits.items():
        ctx.log(f"  seed {seed}: fit {name}")
        models[name] = m.fit(train, progress=False)
    als = models["recforge:als"]
    ctx.log(f"  seed {seed}: fit recforge NeuMF warm-started from ALS")
    models["recforge+als"] = _our_models(rf, ctx, epochs, seed)["recforge"].fit(train, progress=False, init_from=als)
    if torch is not None:
        for name, sparse, warm in (
            ("torch", False, None),
            ("torch:sparse-adam", True, None),
            ("torch+als", False, als),
        ):
            ctx.log(f"  seed {seed}: fit {name}")
            models[name] = _fit_torch(torch, train, "neumf", epochs, ACCURACY_TORCH_THREADS, sparse, seed, warm)
    return models


# Accuracy table layout: each protocol gives two cases, so that the ratio column (recforge row vs
# each other row) compares like with like.
#   "<case>, cold start": recforge NeuMF vs the PyTorch NeuMFs and the other recforge models.
#   "<case>, GMF warm-started from ALS": recforge NeuMF + ALS warm start vs PyTorch NeuMF with the
#   same warm start, and vs the cold-start PyTorch NeuMF (the NCF reference recipe).
# A third case holds the paired per-seed differences of the cold-start NeuMFs, recforge - torch for
# each optimiser.
_PAIRS = {
    "recforge - torch (adam)": ("recforge", "torch"),
    "recforge - torch (lazy / sparse adam)": ("recforge:lazy-adam", "torch:sparse-adam"),
}
_COLD = {
    "recforge": "recforge",
    "torch": "torch",
    "recforge:lazy-adam": "recforge:lazy-adam",
    "torch:sparse-adam": "torch:sparse-adam",
    "recforge:gmf": "recforge:gmf",
    "recforge:mlp": "recforge:mlp",
    "recforge:als": "recforge:als",
    "recforge:bpr": "recforge:bpr",
    "recforge:popular": "recforge:popular",
}
_WARM = {"recforge+als": "recforge", "torch+als": "torch (same warm start)", "torch": "torch (cold start)"}


def _paired(diffs):
    """Mean of per-seed differences and the half-width of its 95% t-interval (None for 1 seed)."""
    d = np.asarray(diffs, float)
    if len(d) < 2:
        return float(d.mean()), None
    from scipy import stats

    return float(d.mean()), float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))


def _accuracy(rf, torch, ctx, train, test, epochs, protocols):
    """Fit every model for every seed and evaluate it under each protocol.

    protocols: case -> evaluate() keyword arguments. Returns rows with the mean over seeds (spread:
    half the range over seeds), and the fitted models of every seed.
    """
    from recforge.evaluation import evaluate

    runs: dict = {}
    per_seed = []
    seeds = SEEDS[:1] if ctx.quick else SEEDS
    popular = rf.MostPopular().fit(train)  # deterministic: one fit
    for seed in seeds:
        models = {**_fit_all(rf, torch, ctx, train, epochs, seed), "recforge:popular": popular}
        per_seed.append(models)
        for case, kw in protocols.items():
            for lib, m in models.items():
                if lib == "recforge:popular" and seed != seeds[0]:
                    continue
                res = evaluate(m, train, test, k=K, progress=False, **kw)
                for metric in ("hit_rate", "ndcg"):
                    runs.setdefault((case, lib, metric), []).append(res[f"{metric}@{K}"])
    rows = []
    for case in protocols:
        for suffix, names in ((", cold start", _COLD), (", GMF warm-started from ALS", _WARM)):
            for lib, label in names.items():
                for metric in ("hit_rate", "ndcg"):
                    vals = runs.get((case, lib, metric))
                    if vals is None:
                        continue
                    rows.append(
                        {
                            "case": case + suffix,
                            "library": label,
                            "metric": _METRIC[metric],
                            "value": float(np.mean(vals)),
                            "spread": float(np.ptp(vals) / 2) if len(vals) > 1 else None,
                            "better": "higher",
                            "runs": [float(v) for v in vals],
                        }
                    )
        for label, (ours, peer) in _PAIRS.items():
            for metric in ("hit_rate", "ndcg"):
                if (case, peer, metric) not in runs:
                    continue
                diffs = np.subtract(runs[(case, ours, metric)], runs[(case, peer, metric)])
                mean, ci = _paired(diffs)
                rows.append(
                    {
                        "case": case + ", cold start, paired difference (spread = 95% CI)",
                        "library": label,
                        "metric": _METRIC[metric],
                        "value": mean,
                        "spread": ci,
                        "better": "higher",
                        "runs": [float(v) for v in diffs],
                    }
                )
    return rows, per_seed


_METRIC = {"hit_rate": "hr@10", "ndcg": "ndcg@10"}


def _pooled(rows):
    """One summary row per (optimiser pair, metric): the mean over every (protocol, seed) of the
    ratio recforge / torch of the cold-start NeuMFs, with the 95% t-interval over those ratios.
    Ratios put the sets on one scale (full-catalogue HR@10 is ~0.09, NCF-protocol HR@10 ~0.9)."""
    cold = {
        (r["case"], r["library"], r["metric"]): r["runs"]
        for r in rows
        if r["case"].endswith(", cold start") and "runs" in r
    }
    out = []
    for label, (ours, peer) in _PAIRS.items():
        for metric in _METRIC.values():
            ratios = [
                o / p
                for (case, lib, m), runs in cold.items()
                if lib == ours and m == metric and (case, peer, m) in cold
                for o, p in zip(runs, cold[(case, peer, m)])
                if p > 0
            ]
            if len(ratios) < 2:
                continue
            mean, ci = _paired(ratios)
            out.append(
                {
                    "case": "all protocols, cold start, recforge / torch per (protocol, seed) (spread = 95% CI)",
                    "library": label.replace(" - ", " / "),
                    "metric": metric,
                    "value": mean,
                    "spread": ci,
                    "better": "higher",
                    "runs": ratios,
                }
            )
    return out


# ---- the benchmark ----------------------------------------------------------------------------
def run(ctx):
    import recforge as rf

    torch = ctx.peer("torch")
    epochs = 1 if ctx.quick else EPOCHS
    rows = []

    # NCF protocol on the DeepCF sets: fixed 99 negatives per test pair.
    sets = switch("RECFORGE_BENCH_MLP_SETS", ",".join(DEEPCF_SETS + MOVIELENS_SETS))
    parts = switch("RECFORGE_BENCH_MLP_PARTS", "accuracy,throughput")
    deepcf = [name for name in DEEPCF_SETS if name in sets and "accuracy" in parts]
    for name in deepcf[:1] if ctx.quick else deepcf:
        loaded = ctx.dataset(name, ncf_matrices, f"deepcf/{name}")
        if loaded is None:
            continue
        train, test, negatives = loaded
        ctx.log(f"{name}: {train.shape[0]} users, {train.shape[1]} items, {train.nnz} train, {test.nnz} test")
        protocols = {f"{name} NCF 1+99 fixed": dict(protocol="sampled", negatives=negatives)}
        new, _ = _accuracy(rf, torch, ctx, train, test, epochs, protocols)
        rows += new

    # MovieLens leave-last-out by timestamp: sampled (1 + 99) and full-catalogue protocols. ML-1M
    # (the NCF paper's set) runs whenever its ratings file is where the loader looks.
    for variant in ("100k", "1m"):
        key = f"ml-{variant}"
        if key not in sets or (variant != "100k" and "accuracy" not in parts):
            continue
        df = ctx.dataset(key, rf.datasets.load_movielens, variant, progress=False)
        if df is None:
            continue
        inter = rf.Interactions.from_pandas(df, user_col="user", item_col="item", time_col="timestamp")
        train_i, test_i = rf.split.leave_last_out(inter)
        train, test = train_i.csr, test_i.csr
        ctx.log(f"{key} leave-last-out: {train.nnz} train, {test.nnz} test")
        if "accuracy" in parts:
            protocols = {
                f"{key} LOO 1+99 sampled": dict(protocol="sampled", n_negatives=99, seed=0),
                f"{key} LOO full catalogue": dict(protocol="full", metrics=("hit_rate", "ndcg")),
            }
            new, per_seed = _accuracy(rf, torch, ctx, train, test, epochs, protocols)
            rows += new
            if variant == "100k":
                rows += _rerank(test, per_seed)
        if variant == "100k" and "throughput" in parts:
            rows += _throughput(rf, torch, ctx, train)
    return rows + _pooled(rows)


def _rerank(test, per_seed):
    """Retrieve (ALS top-200) then rank (NeuMF): full-catalogue NDCG@10 before and after, mean over
    seeds. Second stages: the cold-start NeuMF, and the NeuMF warm-started from that ALS."""
    from recforge.evaluation import ndcg_at_k

    users = np.unique(test.nonzero()[0])
    truth = test[users]
    runs: dict = {}
    for models in per_seed:
        cand, _ = models["recforge:als"].recommend(users, k=200)
        lists = {
            "ALS top-10 (no second stage)": cand[:, :K],
            "ALS top-200 -> NeuMF (cold start) top-10": models["recforge"].rerank(users, cand, k=K)[0],
            "ALS top-200 -> NeuMF (warm-started from ALS) top-10": models["recforge+als"].rerank(users, cand, k=K)[0],
            "NeuMF (warm-started from ALS) alone, top-10": models["recforge+als"].recommend(users, k=K)[0],
        }
        for lib, ids in lists.items():
            runs.setdefault(lib, []).append(float(ndcg_at_k(ids, truth, K)))
    return [
        {
            "case": "ml-100k LOO rerank ALS top-200 (full catalogue)",
            "library": lib,
            "metric": "ndcg@10",
            "value": float(np.mean(v)),
            "spread": float(np.ptp(v) / 2) if len(v) > 1 else None,
            "better": "higher",
            "runs": v,
        }
        for lib, v in runs.items()
    ]


def _rate_row(case, library, metric, count, timing):
    """A throughput row: `count` units per second of the median time in `timing` (Context.timeit), its
    spread scaled alike."""
    rate = count / timing["median"]
    return {
        "case": case,
        "library": library,
        "metric": metric,
        "value": rate,
        "spread": rate * timing["spread"] / timing["median"],
        "better": "higher",
    }


def _throughput(rf, torch, ctx, train):
    from recforge._ops import get_ops
    from recforge.models.mlp import sample_epoch

    rows = []
    users, items, labels = sample_epoch(train, NEGATIVES, SEED, 0, ctx.threads)
    n = min(len(users), 20_000 if ctx.quick else THROUGHPUT_SAMPLES)
    users, items, labels = users[:n], items[:n], labels[:n]
    ours = rf.MLPScorer(factors=DIM, layers=LAYERS, epochs=1, threads=ctx.threads).fit(train, progress=False)
    moments = ours._adam_moments()
    # Each recforge optimiser against the PyTorch optimiser with the same update rule.
    twins = (("adam", "adam", False), ("lazy adam", "lazy_adam", True))
    for threads in sorted({1, ctx.threads}):
        for label, optimizer, sparse in twins:

            def train_ours(threads=threads, optimizer=optimizer):
                # One epoch of the training kernel over the same samples the peer gets.
                get_ops("cpu").mlp_train_epoch(
                    ours.arch,
                    ours.user_embedding,
                    ours.item_embedding,
                    ours.dense,
                    moments,
                    0,
                    users,
                    items,
                    labels,
                    optimizer=optimizer,
                    lr=LR,
                    beta1=0.9,
                    beta2=0.999,
                    eps=1e-8,
                    l2=0.0,
                    batch_size=BATCH,
                    threads=threads,
                )

            fns = {"recforge": train_ours}
            if torch is not None:
                model, opts = _torch_model(torch, *train.shape, "neumf", sparse)

                def train_torch(model=model, opts=opts, threads=threads):
                    torch.set_num_threads(threads)
                    _torch_epoch(torch, model, opts, users, items, labels)

                fns["torch"] = train_torch
            ctx.log(f"training throughput, {label}, {threads} thread(s)")
            case = f"ml-100k NeuMF train b={BATCH} threads={threads}, {label}"
            rows += [_rate_row(case, lib, "samples/s", n, t) for lib, t in ctx.timeit_many(fns).items()]

    rng = np.random.default_rng(0)
    m_pairs = 100_000 if ctx.quick else SCORE_PAIRS
    pu = rng.integers(0, train.shape[0], m_pairs)
    pi = rng.integers(0, train.shape[1], m_pairs)
    all_users = np.arange(train.shape[0])
    fns = {"recforge": lambda: ours.score(pu, pi)}
    fns_all = {"recforge": lambda: ours.recommend(all_users, k=K)}
    if torch is not None:
        ref = _fit_torch(torch, train, "neumf", 0, ctx.threads)  # untrained: speed only
        fns["torch"] = lambda: ref.score(pu, pi)
        fns_all["torch"] = lambda: ref.recommend(all_users, k=K)
    if torch is not None:
        torch.set_num_threads(ctx.threads)
    for case, fn_set, count in (
        ("ml-100k NeuMF score random pairs", fns, m_pairs),
        ("ml-100k NeuMF recommend all users (full catalogue, top-10)", fns_all, train.shape[0] * train.shape[1]),
    ):
        ctx.log(case)
        timings = ctx.timeit_many(fn_set)
        rows += [_rate_row(f"{case} threads={ctx.threads}", lib, "pairs/s", count, t) for lib, t in timings.items()]
    return rows
