"""Diversity and calibration re-ranking on MovieLens-100K: the accuracy / diversity trade-off, and speed.

Data: MovieLens-100K ratings >= 4 as positives, ``rf.split.random_holdout(test_fraction=0.2, seed=42)``,
the 19 genre flags of ``u.item`` (``rf.datasets.movielens_genres``) and the users' gender and age
(``rf.datasets.movielens_users``). Model: ALS (64 factors, regularization 0.05, 15 epochs, seed 0).
Each re-ranker takes the model's top 100 candidates per user (training items excluded) and returns 10:

* ``mmr-genres``: MMR over the genres' cosine similarity; ``mmr-factors``: MMR over the ALS item
  factors; ``calibration``: Steck's calibrated re-ranking to the genres of the user's history.
* for tradeoff 0, 0.1, ..., 1 (``--quick``: 0, 0.5, 1): ``rf.evaluation.evaluate`` on every test user
  (full catalogue): ndcg@10, diversity@10 (intra-list cosine distance of the genres), coverage@10,
  miscalibration@10 (Steck's C_KL, alpha 0.01), gini@10 (of exposure), long_tail@10 (share of items
  outside the 20% most popular), popularity@10 (mean users per recommended item).
* per-group accuracy (``rf.evaluation.evaluate_groups``): ndcg@10 by gender and by age band, for ALS
  and for ALS + calibration (tradeoff 0.5).
* speed: re-ranking every test user's 100 candidates to 10 (tradeoff 0.5), ``rf.rerank.mmr`` /
  ``calibrate`` (vectorised over users) against a plain NumPy implementation that loops over users
  (per user: its candidates' similarities, then the k greedy steps, as textbook MMR / calibration
  code does, e.g. LangChain's ``maximal_marginal_relevance``); both give the same lists (checked).
  BLAS runs on one thread for both (many small products: threads only synchronise).

The trade-off curves are drawn to ``<out>/diversity-tradeoff.png`` (needs matplotlib).
"""

from __future__ import annotations

import numpy as np

CANDIDATES, K = 100, 10
METHODS = {"mmr-genres": ("mmr", "genres"), "mmr-factors": ("mmr", "factors"), "calibration": ("calibration", "genres")}
QUALITY = (
    ("ndcg@10", "higher"),
    ("diversity@10", "higher"),
    ("coverage@10", "higher"),
    ("miscalibration@10", "lower"),
    ("gini@10", "lower"),
    ("long_tail@10", "higher"),
    ("popularity@10", "lower"),
)
AGE_BANDS = ([0, 25, 35, 50, 100], ["<25", "25-34", "35-49", "50+"])


def _data(ctx):
    import pandas as pd

    import recforge as rf

    df = ctx.dataset("ml-100k", rf.datasets.load_movielens, "100k", progress=False)
    if df is None:
        return None
    inter = rf.Interactions.from_pandas(df[df.rating >= 4], user_col="user", item_col="item")
    train, test = rf.split.random_holdout(inter, test_fraction=0.2, seed=42)
    genres = rf.datasets.movielens_genres("100k", data_home=ctx.data_dir).reindex(inter.item_ids.index).fillna(0)
    users = rf.datasets.movielens_users("100k", data_home=ctx.data_dir)
    users["age band"] = pd.cut(users["age"], AGE_BANDS[0], right=False, labels=AGE_BANDS[1]).astype(str)
    return train, test, genres.to_numpy(), users


