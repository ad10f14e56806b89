"""Cold start with side features: recforge.HybridMF vs LightFM (lightfm-next) on the same features, same run.

Data: MovieLens-100K ratings >= 4 as positives, with ``u.item`` genres (19 flags) and ``u.user``
age (min-max scaled), gender and occupation (one-hot); ml-latest-small ratings >= 4 with
``movies.csv`` genres and ``tags.csv`` tags (lower-cased, joined per movie). Every model gets the same
``rf.Features`` matrices: the side features plus one identity feature per entity, rows normalised
to sum 1 (LightFM's own ``Dataset`` convention).

Protocols (``RECFORGE_BENCH_COLD_PROTOCOLS``, default all):

* ``item-cold``: all interactions of 20% of the items move to test (seeds 0..4, ML-100K and
  ml-latest-small); the catalogue keeps every item.
* ``user-cold``: all interactions of 20% of the users move to test (seeds 0..4); a held-out user
  is ranked from their features only.
* ``warm``: ``rf.split.random_holdout`` per user 20% (seed 0).

Metrics (means over seeds), each model scored densely for the test users:

* ``auc``: per-user AUC of the test items against every item not in the user's training row
  (``rf.evaluation.auc``); ``recall@20`` / ``ndcg@20``: top 20 of the full catalogue, training
  items excluded;
* on item-cold also ``... cold-only``: the same metrics with the ranking restricted to the cold
  items (which new item will a user like), where popularity and pure CF carry no signal;
* ``... - lightfm``: recforge's metric minus LightFM's on the same split, mean and spread over
  the splits (the split-to-split spread of the metrics themselves cancels in the difference);
* ``fit s`` / ``fit cpu-s``: training wall time and process CPU time (all threads; steadier on a
  shared machine), every library with the same threads and epochs.

Models: HybridMF (WARP, 32 factors, 20 epochs, lr 0.05, its defaults ``negatives="mixed"`` and
``positive_sampling=0.5``; also ``"interacted"`` and ``"all"``, LightFM's negative pool) vs
LightFM (WARP, 32 components, 20 epochs, lr 0.05, Adagrad: its defaults otherwise); MLPScorer with
the same features (NeuMF, 32 factors, layers 64-32-16, 10 epochs of 4 negatives per positive, lazy
Adam lr 0.005: chosen on validation splits of the training part, bench/mlp_features_validation.py);
ALS with side information (``ALS side-info``: 32 factors, 15 epochs, alpha 5, regularization 1,
``feature_weight`` 1, the same features without the identity columns, which ALS's own factors are:
bench/als_side_validation.py); MostPopular; BPR (pure CF, identity only) and ALS without features
(pure CF), which must fail on cold items. The ``warm-baselines`` protocol puts ItemKNN, EASE, ALS
and BPR side by side (NDCG@20, fit s) on warm ML-100K and Last.fm-2K restricted to artists with 5+
listeners (EASE's dense 17.6k-item solve on the whole set takes minutes on two cores); recforge
models only, no peer row.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import scipy.sparse as sp
from _harness import switch  # bench/ is on sys.path (run.py, load_benchmark)

PROTOCOLS = "item-cold,user-cold,warm,ml-latest-item-cold,warm-baselines"
GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
          "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War",
          "Western"]  # fmt: skip
FACTORS, EPOCHS, LR = 32, 20, 0.05
# MLPScorer with features (bench/mlp_features_validation.py chose them on validation splits).
MLP_PARAMS = dict(factors=32, layers=(64, 32, 16), mode="neumf", epochs=10, optimizer="lazy_adam", lr=0.005)
MLP_LIB = "recforge MLPScorer"
# ALS (side-info and plain): chosen on validation splits (bench/als_side_validation.py).
ALS_PARAMS = {"factors": 32, "epochs": 15, "alpha": 5.0, "regularization": 1.0}
ALS_FEATURE_WEIGHT = 1.0


# ---- data ---------------------------------------------------------------------------------------------
def movielens_100k(ctx):
    """(positives Interactions over every user and item, user Features, item Features) or None."""
    import recforge as rf

    df = ctx.dataset("ml-100k", rf.datasets.load_movielens, "100k", progress=False)
    if df is None:
        return None
    home = next(p for p in rf.datasets.data_home_candidates(ctx.data_dir) if (p / "ml-100k" / "u.item").is_file())
    items = pd.read_csv(home / "ml-100k" / "u.item", sep="|", header=None, encoding="latin-1",
                        names=["item", "title", "date", "video", "url", *GENRES])  # fmt: skip
    items["genres"] = items[GENRES].apply(lambda r: "|".join(g for g in GENRES if r[g]), axis=1)
    users = pd.read_csv(home / "ml-100k" / "u.user", sep="|", header=None,
                        names=["user", "age", "gender", "occupation", "zip"])  # fmt: skip
    inter = rf.Interactions.from_pandas(df[df.rating >= 4], user_col="user", item_col="item",
                                        user_ids=rf.IdMap.from_values(users["user"]),
                                        item_ids=rf.IdMap.from_values(items["item"]))  # fmt: skip
    fu = rf.Features.from_pandas(users, "user", ids=inter.user_ids, categorical=["gender", "occupation"],
                                 numeric=["age"], identity=True)  # fmt: skip
    fi = rf.Features.from_pandas(items, "item", ids=inter.item_ids, tags={"genres": "|"}, identity=True)
    return inter, fu, fi


def movielens_latest_small(ctx):
    import recforge as rf

    candidates = rf.datasets.data_home_candidates(ctx.data_dir)
    homes = [p for p in candidates if (p / "ml-latest-small" / "tags.csv").is_file()]
    if not homes:
        ctx.not_measured["ml-latest-small"] = "ml-latest-small/{ratings,movies,tags}.csv not found"
        return None
    root = homes[0] / "ml-latest-small"
    ratings = pd.read_csv(root / "ratings.csv")
    movies = pd.read_csv(root / "movies.csv")
    tags = pd.read_csv(root / "tags.csv")
    tags["tag"] = tags["tag"].astype(str).str.lower().str.strip().str.replace("|", " ", regex=False)
    movies = movies.merge(tags.groupby("movieId")["tag"].agg(lambda t: "|".join(sorted(set(t)))).rename("tags"),
                          on="movieId", how="left")  # fmt: skip
    pos = ratings[ratings.rating >= 4]
    inter = rf.Interactions.from_pandas(pos, user_col="userId", item_col="movieId",
                                        item_ids=rf.IdMap.from_values(movies["movieId"]))  # fmt: skip
    users = pd.DataFrame({"userId": inter.user_ids.values})
    fu = rf.Features.from_pandas(users, "userId", ids=inter.user_ids, identity=True)
    fi = rf.Features.from_pandas(movies, "movieId", ids=inter.item_ids, tags={"genres": "|", "tags": "|"},
                                 identity=True)  # fmt: skip
    return inter, fu, fi


def holdout_entities(m: sp.csr_matrix, axis: int, fraction: float, seed: int):
    """(train, test, held-out ids): every entry of a random ``fraction`` of the rows (axis 0) or columns
    moves to test."""
    n = m.shape[axis]
    held = np.sort(np.random.default_rng(seed).choice(n, size=int(round(fraction * n)), replace=False))
    mask = np.zeros(n, bool)
    mask[held] = True
    coo = m.tocoo()
    out = mask[coo.row if axis == 0 else coo.col]
    part = lambda keep: sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=m.shape, dtype=np.float32)  # noqa: E731
    return part(~out), part(out), held


# ---- metrics ------------------------------------------------------------------------------------------
def ranking_metrics(scores, train, test, users, prefix=""):
    """auc, recall@20, ndcg@20 of dense ``scores`` (len(users), n_items); train items never ranked."""
    import recforge as rf

    t, tr = test[users], train[users]
    out = {f"auc{prefix}": rf.evaluation.auc(scores, t, tr)}
    masked = np.array(scores, dtype=np.float64)
    masked[np.repeat(np.arange(len(users)), np.diff(tr.indptr)), tr.indices] = -np.inf
    k = min(20, masked.shape[1])
    top = np.argpartition(-masked, k - 1, axis=1)[:, :k]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(masked, top, 1), axis=1, kind="stable"), 1)
    out[f"recall@20{prefix}"] = rf.evaluation.recall_at_k(top, t, k)
    out[f"ndcg@20{prefix}"] = rf.evaluation.ndcg_at_k(top, t, k)
    return out


def evaluate(scores, train, test, users, cold_items=None):
    out = ranking_metrics(scores, train, test, users)
    if cold_items is not None:
        out.update(ranking_metrics(scores[:, cold_items], train[:, cold_items], test[:, cold_items], users,
                                   " cold-only"))  # fmt: skip
    return out


# ---- models -------------------------------------------------------------------------------------------
def fit_hybrid(ctx, train, fu, fi, seed, negatives="mixed"):
    import recforge as rf

    model = rf.HybridMF(factors=FACTORS, epochs=EPOCHS, lr=LR, loss="warp", negatives=negatives, threads=ctx.threads,
                        seed=seed)  # fmt: skip
    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(train, user_features=fu, item_features=fi, progress=False)
    seconds = (time.perf_counter() - t0, time.process_time() - c0)

    def scores(users, new_users=False):
        q = fu.matrix[users] @ model.user_embeddings if new_users else model.user_factors[users]
        return np.asarray(q) @ model.item_factors.T + model.item_bias[None, :]

    return seconds, scores


def fit_lightfm(ctx, lightfm, train, fu, fi, seed):
    model = lightfm.LightFM(no_components=FACTORS, loss="warp", learning_rate=LR, random_state=seed)
    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(train.tocoo(), user_features=fu.matrix, item_features=fi.matrix, epochs=EPOCHS,
              num_threads=ctx.threads)  # fmt: skip
    seconds = (time.perf_counter() - t0, time.process_time() - c0)
    item_bias, item_emb = model.get_item_representations(fi.matrix)
    user_bias, user_emb = model.get_user_representations(fu.matrix)

    def scores(users, new_users=False):
        return user_emb[users] @ item_emb.T + item_bias[None, :] + user_bias[users, None]

    return seconds, scores


def side_part(features) -> sp.csr_matrix | None:
    """The feature matrix without its identity columns (ALS's own factors are the identity part); None
    when nothing else is left."""
    m = features.matrix
    m = sp.csr_matrix(m[:, : m.shape[1] - (len(features.ids) if features._spec.get("identity") else 0)])
    return m if m.shape[1] else None


def fit_plain(ctx, model, train, **features):
    """Any recforge model scored through ``score``; ``features``: fit's user_features / item_features
    (a held-out user or item is then a catalogue row without history, ranked from its features)."""
    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(train, progress=False, **features)
    seconds = (time.perf_counter() - t0, time.process_time() - c0)

    def scores(users, new_users=False):
        u = np.repeat(users, model.n_items)
        return model.score(u, np.tile(np.arange(model.n_items), len(users))).reshape(len(users), -1)

    return seconds, scores


# ---- protocols ----------------------------------------------------------------------------------------
def run_protocol(ctx, lightfm, name, data, split, seeds):
    """Rows (means over ``seeds``) of every model on one protocol.

    ``split(m, seed)`` returns (train, test, cold item ids or None, whether test users are new)."""
    import recforge as rf

    inter, fu, fi = data
    sums: dict[tuple[str, str], list[float]] = {}
    for seed in seeds:
        train, test, cold_items, new_users = split(inter.csr, seed)
        users = np.flatnonzero(np.diff(test.indptr))
        ctx.log(f"coldstart {name} seed {seed}: {train.nnz} train, {test.nnz} test, {len(users)} test users")
        fits = {"recforge": fit_hybrid(ctx, train, fu, fi, seed),
                "recforge negatives=interacted": fit_hybrid(ctx, train, fu, fi, seed, negatives="interacted"),
                "recforge negatives=all": fit_hybrid(ctx, train, fu, fi, seed, negatives="all")}  # fmt: skip
        if lightfm is not None:
            fits["lightfm"] = fit_lightfm(ctx, lightfm, train, fu, fi, seed)
        fits[MLP_LIB] = fit_plain(ctx, rf.MLPScorer(**MLP_PARAMS, threads=ctx.threads, seed=seed), train,
                                  user_features=fu, item_features=fi)  # fmt: skip
        fits["ALS side-info"] = fit_plain(ctx, rf.ALS(**ALS_PARAMS, feature_weight=ALS_FEATURE_WEIGHT,
                                                      threads=ctx.threads, seed=seed),
                                          train, user_features=side_part(fu), item_features=side_part(fi))  # fmt: skip
        fits["ALS (pure CF)"] = fit_plain(ctx, rf.ALS(**ALS_PARAMS, threads=ctx.threads, seed=seed), train)
        fits["MostPopular"] = fit_plain(ctx, rf.MostPopular(), train)
        fits["BPR (pure CF)"] = fit_plain(ctx, rf.BPR(factors=FACTORS, epochs=EPOCHS, threads=ctx.threads, seed=seed),
                                          train)  # fmt: skip
        for lib, (seconds, scores) in fits.items():
            metrics = evaluate(scores(users, new_users), train, test, users, cold_items)
            metrics["fit s"], metrics["fit cpu-s"] = seconds
            for metric, value in metrics.items():
                sums.setdefault((lib, metric), []).append(value)
    rows = []
    for (lib, metric), values in sums.items():
        if metric.startswith("fit") and lib not in ("recforge", "lightfm", MLP_LIB, "ALS side-info"):
            continue
        rows.append({"case": f"{name} ({len(seeds)} seeds)", "library": lib, "metric": metric,
                     "value": float(np.mean(values)), "spread": float(np.std(values)) if len(values) > 1 else None,
                     "better": "lower" if metric.startswith("fit") else "higher"})  # fmt: skip
    # recforge minus LightFM split by split: the splits' own spread (which split is easy) cancels, so
    # this spread is the one a gain must clear. Logged with the per-split minimum.
    for metric in ("auc", "ndcg@20", "auc cold-only", "ndcg@20 cold-only"):
        if ("lightfm", metric) not in sums or len(seeds) < 2:
            continue
        diff = np.subtract(sums[("recforge", metric)], sums[("lightfm", metric)])
        ctx.log(f"coldstart {name}: recforge - lightfm {metric} per split {np.round(diff, 4).tolist()}")
        rows.append({"case": f"{name} ({len(seeds)} seeds)", "library": "recforge", "metric": f"{metric} - lightfm",
                     "value": float(diff.mean()), "spread": float(diff.std()), "better": "higher"})  # fmt: skip
    return rows


def item_cold(m, seed):
    train, test, cold = holdout_entities(m, 1, 0.2, seed)
    return train, test, cold, False


def user_cold(m, seed):
    train, test, _ = holdout_entities(m, 0, 0.2, seed)
    return train, test, None, True


def warm(m, seed):
    import recforge as rf

    train, test = rf.split.random_holdout(rf.Interactions.from_scipy(m), test_fraction=0.2, seed=seed)
    return train.csr, test.csr, None, False


def warm_baselines(ctx):
    """NDCG@20 and fit seconds of ItemKNN, EASE, ALS, BPR on warm ML-100K and Last.fm-2K (one split each)."""
    import recforge as rf

    sets = {}
    ml = ctx.dataset("ml-100k", rf.datasets.load_movielens, "100k", progress=False)
    if ml is not None:
        sets["ml-100k"] = rf.Interactions.from_pandas(ml[ml.rating >= 4], user_col="user", item_col="item").csr
    fm = ctx.dataset("lastfm-2k", rf.datasets.load_lastfm, "2k", progress=False)
    if fm is not None:
        counts = rf.Interactions.from_pandas(fm, user_col="user", item_col="item", weight_col="weight")
        # Artists with 5+ listeners (2.8k of 17.6k): EASE's dense solve on all 17.6k takes minutes here.
        sets["lastfm-2k (artists with 5+ listeners)"] = counts.filter(min_item_interactions=5).csr
    rows = []
    for name, m in sets.items():
        train, test = (part.csr for part in rf.split.random_holdout(rf.Interactions.from_scipy(m), 0.2, seed=0))
        binary = sp.csr_matrix((np.ones(train.nnz, np.float32), train.indices, train.indptr), shape=train.shape)
        models = {
            "ItemKNN bm25 K=100": (rf.ItemKNN(neighbors=100, similarity="bm25", threads=ctx.threads), train),
            "EASE l=500": (rf.EASE(regularization=500.0, threads=ctx.threads), binary),
            "ALS f=64": (rf.ALS(factors=64, epochs=15, threads=ctx.threads), rf.transforms.bm25_weight(train)),
            "BPR f=64": (rf.BPR(factors=64, epochs=50, threads=ctx.threads), binary),
        }
        for model_name, (model, data) in models.items():
            ctx.log(f"coldstart warm-baselines {name}: {model_name}")
            t0 = time.perf_counter()
            model.fit(data, progress=False)
            seconds = time.perf_counter() - t0
            ids, _ = model.recommend(np.arange(train.shape[0]), k=20)
            case = f"warm {name} {model_name}"
            rows.append({"case": case, "library": "recforge", "metric": "ndcg@20", "better": "higher", "spread": None,
                         "value": rf.evaluation.ndcg_at_k(ids, test, 20)})  # fmt: skip
            rows.append({"case": case, "library": "recforge", "metric": "fit s", "better": "lower", "spread": None,
                         "value": seconds})  # fmt: skip
    return rows


def run(ctx) -> list[dict]:
    lightfm = ctx.peer("lightfm")
    protocols = switch("RECFORGE_BENCH_COLD_PROTOCOLS", PROTOCOLS)
    rows = []
    ml = movielens_100k(ctx) if {"item-cold", "user-cold", "warm"} & set(protocols) else None
    seeds = [0] if ctx.quick else range(5)
    if ml is not None:
        if "item-cold" in protocols:
            rows += run_protocol(ctx, lightfm, "ml-100k item-cold", ml, item_cold, seeds)
        if "user-cold" in protocols:
            rows += run_protocol(ctx, lightfm, "ml-100k user-cold", ml, user_cold, seeds)
        if "warm" in protocols:
            rows += run_protocol(ctx, lightfm, "ml-100k warm", ml, warm, [0])
    if "ml-latest-item-cold" in protocols:
        latest = movielens_latest_small(ctx)
        if latest is not None:
            rows += run_protocol(ctx, lightfm, "ml-latest-small item-cold", latest, item_cold, seeds)
    if "warm-baselines" in protocols:
        rows += warm_baselines(ctx)
    return rows
