"""Top-K for every user: recforge.topk vs implicit's CPU top-K, FAISS IndexFlatIP and numpy.

Problem (issue 2): 138,000 users x 27,000 items (MovieLens-20M sized), random float32 factors,
f = 64 and 128, k = 10, every library on ``ctx.threads`` threads. ``--quick``: 4,000 x 2,000.
Metric: seconds for all users (lower is better). Index construction (FAISS ``add``) is not timed:
it is a copy of the item matrix. numpy: matmul in row batches + argpartition + sort of the k.
"""

from __future__ import annotations

import numpy as np

K = 10
FULL = (138_000, 27_000)
QUICK = (4_000, 2_000)
NUMPY_BATCH = 2048  # rows per matmul: 2048 x 27,000 float32 = 221 MB of scores at a time


def _numpy_topk(q, items, k):
    ids = np.empty((q.shape[0], k), dtype=np.int64)
    for s in range(0, q.shape[0], NUMPY_BATCH):
        scores = q[s:s + NUMPY_BATCH] @ items.T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1)
        ids[s:s + NUMPY_BATCH] = np.take_along_axis(part, order, axis=1)
    return ids


def run(ctx):
    import recforge as rf

    implicit_topk = ctx.peer("implicit.cpu.topk")
    faiss = ctx.peer("faiss")
    n, m = QUICK if ctx.quick else FULL
    rows = []
    for f in (64, 128):
        rng = np.random.default_rng(f)
        users = rng.standard_normal((n, f), dtype=np.float32)
        items = rng.standard_normal((m, f), dtype=np.float32)
        case = f"{n:,}x{m:,} f={f} k={K}"
        fns = {"recforge": lambda: rf.topk(users, items, K, threads=ctx.threads)}
        if implicit_topk is not None:
            fns["implicit"] = lambda: implicit_topk.topk(items, users, K, num_threads=ctx.threads)
        if faiss is not None:
            index = faiss.IndexFlatIP(f)
            index.add(items)
            fns["faiss"] = lambda index=index: index.search(users, K)
        fns["numpy"] = lambda: _numpy_topk(users, items, K)
        ctx.log(f"topk {case}: {', '.join(fns)}")
        # Same answers before timing anything: a fast wrong kernel must not look good.
        ref_ids, _ = rf.topk(users[:256], items, K, threads=ctx.threads)
        np.testing.assert_array_equal(_numpy_topk(users[:256], items, K), ref_ids)
        timings = ctx.timeit_many(fns)
        for lib, t in timings.items():
            rows.append({"case": case, "library": lib, "metric": "s (all users)", "value": t["median"],
                         "spread": t["spread"], "better": "lower"})
    return rows
