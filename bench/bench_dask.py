"""ALS across processes: recforge on a Dask LocalCluster vs Spark MLlib ALS (local mode) vs local recforge.

Every fit gets the same data, rank, iterations and ``ctx.threads`` cores: the Dask cluster has
``ctx.threads`` worker processes of one thread each, Spark runs ``local[ctx.threads]``, the local
fit ``threads=ctx.threads``. Implicit feedback, confidence ``1 + alpha r`` in both libraries
(Spark's ``implicitPrefs``), alpha=10 for both (on Video Games alpha=10 beat alpha=1 for recforge:
NDCG@10 0.070 vs 0.055), the exact (Cholesky) solve in both (Spark has no CG; our CG
is reported too). NDCG@10 of every model is computed by ``recforge.evaluation`` (full catalogue,
training items excluded) from its factors, so the metric code is the same for all.

Cases:

* ``video-games``: SASRec's Amazon Video Games (31,013 x 23,715, 287,107 interactions; the largest
  real set in the data folder), ``rf.split.random_holdout(0.2, seed=42)``.
* ``synthetic``: ``rf.datasets.synthetic(138_000, 27_000, 12_000_000)`` binarised, the same
  holdout (the speed case: enough work per iteration for the Dask overhead to be measured).

Regularisation: Spark's implicit ALS scales ``regParam`` by each row's count of interactions
(ALS-WR, ``regParam * numExplicits``). recforge fits the same regulariser by default here
(``RECFORGE_BENCH_DASK_SCALING=observed``: ``rf.ALS(regularization_scaling="observed", nu=1)``, so
the same lambda is the same model in both libraries); ``all_pairs`` fits recforge's classic constant
lambda instead (``nu=0``), as the runs before the option did. Each library gets the best NDCG@10 of
its own grid on the first case (``RECFORGE_BENCH_DASK_SPARK_REG``, default ``0.05,0.1,0.5``;
``RECFORGE_BENCH_DASK_REG``, default the same for ALS-WR and ``0.05,0.5,5`` for the constant lambda;
chosen on the test split, the same courtesy for both; every grid point is a row, ``NDCG@10 at
lambda=...``), and the later cases reuse each winner. Spark's seconds per iteration come
from two fits (``maxIter`` = n and n/2): (t_n - t_half) / (n - half), which leaves out its one-off
partitioning; ours are the median per-iteration times from the fit callbacks after the first
iteration, and the Dask setup (``distribute``: id maps and blocks) is reported apart. ``CPU s/iter``:
the CPU seconds per iteration, the steadier figure on a machine shared with other jobs; ours: this
process and every Dask worker process from the end of the first iteration to the end of the last
(the steady state: no initial factors, no model gathered to the client), Spark: its JVM, the same
two-fit difference. (Runs before issue 14 follow-up 3 divided the whole fit's CPU by the iterations.)
``CPU s/iter net of idle Dask CPU``: the Dask rows less what the Dask processes burn with nothing to
run (heartbeats, the workers' profiler; measured for 10 s per cluster before the fits) over that
window's wall time, which a loaded machine stretches: the cost of the fit's own work.

Equal NDCG: Spark's NDCG@10 after n iterations is the target; recforge's NDCG after every
iteration (a local fit evaluated in its callback; the Dask fit is the same model bit for bit, which
the row ``dask_bit_equal_to_local`` checks) gives the iterations recforge needs to reach it, and
``s to Spark's NDCG`` / ``CPU s to Spark's NDCG`` compare the time each library needs to get there
(Spark: n/2 iterations when its NDCG had already reached the target there, else n).

Scaling: the Dask fit on 1 and on ``ctx.threads`` workers (``s/iter``), and the per-nonzero cost of
the kernel (core-seconds per stored value per iteration at f=128, measured on one thread), the
input of docs/scale-out.md.

Per case the bench logs a summary table (s/iter, CPU s/iter, net CPU s/iter and NDCG@10 of Dask CG,
Dask Cholesky, local and Spark; the ratios) and returns the ratios as rows of library "ratio".
NDCG@10 of recforge is the mean over the seeds of ``RECFORGE_BENCH_DASK_SEEDS`` (default ``0,1,2``, 0 with --quick;
local fits, the Dask fit being the seed-0 local model bit for bit) with its spread (max - min) / 2,
so "equal NDCG" is judged against the seed noise; Spark's is one seed (its fits take minutes).

The Dask clusters start with ``rf.distributed.CLUSTER_CONFIG`` (the settings docs/scale-out.md
recommends for fits: leaner diagnostics); ``RECFORGE_BENCH_DASK_CLUSTER=default`` keeps Dask's own.
``RECFORGE_BENCH_DASK_ONE_WORKER=0`` skips the 1-worker fits, ``RECFORGE_BENCH_DASK_CURVE=0`` the
NDCG-after-every-iteration fit (and with it the time to Spark's NDCG): the quick Spark re-run of
bench/RESULTS.md uses both, a single regParam and one seed.
``RECFORGE_BENCH_DASK_SPARK=0`` leaves Spark out (a re-run of the recforge rows alone).
``RECFORGE_BENCH_SPARK_BLAS``: folders with a native ``libblas.so.3`` / ``liblapack.so.3`` for Spark
(e.g. Debian's libopenblas0-pthread unpacked with ``dpkg -x``); without it Spark uses its Java BLAS.
``RECFORGE_BENCH_DASK_CASES`` (default ``video-games,synthetic,kernel-cost``) picks the cases;
``RECFORGE_BENCH_DASK_ITERS`` the iterations (default 10 on both).
"""

