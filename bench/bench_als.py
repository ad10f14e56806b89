"""ALS on the CPU: recforge.ALS vs implicit 0.7 (AlternatingLeastSquares) and Surprise SVD.

Cases (issue 3), every library on ``ctx.threads`` threads, runs interleaved:

* accuracy, MovieLens-100K: ratings >= 4 as positives, ``rf.split.random_holdout`` (per user 20%,
  seed 42), factors 64,
  regularization 0.05, 15 iterations, NDCG@10 over all items with training items excluded, measured
  with ``recforge.evaluation.ndcg_at_k`` for both libraries. Confidence matched: implicit uses the
  stored value times its alpha as the confidence itself (c = alpha r) while recforge uses
  c = 1 + alpha r, so recforge alpha=1 (c = 2 on binary data) runs against implicit alpha=2 (c = 2);
  implicit's default alpha=1 (c = 1) is reported too. Both regularise with the same constant lambda.
  Single seed 42 and the mean over seeds 42..46 (initialisations differ between libraries).
* explicit, MovieLens-100K u1..u5 base/test: RMSE of ALS (feedback="explicit", factors 64,
  regularization 0.1, 15 iterations) vs Surprise SVD with its defaults, mean over the 5 folds; both
  predictions clipped to the rating scale [1, 5] (Surprise does so itself).
* speed: seconds per iteration on a synthetic 138,000 x 27,000 matrix with 12M nonzeros
  (``rf.datasets.synthetic``, seed 0, binarised) and on Amazon Video Games (SASRec's Video.txt), factors 64
  and 128, CG (3 steps, both libraries) and Cholesky. Each fit runs 4 iterations; the first (which
  also pays for the transpose and initialisation) is dropped, the others are per-iteration samples
  taken from each library's own callback clock. ``s/iter`` is wall time; ``cpu-s/iter`` is the
  process CPU time (all threads), less sensitive to other jobs on a shared machine.
* memory: peak resident memory added by ``fit`` (2 iterations), each library in a fresh
  subprocess with the matrix loaded and both libraries imported: the peak (VmHWM, reset through
  /proc/self/clear_refs just before ``fit``) minus the resident size then (VmRSS). Covers every
  allocation (numpy, C++, OpenMP, BLAS), unlike tracemalloc. Linux only.
* scale (not in --quick, not by default): a synthetic 600,000 x 100,000 matrix with ~50M
  nonzeros, recforge only, seconds per iteration and peak memory.

``RECFORGE_BENCH_ALS_CASES`` (comma-separated, default ``accuracy,explicit,speed,memory``) picks the
cases, e.g. ``RECFORGE_BENCH_ALS_CASES=scale python bench/run.py als --repeat 1``;
``RECFORGE_BENCH_ALS_FACTORS`` (default ``64,128``) and ``RECFORGE_BENCH_ALS_SOLVERS`` (default
``cg,cholesky``) narrow the speed case.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from _harness import binary_csr, movielens_100k_fold, switch  # bench/ is on sys.path (run.py, load_benchmark)

SYNTH_FULL = (138_000, 27_000, 12_000_000)
SYNTH_QUICK = (6_000, 2_000, 200_000)
SYNTH_SCALE = (600_000, 100_000, 50_000_000)
TIMED_ITERATIONS = 4  # per fit; the first is dropped
ALL_CASES = "accuracy,explicit,speed,memory,scale"
DEFAULT_CASES = "accuracy,explicit,speed,memory"


# ---- data ---------------------------------------------------------------------------------------
def synthetic(n_users: int, n_items: int, nnz: int, seed: int = 0) -> sp.csr_matrix:
    """Binary users x items CSR from ``recforge.datasets.synthetic`` (power-law users and items,
    planted low-rank structure, exactly ``nnz`` distinct pairs)."""
    import recforge as rf

    df = rf.datasets.synthetic(n_users=n_users, n_items=n_items, nnz=nnz, seed=seed, timestamps=False)
    return binary_csr(df, shape=(n_users, n_items))


def video_games(ctx) -> sp.csr_matrix | None:
    """SASRec's Amazon Video Games (``rf.datasets.load_sasrec``, 1-based ids) as a binary CSR."""
    import recforge as rf

    df = ctx.dataset("video-games", rf.datasets.load_sasrec, "video-games")
    if df is None:
        return None
    df["user"] -= 1
    df["item"] -= 1
    return binary_csr(df)


