"""What ``model.recommend`` costs on top of its own top-K kernel, for a small batch of users.

An ALS model from ``ALS.from_factors``: 1,000 users, 200,000 items (``--quick``: 20,000), 64
factors (random float32, seeded), 100 random seen items per user. ``recommend`` of 16 users, k = 10,
seen items excluded, against the bare kernel ``recforge._core.topk_f32`` on the same inputs, prepared
once outside the timing: the 16 users' factor rows (contiguous float32), the item factors, and the
16 seen rows as int64 CSR arrays. BLAS is limited to one thread around the whole timed loop (the
library does so in each call). Each timed run makes CALLS calls, libraries interleaved.

Rows: ms per call for both, and "recommend / kernel", the overhead (issue 9 acceptance: <= 1.3;
it was about 3.5 before the ops layer).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

N_USERS, N_ITEMS, QUICK_ITEMS, FACTORS, K, SEEN_PER_USER, BATCH = 1_000, 200_000, 20_000, 64, 10, 100, 16
CALLS = 50  # per timed run: one call takes milliseconds
ACCEPTANCE = 1.3


def run(ctx):
    import recforge as rf
    from recforge import _backend, _core

    n_items = QUICK_ITEMS if ctx.quick else N_ITEMS
    rng = np.random.default_rng(0)
    user_f = rng.standard_normal((N_USERS, FACTORS), dtype=np.float32)
    item_f = rng.standard_normal((n_items, FACTORS), dtype=np.float32)
    rows = np.repeat(np.arange(N_USERS), SEEN_PER_USER)
    cols = rng.integers(0, n_items, len(rows))
    seen = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(N_USERS, n_items))
    seen.sum_duplicates()
    model = rf.ALS.from_factors(user_f, item_f, seen=seen)
    users = rng.choice(N_USERS, BATCH, replace=False)

    queries = np.ascontiguousarray(user_f[users])
    seen_rows = seen[users]
    exclude = _core.Csr(seen_rows.indptr, seen_rows.indices, None, seen_rows.shape, "exclude")  # built once

    def recommend():
        return model.recommend(users, k=K, threads=ctx.threads)

    def kernel():
        return _core.topk_f32(queries, item_f, K, exclude=exclude, threads=ctx.threads)

    if not np.array_equal(recommend()[0], kernel()[0]):
        raise AssertionError("recommend and the bare kernel disagree on the same inputs")
    case = f"{BATCH} users x {n_items:,} items f={FACTORS} k={K}, seen excluded"
    ctx.log(f"recommend: {case}")
    with _backend.single_threaded_blas():
        t = ctx.timeit_many(
            {
                "recforge": lambda: [recommend() for _ in range(CALLS)],
                "_core.topk_f32 (bare kernel)": lambda: [kernel() for _ in range(CALLS)],
            }
        )
    out = [
        {
            "case": case,
            "library": lib,
            "metric": "ms per call",
            "value": 1e3 * tt["median"] / CALLS,
            "spread": 1e3 * tt["spread"] / CALLS,
            "better": "lower",
        }
        for lib, tt in t.items()
    ]
    overhead = t["recforge"]["median"] / t["_core.topk_f32 (bare kernel)"]["median"]
    ctx.log(f"recommend / bare kernel = {overhead:.2f}x (acceptance <= {ACCEPTANCE}x)")
    out.append(
        {
            "case": case,
            "library": "recforge",
            "metric": f"recommend / bare kernel (acceptance <= {ACCEPTANCE})",
            "value": overhead,
            "spread": None,
            "better": "lower",
        }
    )
    return out
