"""Run N generated fuzz cases and print the outcome counts (crash / hang / garbage / unclear / clear /
correct), per target, and one reproducer per distinct finding.

    python tests/fuzz/report.py --cases 2000 [--seed 0] [--all-findings] [--markdown FILE] [--cases-file F]

Known findings (findings.py) are run too: this is the measurement, not the test (test_fuzz.py
leaves out the cases of findings not fixed yet, which their own xfail tests cover).
"""

from __future__ import annotations

import argparse
import collections
import pickle
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from findings import open_finding  # noqa: E402
from oracle import BAD, OUTCOMES  # noqa: E402
from runner import counts, run_cases  # noqa: E402
from strategies import generate  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--all-findings", action="store_true", help="print every bad case, not one per distinct kind")
    ap.add_argument("--markdown", type=Path, help="also write the table and findings to this file")
    ap.add_argument(
        "--cases-file",
        type=Path,
        help="run the cases pickled in this file (written first if absent): the same inputs before and after a change",
    )
    args = ap.parse_args()
    start = time.monotonic()
    if args.cases_file and args.cases_file.exists():
        cases = pickle.loads(args.cases_file.read_bytes())
    else:
        cases = generate(args.cases, args.seed)
        if args.cases_file:
            args.cases_file.write_bytes(pickle.dumps(cases))
    results = run_cases(cases)
    total = counts(results)
    per_target: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for r in results:
        per_target[r.target][r.outcome] += 1
    lines = [
        f"{len(results)} cases (seed {args.seed}) in {time.monotonic() - start:.0f} s",
        "",
        "| target | " + " | ".join(OUTCOMES) + " |",
        "|---|" + "---|" * len(OUTCOMES),
        "| **all** | " + " | ".join(str(total[o]) for o in OUTCOMES) + " |",
    ]
    lines += [f"| {t} | " + " | ".join(str(c[o]) for o in OUTCOMES) + " |" for t, c in sorted(per_target.items())]
    lines += ["", "Findings (one reproducer per target, outcome and message kind):", ""]
    seen = set()
    for r in results:
        if r.outcome not in BAD:
            continue
        key = (r.target, r.outcome, r.detail[:60])
        if key in seen and not args.all_findings:
            continue
        seen.add(key)
        known = open_finding(r.target, r.kwargs, r.outcome, r.detail)
        lines.append(f"- **{r.outcome}** [{known or 'NEW'}] `{r.reproducer()}`\n  -> {r.detail[:400]}")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
