"""Benchmark harness: context, timing, peer loading, ratios, reports (JSON, markdown, PNG).

A benchmark is a module ``bench/bench_<name>.py`` with ``run(ctx) -> list[dict]``; each row is

    {"case": "ml-100k f=64", "library": "recforge" | "implicit" | ..., "metric": "s/iter" | ...,
     "value": float, "spread": float | None, "better": "lower" | "higher"}

Extra keys are kept in the JSON. ``bench/run.py`` is the entry point; this module holds the logic so
that it can be unit-tested without running a benchmark.

Conventions
-----------
- Timing (``Context.timeit``): one warm-up call, then ``repeat`` timed calls. ``median`` is the
  median of the timed calls; ``spread`` is half their range, ``(max - min) / 2``, so a figure reads
  "median ± spread" and the spread bounds every run (an IQR needs more runs than a benchmark of
  minutes can afford).
- Ratio: for each (case, metric), every peer's ratio against recforge is
  ``peer / recforge`` when lower is better and ``recforge / peer`` when higher is better, so a
  ratio above 1 always means recforge is better.
- Threads: ``pin_thread_env`` must run before NumPy or any peer is imported (BLAS pools read
  their environment once, at load); ``Context.peer`` then pins the peers that have their own knob
  (FAISS, PyTorch) and threadpoolctl caps every BLAS/OpenMP pool already loaded.
- Data: benchmarks read real data sets only through recforge's own loaders (``rf.datasets``),
  called through ``Context.dataset``, which points them at ``ctx.data_dir`` ($RECFORGE_DATA) and
  turns an absent set into a "not measured (reason)" entry of the report instead of a crash.
  ``movielens_100k_fold``, ``ncf_matrices`` and ``binary_csr`` shape what the loaders return.

Only the standard library is imported at module level, so ``run.py`` can pin the environment
first.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent

# Environment variables that size the thread pools of BLAS libraries, OpenMP runtimes and NumExpr.
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)

# Distributions whose versions go into every report (absent ones are skipped).
REPORTED_DISTRIBUTIONS = (
    "recforge",
    "numpy",
    "scipy",
    "threadpoolctl",
    "implicit",
    "faiss-cpu",
    "scikit-surprise",
    "torch",
    "pandas",
)

ROW_KEYS = ("case", "library", "metric", "value", "spread", "better")
OURS = "recforge"


def switch(name: str, default: str, choices: str | None = None) -> list[str]:
    """The values of the comma-separated environment switch ``name`` (a benchmark's RECFORGE_BENCH_*),
    ``default`` when unset; ValueError naming any value outside ``choices`` (default: ``default``'s)."""
    values = os.environ.get(name, default).split(",")
    known = (choices or default).split(",")
    unknown = [v for v in values if v not in known]
    if unknown:
        raise ValueError(f"{name}: unknown value(s) {unknown}; choose from {','.join(known)}")
    return values


def pin_thread_env(threads: int) -> None:
    """Set every thread-count environment variable to ``threads``; call before importing NumPy."""
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(threads)


def default_data_dir() -> Path:
    """$RECFORGE_DATA, else ../shared/data relative to the repository root."""
    return Path(os.environ.get("RECFORGE_DATA", REPO_ROOT.parent / "shared" / "data"))


def summarise(times: list[float]) -> dict:
    """dict(median=, spread=(max-min)/2, runs=[...]) of a list of timings in seconds."""
    if not times:
        raise ValueError("summarise needs at least one timing")
    return {
        "median": statistics.median(times),
        "spread": (max(times) - min(times)) / 2,
        "runs": list(times),
    }


class Context:
    """What a benchmark's ``run(ctx)`` gets.

    Attributes
    ----------
    threads : int
        Threads every library must use (pass it to peers that take a thread argument, such as
        implicit's ``num_threads``).
    repeat : int
        Timed runs per figure (after one warm-up).
    quick : bool
        Small sizes, for a smoke run.
    data_dir : pathlib.Path
        Folder of the real data sets.
    out_dir : pathlib.Path
        Folder of the reports (``--out``), where a benchmark writes its own charts too.
    missing_peers : dict
        import name -> reason, for every peer that could not be imported.
    not_measured : dict
        data set -> reason, for every data set that could not be loaded.
    """

    def __init__(
        self,
        threads: int = 2,
        repeat: int = 3,
        quick: bool = False,
        data_dir=None,
        out_dir=None,
        log: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ):
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if repeat < 1:
            raise ValueError(f"repeat must be >= 1, got {repeat}")
        self.threads = int(threads)
        self.repeat = int(repeat)
        self.quick = bool(quick)
        self.data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        self.out_dir = Path(out_dir) if out_dir is not None else BENCH_DIR / "results"
        self.missing_peers: dict[str, str] = {}
        self.not_measured: dict[str, str] = {}
        self._start = time.perf_counter()
        self._log = log or (
            lambda msg: print(f"[{time.perf_counter() - self._start:7.1f}s] {msg}", file=sys.stderr, flush=True)
        )
        self._clock = clock

    def log(self, msg: str) -> None:
        """Progress message (stderr), so stdout keeps only the table."""
        self._log(msg)

    def timeit(self, fn: Callable[[], object], repeat: int | None = None, warmup: int = 1) -> dict:
        """Time ``fn()``: ``warmup`` untimed calls, then ``repeat`` (default ctx.repeat) timed calls.

        Returns dict(median=, spread=, runs=[...]) in seconds (see the module docstring).
        """
        return self.timeit_many({"_": fn}, repeat=repeat, warmup=warmup)["_"]

    def timeit_many(
        self, fns: dict[str, Callable[[], object]], repeat: int | None = None, warmup: int = 1
    ) -> dict[str, dict]:
        """Time several functions with their runs interleaved (a, b, c, a, b, c, ...).

        Interleaving spreads a noisy neighbour's load over every library instead of penalising
        whichever ran while it was busy. Returns name -> dict(median=, spread=, runs=[...]).
        """
        repeat = self.repeat if repeat is None else int(repeat)
        if repeat < 1:
            raise ValueError(f"repeat must be >= 1, got {repeat}")
        for _ in range(warmup):
            for fn in fns.values():
                fn()
        times: dict[str, list[float]] = {name: [] for name in fns}
        for _ in range(repeat):
            for name, fn in fns.items():
                t0 = self._clock()
                fn()
                times[name].append(self._clock() - t0)
        return {name: summarise(ts) for name, ts in times.items()}

    def peer(self, import_name: str):
        """Import a peer library, pinned to ``threads``; None (recorded, reported) when missing."""
        try:
            module = importlib.import_module(import_name)
        except Exception as exc:  # ImportError, or a broken install raising anything else
            self.missing_peers[import_name] = f"{type(exc).__name__}: {exc}"
            self.log(f"peer missing: {import_name} ({exc})")
            return None
        top = import_name.split(".")[0]
        if top == "faiss":
            module_top = importlib.import_module("faiss")
            module_top.omp_set_num_threads(self.threads)
        elif top == "torch":
            module_top = importlib.import_module("torch")
            module_top.set_num_threads(self.threads)
        limit_blas(self.threads)
        return module

    def dataset(self, name: str, load: Callable, *args, **kwargs):
        """``load(*args, data_home=ctx.data_dir, **kwargs)``; None (recorded, reported) when its files are absent."""
        try:
            return load(*args, data_home=self.data_dir, **kwargs)
        except FileNotFoundError as exc:
            reason = str(exc).split("Looked for")[0].strip()  # the loaders' first sentence, not the paths
            self.not_measured[name] = reason
            self.log(f"{name}: not measured ({reason})")
            return None


_limits = None


def limit_blas(threads: int) -> None:
    """Cap every loaded BLAS/OpenMP pool at ``threads`` (threadpoolctl), for pools loaded late."""
    global _limits
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    _limits = threadpool_limits(limits=threads)  # kept referenced: the limit holds for the process


# ---- data sets the loaders do not shape ---------------------------------------------------------


def movielens_100k_fold(k: int, data_home=None):
    """MovieLens-100K official fold ``k`` (``ml-100k/u<k>.base``, ``u<k>.test``) as (train, test, shape).

    train/test: DataFrames with 0-based ``user``, ``item``, ``rating`` (int64, as in the files), ``timestamp``,
    read by ``rf.datasets.load_csv`` from the first of recforge's data folders holding the files.
    shape: (943, 1682), the whole set's (base + test of a fold is the whole set).
    """
    import recforge as rf

    names = ["user", "item", "rating", "timestamp"]
    parts = []
    for suffix in ("base", "test"):
        rel = Path("ml-100k") / f"u{k}.{suffix}"
        looked = [base / rel for base in rf.datasets.data_home_candidates(data_home)]
        path = next((p for p in looked if p.is_file()), None)
        if path is None:
            raise FileNotFoundError(f"{rel} not found. Looked for: {', '.join(map(str, looked))}")
        df = rf.datasets.load_csv(path, weight_col="rating", time_col="timestamp", sep="\t", header=None, names=names)
        df = df.rename(columns={"weight": "rating"})
        df["user"] -= 1
        df["item"] -= 1
        parts.append(df)
    shape = tuple(int(max(p[col].max() for p in parts)) + 1 for col in ("user", "item"))
    return parts[0], parts[1], shape


def binary_csr(df, shape=None):
    """Binary float32 CSR of a DataFrame's 0-based ``user``, ``item`` columns (repeats count once)."""
    import numpy as np
    import scipy.sparse as sp

    m = sp.csr_matrix((np.ones(len(df), np.float32), (df["user"].to_numpy(), df["item"].to_numpy())), shape=shape)
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def ncf_matrices(prefix: str, data_home=None):
    """An NCF-format set (``rf.datasets.load_ncf_format``) as (train CSR, test CSR, negatives).

    Binary float32 matrices over every id the files name (negatives included); the negatives'
    rows are in test-pair order (by user, then item), the order ``recforge.evaluation`` expects.
    """
    import numpy as np

    import recforge as rf

    train, test, negatives = rf.datasets.load_ncf_format(prefix, data_home=data_home)
    shape = (
        int(max(train["user"].max(), test["user"].max())) + 1,
        int(max(train["item"].max(), test["item"].max(), negatives.max())) + 1,
    )
    order = np.lexsort((test["item"].to_numpy(), test["user"].to_numpy()))
    return binary_csr(train, shape), binary_csr(test, shape), negatives[order]


# ---- rows, ratios, reports ------------------------------------------------------------------


def check_rows(rows) -> list[dict]:
    """Validate the rows a benchmark returned; raises ValueError naming the bad row."""
    if not isinstance(rows, list):
        raise TypeError(f"run(ctx) must return a list of dicts, got {type(rows).__name__}")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise TypeError(f"row {i} must be a dict, got {type(row).__name__}")
        missing = [key for key in ROW_KEYS if key not in row]
        if missing:
            raise ValueError(f"row {i} ({row.get('case')!r}) lacks {missing}")
        if row["better"] not in ("lower", "higher"):
            raise ValueError(f"row {i}: better must be 'lower' or 'higher', got {row['better']!r}")
        if not isinstance(row["value"], (int, float)) or not math.isfinite(row["value"]):
            raise ValueError(f"row {i}: value must be a finite number, got {row['value']!r}")
    return rows


def ratio(ours: float, peer: float, better: str) -> float | None:
    """Peer vs recforge such that > 1 means recforge is better; None when undefined."""
    if better == "lower":
        num, den = peer, ours
    elif better == "higher":
        num, den = ours, peer
    else:
        raise ValueError(f"better must be 'lower' or 'higher', got {better!r}")
    if den == 0 or not (math.isfinite(num) and math.isfinite(den)):
        return None
    return num / den


def add_ratios(rows: list[dict]) -> list[dict]:
    """Copies of ``rows`` with "ratio" set on each peer row that has a recforge row to compare to."""
    ours = {(r["case"], r["metric"]): r for r in rows if r["library"] == OURS}
    out = []
    for r in rows:
        r = dict(r)
        ref = ours.get((r["case"], r["metric"]))
        r["ratio"] = None if r["library"] == OURS or ref is None else ratio(ref["value"], r["value"], r["better"])
        out.append(r)
    return out


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    if value == 0:
        return "0"
    mag = abs(value)
    if mag >= 1000 or mag < 0.001:
        return f"{value:.3g}"
    return f"{value:.4g}"


def markdown_table(
    rows: list[dict], missing_peers: dict[str, str] | None = None, not_measured: dict[str, str] | None = None
) -> str:
    """Markdown table: one line per row, recforge first in each (case, metric) group."""
    rows = add_ratios(rows)
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["case"], r["metric"]), []).append(r)
    lines = [
        "| case | metric | library | value | ± spread | ratio (>1: recforge better) |",
        "|---|---|---|---:|---:|---:|",
    ]
    for (case, metric), group in groups.items():
        group.sort(key=lambda r: (r["library"] != OURS,))
        for r in group:
            arrow = "↓" if r["better"] == "lower" else "↑"
            ratio_text = "—" if r["library"] == OURS else (f"{r['ratio']:.2f}x" if r["ratio"] is not None else "n/a")
            lines.append(
                f"| {case} | {metric} {arrow} | {r['library']} | {_fmt(r['value'])} | "
                f"{_fmt(r['spread'])} | {ratio_text} |"
            )
    text = "\n".join(lines)
    if missing_peers:
        text += "\n\nPeers missing (not measured): " + ", ".join(
            f"`{name}` ({why})" for name, why in sorted(missing_peers.items())
        )
    if not_measured:
        text += "\n\nData sets not measured: " + ", ".join(
            f"`{name}` ({why})" for name, why in sorted(not_measured.items())
        )
    return text


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (commit + ("+dirty" if dirty else "")) or None