from __future__ import annotations

import os
import time

import numpy as np
from _harness import binary_csr, switch  # bench/ is on sys.path (run.py, load_benchmark)

FACTORS = 64
ALPHA = 10.0
# Iterations per case: NDCG@10 has converged by then for both libraries (the rows show it: NDCG after
# half of them and after all of them, and recforge's NDCG after every iteration).
ITERATIONS = {"video-games": 10, "synthetic": 10}
SYNTH = (138_000, 27_000, 12_000_000)
SYNTH_QUICK = (6_000, 2_000, 200_000)
GRID_VALUES = "0.001,0.005,0.01,0.05,0.1,0.5,1,5,10,50"


def _scaling_params() -> dict:
    """recforge's regulariser: ALS-WR (Spark's, the default) or the classic constant lambda."""
    scaling = switch("RECFORGE_BENCH_DASK_SCALING", "observed", "observed,all_pairs")[0]
    return {"regularization_scaling": scaling, "nu": 1.0 if scaling == "observed" else 0.0}


def _split(inter):
    import recforge as rf

    return rf.split.random_holdout(inter, test_fraction=0.2, seed=42)


def _video_games(ctx):
    import recforge as rf

    df = ctx.dataset("video-games", rf.datasets.load_sasrec, "video-games")
    if df is None:
        return None
    m = binary_csr(df.assign(user=df["user"] - 1, item=df["item"] - 1))  # 1-based ids in the file
    if ctx.quick:
        m = m[:5000]
    return _split(rf.Interactions(m))


def _synthetic(ctx):
    import recforge as rf

    n_users, n_items, nnz = SYNTH_QUICK if ctx.quick else SYNTH
    df = rf.datasets.synthetic(n_users=n_users, n_items=n_items, nnz=nnz, seed=0, timestamps=False)
    return _split(rf.Interactions(binary_csr(df, shape=(n_users, n_items))))


def _ndcg(user_factors, item_factors, train, test) -> float:
    import recforge as rf

    model = rf.ALS.from_factors(user_factors, item_factors, seen=train)
    return rf.evaluation.evaluate(model, train, test, k=10, metrics=["ndcg"], progress=False)["ndcg@10"]


def _median_after_first(seconds: list[float]) -> tuple[float, float]:
    xs = seconds[1:] or seconds
    return float(np.median(xs)), float((max(xs) - min(xs)) / 2)


