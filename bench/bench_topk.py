"""Top-K for every user: recforge.topk vs implicit's CPU top-K, FAISS IndexFlatIP and numpy.

Problem (issue 2): 138,000 users x 27,000 items (MovieLens-20M sized), random float32 factors,
f = 64 and 128, k = 10, every library on ``ctx.threads`` threads. ``--quick``: 4,000 x 2,000.
Metric: seconds for all users (lower is better). Index construction (FAISS ``add``) is not timed:
it is a copy of the item matrix. numpy: matmul in row batches + argpartition + sort of the k.
Warm-up: every library first runs on the first 2,048 users (checked against numpy), then the
full-size runs are timed, interleaved; "recforge (blas kernel)" is the portable kernel that CPUs
without AVX-512 get.

Switches: ``RECFORGE_BENCH_TOPK_FACTORS`` (default ``64,128``), ``RECFORGE_BENCH_TOPK_PEERS``
(default ``implicit,faiss,numpy``; the ids are checked against numpy's on the warm-up slice either way).
"""

from __future__ import annotations

import numpy as np
from _harness import switch  # bench/ is on sys.path (run.py, load_benchmark)

K = 10
FULL = (138_000, 27_000)
QUICK = (4_000, 2_000)
NUMPY_BATCH = 2048  # rows per matmul: 2048 x 27,000 float32 = 221 MB of scores at a time
WARMUP_ROWS = 2048


def _numpy_topk(q, items, k):
    ids = np.empty((q.shape[0], k), dtype=np.int64)
    for s in range(0, q.shape[0], NUMPY_BATCH):
        scores = q[s : s + NUMPY_BATCH] @ items.T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1)
        ids[s : s + NUMPY_BATCH] = np.take_along_axis(part, order, axis=1)
    return ids


def _blas_kernel(users, items, threads):
    from recforge import _backend, _core

    with _backend.single_threaded_blas():
        return _core.topk_f32(users, items, K, threads=threads, kernel=_core.TopkKernel.blas)


def run(ctx):
    import recforge as rf
    from recforge import _core

    factors = [int(f) for f in switch("RECFORGE_BENCH_TOPK_FACTORS", "64,128")]
    peers = switch("RECFORGE_BENCH_TOPK_PEERS", "implicit,faiss,numpy")
    implicit_topk = ctx.peer("implicit.cpu.topk") if "implicit" in peers else None
    faiss = ctx.peer("faiss") if "faiss" in peers else None
    n, m = QUICK if ctx.quick else FULL
    rows = []
    for f in factors:
        rng = np.random.default_rng(f)
        users = rng.standard_normal((n, f), dtype=np.float32)
        items = rng.standard_normal((m, f), dtype=np.float32)
        case = f"{n:,}x{m:,} f={f} k={K}"
        libs = {"recforge": lambda u: rf.topk(u, items, K, threads=ctx.threads)[0]}
        if _core.topk_has_fused():  # the portable kernel, for the notes: what the fused one adds
            libs["recforge (blas kernel)"] = lambda u: _blas_kernel(u, items, ctx.threads)[0]
        if implicit_topk is not None:
            libs["implicit"] = lambda u: implicit_topk.topk(items, u, K, num_threads=ctx.threads)[0]
        if faiss is not None:
            index = faiss.IndexFlatIP(f)
            index.add(items)
            libs["faiss"] = lambda u, index=index: index.search(u, K)[1]
        if "numpy" in peers:
            libs["numpy"] = lambda u: _numpy_topk(u, items, K)
        ctx.log(f"topk {case}: {', '.join(libs)}")
        # Warm-up on a slice (thread pools, code paths), which also checks that every library returns
        # the same ids: a fast wrong answer must not look good. Float rounding may reorder a near-tie.
        sample = users[:WARMUP_ROWS]
        expected = _numpy_topk(sample, items, K)
        for lib, fn in libs.items():
            agree = float((np.asarray(fn(sample)) == expected).mean())
            if agree < 0.999:
                raise AssertionError(f"{lib} disagrees with numpy on {1 - agree:.2%} of the top-{K} ids")
        # The full-size runs take seconds to minutes each: the slice above is the warm-up.
        timings = ctx.timeit_many({lib: (lambda fn=fn: fn(users)) for lib, fn in libs.items()}, warmup=0)
        for lib, t in timings.items():
            rows.append(
                {
                    "case": case,
                    "library": lib,
                    "metric": "s (all users)",
                    "value": t["median"],
                    "spread": t["spread"],
                    "better": "lower",
                    "runs": t["runs"],
                }
            )
    return rows
