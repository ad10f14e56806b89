"""Top-K for every user on the GPU: recforge.topk (fp32, tf32, bf16) vs torch.matmul + torch.topk,
CuPy matmul + argpartition, and implicit's GPU recommend.

Problem (issue 12): 138,000 users x 27,000 items (MovieLens-20M sized), random float32 factors,
f = 64 and 128, k = 10, each user's seen items excluded (about 100 random items per user, 13.8M in
all, on the device for every library). ``--quick``: 4,000 x 2,000. Metric: milliseconds for all
users (lower is better); each row also carries users/s and the fraction of the time an fp32 GEMM
of the whole users x items product takes alone (torch.matmul, TF32 off: "what the GEMM costs").
Every call ends with a device synchronisation, so the wall clock measures the GPU's work.

Checked before timing, on the first 2,048 users: every library's ids against torch's fp32 ids
(exact: >= 99.9% equal; tf32/bf16 re-scored: >= 99%), so a fast wrong answer cannot look good.

Peers: torch and CuPy are on the GPU machine; implicit's GPU build needs its CUDA 13 wheel and
``rmm-cu13`` (absent: reported as missing, not a crash). Needs a GPU: without one the benchmark
reports "not measured" and returns no rows. Switches: ``RECFORGE_BENCH_TOPK_GPU_FACTORS`` (default
``64,128``), ``RECFORGE_BENCH_TOPK_GPU_PEERS`` (default ``torch,cupy,implicit``),
``RECFORGE_BENCH_TOPK_GPU_PRECISIONS`` (default ``fp32,tf32,bf16``).
"""

from __future__ import annotations

import numpy as np
from _harness import switch  # bench/ is on sys.path (run.py, load_benchmark)

K = 10
FULL = (138_000, 27_000)
QUICK = (4_000, 2_000)
SEEN_PER_USER = 100
CHECK_ROWS = 2048
PEER_BATCH_BYTES = 16 << 30  # torch scores at most 16 GB of users x items at a time (the whole 14.9 GB at once)
CUPY_BATCH_BYTES = 4 << 30  # CuPy's argpartition sorts int64 indices beside its scores: smaller batches


def _seen(rng, n, m):
    """About SEEN_PER_USER distinct random items per user, as a SciPy CSR (sorted rows)."""
    import scipy.sparse as sp

    per = min(SEEN_PER_USER, m)
    cols = np.sort(rng.integers(0, m, (n, per)), axis=1)
    keep = np.ones_like(cols, dtype=bool)
    keep[:, 1:] = cols[:, 1:] != cols[:, :-1]
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(keep.sum(axis=1), out=indptr[1:])
    return sp.csr_matrix((np.ones(int(indptr[-1]), np.float32), cols[keep].astype(np.int32), indptr), shape=(n, m))


def _batch_rows(m, budget=PEER_BATCH_BYTES):
    return max(1, budget // (4 * m))


def _torch_lib(torch, users, items, seen):
    """torch.matmul + masked_fill of the seen items + torch.topk, in batches of PEER_BATCH_BYTES."""
    u, it = torch.as_tensor(users, device="cuda"), torch.as_tensor(items, device="cuda")
    rows = torch.as_tensor(np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr)), device="cuda")
    cols = torch.as_tensor(seen.indices.astype(np.int64), device="cuda")
    indptr = seen.indptr
    batch = _batch_rows(items.shape[0])
    neg_inf = torch.tensor(float("-inf"), device="cuda")

    def run(n=None):
        n = u.shape[0] if n is None else n
        out = []
        for s in range(0, n, batch):
            e = min(n, s + batch)
            scores = u[s:e] @ it.T
            lo, hi = int(indptr[s]), int(indptr[e])
            scores.index_put_((rows[lo:hi] - s, cols[lo:hi]), neg_inf)
            out.append(torch.topk(scores, K, dim=1).indices)
        ids = torch.cat(out)
        torch.cuda.synchronize()
        return ids

    def gemm_only():
        for s in range(0, u.shape[0], batch):
            u[s : s + batch] @ it.T
        torch.cuda.synchronize()

    return run, gemm_only


def _cupy_lib(cp, users, items, seen):
    """CuPy matmul + mask + argpartition + a sort of the k, in batches of CUPY_BATCH_BYTES."""
    u, it = cp.asarray(users), cp.asarray(items)
    rows = cp.asarray(np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr)))
    cols = cp.asarray(seen.indices.astype(np.int64))
    indptr = seen.indptr
    batch = _batch_rows(items.shape[0], CUPY_BATCH_BYTES)

    def run(n=None):
        n = u.shape[0] if n is None else n
        out = []
        for s in range(0, n, batch):
            e = min(n, s + batch)
            scores = u[s:e] @ it.T
            lo, hi = int(indptr[s]), int(indptr[e])
            scores[rows[lo:hi] - s, cols[lo:hi]] = -cp.inf
            part = cp.argpartition(-scores, K - 1, axis=1)[:, :K]
            order = cp.argsort(-cp.take_along_axis(scores, part, axis=1), axis=1)
            out.append(cp.take_along_axis(part, order, axis=1))
        ids = cp.concatenate(out)
        cp.cuda.Device().synchronize()
        return ids

    return run


def _implicit_lib(implicit_gpu, users, items, seen):
    """implicit's GPU ALS model holding the given factors: ``recommend`` for every user, seen items filtered."""
    from implicit.gpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(factors=users.shape[1])
    model.user_factors = implicit_gpu.Matrix(users)
    model.item_factors = implicit_gpu.Matrix(items)

    def run(n=None):
        n = users.shape[0] if n is None else n
        ids, _ = model.recommend(np.arange(n), seen[:n], N=K, filter_already_liked_items=True)
        return ids

    return run