def _proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc), e.g. Spark's JVM."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---- the three contenders ------------------------------------------------------------------------
# Each returns (model, seconds per iteration, setup seconds, CPU seconds per iteration); the CPU
# seconds (this process plus, for Dask, every worker process) are the steadier figure on a machine
# shared with other jobs, where wall time depends on what else runs. Both figures are the steady
# state, like Spark's two-fit difference: the CPU from the end of the first iteration to the end of
# the last, / (iterations - 1), so neither the start (initial factors, for Dask a chain of tasks) nor
# the end (the Dask model gathered to the client) is spread over the iterations; ``model.steady_wall``
# is that window's wall time per iteration (the idle Dask CPU is charged over it).
class _SteadyCpu:
    """CPU seconds (``read()``: this process, plus whatever it adds) at the end of the first and of the last
    iteration, taken in a fit's callback; ``exclude`` seconds (spent in the callback on evaluation) are
    left out."""

    def __init__(self, iters: int, read):
        self.iters, self.read, self.marks, self.excluded = iters, read, [], 0.0

    def __call__(self, epoch: int) -> None:
        if epoch == 0 or epoch == self.iters - 1:
            self.marks.append((self.read() - self.excluded, time.perf_counter()))

    def per_iteration(self) -> tuple[float, float]:
        """(CPU seconds, wall seconds) per iteration in the window (the whole fit when it has one iteration)."""
        (c0, w0), (c1, w1) = self.marks[0], self.marks[-1]
        n = max(1, self.iters - 1)
        return (c1 - c0) / n, (w1 - w0) / n


def _local(train, solver, threads, iters, reg, test=None, seed=0):
    """The local fit; with ``test``, also NDCG@10 after every iteration (``model.ndcg_curve``), computed
    in the callback and outside the timed iterations."""
    import recforge as rf

    model = rf.ALS(factors=FACTORS, regularization=reg, alpha=ALPHA, epochs=iters, solver=solver, threads=threads,
                   seed=seed, **_scaling_params())  # fmt: skip
    curve = []
    steady = _SteadyCpu(iters, time.process_time)

    def track(epoch, seconds, loss):
        if test is not None:
            t0 = time.process_time()
            curve.append(_ndcg(model.user_factors, model.item_factors, train.csr, test.csr))
            steady.excluded += time.process_time() - t0
        steady(epoch)

    if iters == 1:
        steady.marks.append((time.process_time(), time.perf_counter()))
    model.fit(train, progress=False, callback=track)
    model.ndcg_curve = curve
    cpu, model.steady_wall = steady.per_iteration()
    return model, [h["seconds"] for h in model.history_], 0.0, cpu


def _dask(client, train, solver, iters, reg):
    import recforge as rf

    t0 = time.perf_counter()
    data = rf.distributed.distribute(client, train)
    setup = time.perf_counter() - t0
    est = rf.distributed.ALS(factors=FACTORS, regularization=reg, alpha=ALPHA, epochs=iters, solver=solver, seed=0,
                             **_scaling_params())  # fmt: skip
    steady = _SteadyCpu(iters, lambda: sum(client.run(time.process_time).values()) + time.process_time())
    if iters == 1:
        steady.marks.append((steady.read(), time.perf_counter()))
    model = est.fit(client, data, progress=False, callback=lambda epoch, seconds, loss: steady(epoch))
    cpu, model.steady_wall = steady.per_iteration()
    return model, [h["seconds"] for h in model.history_], setup, cpu


def _idle_cpu_rate(client, seconds: float = 10.0) -> float:
    """CPU seconds per wall second that this process (client and scheduler) and the Dask workers spend
    with nothing to run (heartbeats, the workers' profiler, event loops): a Dask fit's CPU time includes
    it for as long as the fit's wall time, which a loaded machine stretches."""
    cpu0, workers0, wall0 = time.process_time(), client.run(time.process_time), time.perf_counter()
    time.sleep(seconds)
    workers1 = client.run(time.process_time)
    cpu = time.process_time() - cpu0 + sum(workers1[w] - workers0[w] for w in workers1)
    return cpu / (time.perf_counter() - wall0)