def machine_info() -> dict:
    """CPU, cores, OS, Python, library versions, BLAS pools and the git commit."""
    versions = {}
    for dist in REPORTED_DISTRIBUTIONS:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    try:
        from threadpoolctl import threadpool_info

        pools = [
            {k: p.get(k) for k in ("user_api", "internal_api", "version", "num_threads", "filepath")}
            for p in threadpool_info()
        ]
    except Exception:  # threadpoolctl absent or confused by an exotic library: not worth a crash
        pools = []
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "libraries": versions,
        "threadpools": pools,
        "git_commit": _git_commit(),
    }


def report(name: str, rows: list[dict], ctx: Context, command: str, machine: dict | None = None) -> dict:
    """The JSON-able record of one benchmark run."""
    return {
        "benchmark": name,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "settings": {"threads": ctx.threads, "repeat": ctx.repeat, "quick": ctx.quick, "data_dir": str(ctx.data_dir)},
        "machine": machine if machine is not None else machine_info(),
        "missing_peers": dict(ctx.missing_peers),
        "not_measured": dict(ctx.not_measured),
        "timing": "median of `repeat` runs after one warm-up; spread = (max - min) / 2",
        "ratio": "peer/recforge when lower is better, recforge/peer when higher is better: >1 means recforge is better",
        "rows": add_ratios(rows),
    }