def run(ctx):
    import recforge as rf

    data = _data(ctx)
    if data is None:
        return []
    train, test, genres, users = data
    ctx.log("fitting ALS on ML-100K")
    als = rf.ALS(factors=64, regularization=0.05, epochs=15, seed=0, threads=ctx.threads).fit(train, progress=False)
    features = {"genres": genres, "factors": als.item_factors}
    tradeoffs = [0.0, 0.5, 1.0] if ctx.quick else [round(0.1 * i, 1) for i in range(11)]

    rows, curves = [], {}
    for name, (method, feats) in METHODS.items():
        for t in tradeoffs:
            model = rf.rerank.Reranked(als, method, item_features=features[feats], tradeoff=t, candidates=CANDIDATES)
            m = rf.evaluation.evaluate(model, train, test, k=K, item_features=genres, item_genres=genres,
                                       threads=ctx.threads, progress=False)  # fmt: skip
            curves.setdefault(name, []).append((t, m))
            ctx.log(f"{name} tradeoff {t}: " + ", ".join(f"{key} {m[key]:.4f}" for key, _ in QUALITY))
            rows += [{"case": f"{name} tradeoff={t}", "library": "recforge", "metric": key, "value": m[key],
                      "spread": None, "better": better} for key, better in QUALITY]  # fmt: skip

    for label, model in (("ALS", als), ("ALS + calibration 0.5", rf.rerank.Reranked(
            als, "calibration", item_features=genres, tradeoff=0.5, candidates=CANDIDATES))):  # fmt: skip
        for column in ("gender", "age band"):
            groups = users[column]
            table = rf.evaluation.evaluate_groups(model, train, test, groups, k=K, metrics=["ndcg"],
                                                  threads=ctx.threads, progress=False)  # fmt: skip
            ctx.log(f"{label} by {column}:\n{table.to_string()}")
            rows += [{"case": f"{label} by {column}: {g}", "library": "recforge", "metric": "ndcg@10",
                      "value": float(table.loc[g, "ndcg@10"]), "spread": None, "better": "higher",
                      "n_users": int(table.loc[g, "n_users"])} for g in table.index]  # fmt: skip

    rows += _speed(ctx, als, train, test, genres)
    _chart(curves, ctx)
    return rows


# ---- speed: the vectorised re-rankers against a per-user NumPy loop --------------------------------------
def _minmax(s):
    span = s.max() - s.min()
    return (s - s.min()) / span if span > 0 else np.ones_like(s)


def mmr_loop(ids, scores, feats, k, tradeoff):
    """Textbook MMR, one user at a time (cosine of the candidates' features)."""
    norms = np.linalg.norm(feats, axis=1, keepdims=True)
    unit = np.divide(feats, norms, out=np.zeros_like(feats, dtype=np.float64), where=norms > 0)
    out = np.full((len(ids), k), -1, np.int64)
    for r in range(len(ids)):
        cand = ids[r][ids[r] >= 0]
        rel = _minmax(scores[r][: cand.size].astype(np.float64))
        sim = unit[cand] @ unit[cand].T
        max_sim, available = np.zeros(cand.size), np.ones(cand.size, bool)
        for step in range(min(k, cand.size)):
            obj = np.where(available, (1 - tradeoff) * rel - tradeoff * max_sim, -np.inf)
            j = int(np.argmax(obj))
            out[r, step], available[j] = cand[j], False
            max_sim = np.maximum(max_sim, sim[j])
    return out


def calibrate_loop(ids, scores, history, genres, k, tradeoff, alpha=0.01):
    """Steck's calibrated re-ranking, one user at a time."""
    item_p = genres / np.maximum(genres.sum(axis=1, keepdims=True), 1e-300)
    out = np.full((len(ids), k), -1, np.int64)
    for r in range(len(ids)):
        h = history[r]
        p = h.data @ item_p[h.indices]
        p = p / p.sum() if p.sum() > 0 else p
        cand = ids[r][ids[r] >= 0]
        rel = _minmax(scores[r][: cand.size].astype(np.float64))
        cand_p, mass, available = item_p[cand], np.zeros(genres.shape[1]), np.ones(cand.size, bool)
        for step in range(min(k, cand.size)):
            q = mass + cand_p
            q = q / np.maximum(q.sum(axis=1, keepdims=True), 1e-300)
            qs = (1 - alpha) * q + alpha * p
            kl = np.where(p > 0, p * np.log(np.where(p > 0, p, 1) / np.where(p > 0, qs, 1)), 0).sum(axis=1)
            obj = np.where(available, (1 - tradeoff) * rel - tradeoff * kl, -np.inf)
            j = int(np.argmax(obj))
            out[r, step], available[j] = cand[j], False
            mass += cand_p[j]
    return out