def _spark_session(ctx):
    """Spark in local mode on ``ctx.threads`` cores. ``RECFORGE_BENCH_SPARK_BLAS``: folders (``:``-separated)
    holding a native ``libblas.so.3`` / ``liblapack.so.3`` (and their dependencies) for Spark's netlib;
    without one Spark falls back to its pure-Java BLAS (a pip-installed pyspark's default here)."""
    from pyspark.sql import SparkSession

    saved = dict(os.environ)
    native = os.environ.get("RECFORGE_BENCH_SPARK_BLAS")
    if native:
        os.environ["LD_LIBRARY_PATH"] = ":".join(filter(None, [native, os.environ.get("LD_LIBRARY_PATH")]))
    os.environ["OPENBLAS_NUM_THREADS"] = "1"  # Spark's task threads call BLAS: one thread underneath each
    try:
        spark = (
            SparkSession.builder.master(f"local[{ctx.threads}]")
            .appName("recforge-bench-dask")
            .config("spark.driver.memory", "6g")
            .config("spark.sql.shuffle.partitions", str(2 * ctx.threads))
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .getOrCreate()
        )
    finally:  # the JVM has its environment; this process keeps its own
        os.environ.clear()
        os.environ.update(saved)
    spark.sparkContext.setLogLevel("ERROR")
    ctx.log(f"Spark {spark.version}, BLAS implementation: {_spark_blas(spark)}")
    return spark


def _spark_blas(spark) -> str:
    """netlib's BLAS in Spark's JVM: JNIBLAS (native) or a Java fallback (VectorBLAS / F2jBLAS)."""
    return str(spark._jvm.dev.ludovic.netlib.blas.BLAS.getInstance().getClass().getSimpleName())


def _spark_fit(spark, frame, reg, iters, threads):
    """Spark's fit: (model, wall seconds, CPU seconds of its JVM)."""
    from pyspark.ml.recommendation import ALS

    als = ALS(rank=FACTORS, maxIter=iters, regParam=reg, implicitPrefs=True, alpha=ALPHA, userCol="user",
              itemCol="item", ratingCol="rating", numUserBlocks=2 * threads, numItemBlocks=2 * threads, seed=0,
              checkpointInterval=-1)  # fmt: skip
    jvm = spark.sparkContext._gateway.proc.pid
    t0, cpu0 = time.perf_counter(), _proc_cpu_seconds(jvm)
    model = als.fit(frame)
    model.userFactors.count()  # the fit is lazy until the factors are used
    return model, time.perf_counter() - t0, _proc_cpu_seconds(jvm) - cpu0


def _spark_factors(model, n_users, n_items):
    def dense(df, n):
        out = np.zeros((n, FACTORS), np.float32)
        rows = df.collect()
        out[[r["id"] for r in rows]] = np.asarray([r["features"] for r in rows], np.float32)
        return out

    return dense(model.userFactors, n_users), dense(model.itemFactors, n_items)