def ml100k_implicit_split(ctx, seed: int = 42):
    """(train, test) binary CSR: ratings >= 4, ``recforge.split.random_holdout`` (per user 20%)."""
    import recforge as rf

    df = ctx.dataset("ml-100k", rf.datasets.load_movielens, "100k", progress=False)
    if df is None:
        return None
    df = df[df["rating"] >= 4]
    inter = rf.Interactions.from_pandas(df, user_col="user", item_col="item")
    train, test = rf.split.random_holdout(inter, test_fraction=0.2, seed=seed)
    return train.csr, test.csr


# ---- timing -----------------------------------------------------------------------------------------
class _IterClock:
    """Per-iteration wall and CPU seconds from a library's end-of-iteration callback."""

    def __init__(self):
        self.wall, self.cpu = [], []
        self._last = None

    def start(self):
        self._last = (time.perf_counter(), time.process_time())

    def __call__(self, *args):
        now = (time.perf_counter(), time.process_time())
        self.wall.append(now[0] - self._last[0])
        self.cpu.append(now[1] - self._last[1])
        self._last = now


def _fit_recforge(m, f, solver, threads, iterations=TIMED_ITERATIONS):
    import recforge as rf

    clock = _IterClock()
    model = rf.ALS(factors=f, regularization=0.05, epochs=iterations, solver=solver, threads=threads, seed=0)
    clock.start()
    model.fit(m, callback=clock, progress=False)
    return clock


def _fit_implicit(implicit, m, f, solver, threads, iterations=TIMED_ITERATIONS):
    from threadpoolctl import threadpool_limits

    clock = _IterClock()
    model = implicit.cpu.als.AlternatingLeastSquares(
        factors=f,
        regularization=0.05,
        alpha=2.0,
        iterations=iterations,
        use_cg=solver == "cg",
        num_threads=threads,
        random_state=0,
    )
    with threadpool_limits(1, "blas"):  # implicit's own advice: BLAS single-threaded under its threads
        clock.start()
        model.fit(m, show_progress=False, callback=clock)
    return clock


def _speed_rows(ctx, implicit, name, m):
    rows = []
    for f in (int(f) for f in switch("RECFORGE_BENCH_ALS_FACTORS", "64,128")):
        for solver in switch("RECFORGE_BENCH_ALS_SOLVERS", "cg,cholesky"):
            case = f"{name} {m.shape[0]:,}x{m.shape[1]:,} nnz={m.nnz:,} f={f} {solver}"
            ctx.log(f"als speed: {case}")
            samples = {"recforge": ([], [])}
            if implicit is not None:
                samples["implicit"] = ([], [])
            for _ in range(ctx.repeat):  # interleaved
                for lib in samples:
                    clock = (
                        _fit_recforge(m, f, solver, ctx.threads)
                        if lib == "recforge"
                        else _fit_implicit(implicit, m, f, solver, ctx.threads)
                    )
                    samples[lib][0].extend(clock.wall[1:])
                    samples[lib][1].extend(clock.cpu[1:])
            for lib, (wall, cpu) in samples.items():
                for metric, xs in (("s/iter", wall), ("cpu-s/iter", cpu)):
                    rows.append(
                        {
                            "case": case,
                            "library": lib,
                            "metric": metric,
                            "value": float(np.median(xs)),
                            "spread": float(np.percentile(xs, 75) - np.percentile(xs, 25)),
                            "better": "lower",
                        }
                    )
    return rows