def _speed(ctx, als, train, test, genres):
    import recforge as rf
    from recforge._backend import single_threaded_blas

    users = np.flatnonzero(np.diff(test.csr.indptr))
    cand, scores = als.recommend(users, k=CANDIDATES, threads=ctx.threads)
    history = train.csr[users]
    cooc = train.csr.T.tocsr()  # an item is its column of users: cosine = co-occurrence
    cooc_dense = cooc.toarray()  # the loop's input, made once outside the timing
    cases = {
        "mmr, genres (d=19)": (lambda: rf.rerank.mmr(cand, scores, genres, K, 0.5),
                               lambda: mmr_loop(cand, scores, genres, K, 0.5)),
        "mmr, ALS factors (d=64)": (lambda: rf.rerank.mmr(cand, scores, als.item_factors, K, 0.5),
                                    lambda: mmr_loop(cand, scores, als.item_factors, K, 0.5)),
        "mmr, co-occurrence (sparse, d=943)": (lambda: rf.rerank.mmr(cand, scores, cooc, K, 0.5),
                                               lambda: mmr_loop(cand, scores, cooc_dense, K, 0.5)),
        "calibration, genres": (lambda: rf.rerank.calibrate(cand, scores, history, genres, K, 0.5),
                                lambda: calibrate_loop(cand, scores, history, genres, K, 0.5)),
    }  # fmt: skip
    rows = []
    for case, (ours, loop) in cases.items():
        same = np.mean(ours()[0] == loop())
        if same < 0.999:
            raise AssertionError(f"{case}: the vectorised and the loop re-rankers disagree ({same:.4f} equal)")
        with single_threaded_blas():  # the loop's small products too (recforge's are single-threaded itself)
            t = ctx.timeit_many({"recforge": ours, "NumPy per-user loop": loop})
        label = f"re-rank {users.size} users x {CANDIDATES} candidates -> {K}: {case}"
        ctx.log(f"{label}: recforge {t['recforge']['median'] * 1e3:.1f} ms, loop "
                f"{t['NumPy per-user loop']['median'] * 1e3:.1f} ms; lists equal: {same:.4f}")  # fmt: skip
        rows += [{"case": label, "library": lib, "metric": "ms", "value": 1e3 * tt["median"],
                  "spread": 1e3 * tt["spread"], "better": "lower"} for lib, tt in t.items()]  # fmt: skip
    return rows


def _chart(curves, ctx):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        ctx.log("matplotlib missing: no trade-off chart (pip install recforge[plot])")
        return
    panels = (("diversity@10", "intra-list diversity (genres, cosine distance)"), ("coverage@10", "catalogue coverage"),
              ("miscalibration@10", "miscalibration (C_KL, lower is calibrated)"))  # fmt: skip
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    for ax, (key, label) in zip(axes, panels):
        for name, points in curves.items():
            xs, ys = [m[key] for _, m in points], [m["ndcg@10"] for _, m in points]
            ax.plot(xs, ys, marker="o", label=name)
            for (t, _), x, y in zip(points, xs, ys):
                if t in (0.0, 0.5, 1.0):
                    ax.annotate(f"{t:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel(label)
        ax.set_ylabel("NDCG@10")
        ax.grid(alpha=0.3)
    axes[0].legend(title="re-ranker (labels: tradeoff)")
    fig.suptitle(
        f"MovieLens-100K, ALS top-{CANDIDATES} re-ranked to {K}: accuracy against diversity as tradeoff varies"
    )
    fig.tight_layout()
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    path = ctx.out_dir / "diversity-tradeoff.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    ctx.log(f"wrote {path}")