def _spark_rows(ctx, spark, case, train, test, iters, regs):
    """Spark's best NDCG over the regParam values ``regs`` (``iters`` iterations), and its s/iter at that
    regParam; ``regs`` is then cut to the winner (the later, larger cases reuse it instead of the whole
    grid). A second fit of ``iters // 2`` iterations gives the per-iteration time without the one-off
    partitioning, (t_n - t_half) / (n - half), and NDCG at half the iterations (convergence)."""
    import shutil
    import tempfile

    import pandas as pd

    coo = train.csr.tocoo()
    tmp = tempfile.mkdtemp()  # Parquet: Spark reads it without a Python loop per row
    try:
        path = f"{tmp}/train.parquet"
        pd.DataFrame({"user": coo.row.astype(np.int32), "item": coo.col.astype(np.int32),
                      "rating": coo.data.astype(np.float32)}).to_parquet(path)  # fmt: skip
        frame = spark.read.parquet(path).repartition(2 * ctx.threads).cache()
        frame.count()
        _spark_fit(spark, frame, regs[0], 1, ctx.threads)  # warm-up (JIT, caches): the first fit is slower
        best, grid_rows = None, []
        for reg in regs:
            model, seconds, cpu = _spark_fit(spark, frame, reg, iters, ctx.threads)
            ndcg = _ndcg(*_spark_factors(model, *train.shape), train.csr, test.csr)
            ctx.log(f"{case}: spark regParam={reg}: ndcg@10 {ndcg:.4f}, {seconds:.1f}s for {iters} iterations")
            grid_rows.append(_row(case, "Spark MLlib", f"NDCG@10 at lambda={reg:g}", ndcg, None, "higher",
                                  fit_seconds=seconds, fit_cpu_seconds=cpu))  # fmt: skip
            if best is None or ndcg > best[0]:
                best = (ndcg, reg, seconds, cpu)
        ndcg, reg, t_n, cpu_n = best
        half = max(1, iters // 2)
        model, t_half, cpu_half = _spark_fit(spark, frame, reg, half, ctx.threads)
        ndcg_half = _ndcg(*_spark_factors(model, *train.shape), train.csr, test.csr)
        frame.unpersist()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    regs[:] = [reg]
    per_iter, cpu_per_iter = (t_n - t_half) / (iters - half), (cpu_n - cpu_half) / (iters - half)
    blas = _spark_blas(spark)
    return grid_rows + [
        _row(case, "Spark MLlib", "s/iter", per_iter, None, "lower", regParam=reg, fit_seconds=t_n, blas=blas),
        _row(case, "Spark MLlib", "CPU s/iter", cpu_per_iter, None, "lower", regParam=reg, blas=blas),
        _row(
            case,
            "Spark MLlib",
            "NDCG@10",
            ndcg,
            None,
            "higher",
            regParam=reg,
            blas=blas,
            ndcg_at_half=ndcg_half,
            half_iterations=half,
        ),
    ]


def _time_to_target(ctx, case, curve, dask_per_iter, dask_cpu_per_iter, spark_rows) -> list[dict]:
    """recforge's iterations, wall and CPU seconds to reach Spark's NDCG@10 (from recforge's NDCG after
    every iteration), against Spark's own: the comparison at equal NDCG. None when not reached."""
    spark = {r["metric"]: r for r in spark_rows}
    target = spark["NDCG@10"]["value"]
    reached = next((k + 1 for k, v in enumerate(curve) if v >= target), None)
    spark_iters = (spark["NDCG@10"]["half_iterations"] if spark["NDCG@10"]["ndcg_at_half"] >= target
                   else len(curve))  # fmt: skip
    ctx.log(f"{case}: Spark NDCG@10 {target:.4f} reached by recforge after {reached} of {len(curve)} iterations "
            f"(curve {[round(v, 4) for v in curve]})")  # fmt: skip
    if reached is None:
        return []
    extra = {"target_ndcg": target, "iterations": reached, "spark_iterations": spark_iters}
    return [
        _row(case, "recforge", "s to Spark's NDCG", reached * dask_per_iter, None, "lower", **extra),
        _row(case, "Spark MLlib", "s to Spark's NDCG", spark_iters * spark["s/iter"]["value"], None, "lower", **extra),
        _row(case, "recforge", "CPU s to Spark's NDCG", reached * dask_cpu_per_iter, None, "lower", **extra),
        _row(
            case,
            "Spark MLlib",
            "CPU s to Spark's NDCG",
            spark_iters * spark["CPU s/iter"]["value"],
            None,
            "lower",
            **extra,
        ),
    ]


def _grid(name: str, default: str) -> list[float]:
    return [float(r) for r in switch(name, default, GRID_VALUES)]


def _pick_reg(ctx, case, train, test, iters, regs) -> tuple[float, list[dict]]:
    """Our best regularisation of ``regs`` by NDCG@10 (local Cholesky fits: the Dask fit is the same model),
    and a row per grid point (none when ``regs`` holds one value: nothing to choose)."""
    rows = []
    if len(regs) > 1:
        scores = {}
        for reg in regs:
            model, _, _, _ = _local(train, "cholesky", ctx.threads, iters, reg)
            scores[reg] = _ndcg(model.user_factors, model.item_factors, train.csr, test.csr)
            ctx.log(f"{case}: recforge regularization={reg}: ndcg@10 {scores[reg]:.4f}")
            rows.append(_row(case, "recforge", f"NDCG@10 at lambda={reg:g}", scores[reg], None, "higher",
                             **_scaling_params()))  # fmt: skip
        regs[:] = [max(scores, key=scores.get)]
    return regs[0], rows


def _row(case, library, metric, value, spread, better, **extra):
    return {"case": case, "library": library, "metric": metric, "value": float(value), "spread": spread,
            "better": better, **extra}  # fmt: skip


# ---- cases ---------------------------------------------------------------------------------------
def _case_rows(ctx, clusters, idle, spark, regs, name, split, iters):
    train, test = split
    spark_rows, summary, load_start = [], {}, os.getloadavg()[0]
    shape = f"{name} {train.n_users:,}x{train.n_items:,} nnz={train.nnz:,} f={FACTORS}"
    reg, rows = _pick_reg(ctx, f"{shape} cholesky {iters} it", train, test, iters, regs["recforge"])
    for solver in ("cholesky", "cg"):
        case = f"{shape} {solver} {iters} it"
        ctx.log(f"dask bench: {case}")
        runs = {"recforge": lambda: _dask(clusters[ctx.threads], train, solver, iters, reg),
                "recforge (local)": lambda: _local(train, solver, ctx.threads, iters, reg)}  # fmt: skip
        workers = {"recforge": ctx.threads, "recforge (local)": 0}
        if ctx.threads > 1 and _on("RECFORGE_BENCH_DASK_ONE_WORKER"):
            runs["recforge dask 1 worker"] = lambda: _dask(clusters[1], train, solver, iters, reg)
            workers["recforge dask 1 worker"] = 1
        samples = {lib: [] for lib in runs}
        for _ in range(ctx.repeat):  # interleaved
            for lib, fit in runs.items():
                samples[lib].append(fit())
        per_iter = {}
        for lib, fits in samples.items():
            seconds = [s for _, secs, _, _ in fits for s in secs[1:]]
            value, spread = float(np.median(seconds)), float((max(seconds) - min(seconds)) / 2)
            setup = float(np.median([s for _, _, s, _ in fits]))
            cpu = float(np.median([c for _, _, _, c in fits]))
            per_iter[lib] = (value, cpu)
            summary[(solver, lib)] = {"s/iter": value, "CPU s/iter": cpu}
            rows.append(_row(case, lib, "s/iter", value, spread, "lower", setup_seconds=setup, regularization=reg,
                             **_scaling_params()))  # fmt: skip
            rows.append(_row(case, lib, "CPU s/iter", cpu, None, "lower"))
            # The same less the Dask processes' idle CPU over the fit's wall time (0 for the local fit).
            rate = idle.get(workers[lib], 0.0)
            net = float(np.median([c - rate * m.steady_wall for m, _, _, c in fits]))
            rows.append(_row(case, lib, "CPU s/iter net of idle Dask CPU", net, None, "lower", idle_cpu_per_s=rate))
            summary[(solver, lib)]["CPU s/iter net of idle"] = net
            model = fits[0][0]
            rows.append(_row(case, lib, "NDCG@10", _ndcg(model.user_factors, model.item_factors, train.csr, test.csr),
                             None, "higher"))  # fmt: skip
        # The Dask fit is the local fit's model bit for bit (checked on the final factors), so the
        # seeds' NDCG spread and the NDCG curve come from local fits.
        dask_model, local_model = samples["recforge"][0][0], samples["recforge (local)"][0][0]
        same = bool(np.array_equal(local_model.user_factors, dask_model.user_factors)
                    and np.array_equal(local_model.item_factors, dask_model.item_factors))  # fmt: skip
        rows.append(_seed_spread_row(ctx, case, train, test, solver, iters, reg, local_model, same))
        summary[(solver, "recforge")]["NDCG@10"] = rows[-1]
        if _on("RECFORGE_BENCH_DASK_CURVE"):  # NDCG@10 after every iteration (for the time to Spark's NDCG)
            traced, *_ = _local(train, solver, ctx.threads, iters, reg, test=test)
            rows.append(_row(case, "recforge", "NDCG@10 after each iteration", traced.ndcg_curve[-1], None, "higher",
                             curve=traced.ndcg_curve, dask_bit_equal_to_local=same))  # fmt: skip
        if solver == "cholesky" and spark is not None:  # Spark has no CG: its Cholesky fit is the target of both
            spark_rows = _spark_rows(ctx, spark, case, train, test, iters, regs["spark"])
            rows += spark_rows
            summary[("cholesky", "Spark MLlib")] = {r["metric"]: r["value"] for r in spark_rows}
        if spark_rows and _on("RECFORGE_BENCH_DASK_CURVE"):
            rows += _time_to_target(ctx, case, traced.ndcg_curve, *per_iter["recforge"], spark_rows)
    return rows + _summary_rows(ctx, f"{shape} {iters} it", summary, (load_start, os.getloadavg()[0]))


def _on(name: str) -> bool:
    """A 0/1 environment switch of this bench, on unless set to 0."""
    return switch(name, "1", "0,1")[0] == "1"


def _seed_spread_row(ctx, case, train, test, solver, iters, reg, model, dask_bit_equal):
    """NDCG@10 of the recforge model (the Dask and the local fit: the same bits) over the seeds of
    ``RECFORGE_BENCH_DASK_SEEDS`` (default 0,1,2: other initial factors), so "equal NDCG" is judged
    against the seed noise. ``model`` is the seed-0 fit already made."""
    seeds = [int(v) for v in os.environ.get("RECFORGE_BENCH_DASK_SEEDS", "0" if ctx.quick else "0,1,2").split(",")]
    values = []
    for seed in seeds:
        fitted = model if seed == 0 else _local(train, solver, ctx.threads, iters, reg, seed=seed)[0]
        values.append(_ndcg(fitted.user_factors, fitted.item_factors, train.csr, test.csr))
    ctx.log(f"{case}: recforge NDCG@10 over seeds {seeds}: {[round(v, 4) for v in values]}")
    return _row(case, "recforge", "NDCG@10 mean over seeds", float(np.mean(values)),
                float((max(values) - min(values)) / 2), "higher", seeds=seeds, values=values,
                dask_bit_equal_to_local=dask_bit_equal)  # fmt: skip


def _summary_rows(ctx, case, summary, load) -> list[dict]:
    """One table per case: s/iter, CPU s/iter and NDCG@10 of Dask-CG, Dask-Cholesky, local and Spark, and
    the ratios (Spark over each recforge fit; Dask over local), logged as markdown and returned as rows
    (library "ratio": the value is the ratio itself)."""
    names = {"recforge": "Dask", "recforge (local)": "local", "recforge dask 1 worker": "Dask 1 worker",
             "Spark MLlib": "Spark"}  # fmt: skip
    lines = [f"summary {case} (load average {load[0]:.1f} at the start, {load[1]:.1f} at the end)",
             "| fit | s/iter | CPU s/iter | CPU s/iter net of idle | NDCG@10 (seed spread) |",
             "|---|---:|---:|---:|---:|"]  # fmt: skip
    for (solver, lib), fig in summary.items():
        nd = fig.get("NDCG@10")
        ndcg = (f"{nd['value']:.4f} ± {nd['spread']:.4f} ({len(nd['seeds'])} seeds)" if isinstance(nd, dict)
                else f"{nd:.4f}" if nd is not None else "")  # fmt: skip
        net = fig.get("CPU s/iter net of idle")
        lines.append(f"| {names[lib]} {solver} | {fig['s/iter']:.3f} | {fig['CPU s/iter']:.3f} | "
                     f"{'' if net is None else f'{net:.3f}'} | {ndcg} |")  # fmt: skip
    rows = []

    def ratio(metric, num, den, label, better="higher"):
        a, b = summary.get(num, {}).get(metric), summary.get(den, {}).get(metric)
        if a is not None and b is not None and b > 0:
            rows.append(_row(case, "ratio", f"{label}, {metric}", a / b, None, better, load_avg=load))
            lines.append(f"| {label}, {metric} | {a / b:.2f}x |")

    lines += ["", "| ratio | |", "|---|---:|"]
    spark = ("cholesky", "Spark MLlib")
    for metric in ("CPU s/iter", "s/iter"):
        for solver in ("cholesky", "cg"):
            for lib in ("recforge", "recforge (local)"):
                ratio(metric, spark, (solver, lib), f"Spark / {names[lib]} {solver}")
    for metric in ("CPU s/iter", "CPU s/iter net of idle", "s/iter"):
        for solver in ("cholesky", "cg"):
            ratio(metric, (solver, "recforge"), (solver, "recforge (local)"), f"Dask / local {solver}", "lower")
    for solver in ("cholesky", "cg"):  # scaling 1 -> 2 workers
        ratio("s/iter", (solver, "recforge dask 1 worker"), (solver, "recforge"), f"Dask 1 worker / 2 workers {solver}")
    ctx.log("\n".join(lines))
    return rows


def _kernel_cost_rows(ctx):
    """Core-seconds per stored value per iteration at f=128 (CG and Cholesky, one thread), on a synthetic
    matrix with docs/scale-out.md's shape ratios (10 interactions per user, 100 per item), so the
    per-row work is included in the per-nonzero figure."""
    import recforge as rf

    n_users, n_items, nnz = (30_000, 3_000, 300_000) if ctx.quick else (300_000, 30_000, 3_000_000)
    df = rf.datasets.synthetic(n_users=n_users, n_items=n_items, nnz=nnz, seed=1, timestamps=False)
    m = binary_csr(df, shape=(n_users, n_items))
    rows = []
    for solver in ("cg", "cholesky"):
        model = rf.ALS(factors=128, epochs=3, solver=solver, threads=1, seed=0).fit(m, progress=False)
        per_iter = float(np.median([h["seconds"] for h in model.history_[1:]]))
        case = f"kernel cost f=128 {solver}, {n_users:,}x{n_items:,} nnz={m.nnz:,}"
        rows.append(_row(case, "recforge (local)", "ns per nnz per iteration, 1 thread", 1e9 * per_iter / m.nnz,
                         None, "lower", seconds_per_iteration=per_iter))  # fmt: skip
    return rows


def run(ctx):
    import recforge as rf

    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError as exc:
        ctx.missing_peers["distributed"] = f"{type(exc).__name__}: {exc} (pip install 'recforge[dask]')"
        return []
    rf.set_config(progress=False)
    forced = os.environ.get("RECFORGE_BENCH_DASK_ITERS")
    cases = switch("RECFORGE_BENCH_DASK_CASES", "video-games,synthetic,kernel-cost")
    pyspark = ctx.peer("pyspark") if os.environ.get("RECFORGE_BENCH_DASK_SPARK", "1") != "0" else None
    spark = _spark_session(ctx) if pyspark is not None else None
    als_wr = _scaling_params()["regularization_scaling"] == "observed"
    regs = {"recforge": _grid("RECFORGE_BENCH_DASK_REG", "0.05,0.1,0.5" if als_wr else "0.05,0.5,5"),
            "spark": _grid("RECFORGE_BENCH_DASK_SPARK_REG", "0.05,0.1,0.5")}  # fmt: skip
    clusters, opened = {}, []
    try:
        # The Dask settings docs/scale-out.md recommends for fits (leaner diagnostics; nothing changes a
        # result); RECFORGE_BENCH_DASK_CLUSTER=default keeps Dask's own.
        lean = switch("RECFORGE_BENCH_DASK_CLUSTER", "lean", "lean,default")[0] == "lean"
        settings = dict(rf.distributed.CLUSTER_CONFIG) if lean else {}
        ctx.log(f"Dask cluster settings: {settings or 'defaults'}")
        for n in sorted({1, ctx.threads} if _on("RECFORGE_BENCH_DASK_ONE_WORKER") else {ctx.threads}):
            with dask.config.set(settings):
                cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0")
            opened.append(cluster)
            clusters[n] = Client(cluster)
        idle = {n: _idle_cpu_rate(client) for n, client in clusters.items()}
        ctx.log(f"idle CPU of the Dask processes (CPU s per s, by worker count): {idle}")
        rows = []
        for name in cases:
            if name == "kernel-cost":
                continue
            split = _video_games(ctx) if name == "video-games" else _synthetic(ctx)
            if split is None:
                continue
            iters = int(forced) if forced else 3 if ctx.quick else ITERATIONS[name]
            rows += _case_rows(ctx, clusters, idle, spark, regs, name, split, iters)
        if "kernel-cost" in cases:
            rows += _kernel_cost_rows(ctx)
        return rows
    finally:
        for client in clusters.values():
            client.close()
        for cluster in opened:
            cluster.close()
        if spark is not None:
            spark.stop()
