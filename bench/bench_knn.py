"""ItemKNN: recforge.ItemKNN vs implicit 0.7's CosineRecommender / BM25Recommender / TFIDFRecommender.

Data (every library on the same matrices, ``ctx.threads`` threads):

* MovieLens-100K: ratings >= 4 as positives (the rating kept as the value), ``rf.split.random_holdout``
  (per user 20%, seed 42);
* Last.fm-2K (HetRec 2011 ``user_artists.dat``): play counts as values, the same split.

For each similarity and each neighbour count K (``RECFORGE_BENCH_KNN_K``, default ``20,100``):

* ``fit s`` / ``fit cpu-s``: the whole ``fit`` (weighting, transpose, top-K search), wall time and
  process CPU time (all threads; steadier on a shared machine), runs interleaved;
* ``ndcg@10``: full catalogue, training items excluded, ``rf.evaluation.ndcg_at_k`` on both
  libraries' top 10. implicit returns only items with a nonzero score; recforge ranks every item
  (an item no history points at scores 0), so its zero-score entries are treated as padding here,
  leaving both lists the same candidates.

The weightings match in form but not in every constant: implicit's BM25/TF-IDF idf is
``log(N) - log1p(df)``, recforge's BM25 idf that of ``rf.transforms`` (``log1p((N - df + 0.5) /
(df + 0.5))``) and its TF-IDF idf the textbook ``log(N / df)`` (``ItemKNN(idf="plain")``, the default;
both weigh TF-IDF's ``sqrt(r)``); BM25 uses K1 = 1.2, B = 0.75 in both.

The neighbour count differs by one: implicit keeps each item itself among its K (its self-similarity
is the largest), so it scores with K - 1 other items; recforge keeps K other items. The row
``implicit K+1`` (NDCG only, not timed) is implicit with K + 1, i.e. the same K other items as
recforge: the comparison at equal neighbourhoods.
"""

from __future__ import annotations

import time

import numpy as np
from _harness import switch  # bench/ is on sys.path (run.py, load_benchmark)

PEER_CLASSES = {"cosine": "CosineRecommender", "bm25": "BM25Recommender", "tfidf": "TFIDFRecommender"}


def splits(ctx):
    """name -> (train, test) float32 CSR, for each data set present."""
    import recforge as rf

    out = {}
    ml = ctx.dataset("ml-100k", rf.datasets.load_movielens, "100k", progress=False)
    if ml is not None:
        ml = ml[ml["rating"] >= 4]
        out["ml-100k"] = rf.Interactions.from_pandas(ml, user_col="user", item_col="item", weight_col="rating")
    fm = ctx.dataset("lastfm-2k", rf.datasets.load_lastfm, "2k", progress=False)
    if fm is not None:
        out["lastfm-2k"] = rf.Interactions.from_pandas(fm, user_col="user", item_col="item", weight_col="weight")
    result = {}
    for name, inter in out.items():
        train, test = rf.split.random_holdout(inter, test_fraction=0.2, seed=42)
        result[name] = (train.csr, test.csr)
    return result


def _ndcg(ids, scores, test) -> float:
    import recforge as rf

    ids = np.where(np.isfinite(scores) & (scores > 0), ids, -1)  # only items some history points at
    return rf.evaluation.ndcg_at_k(ids, test, 10)


def _timed(ctx, fits) -> dict[str, dict[str, dict]]:
    """lib -> {"fit s": wall, "fit cpu-s": process CPU time (all threads)} summaries, runs interleaved
    after one warm-up (the harness's timeit_many with a second clock)."""
    from _harness import summarise

    for fit in fits.values():
        fit()
    runs = {lib: ([], []) for lib in fits}
    for _ in range(ctx.repeat):
        for lib, fit in fits.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fit()
            runs[lib][0].append(time.perf_counter() - t0)
            runs[lib][1].append(time.process_time() - c0)
    return {lib: {"fit s": summarise(wall), "fit cpu-s": summarise(cpu)} for lib, (wall, cpu) in runs.items()}


def run(ctx) -> list[dict]:
    import recforge as rf

    implicit_nn = ctx.peer("implicit.nearest_neighbours")
    rows = []
    ks = [int(k) for k in switch("RECFORGE_BENCH_KNN_K", "20,100", "5,10,20,50,100,200")]
    for data_name, (train, test) in splits(ctx).items():
        users = np.arange(train.shape[0])
        for similarity in ("cosine", "bm25", "tfidf"):
            for k in ks:
                case = f"{data_name} {similarity} K={k}"
                ctx.log(f"knn: {case}")
                ours = rf.ItemKNN(neighbors=k, similarity=similarity, threads=ctx.threads)
                fits = {"recforge": lambda ours=ours: ours.fit(train)}
                peer = None
                if implicit_nn is not None:
                    cls = getattr(implicit_nn, PEER_CLASSES[similarity])
                    extra = {"K1": 1.2, "B": 0.75} if similarity == "bm25" else {}
                    peer = cls(K=k, num_threads=ctx.threads, **extra)
                    fits["implicit"] = lambda peer=peer: peer.fit(train, show_progress=False)
                times = _timed(ctx, fits)
                quality = {"recforge": _ndcg(*ours.recommend(users, k=10, threads=ctx.threads), test)}
                if peer is not None:
                    ids, scores = peer.recommend(users, train, N=10, filter_already_liked_items=True)
                    quality["implicit"] = _ndcg(ids.astype(np.int64), scores, test)
                    wider = cls(K=k + 1, num_threads=ctx.threads, **extra)  # K others besides the item itself
                    wider.fit(train, show_progress=False)
                    ids, scores = wider.recommend(users, train, N=10, filter_already_liked_items=True)
                    rows.append({"case": case, "library": "implicit K+1", "metric": "ndcg@10",
                                 "value": _ndcg(ids.astype(np.int64), scores, test), "spread": None,
                                 "better": "higher"})  # fmt: skip
                for lib, per_clock in times.items():
                    for metric, t in per_clock.items():
                        rows.append({"case": case, "library": lib, "metric": metric, "value": t["median"],
                                     "spread": t["spread"], "better": "lower"})  # fmt: skip
                    rows.append({"case": case, "library": lib, "metric": "ndcg@10", "value": quality[lib],
                                 "spread": None, "better": "higher"})  # fmt: skip
    return rows
