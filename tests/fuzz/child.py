"""Child process of the fuzz runner: runs the pickled cases from stdin one by one, reporting each on
stdout as ``@@FUZZ start i`` then ``@@FUZZ done [i, outcome, detail]`` (a crash or hang shows as a
start without its done; the parent judges those)."""

from __future__ import annotations

import json
import pickle
import sys
import traceback
import warnings

from oracle import materialize
from targets import TARGETS


def main() -> None:
    cases = pickle.load(sys.stdin.buffer)
    warnings.simplefilter("ignore")  # deprecations and the like are not what is fuzzed here
    for i, (target, kwargs) in enumerate(cases):
        print(f"@@FUZZ start {i}", flush=True)
        try:
            outcome, detail = TARGETS[target](**materialize(kwargs))
        except Exception:  # a bug of the fuzz harness itself, not of recforge
            outcome, detail = "harness", traceback.format_exc()[-1500:]
        print("@@FUZZ done " + json.dumps([i, outcome, str(detail)[:600]]), flush=True)


if __name__ == "__main__":
    main()
