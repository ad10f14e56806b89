"""Run one benchmark against its peers: ``python bench/run.py <name> [--threads 2] [--repeat 3] [--quick] [--out DIR]``.

Discovers ``bench/bench_<name>.py`` and calls its ``run(ctx)`` (see ``_harness.py`` for the row
format, timing and ratio conventions). Prints a markdown table (ratio > 1 means recforge is
better) and writes <name>.json, <name>.md and <name>.png into --out (``-quick`` suffix with --quick).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness  # noqa: E402  (stdlib only: safe before the thread environment is pinned)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description="Run a recforge benchmark side by side with its peer libraries.",
    )
    parser.add_argument(
        "name", nargs="?", help=f"benchmark name (bench/bench_<name>.py): {', '.join(_harness.available_benchmarks())}"
    )
    parser.add_argument("--threads", type=int, default=2, help="threads for every library (default 2)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per figure after one warm-up (default 3)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run in seconds")
    parser.add_argument(
        "--out",
        type=Path,
        default=_harness.BENCH_DIR / "results",
        help="folder for the JSON, markdown and PNG outputs (default bench/results)",
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-h", "--help") for a in argv):  # NAME --help: the benchmark's own options after these
        known, _ = parser.parse_known_args([a for a in argv if a not in ("-h", "--help")])
        try:
            own = "\n\n" + _harness.benchmark_help(known.name) if known.name else ""
        except ValueError as exc:
            parser.error(str(exc))
        print(parser.format_help() + own)
        raise SystemExit(0)
    args = parser.parse_args(argv)
    if args.list:
        return args
    if not args.name:
        parser.error("a benchmark name is required (see --list)")
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if args.repeat < 1:
        parser.error(f"--repeat must be >= 1, got {args.repeat}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list:
        print("\n".join(_harness.available_benchmarks()))
        return 0
    # Before NumPy or any peer loads: BLAS/OpenMP pools size themselves from the environment once.
    _harness.pin_thread_env(args.threads)
    try:
        module = _harness.load_benchmark(args.name)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _harness.limit_blas(args.threads)
    ctx = _harness.Context(threads=args.threads, repeat=args.repeat, quick=args.quick, out_dir=args.out)
    machine = _harness.machine_info()  # at the start: the commit the benchmark code was loaded from
    rows = _harness.check_rows(module.run(ctx))
    # The benchmarks' RECFORGE_BENCH_* switches are part of the command that reproduces the run.
    switches = [f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("RECFORGE_BENCH_")]
    command = " ".join(
        shlex.quote(a) for a in [*switches, "python", "bench/run.py", *(sys.argv[1:] if argv is None else argv)]
    )
    rec = _harness.report(args.name, rows, ctx, command, machine=machine)
    paths = _harness.write_outputs(rec, args.out)
    print(_harness.markdown_report(rec))
    print("wrote " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