def markdown_report(rec: dict) -> str:
    m = rec["machine"]
    s = rec["settings"]
    libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items())
    head = (
        f"## {rec['benchmark']}\n\n"
        f"- date: {rec['date']}\n- command: `{rec['command']}`\n"
        f"- machine: {m['cpu']}, {m['usable_cores']} usable cores; threads={s['threads']}, "
        f"repeat={s['repeat']}, quick={s['quick']}\n- libraries: {libs}\n- commit: {m['git_commit']}\n"
        f"- {rec['timing']}; ratio: {rec['ratio']}\n\n"
    )
    rows = [{k: v for k, v in r.items() if k != "ratio"} for r in rec["rows"]]
    return head + markdown_table(rows, rec["missing_peers"], rec.get("not_measured")) + "\n"


def chart(rec: dict, path: Path) -> Path | None:
    """Bar chart of each peer's ratio per (case, metric); None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    peer_rows = [r for r in rec["rows"] if r["library"] != OURS and r.get("ratio") is not None]
    groups = list(dict.fromkeys((r["case"], r["metric"]) for r in peer_rows))
    peers = list(dict.fromkeys(r["library"] for r in peer_rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(groups) + 2), 4.5))
    if groups:
        width = 0.8 / max(1, len(peers))
        for j, lib in enumerate(peers):
            xs, ys = [], []
            for i, g in enumerate(groups):
                for r in peer_rows:
                    if (r["case"], r["metric"]) == g and r["library"] == lib:
                        xs.append(i + (j - (len(peers) - 1) / 2) * width)
                        ys.append(r["ratio"])
            ax.bar(xs, ys, width=width, label=lib)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([f"{c}\n{m}" for c, m in groups], fontsize=8)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")  # 2x faster and 2x slower sit the same distance from the 1x line
        from matplotlib.ticker import FuncFormatter

        fmt = FuncFormatter(lambda v, _: f"{v:g}x")
        ax.yaxis.set_major_formatter(fmt)
        ax.yaxis.set_minor_formatter(fmt)
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no peer figures", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylabel("ratio vs recforge (>1: recforge better)")
    s = rec["settings"]
    ax.set_title(f"{rec['benchmark']} — {rec['machine']['cpu']}, threads={s['threads']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_outputs(rec: dict, out_dir: Path) -> dict[str, Path]:
    """Writes <name>[-quick].json/.md/.png into ``out_dir``; returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = rec["benchmark"] + ("-quick" if rec["settings"]["quick"] else "")
    paths = {"json": out_dir / f"{stem}.json", "md": out_dir / f"{stem}.md"}
    paths["json"].write_text(json.dumps(rec, indent=2, default=str) + "\n", encoding="utf-8")
    paths["md"].write_text(markdown_report(rec), encoding="utf-8")
    png = chart(rec, out_dir / f"{stem}.png")
    if png is not None:
        paths["png"] = png
    return paths


