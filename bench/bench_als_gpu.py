"""ALS on the GPU: recforge.ALS(device="cuda") (CG and Cholesky) vs implicit's GPU ALS and recforge on the CPU.

Problem (issue 13): the synthetic 138,000 x 27,000 binary matrix of the CPU ALS benchmark
(``bench_als.synthetic``, the same generator, seed and size: ``bench_als.SYNTH_FULL``), f = 64 and
128, regularization 0.05, recforge alpha=1 against implicit alpha=2 (the same confidence 2 on binary
data, see bench_als), CG with 3 steps in both libraries (implicit's GPU solver is CG only). ``--quick``:
``bench_als.SYNTH_QUICK``. Each fit runs ``ITERATIONS`` iterations; the first (initialisation, NVRTC
and cuBLAS warm-up, the transpose) is dropped, the others are per-iteration samples from each library's
own end-of-iteration callback (recforge's epoch ends with a device synchronisation: its finiteness
check reads the factors back).

Reported per row: seconds per iteration (lower is better), nonzeros per second (nnz / s-per-iteration:
a full iteration reads every nonzero once from each side), and the fraction of the GPU's fp32 peak
the arithmetic of the algorithm reaches (``flops_per_iteration`` / s-per-iteration / peak, the same CG
count for implicit's GPU ALS, which does the same arithmetic one user per thread block; the peak is
SMs x clock x FP32 lanes per SM (64 on sm_80, 128 on later GPUs) x 2). The goal of issue 13:
<= 0.034 s/iteration at f=64 and <= 0.038 s at f=128 (10x implicit's GPU ALS on an H100), Cholesky
within 3x of CG at f=64.

Before timing, a correctness gate: the GPU fit's training objective after ``ITERATIONS`` iterations
within 1e-3 relative of the CPU fit's on a 20,000-user slice (a fast wrong answer cannot look good).

Peers: implicit's GPU build needs its CUDA 13 wheel and ``rmm-cu13`` (absent: reported missing);
recforge on the CPU runs on ``ctx.threads`` threads (``RECFORGE_BENCH_ALS_GPU_CPU=0`` leaves it out).
Needs a GPU: without one the benchmark reports "not measured" and returns no rows. Switches:
``RECFORGE_BENCH_ALS_GPU_FACTORS`` (default ``64,128``), ``RECFORGE_BENCH_ALS_GPU_SOLVERS`` (default
``cg,cholesky``).
"""

from __future__ import annotations

import os

import numpy as np
from _harness import switch  # bench/ is on sys.path (run.py, load_benchmark)
from bench_als import SYNTH_FULL, SYNTH_QUICK, _IterClock, synthetic

ITERATIONS = 4  # per fit; the first is dropped
CG_STEPS = 3
GATE_USERS = 20_000


def flops_per_iteration(n_users: int, n_items: int, nnz: int, f: int, solver: str) -> float:
    """The arithmetic of one iteration (both half-steps) as recforge's GPU path does it.

    CG: per half-step, the residual plus ``CG_STEPS`` steps, each a GEMM with YᵀY (2 f² per row), the
    dot products and the sums over the nonzeros (2 f + 2 f per nonzero); plus YᵀY itself (2 f² per
    row of the other side). Cholesky: YᵀY, the normal equations (f (f + 1) upper-triangle entries + f
    right-hand-side entries, 2 flops each, per nonzero) and the solve (f³ / 3 + 2 f² per row).
    """
    rows = n_users + n_items
    if solver == "cg":
        return (CG_STEPS + 1) * (2.0 * f * f * rows + 2 * 4.0 * f * nnz) + 2.0 * f * f * rows
    return 2.0 * f * f * rows + 2 * (f * (f + 1) + 2.0 * f) * nnz + (f**3 / 3.0 + 2.0 * f * f) * rows


def fp32_peak(cp) -> float:
    """The device's fp32 peak in flop/s (FMA = 2 flops) from its SM count and clock."""
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    lanes = 64 if (props["major"], props["minor"]) == (8, 0) else 128
    return props["multiProcessorCount"] * props["clockRate"] * 1e3 * lanes * 2.0


def _fit_ours(m, f, solver, device, threads, iterations=ITERATIONS, calculate_loss=False):
    import recforge as rf

    clock = _IterClock()
    model = rf.ALS(factors=f, regularization=0.05, epochs=iterations, solver=solver, cg_steps=CG_STEPS,
                   device=device, threads=threads, seed=0, calculate_loss=calculate_loss)  # fmt: skip
    clock.start()
    model.fit(m, callback=clock, progress=False)
    return clock, model