# ---- memory (one subprocess per library) ------------------------------------------------------------
_CHILD = r"""
import sys, numpy as np, scipy.sparse as sp
sys.path.insert(0, {bench!r})
import bench_als
m = sp.load_npz({path!r}).tocsr()
import recforge  # both imported before the baseline: only fit's own memory counts
try:
    import implicit.cpu.als
except ImportError:  # recforge measured alone
    implicit = None
def status_kb(field):
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))
with open("/proc/self/clear_refs", "w") as fh:  # reset the peak (VmHWM) to the current size
    fh.write("5")
before = status_kb("VmRSS")
if {lib!r} == "recforge":
    bench_als._fit_recforge(m, {f}, {solver!r}, {threads}, iterations=2)
else:
    bench_als._fit_implicit(implicit, m, {f}, {solver!r}, {threads}, iterations=2)
print((status_kb("VmHWM") - before) / 1024)
"""


def _peak_mb(lib, path, f, solver, threads) -> float:
    code = _CHILD.format(
        bench=str(Path(__file__).resolve().parent), path=str(path), lib=lib, f=f, solver=solver, threads=threads
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _memory_rows(ctx, implicit, name, m, solvers=("cg", "cholesky"), f=64):
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.npz"
        sp.save_npz(path, m, compressed=False)
        for solver in solvers:
            case = f"{name} {m.shape[0]:,}x{m.shape[1]:,} nnz={m.nnz:,} f={f} {solver}"
            libs = ["recforge"] + (["implicit"] if implicit is not None else [])
            for lib in libs:
                ctx.log(f"als memory: {case} {lib}")
                rows.append(
                    {
                        "case": case,
                        "library": lib,
                        "metric": "peak MB added by fit",
                        "value": _peak_mb(lib, path, f, solver, ctx.threads),
                        "spread": None,
                        "better": "lower",
                    }
                )
    return rows


# ---- accuracy ------------------------------------------------------------------------------------------
def _accuracy_rows(ctx, implicit):
    from threadpoolctl import threadpool_limits

    import recforge as rf

    split = ml100k_implicit_split(ctx)
    if split is None:
        return []
    train, test = split
    users = np.arange(train.shape[0])
    seeds = [42] if ctx.quick else [42, 43, 44, 45, 46]
    iterations = 3 if ctx.quick else 15

    def ndcg(ids):
        return float(rf.evaluation.ndcg_at_k(ids, test, k=10))

    runs: dict[tuple[str, str], list[float]] = {}
    for solver in ("cg", "cholesky"):
        for seed in seeds:
            model = rf.ALS(
                factors=64,
                regularization=0.05,
                epochs=iterations,
                alpha=1.0,
                solver=solver,
                threads=ctx.threads,
                seed=seed,
            ).fit(train, progress=False)
            runs.setdefault((f"recforge {solver}", "recforge"), []).append(ndcg(model.recommend(users, k=10)[0]))
            if implicit is None:
                continue
            for alpha in (2.0, 1.0):
                peer = implicit.cpu.als.AlternatingLeastSquares(
                    factors=64,
                    regularization=0.05,
                    alpha=alpha,
                    iterations=iterations,
                    use_cg=solver == "cg",
                    num_threads=ctx.threads,
                    random_state=seed,
                )
                with threadpool_limits(1, "blas"):
                    peer.fit(train, show_progress=False)
                ids, _ = peer.recommend(users, train, N=10, filter_already_liked_items=True)
                lib = "implicit" if alpha == 2.0 else "implicit (alpha=1, c=r)"
                runs.setdefault((f"recforge {solver}", lib), []).append(ndcg(ids))
    pop = ndcg(rf.MostPopular().fit(train).recommend(users, k=10)[0])
    rows = []
    for (solver, lib), values in runs.items():
        case = f"ml-100k f=64 reg=0.05 it={iterations} {solver.split()[1]}"
        rows.append(
            {
                "case": case + " seed 42",
                "library": lib,
                "metric": "ndcg@10",
                "value": values[0],
                "spread": None,
                "better": "higher",
            }
        )
        if len(values) > 1:
            rows.append(
                {
                    "case": case + f" mean of {len(values)} seeds",
                    "library": lib,
                    "metric": "ndcg@10",
                    "value": float(np.mean(values)),
                    "spread": float(np.std(values)),
                    "better": "higher",
                }
            )
    for solver in ("cg", "cholesky"):
        case = f"ml-100k f=64 reg=0.05 it={iterations} {solver} seed 42"
        rows.append(
            {
                "case": case,
                "library": "MostPopular",
                "metric": "ndcg@10",
                "value": pop,
                "spread": None,
                "better": "higher",
            }
        )
    return rows


def _explicit_rows(ctx):
    import recforge as rf

    folds = [1] if ctx.quick else [1, 2, 3, 4, 5]
    loaded = [ctx.dataset(f"ml-100k u{k}", movielens_100k_fold, k) for k in folds]
    if None in loaded:
        return []
    surprise = ctx.peer("surprise")
    ours, theirs = [], []
    for tr, te, shape in loaded:
        train = sp.csr_matrix((tr.rating.to_numpy(np.float32), (tr.user, tr.item)), shape=shape)
        model = rf.ALS(
            factors=64, regularization=0.1, epochs=15, feedback="explicit", threads=ctx.threads, seed=42
        ).fit(train, progress=False)
        pred = np.clip(model.score(te.user.to_numpy(), te.item.to_numpy()), 1, 5)
        ours.append(float(np.sqrt(np.mean((pred - te.rating.to_numpy()) ** 2))))
        if surprise is not None:
            reader = surprise.Reader(rating_scale=(1, 5))
            data = surprise.Dataset.load_from_df(tr[["user", "item", "rating"]], reader)
            algo = surprise.SVD(random_state=42)
            algo.fit(data.build_full_trainset())
            est = np.array([algo.predict(u, i).est for u, i in zip(te.user, te.item)])
            theirs.append(float(np.sqrt(np.mean((est - te.rating.to_numpy()) ** 2))))
    case = f"ml-100k explicit {len(folds)}-fold (u1..u{len(folds)})"
    per_fold = {"recforge": ours, "surprise SVD": theirs}
    return [
        {
            "case": case,
            "library": lib,
            "metric": "rmse",
            "value": float(np.mean(rmse)),
            "spread": float(np.std(rmse)),
            "better": "lower",
        }
        for lib, rmse in per_fold.items()
        if rmse  # none for Surprise when it is not installed
    ]


def _scale_rows(ctx):
    n_users, n_items, nnz = SYNTH_SCALE
    ctx.log("als scale: generating the 50M-nonzero matrix")
    m = synthetic(n_users, n_items, nnz, seed=1)
    case = f"synthetic {m.shape[0]:,}x{m.shape[1]:,} nnz={m.nnz:,} f=64"
    rows = []
    for solver in ("cg", "cholesky"):
        ctx.log(f"als scale: {case} {solver}")
        clock = _fit_recforge(m, 64, solver, ctx.threads, iterations=3)
        rows.append(
            {
                "case": case + f" {solver}",
                "library": "recforge",
                "metric": "s/iter",
                "value": float(np.median(clock.wall[1:])),
                "spread": None,
                "better": "lower",
            }
        )
    rows += _memory_rows(ctx, None, "synthetic", m, solvers=("cg",))
    return rows


def run(ctx):
    cases = set(switch("RECFORGE_BENCH_ALS_CASES", DEFAULT_CASES, ALL_CASES))
    implicit = ctx.peer("implicit")
    if implicit is not None:
        import implicit.cpu.als  # noqa: F401  (the CPU class directly: no GPU dispatch)
    rows = []
    if "accuracy" in cases:
        rows += _accuracy_rows(ctx, implicit)
    if "explicit" in cases:
        rows += _explicit_rows(ctx)
    if cases & {"speed", "memory"}:
        n_users, n_items, nnz = SYNTH_QUICK if ctx.quick else SYNTH_FULL
        synth = synthetic(n_users, n_items, nnz)
    if "speed" in cases:
        rows += _speed_rows(ctx, implicit, "synthetic", synth)
        video = video_games(ctx)
        if video is not None:
            rows += _speed_rows(ctx, implicit, "video-games", video)
    if "memory" in cases:
        rows += _memory_rows(ctx, implicit, "synthetic", synth)
    if "scale" in cases and not ctx.quick:
        rows += _scale_rows(ctx)
    return rows