def available_benchmarks(bench_dir: Path = BENCH_DIR) -> list[str]:
    return sorted(p.stem[len("bench_") :] for p in Path(bench_dir).glob("bench_*.py"))


def benchmark_help(name: str, bench_dir: Path = BENCH_DIR) -> str:
    """What ``bench/run.py NAME --help`` adds: the benchmark's docstring and its RECFORGE_BENCH_* switches.

    Read from the source (not imported: the peers need not be installed to read the help).
    """
    import ast
    import re

    path = Path(bench_dir) / f"bench_{name}.py"
    if not name.replace("_", "").isalnum() or not path.exists():
        known = ", ".join(available_benchmarks(bench_dir)) or "none"
        raise ValueError(f"no benchmark named {name!r}; known: {known}")
    source = path.read_text()
    doc = ast.get_docstring(ast.parse(source)) or "(no description)"
    found = dict.fromkeys(re.findall(r'"(RECFORGE_BENCH_[A-Z0-9_]+)"(?:\s*,\s*"([^"]*)")?', source))
    switches = [f"  {var}={default}" if default else f"  {var}" for var, default in found]
    lines = [f"benchmark {name} (bench/bench_{name}.py):", "", doc]
    if switches:
        lines += ["", "switches (environment variables, comma-separated values; shown with their default):", *switches]
    return "\n".join(lines)


def load_benchmark(name: str, bench_dir: Path = BENCH_DIR):
    """The module <bench_dir>/bench_<name>.py; ValueError listing the known names when absent."""
    path = Path(bench_dir) / f"bench_{name}.py"
    if not name.replace("_", "").isalnum() or not path.exists():
        known = ", ".join(available_benchmarks(bench_dir)) or "none"
        raise ValueError(f"no benchmark named {name!r}; known: {known}")
    if str(bench_dir) not in sys.path:  # a benchmark may import _harness and its sibling modules
        sys.path.insert(0, str(bench_dir))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "run", None)):
        raise ValueError(f"{path} must define run(ctx) -> list[dict]")
    return module