def _fit_implicit_gpu(implicit_gpu_als, m, f):
    clock = _IterClock()
    model = implicit_gpu_als.AlternatingLeastSquares(factors=f, regularization=0.05, alpha=2.0, iterations=ITERATIONS,
                                                     random_state=0)  # fmt: skip
    clock.start()
    model.fit(m, show_progress=False, callback=clock)
    return clock, model


def _gate(ctx, m, f, solver) -> None:
    """The GPU objective within 1e-3 relative of the CPU's on a slice of the users."""
    part = m[:GATE_USERS]
    _, cpu_model = _fit_ours(part, f, solver, "cpu", ctx.threads, calculate_loss=True)
    _, gpu_model = _fit_ours(part, f, solver, "cuda", ctx.threads, calculate_loss=True)
    want, got = cpu_model.history_[-1]["loss"], gpu_model.history_[-1]["loss"]
    ctx.log(f"  gate f={f} {solver}: objective cpu {want:.6g}, gpu {got:.6g}")
    if abs(got - want) > 1e-3 * abs(want):
        raise AssertionError(f"GPU ALS objective {got:.6g} differs from the CPU's {want:.6g} (f={f}, {solver})")


def run(ctx):
    import recforge as rf

    if not rf.gpu_available():
        reason = "no usable GPU (recforge.gpu_available() is False)"
        ctx.not_measured["GPU ALS"] = reason
        ctx.log(f"als_gpu: not measured ({reason})")
        return []
    import cupy as cp

    factors = [int(f) for f in switch("RECFORGE_BENCH_ALS_GPU_FACTORS", "64,128")]
    solvers = switch("RECFORGE_BENCH_ALS_GPU_SOLVERS", "cg,cholesky")
    with_cpu = os.environ.get("RECFORGE_BENCH_ALS_GPU_CPU", "1") != "0"
    implicit_gpu_als = None
    implicit_gpu = ctx.peer("implicit.gpu")
    if implicit_gpu is not None and not getattr(implicit_gpu, "HAS_CUDA", False):
        ctx.missing_peers["implicit.gpu"] = "implicit was built without CUDA (implicit.gpu.HAS_CUDA is False)"
    elif implicit_gpu is not None:
        implicit_gpu_als = ctx.peer("implicit.gpu.als")
    n_users, n_items, nnz = SYNTH_QUICK if ctx.quick else SYNTH_FULL
    m = synthetic(n_users, n_items, nnz)
    peak = fp32_peak(cp)
    ctx.log(f"als_gpu: {m.shape[0]:,} x {m.shape[1]:,}, {m.nnz:,} nonzeros; fp32 peak {peak / 1e12:.1f} TFLOP/s")
    rows = []
    for f in factors:
        for solver in solvers:
            _gate(ctx, m, f, solver)
            case = f"synthetic {m.shape[0]:,}x{m.shape[1]:,} nnz={m.nnz:,} f={f} {solver}"
            libs = {"recforge gpu": lambda f=f, s=solver: _fit_ours(m, f, s, "cuda", ctx.threads)[0]}
            if implicit_gpu_als is not None and solver == "cg":
                libs["implicit gpu"] = lambda f=f: _fit_implicit_gpu(implicit_gpu_als, m, f)[0]
            if with_cpu:
                libs[f"recforge cpu ({ctx.threads} threads)"] = lambda f=f, s=solver: _fit_ours(
                    m, f, s, "cpu", ctx.threads
                )[0]
            samples = {lib: [] for lib in libs}
            for _ in range(ctx.repeat):  # interleaved
                for lib, fit in list(libs.items()):
                    try:
                        samples[lib].extend(fit().wall[1:])
                    except Exception as exc:
                        if lib.startswith("recforge"):
                            raise
                        ctx.missing_peers[lib] = f"{type(exc).__name__}: {exc}"  # a failing peer is reported
                        del libs[lib], samples[lib]
                cp.get_default_memory_pool().free_all_blocks()
            flops = flops_per_iteration(m.shape[0], m.shape[1], m.nnz, f, solver)
            for lib, xs in samples.items():
                s = float(np.median(xs))
                ctx.log(f"  {case} {lib}: {s:.4f} s/iter")
                rows.append(
                    {
                        "case": case,
                        "library": lib,
                        "metric": "s/iter",
                        "value": s,
                        "spread": float(np.percentile(xs, 75) - np.percentile(xs, 25)),
                        "better": "lower",
                        "nnz_per_s": m.nnz / s,
                        "fp32_peak_fraction": flops / s / peak if lib.endswith("gpu") else None,
                    }
                )
    return rows