def run(ctx):
    import recforge as rf

    if not rf.gpu_available():
        reason = "no usable GPU (recforge.gpu_available() is False)"
        ctx.not_measured["GPU top-K"] = reason
        ctx.log(f"topk_gpu: not measured ({reason})")
        return []
    import cupy as cp

    factors = [int(f) for f in switch("RECFORGE_BENCH_TOPK_GPU_FACTORS", "64,128")]
    peers = switch("RECFORGE_BENCH_TOPK_GPU_PEERS", "torch,cupy,implicit")
    precisions = switch("RECFORGE_BENCH_TOPK_GPU_PRECISIONS", "fp32,tf32,bf16")
    torch = ctx.peer("torch") if "torch" in peers else None
    if torch is not None:
        torch.backends.cuda.matmul.allow_tf32 = False  # the fp32 GEMM, as recforge's exact mode
    implicit_gpu = ctx.peer("implicit.gpu") if "implicit" in peers else None
    if implicit_gpu is not None and not getattr(implicit_gpu, "HAS_CUDA", False):
        ctx.missing_peers["implicit.gpu"] = "implicit was built without CUDA (implicit.gpu.HAS_CUDA is False)"
        implicit_gpu = None
    n, m = QUICK if ctx.quick else FULL
    rows = []
    for f in factors:
        rows += _measure(ctx, n, m, f, torch, implicit_gpu, peers, precisions)
        cp.get_default_memory_pool().free_all_blocks()  # the case's arrays are gone with _measure's frame
        if torch is not None:
            torch.cuda.empty_cache()
    return rows


def _measure(ctx, n, m, f, torch, implicit_gpu, peers, precisions) -> list[dict]:
    """The rows of one factor count: data, correctness check on a slice, interleaved timings."""
    import cupy as cp
    import cupyx.scipy.sparse as csp

    import recforge as rf

    rows = []
    rng = np.random.default_rng(f)
    users = rng.standard_normal((n, f), dtype=np.float32)
    items = rng.standard_normal((m, f), dtype=np.float32)
    seen = _seen(rng, n, m)
    u_d, it_d, seen_d = cp.asarray(users), cp.asarray(items), csp.csr_matrix(seen)
    case = f"{n:,}x{m:,} f={f} k={K}"

    def ours(precision, count=None):
        q, ex = (u_d, seen_d) if count is None else (u_d[:count], seen_d[:count])
        ids = rf.topk(q, it_d, K, exclude=ex, precision=precision)[0]
        cp.cuda.Device().synchronize()
        return ids

    libs = {f"recforge {p}": (lambda c=None, p=p: ours(p, c)) for p in precisions}
    gemm_only = None
    if torch is not None:
        libs["torch matmul+topk"], gemm_only = _torch_lib(torch, users, items, seen)
    if "cupy" in peers:
        libs["cupy matmul+argpartition"] = _cupy_lib(cp, users, items, seen)
    if implicit_gpu is not None:
        try:
            libs["implicit gpu"] = _implicit_lib(implicit_gpu, users, items, seen)
        except Exception as exc:  # a build whose GPU model cannot be set up here: reported, not fatal
            ctx.missing_peers["implicit.gpu"] = f"{type(exc).__name__}: {exc}"
    ctx.log(f"topk_gpu {case}: {', '.join(libs)}")
    # Correctness first, on a slice (also the warm-up: NVRTC compiles, cuBLAS picks its kernels).
    reference = np.asarray(libs["torch matmul+topk"](CHECK_ROWS).cpu()) if torch is not None else None
    for lib, fn in list(libs.items()):
        try:
            got = fn(CHECK_ROWS)
        except Exception as exc:
            if lib.startswith("recforge"):
                raise
            ctx.missing_peers[lib] = f"{type(exc).__name__}: {exc}"  # a peer that fails here is reported
            del libs[lib]
            continue
        got = got.get() if hasattr(got, "get") else np.asarray(got.cpu() if hasattr(got, "cpu") else got)
        if reference is not None:
            agree = float((got == reference).mean())
            need = 0.99 if lib.endswith(("tf32", "bf16")) else 0.999
            ctx.log(f"  {lib}: {agree:.4%} of the top-{K} ids equal torch fp32's")
            if agree < need:
                raise AssertionError(f"{lib} disagrees with torch fp32 on {1 - agree:.2%} of the top-{K} ids")
    timings = ctx.timeit_many({lib: fn for lib, fn in libs.items()}, warmup=1)
    gemm = ctx.timeit(gemm_only)["median"] if gemm_only is not None else None
    if gemm is not None:
        rows.append({"case": case, "library": "torch (fp32 GEMM alone)", "metric": "ms (the GEMM alone)",
                     "value": gemm * 1e3, "spread": None, "better": "lower", "users_per_s": n / gemm})  # fmt: skip
    for lib, t in timings.items():
        rows.append(
            {
                "case": case,
                "library": lib.replace("recforge fp32", "recforge"),
                "metric": "ms (all users)",
                "value": t["median"] * 1e3,
                "spread": t["spread"] * 1e3,
                "better": "lower",
                "runs": t["runs"],
                "users_per_s": n / t["median"],
                "gemm_fraction": None if gemm is None else gemm / t["median"],
            }
        )
    return rows
